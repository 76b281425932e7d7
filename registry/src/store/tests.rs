//! openraft's storage conformance suite against the sled store, plus state-machine checks.

use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{Entry, EntryPayload, LogId};

use super::*;
use crate::types::{Command, StorageError, TypeConfig};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| crate::types::StorageIOError::write(&e))?;
        let (log, sm, _) = open(dir.path(), &StoreOptions::default())
            .map_err(|e| crate::types::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_conformance_suite() {
    Suite::test_all(SledBuilder).unwrap();
}

fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn set(key: &str, value: &str, cas: Option<u64>) -> Command {
    Command::KvSet {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        flags: 0,
        cas,
    }
}

#[tokio::test]
async fn kv_cas_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
        let r = sm
            .apply(vec![
                entry(1, set("a/x", "1", Some(0))),
                entry(2, set("a/x", "2", Some(0))), // exists: cas=0 fails
                entry(3, set("a/y", "3", None)),
                entry(4, set("a/x", "4", Some(1))), // matches ModifyIndex 1
                entry(5, set("a/x", "5", Some(1))), // stale
            ])
            .await
            .unwrap();
        let oks: Vec<bool> = r.iter().map(|r| r.ok).collect();
        assert_eq!(oks, vec![true, false, true, true, false]);
        let (idx, e) = reader.kv_get("a/x").unwrap();
        let e = e.unwrap();
        assert_eq!(
            (idx, e.create_index, e.value.as_slice()),
            (4, 1, b"4".as_slice())
        );
        sm.apply(vec![entry(
            6,
            Command::KvDelete {
                key: "a/y".into(),
                recurse: false,
                cas: None,
            },
        )])
        .await
        .unwrap();
        let (idx, list) = reader.kv_list("a/").unwrap();
        assert_eq!(idx, 6, "a tombstone keeps the prefix index moving forward");
        assert_eq!(list.len(), 1);
        let (_, keys) = reader.kv_keys("", Some("/")).unwrap();
        assert_eq!(keys, vec!["a/".to_owned()]);
        assert_eq!(reader.applied_index(), 6);
    }
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(6));
    assert_eq!(reader.kv_get("a/x").unwrap().1.unwrap().value, b"4");
    assert!(reader.kv_get("a/y").unwrap().1.is_none());
}

#[tokio::test]
async fn restore_replaces_state_and_rejects_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    sm.apply(vec![
        entry(1, set("keep", "1", None)),
        entry(2, set("other", "2", None)),
    ])
    .await
    .unwrap();
    let blob = reader.export().unwrap();
    sm.apply(vec![entry(3, set("later", "3", None))])
        .await
        .unwrap();
    let r = sm
        .apply(vec![
            entry(4, Command::Restore { blob: blob.clone() }),
            entry(
                5,
                Command::Restore {
                    blob: b"junk".to_vec(),
                },
            ),
        ])
        .await
        .unwrap();
    assert!(r[0].ok);
    assert!(!r[1].ok, "a bad blob is refused, not fatal");
    assert!(reader.kv_get("later").unwrap().1.is_none());
    let e = reader.kv_get("keep").unwrap().1.unwrap();
    assert_eq!((e.modify_index, e.value.as_slice()), (4, b"1".as_slice()));
    assert!(state::decode_blob(&blob[..blob.len() - 1]).is_err());
}
