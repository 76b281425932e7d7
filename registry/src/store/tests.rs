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
        // The suite purges logs with no snapshot; the snapshot gate is tested on its own below.
        log.snapshot_gate().assume_durable();
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
        lock: None,
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

/// Every kind of record the state machine writes must survive export and validation: a backup
/// of a real cluster is refused otherwise (the CA's per-service index once was).
#[tokio::test]
async fn a_backup_of_every_record_kind_restores() {
    use lucid_core::catalog::parse_registration;
    use lucid_core::config_entry::parse_entry;
    use lucid_core::intention::from_plane_isolation;
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let reg = parse_registration(
        &json!({"Name": "web", "ID": "web-1", "Port": 80, "Check": {"TTL": "30s"}}),
        |n| n.to_owned(),
    )
    .unwrap();
    let policy = from_plane_isolation(&json!({"planes": {"ops": {"allowedClusters": ["web"]}},
        "policies": [{"source": "ops", "destination": "*", "rules": [{"action": "allow"}]}]}))
    .unwrap();
    let cert = ca::IssuedCert {
        serial: "0a0b".into(),
        service: "web".into(),
        plane: "ops".into(),
        not_after: i64::MAX / 2,
        revoked_index: None,
    };
    let cmds = vec![
        set("k", "v", None),
        Command::KvDelete {
            key: "k".into(),
            recurse: false,
            cas: None,
        },
        set("k2", "v", None),
        Command::CatalogRegister {
            registration: reg,
            replace_checks: true,
            keep_owner: false,
        },
        Command::CaInit {
            material: lucid_tls::CaMaterial::generate(1_790_000_000).unwrap(),
        },
        Command::CertIssued { cert },
        Command::CertRevoke {
            serial: "0a0b".into(),
        },
        Command::ConfigSet {
            entry: parse_entry(&json!({"Kind": "service-defaults", "Name": "web"})).unwrap(),
            cas: None,
        },
        Command::PolicyApply {
            planes: policy.planes,
            intentions: policy.intentions,
        },
    ];
    let mut cmds = cmds;
    cmds.push(Command::AclTokenCreate {
        token: acl::AclToken {
            accessor_id: "acc-1".into(),
            secret_hash: "ab".repeat(32),
            description: "web".into(),
            kind: Some(acl::TokenKind::Service { name: "web".into() }),
            ..acl::AclToken::default()
        },
    });
    cmds.push(Command::SessionCreate {
        session: super::sessions::Session {
            id: "s-1".into(),
            name: "leader".into(),
            node: "lucid".into(),
            lock_delay_ns: 15_000_000_000,
            behavior: super::sessions::Behavior::Release,
            ttl: "10s".into(),
            ttl_ms: 10_000,
            node_checks: vec!["serfHealth".into()],
            service_checks: vec![],
            create_index: 0,
            modify_index: 0,
            renewed_ms: 1_000,
        },
    });
    cmds.push(Command::KvSet {
        key: "service/leader".into(),
        value: b"me".to_vec(),
        flags: 0,
        cas: None,
        lock: Some(super::sessions::KvLock::Acquire {
            session: "s-1".into(),
            now_ms: 1_000,
        }),
    });
    cmds.push(Command::SettingSet {
        name: "autopilot".into(),
        value: json!({"CleanupDeadServers": true}),
        cas: None,
    });
    cmds.push(Command::CoordinateSet {
        node: "lucid".into(),
        coord: json!({"Vec": [0.0], "Error": 1.5}),
    });
    cmds.push(Command::EventFire {
        event: super::events::UserEvent {
            id: "e-1".into(),
            name: "deploy".into(),
            payload: b"v2".to_vec(),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            ltime: 0,
        },
    });
    // An external node with a service, a service check and a node-level check, and an
    // ingress gateway's entry.
    let ext = lucid_core::catalog::parse_catalog_registration(&json!({
        "Node": "n1", "Address": "10.1.10.11", "TaggedAddresses": {"wan": "10.1.10.21"},
        "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "db", "ID": "db-1", "Port": 5432},
        "Checks": [{"Name": "db-up", "ServiceID": "db-1", "Status": "passing"},
                   {"Name": "disk"}]
    }))
    .unwrap();
    cmds.push(Command::NodeRegister {
        node: ext.node,
        skip_node_update: false,
        service: ext.service.map(|r| r.instance),
        checks: ext.checks,
    });
    cmds.push(Command::ConfigSet {
        entry: parse_entry(&json!({"Kind": "ingress-gateway", "Name": "gw",
            "Listeners": [{"Port": 8080, "Services": [{"Name": "db"}]}]}))
        .unwrap(),
        cas: None,
    });
    let mut query = lucid_core::query::parse(
        &serde_json::json!({"Name": "web-fast", "Session": "s-1", "Service": {"Service": "web"}}),
    )
    .unwrap();
    query.id = "q-1".into();
    cmds.push(Command::QuerySet {
        query,
        token_accessor: "acc-1".into(),
        create: true,
    });
    let entries: Vec<_> = cmds
        .into_iter()
        .enumerate()
        .map(|(i, c)| entry(i as u64 + 1, c))
        .collect();
    let results = sm.apply(entries).await.unwrap();
    assert!(results.iter().all(|r| r.ok), "{results:?}");
    let blob = reader.export().unwrap();
    let records = state::decode_blob(&blob).unwrap();
    // Every kind of the table is in the backup.
    for kind in super::kinds::KINDS {
        assert!(
            records.iter().any(|(k, _)| (kind.owns)(k)),
            "the backup has no {} record",
            kind.name
        );
    }

    // Restore into a *fresh* store, never the one exported from.
    let fresh = tempfile::tempdir().unwrap();
    let (_l2, mut sm2, reader2) = open(fresh.path(), &StoreOptions::default()).unwrap();
    sm2.apply(vec![entry(1, set("fresh-only", "x", None))])
        .await
        .unwrap();
    let r = sm2
        .apply(vec![entry(40, Command::Restore { blob: blob.clone() })])
        .await
        .unwrap();
    assert!(r[0].ok);
    let restored = state::decode_blob(&reader2.export().unwrap()).unwrap();
    // Byte for byte, except what a restore restamps with its own index.
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (k, v) in records {
        let kind = super::kinds::kind_of(&k).unwrap();
        if kind.indexes.contains(&k.as_slice()) {
            continue;
        }
        if let Some(v) = (kind.restamp)(&k, v, 40).unwrap() {
            want.push((k, v));
        }
    }
    for kind in super::kinds::KINDS {
        for i in kind.indexes {
            want.push((i.to_vec(), 40u64.to_be_bytes().to_vec()));
        }
    }
    want.sort();
    let mut got = restored;
    got.sort();
    assert_eq!(
        got, want,
        "the restore did not bring back exactly the backup"
    );
    assert!(reader2.kv_get("fresh-only").unwrap().1.is_none());
    assert_eq!(reader2.revoked_certs(0).unwrap().1.len(), 1);
    assert_eq!(reader2.intentions().unwrap().1.len(), 1);
    assert_eq!(reader2.acl_tokens().unwrap().len(), 1);
    let q = &reader2.queries().unwrap().1[0];
    assert_eq!(
        (q.query.session.as_str(), q.token_accessor.as_str()),
        ("s-1", "acc-1")
    );
    assert_eq!(reader2.ca_root().unwrap(), reader.ca_root().unwrap());
    let n1 = reader2.external_node("n1").unwrap().unwrap();
    assert_eq!(
        (
            n1.node.address.as_str(),
            n1.instances.len(),
            n1.checks.len()
        ),
        ("10.1.10.11", 1, 2)
    );
    assert_eq!(
        reader2.service("db").unwrap().1[0].1.len(),
        2,
        "db-1's health: its own check and the node's"
    );
    let gw = reader2
        .config_entry(lucid_core::config_entry::ConfigKind::IngressGateway, "gw")
        .unwrap()
        .1
        .unwrap();
    assert_eq!(gw.entry.listeners[0].protocol, "tcp");
}

async fn install(sm: &mut StateMachine, data: Vec<u8>, index: u64) {
    let meta = crate::types::SnapshotMeta {
        last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
        last_membership: Default::default(),
        snapshot_id: format!("s-{index}"),
    };
    sm.install_snapshot(&meta, Box::new(std::io::Cursor::new(data)))
        .await
        .unwrap();
}

/// A follower that was behind installs a snapshot: what was deleted meanwhile must go, of
/// every kind (it used to keep intentions, config entries and tokens).
#[tokio::test]
async fn a_snapshot_install_removes_what_was_deleted_meanwhile() {
    use lucid_core::config_entry::parse_entry;
    use lucid_core::intention::from_plane_isolation;
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let policy = from_plane_isolation(&json!({"planes": {"ops": {"allowedClusters": ["web"]}},
        "policies": [{"source": "ops", "destination": "*", "rules": [{"action": "allow"}]}]}))
    .unwrap();
    let token = acl::AclToken {
        accessor_id: "acc-1".into(),
        secret_hash: "cd".repeat(32),
        description: String::new(),
        kind: Some(acl::TokenKind::ReadOnly),
        ..acl::AclToken::default()
    };
    sm.apply(vec![
        entry(1, set("k", "v", None)),
        entry(
            2,
            Command::ConfigSet {
                entry: parse_entry(&json!({"Kind": "service-defaults", "Name": "web"})).unwrap(),
                cas: None,
            },
        ),
        entry(
            3,
            Command::PolicyApply {
                planes: policy.planes,
                intentions: policy.intentions,
            },
        ),
        entry(4, Command::AclTokenCreate { token }),
    ])
    .await
    .unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let (_l2, mut follower, freader) = open(follower_dir.path(), &StoreOptions::default()).unwrap();
    install(&mut follower, reader.export().unwrap(), 4).await;
    let (_, list, _) = reader.intentions().unwrap();
    let i = &list[0];
    sm.apply(vec![
        entry(
            5,
            Command::KvDelete {
                key: "k".into(),
                recurse: false,
                cas: None,
            },
        ),
        entry(
            6,
            Command::ConfigDelete {
                kind: lucid_core::config_entry::ConfigKind::ServiceDefaults,
                name: "web".into(),
                cas: None,
            },
        ),
        entry(
            7,
            Command::IntentionDelete {
                source: i.source.clone(),
                destination: i.destination.clone(),
            },
        ),
        entry(
            8,
            Command::AclTokenDelete {
                accessor_id: "acc-1".into(),
            },
        ),
    ])
    .await
    .unwrap()
    .iter()
    .for_each(|r| assert!(r.ok));
    let latest = reader.export().unwrap();
    install(&mut follower, latest.clone(), 8).await;
    assert_eq!(
        freader.export().unwrap(),
        latest,
        "the follower drifted from the leader"
    );
    assert!(freader.intentions().unwrap().1.is_empty());
    assert!(freader.acl_tokens().unwrap().is_empty());
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

mod wal_recovery {
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;

    use super::super::wal::{Wal, SEGMENT_MAX};

    fn rec(i: u64, tag: &str) -> (u64, Vec<u8>) {
        (i, format!("{tag}-{i}").into_bytes())
    }

    fn all(w: &Wal) -> Vec<String> {
        let Some(last) = w.last_index() else {
            return vec![];
        };
        (w.first_index()..=last)
            .map(|i| String::from_utf8(w.read(i).unwrap().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let seg = {
            let mut w = Wal::open(dir.path()).unwrap();
            let f = w
                .append(&(1..=10).map(|i| rec(i, "a")).collect::<Vec<_>>())
                .unwrap()
                .unwrap();
            f.sync_data().unwrap();
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|x| x == "seg"))
                .unwrap()
        };
        // A crash mid-write: half a header and some payload bytes after the last record.
        let raw = std::fs::read(&seg).unwrap();
        let end = raw.iter().rposition(|b| *b != 0).unwrap() + 1;
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0x40, 0, 0, 0, 0xde, 0xad, 7], end as u64)
            .unwrap();
        drop(f);

        let mut w = Wal::open(dir.path()).unwrap();
        assert_eq!(w.last_index(), Some(10));
        w.append(&[rec(11, "b")])
            .unwrap()
            .unwrap()
            .sync_data()
            .unwrap();
        drop(w);
        let w = Wal::open(dir.path()).unwrap();
        assert_eq!(all(&w).last().unwrap(), "b-11");
        assert_eq!(all(&w).len(), 11);
    }

    #[test]
    fn truncated_records_never_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path()).unwrap();
        w.append(&(1..=20).map(|i| rec(i, "old")).collect::<Vec<_>>())
            .unwrap();
        w.truncate(10).unwrap();
        w.append(&(10..=12).map(|i| rec(i, "new")).collect::<Vec<_>>())
            .unwrap()
            .unwrap()
            .sync_data()
            .unwrap();
        drop(w);
        let w = Wal::open(dir.path()).unwrap();
        let got = all(&w);
        assert_eq!(got.len(), 12, "old 13..=20 must stay gone: {got:?}");
        assert_eq!(got[9], "new-10");
        assert_eq!(got[11], "new-12");
    }

    #[test]
    fn segments_rotate_and_purge_deletes_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'x'; 1024 * 1024];
        let mut w = Wal::open(dir.path()).unwrap();
        let n = (SEGMENT_MAX / big.len() as u64) * 2 + 2;
        for i in 1..=n {
            w.append(&[(i, big.clone())]).unwrap();
        }
        let segs = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "seg")
                })
                .count()
        };
        assert!(segs() >= 3, "expected rotation, got {} segments", segs());
        let purge_to = n - 2;
        w.purge(openraft::LogId::new(
            openraft::CommittedLeaderId::new(1, 1),
            purge_to,
        ))
        .unwrap();
        assert_eq!(
            segs(),
            1,
            "segments wholly before the purge point are deleted"
        );
        assert_eq!(w.first_index(), purge_to + 1);
        drop(w);
        let w = Wal::open(dir.path()).unwrap();
        assert_eq!((w.first_index(), w.last_index()), (purge_to + 1, Some(n)));
        assert!(w.read(purge_to).unwrap().is_none());
        assert_eq!(w.read(n).unwrap().unwrap().len(), big.len());
    }
}

#[tokio::test]
async fn state_older_than_the_snapshot_is_rebuilt_from_it() {
    use openraft::RaftSnapshotBuilder;
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm, _reader) = open(dir.path(), &StoreOptions::default()).unwrap();
        sm.apply(
            (1..=5)
                .map(|i| entry(i, set(&format!("k{i}"), "v", None)))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(5));
    }
    // Lose the whole sled state (as a crash can lose its unsynced tail).
    std::fs::remove_dir_all(dir.path().join("sled")).unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(reader.applied_index(), 5);
    assert_eq!(reader.kv_list("k").unwrap().1.len(), 5);
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(5));
    assert_eq!(membership, crate::types::StoredMembership::default());
    assert!(sm.get_current_snapshot().await.unwrap().is_some());
}

#[tokio::test]
async fn purge_waits_for_a_durable_snapshot() {
    use openraft::storage::RaftLogStorage;
    use openraft::RaftSnapshotBuilder;
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut sm, _reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let lid = |i| LogId::new(openraft::CommittedLeaderId::new(1, 1), i);
    // Nothing durable covers index 3: the purge must not go through while that holds.
    let mut early = log.clone();
    let purge = tokio::spawn(async move { early.purge(lid(3)).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!purge.is_finished(), "purge ran ahead of any snapshot");
    sm.apply(
        (1..=5)
            .map(|i| entry(i, set("k", "v", None)))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    purge.await.unwrap().unwrap();
    log.purge(lid(4)).await.unwrap();
}

fn leaf(serial: &str, service: &str, not_after: i64) -> Command {
    Command::CertIssued {
        cert: ca::IssuedCert {
            serial: serial.into(),
            service: service.into(),
            plane: "ops".into(),
            not_after,
            revoked_index: None,
        },
    }
}

#[tokio::test]
async fn revoked_deltas_and_pruning_of_expired_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let revoke = |s: &str| Command::CertRevoke { serial: s.into() };
    sm.apply(vec![
        entry(1, leaf("01", "web", 1_000)),
        entry(2, leaf("02", "web", 5_000)),
        entry(3, leaf("03", "api", 1_000)),
        entry(4, leaf("04", "api", 5_000)),
        entry(5, revoke("01")),
        entry(6, revoke("02")),
    ])
    .await
    .unwrap();
    let serials = |v: Vec<ca::IssuedCert>| v.into_iter().map(|c| c.serial).collect::<Vec<_>>();
    let (index, all) = reader.revoked_certs(0).unwrap();
    assert_eq!((index, serials(all)), (6, vec!["01".into(), "02".into()]));
    // A follower that saw index 5 gets only what came after it.
    let (_, delta) = reader.revoked_certs(5).unwrap();
    assert_eq!(serials(delta), vec!["02".to_owned()]);
    assert!(reader.revoked_certs(6).unwrap().1.is_empty());
    assert!(reader.is_revoked("01").unwrap() && !reader.is_revoked("04").unwrap());

    // Pruning at 2,000 removes the two leaves that expired at 1,000, revoked or not, with
    // their service index entries; the revocation index moves because a revocation went.
    assert_eq!(reader.expired_certs(2_000).unwrap(), 2);
    let r = sm
        .apply(vec![entry(7, Command::CertPrune { before: 2_000 })])
        .await
        .unwrap();
    assert!(r[0].ok);
    assert_eq!(
        serials(reader.issued_certs().unwrap()),
        vec!["02".to_owned(), "04".to_owned()]
    );
    let (index, left) = reader.revoked_certs(0).unwrap();
    assert_eq!((index, serials(left)), (7, vec!["02".to_owned()]));
    assert!(!reader.is_revoked("01").unwrap());
    let keys: Vec<Vec<u8>> = state::decode_blob(&reader.export().unwrap())
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for gone in [
        &b"a:s:web\x0001"[..],
        b"a:s:api\x0003",
        b"a:c:01",
        b"a:c:03",
        b"a:r:01",
    ] {
        assert!(
            !keys.iter().any(|k| k == gone),
            "{gone:?} survived the prune"
        );
    }
    assert!(keys.iter().any(|k| k == b"a:s:web\x0002"));
    // Nothing left to prune: a second prune is a no-op that answers false.
    let r = sm
        .apply(vec![entry(8, Command::CertPrune { before: 2_000 })])
        .await
        .unwrap();
    assert!(!r[0].ok);
    assert_eq!(reader.revoked_certs(0).unwrap().0, 7);

    // Restored into another store at index 60, the revocation of "02" (index 6 in this log)
    // is stamped 60: a sidecar of that cluster that had seen index 59 gets it as a delta.
    let dir2 = tempfile::tempdir().unwrap();
    let (_log2, mut sm2, reader2) = open(dir2.path(), &StoreOptions::default()).unwrap();
    let blob = reader.export().unwrap();
    let r = sm2
        .apply(vec![entry(60, Command::Restore { blob })])
        .await
        .unwrap();
    assert!(r[0].ok);
    let (index, delta) = reader2.revoked_certs(59).unwrap();
    assert_eq!((index, serials(delta)), (60, vec!["02".to_owned()]));
    let revoked: Vec<Option<u64>> = reader2
        .issued_certs()
        .unwrap()
        .into_iter()
        .map(|c| c.revoked_index)
        .collect();
    assert_eq!(revoked, vec![Some(60), None]);
}

#[tokio::test]
async fn a_ttl_pass_that_changes_nothing_wakes_no_watcher_of_the_service() {
    use lucid_core::catalog::{parse_registration, CheckStatus};
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let reg = parse_registration(
        &json!({"Name": "web", "ID": "web-1", "Port": 80,
                "Check": {"CheckID": "web-1-ttl", "TTL": "30s"}}),
        |n| n.to_owned(),
    )
    .unwrap();
    let update = |status, output: &str| Command::CheckUpdate {
        check_id: "web-1-ttl".into(),
        status,
        output: output.into(),
        at_ms: crate::types::now_ms(),
    };
    sm.apply(vec![
        entry(
            1,
            Command::CatalogRegister {
                registration: reg,
                replace_checks: true,
                keep_owner: false,
            },
        ),
        entry(2, update(CheckStatus::Passing, "ok")),
    ])
    .await
    .unwrap();
    let service_at = |r: &StateReader| r.service("web").unwrap().0;
    assert_eq!(
        (service_at(&reader), reader.catalog_index().unwrap()),
        (2, 2)
    );

    // The same status and output again: only the checker's cue moves.
    let r = sm
        .apply(vec![entry(3, update(CheckStatus::Passing, "ok"))])
        .await
        .unwrap();
    assert!(r[0].ok, "a repeated pass is still acknowledged");
    assert_eq!(
        service_at(&reader),
        2,
        "the service's watchers must not wake"
    );
    assert_eq!(reader.catalog_index().unwrap(), 2);
    assert_eq!(
        reader.checks_index().unwrap(),
        3,
        "the checker must see the TTL restart"
    );
    let (_, checks) = reader.checks().unwrap();
    assert_eq!(checks[0].updated_index, 3);

    // A new output or status is a change every reader sees.
    sm.apply(vec![
        entry(4, update(CheckStatus::Passing, "still ok")),
        entry(5, update(CheckStatus::Critical, "still ok")),
    ])
    .await
    .unwrap();
    assert_eq!(
        (service_at(&reader), reader.catalog_index().unwrap()),
        (5, 5)
    );
    assert_eq!(reader.checks_index().unwrap(), 5);
}

// === sessions, locks, transactions ===

fn session(id: &str, behavior: super::sessions::Behavior, checks: &[&str]) -> Command {
    Command::SessionCreate {
        session: super::sessions::Session {
            id: id.into(),
            name: id.into(),
            node: "lucid".into(),
            lock_delay_ns: 15_000_000_000,
            behavior,
            ttl: String::new(),
            ttl_ms: 0,
            node_checks: checks.iter().map(|c| (*c).to_owned()).collect(),
            service_checks: vec![],
            create_index: 0,
            modify_index: 0,
            renewed_ms: 1,
        },
    }
}

fn lock(key: &str, value: &str, session: &str, acquire: bool, now_ms: i64) -> Command {
    use super::sessions::KvLock;
    Command::KvSet {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        flags: 0,
        cas: None,
        lock: Some(if acquire {
            KvLock::Acquire {
                session: session.into(),
                now_ms,
            }
        } else {
            KvLock::Release {
                session: session.into(),
            }
        }),
    }
}

#[tokio::test]
async fn locks_follow_consuls_acquire_release_and_lock_delay() {
    use super::sessions::Behavior;
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let oks = |r: Vec<crate::types::CommandResult>| r.iter().map(|r| r.ok).collect::<Vec<_>>();
    let r = sm
        .apply(vec![
            entry(1, session("s1", Behavior::Release, &[])),
            entry(2, session("s2", Behavior::Release, &[])),
            entry(3, lock("k", "1", "s1", true, 100)),
            entry(4, lock("k", "2", "s2", true, 100)), // held by s1
            entry(5, lock("k", "3", "s1", true, 100)), // s1 again: fine
            entry(6, lock("k", "x", "nope", false, 100)),
            entry(7, lock("k", "x", "s2", false, 100)), // not the holder
            entry(8, lock("k", "4", "s1", false, 100)),
            entry(9, lock("k", "5", "ghost", true, 100)), // no such session
        ])
        .await
        .unwrap();
    assert_eq!(
        oks(r),
        [true, true, true, false, true, false, false, true, false]
    );
    let e = reader.kv_get("k").unwrap().1.unwrap();
    assert_eq!((e.value.as_slice(), e.lock_index), (b"4".as_slice(), 1));
    assert_eq!(e.session, None, "released");

    // s1 takes it again and is destroyed at t=1000: released, and in lock-delay (15 s).
    sm.apply(vec![
        entry(10, lock("k", "6", "s1", true, 500)),
        entry(
            11,
            Command::SessionDestroy {
                id: "s1".into(),
                now_ms: 1_000,
            },
        ),
    ])
    .await
    .unwrap();
    let e = reader.kv_get("k").unwrap().1.unwrap();
    assert_eq!((e.value.as_slice(), e.lock_index), (b"6".as_slice(), 2));
    assert_eq!(e.session, None);
    assert!(reader.session("s1").unwrap().1.is_none());
    let r = sm
        .apply(vec![
            entry(12, lock("k", "7", "s2", true, 15_999)), // within the lock-delay
            entry(13, lock("k", "8", "s2", true, 16_001)),
        ])
        .await
        .unwrap();
    assert_eq!(oks(r), [false, true]);
    assert_eq!(
        reader.kv_get("k").unwrap().1.unwrap().session.as_deref(),
        Some("s2")
    );

    // Behavior delete: the held key goes with the session.
    sm.apply(vec![
        entry(14, session("s3", Behavior::Delete, &[])),
        entry(15, lock("gone", "x", "s3", true, 20_000)),
        entry(
            16,
            Command::SessionDestroy {
                id: "s3".into(),
                now_ms: 20_001,
            },
        ),
    ])
    .await
    .unwrap();
    assert!(reader.kv_get("gone").unwrap().1.is_none());
    let (_, list) = reader.kv_list("").unwrap();
    assert_eq!(
        list.iter()
            .map(|(k, e)| (k.as_str(), e.session.as_deref()))
            .collect::<Vec<_>>(),
        [("k", Some("s2"))]
    );
}

#[tokio::test]
async fn a_check_going_critical_invalidates_its_sessions() {
    use super::sessions::Behavior;
    use lucid_core::catalog::{parse_registration, CheckStatus};
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let reg = parse_registration(
        &serde_json::json!({"Name": "web", "ID": "web-1", "Check": {"TTL": "30s", "Status": "passing"}}),
        |n| n.to_owned(),
    )
    .unwrap();
    let check = reg.checks[0].id.clone();
    sm.apply(vec![
        entry(
            1,
            Command::CatalogRegister {
                registration: reg,
                replace_checks: true,
                keep_owner: false,
            },
        ),
        entry(2, session("bound", Behavior::Release, &[&check])),
        entry(3, session("free", Behavior::Release, &[])),
        entry(4, lock("leader", "me", "bound", true, 10)),
        entry(
            5,
            Command::CheckUpdate {
                check_id: check.clone(),
                status: CheckStatus::Warning,
                output: String::new(),
                at_ms: 20,
            },
        ),
    ])
    .await
    .unwrap();
    assert!(
        reader.session("bound").unwrap().1.is_some(),
        "warning is not critical"
    );
    sm.apply(vec![entry(
        6,
        Command::CheckUpdate {
            check_id: check,
            status: CheckStatus::Critical,
            output: String::new(),
            at_ms: 30,
        },
    )])
    .await
    .unwrap();
    assert!(reader.session("bound").unwrap().1.is_none());
    assert!(reader.session("free").unwrap().1.is_some());
    assert_eq!(reader.kv_get("leader").unwrap().1.unwrap().session, None);
}

#[tokio::test]
async fn a_transaction_applies_every_operation_or_none() {
    use super::txn::{KvVerb, TxnOp};
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let kv = |verb, key: &str, value: &str, index| TxnOp::Kv {
        verb,
        key: key.into(),
        value: value.as_bytes().to_vec(),
        flags: 0,
        index,
        session: String::new(),
    };
    let txn = |ops| Command::Txn { ops, now_ms: 1 };
    let r = sm
        .apply(vec![entry(
            1,
            txn(vec![
                kv(KvVerb::Set, "a", "1", 0),
                kv(KvVerb::Set, "b", "2", 0),
            ]),
        )])
        .await
        .unwrap();
    assert!(r[0].ok);
    let d = r[0].detail.clone().unwrap();
    assert_eq!(d["Errors"], serde_json::Value::Null);
    assert_eq!(d["Results"].as_array().unwrap().len(), 2);
    assert_eq!(d["Results"][0]["KV"]["Key"], "a");
    // The second operation fails: the first is undone, and both failures are named.
    let r = sm
        .apply(vec![entry(
            2,
            txn(vec![
                kv(KvVerb::Set, "a", "changed", 0),
                kv(KvVerb::Cas, "b", "x", 99),
                kv(KvVerb::CheckNotExists, "a", "", 0),
                kv(KvVerb::Get, "a", "", 0),
            ]),
        )])
        .await
        .unwrap();
    assert!(!r[0].ok);
    let d = r[0].detail.clone().unwrap();
    let errors: Vec<(u64, &str)> = d["Errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["OpIndex"].as_u64().unwrap(), e["What"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            (1, "failed to set key \"b\", index is stale"),
            (2, "key \"a\" exists")
        ]
    );
    assert_eq!(
        reader.kv_get("a").unwrap().1.unwrap().value,
        b"1",
        "nothing changed"
    );
    let r = sm
        .apply(vec![entry(
            3,
            txn(vec![
                kv(KvVerb::Get, "a", "", 0),
                kv(KvVerb::GetTree, "", "", 0),
            ]),
        )])
        .await
        .unwrap();
    let d = r[0].detail.clone().unwrap();
    assert_eq!(d["Results"][0]["KV"]["Value"], "MQ==");
    assert_eq!(
        d["Results"].as_array().unwrap().len(),
        3,
        "get + a tree of two"
    );
}

fn query(id: &str, body: serde_json::Value, create: bool) -> Command {
    let mut query = lucid_core::query::parse(&body).unwrap();
    query.id = id.into();
    Command::QuerySet {
        query,
        token_accessor: String::new(),
        create,
    }
}

#[tokio::test]
async fn prepared_queries_keep_names_unique_and_die_with_their_session() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    // The feed starts with "everything changed"; take that first.
    let _ = reader.next_catalog_change().await;
    let r = sm
        .apply(vec![
            entry(1, session("s-1", super::sessions::Behavior::Release, &[])),
            entry(
                2,
                query(
                    "q-1",
                    json!({"Name": "Web", "Service": {"Service": "web"}}),
                    true,
                ),
            ),
            entry(
                3,
                query(
                    "q-2",
                    json!({"Name": "web", "Service": {"Service": "db"}}),
                    true,
                ),
            ),
            entry(
                4,
                query(
                    "q-3",
                    json!({"Name": "q-1", "Service": {"Service": "db"}}),
                    true,
                ),
            ),
            entry(
                5,
                query(
                    "q-1",
                    json!({"Name": "x", "Service": {"Service": "db"}}),
                    true,
                ),
            ),
            entry(
                6,
                query(
                    "q-9",
                    json!({"Name": "y", "Service": {"Service": "db"}}),
                    false,
                ),
            ),
            entry(
                7,
                query(
                    "q-4",
                    json!({"Session": "nope", "Service": {"Service": "db"}}),
                    true,
                ),
            ),
            entry(
                8,
                query(
                    "q-5",
                    json!({"Session": "s-1", "Service": {"Service": "db"}}),
                    true,
                ),
            ),
            entry(
                9,
                query(
                    "q-1",
                    json!({"Name": "Web", "Service": {"Service": "web2"}}),
                    false,
                ),
            ),
        ])
        .await
        .unwrap();
    let oks: Vec<bool> = r.iter().map(|r| r.ok).collect();
    assert_eq!(
        oks,
        [true, true, false, false, false, false, false, true, true]
    );
    let why = |i: usize| {
        r[i].detail.as_ref().unwrap()["Error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(why(2), "name 'web' aliases an existing query name");
    assert_eq!(why(3), "name 'q-1' aliases an existing query id");
    assert!(why(4).contains("in use"));
    assert_eq!(why(5), "Cannot modify non-existent prepared query: 'q-9'");
    assert_eq!(why(6), "invalid session \"nope\"");
    let (index, qs) = reader.queries().unwrap();
    assert_eq!(index, 9);
    let q1 = &qs.iter().find(|s| s.query.id == "q-1").unwrap().query;
    assert_eq!((q1.create_index, q1.modify_index), (2, 9));
    assert_eq!(q1.service.service, "web2");
    // DNS hears about query changes.
    assert!(reader.next_catalog_change().await.queries);
    // The session goes: so does its query, and only it.
    sm.apply(vec![entry(
        10,
        Command::SessionDestroy {
            id: "s-1".into(),
            now_ms: 1,
        },
    )])
    .await
    .unwrap();
    let ids: Vec<String> = reader
        .queries()
        .unwrap()
        .1
        .into_iter()
        .map(|s| s.query.id)
        .collect();
    assert_eq!(ids, ["q-1"]);
    assert!(reader.next_catalog_change().await.queries);
    let r = sm
        .apply(vec![
            entry(11, Command::QueryDelete { id: "q-1".into() }),
            entry(12, Command::QueryDelete { id: "q-1".into() }),
        ])
        .await
        .unwrap();
    assert!(r[0].ok && !r[1].ok);
    assert!(reader.queries().unwrap().1.is_empty());
}

fn node_register(body: serde_json::Value, skip_node_update: bool) -> Command {
    let r = lucid_core::catalog::parse_catalog_registration(&body).unwrap();
    Command::NodeRegister {
        node: r.node,
        skip_node_update,
        service: r.service.map(|r| r.instance),
        checks: r.checks,
    }
}

#[tokio::test]
async fn an_external_node_is_written_whole_or_not_at_all() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let dereg = |service: Option<&str>, check: Option<&str>| Command::NodeDeregister {
        node: "n1".into(),
        service_id: service.map(str::to_owned),
        check_id: check.map(str::to_owned),
        service: None,
    };
    let r = sm
        .apply(vec![
            entry(
                1,
                node_register(
                    json!({"Node": "n1", "Address": "10.0.0.1",
                        "Service": {"Service": "s1"}, "Check": {"Name": "c1", "ServiceID": "s1"}}),
                    false,
                ),
            ),
            // A check for a service the node does not have: refused, nothing written, not
            // even the new address or the other check.
            entry(
                2,
                node_register(
                    json!({"Node": "n1", "Address": "10.0.0.9",
                        "Checks": [{"Name": "node-ok"}, {"Name": "c2", "ServiceID": "ghost"}]}),
                    false,
                ),
            ),
            // SkipNodeUpdate keeps the address.
            entry(
                3,
                node_register(
                    json!({"Node": "n1", "Address": "10.0.0.7", "Service": {"Service": "s2"}}),
                    true,
                ),
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        r.iter().map(|r| r.ok).collect::<Vec<_>>(),
        [true, false, true]
    );
    let n = reader.external_node("n1").unwrap().unwrap();
    assert_eq!(n.node.address, "10.0.0.1");
    let checks: Vec<&str> = n.checks.iter().map(|c| c.id.as_str()).collect();
    let instances: Vec<&str> = n.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!((checks, instances), (vec!["c1"], vec!["s1", "s2"]));
    // Unprobed, and critical because the registration gave no status (as in Consul).
    assert_eq!(
        n.checks[0].status,
        lucid_core::catalog::CheckStatus::Critical
    );
    assert!(
        reader.checks().unwrap().1.is_empty(),
        "the checker never sees them"
    );
    let (index, s1) = reader.service("s1").unwrap();
    assert_eq!((index, s1.len(), s1[0].0.node.as_str()), (1, 1, "n1"));

    let r = sm
        .apply(vec![
            entry(4, dereg(Some("s1"), None)),
            entry(5, dereg(None, Some("c1"))),
            entry(6, dereg(None, None)),
            entry(7, dereg(None, None)),
        ])
        .await
        .unwrap();
    // The service took its check with it; the node then goes once.
    assert_eq!(
        r.iter().map(|r| r.ok).collect::<Vec<_>>(),
        [true, false, true, false]
    );
    assert!(reader.external_node("n1").unwrap().is_none());
    let (index, s2) = reader.service("s2").unwrap();
    assert_eq!(
        (index, s2.len()),
        (6, 0),
        "the node's removal moved s2's index"
    );
}

#[tokio::test]
async fn no_instance_can_take_another_ones_dns_name() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let own = |id: &str| Command::CatalogRegister {
        registration: lucid_core::catalog::parse_registration(
            &json!({"Name": "evil", "ID": id, "Port": 1}),
            |n| n.to_owned(),
        )
        .unwrap(),
        replace_checks: true,
        keep_owner: true,
    };
    let ext = |node: &str, id: &str| {
        node_register(
            json!({"Node": node, "Address": "10.0.0.1", "Service": {"Service": "web", "ID": id}}),
            false,
        )
    };
    let r = sm
        .apply(vec![
            entry(1, ext("n1", "web-1")),
            // The DNS name of n1's web-1 is web-1.n1.node: no own instance may take it.
            entry(2, own("web-1.n1.node")),
            entry(3, own("WEB-1.N1.NODE")),
            // Nor may a node whose name differs only in case, or whose dots make the same
            // name (x on a.n2 and x.a on n2 are both x.a.n2.node).
            entry(4, ext("N1", "web-1")),
            entry(5, ext("a.n2", "x")),
            entry(6, ext("n2", "x.a")),
            // An own instance named like another in another case is refused too.
            entry(7, own("v-1")),
            entry(8, own("V-1")),
            // Re-registering what one has is no conflict.
            entry(9, own("v-1")),
            entry(10, ext("n1", "web-1")),
        ])
        .await
        .unwrap();
    assert_eq!(
        r.iter().map(|r| r.ok).collect::<Vec<_>>(),
        [true, false, false, false, true, false, true, false, true, true]
    );
    assert!(reader.instance_entry("web-1.n1.node").unwrap().is_none());
    assert!(reader.external_node("N1").unwrap().is_none());

    // A caller allowed by service:write on web removes web's instance only while it is web's.
    let r = sm
        .apply(vec![
            entry(
                11,
                node_register(
                    json!({"Node": "n1", "SkipNodeUpdate": true,
                        "Service": {"Service": "db", "ID": "web-1"}}),
                    true,
                ),
            ),
            entry(
                12,
                Command::NodeDeregister {
                    node: "n1".into(),
                    service_id: Some("web-1".into()),
                    check_id: None,
                    service: Some("web".into()),
                },
            ),
            entry(
                13,
                Command::NodeDeregister {
                    node: "n1".into(),
                    service_id: None,
                    check_id: None,
                    service: Some("db".into()),
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        r.iter().map(|r| r.ok).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert_eq!(reader.service("db").unwrap().1.len(), 1);
}

#[tokio::test]
async fn a_service_name_in_another_case_is_refused_while_the_service_lives() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm, reader) = open(dir.path(), &StoreOptions::default()).unwrap();
    let own = |name: &str, id: &str| Command::CatalogRegister {
        registration: lucid_core::catalog::parse_registration(
            &json!({"Name": name, "ID": id, "Port": 1}),
            |n| n.to_owned(),
        )
        .unwrap(),
        replace_checks: true,
        keep_owner: true,
    };
    let r = sm
        .apply(vec![
            entry(1, own("web", "web-1")),
            // DNS answers `web` without case: WEB's instances would be in web's answers.
            entry(2, own("WEB", "evil-1")),
            entry(
                3,
                node_register(
                    json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "Web"}}),
                    false,
                ),
            ),
            // A new external node needs an address, even when SkipNodeUpdate is set.
            entry(
                4,
                node_register(json!({"Node": "n2", "Service": {"Service": "db"}}), true),
            ),
            // Joining the service under its own name is fine, and so is re-registering.
            entry(5, own("web", "web-2")),
            entry(6, own("web", "web-1")),
            entry(
                7,
                Command::CatalogDeregister {
                    service_id: "web-1".into(),
                    at_ms: 0,
                },
            ),
            entry(
                8,
                Command::CatalogDeregister {
                    service_id: "web-2".into(),
                    at_ms: 0,
                },
            ),
            // Once web has no instance left, the name is free in any case.
            entry(9, own("WEB", "evil-1")),
        ])
        .await
        .unwrap();
    assert_eq!(
        r.iter().map(|r| r.ok).collect::<Vec<_>>(),
        [true, false, false, false, true, true, true, true, true]
    );
    assert!(reader.external_node("n1").unwrap().is_none());
    assert!(reader.external_node("n2").unwrap().is_none());
    assert_eq!(reader.service("WEB").unwrap().1.len(), 1);
}
