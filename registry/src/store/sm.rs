//! The Raft state machine over the sled `state` tree: applies [`Command`]s, builds and
//! installs snapshots.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use super::snapfile::SnapFile;
use super::state::{
    self, kv_key, tomb_key, KvEntry, StateBatch, StateError, StateReader, APPLIED, KV_INDEX,
    KV_PREFIX, MEMBERSHIP,
};
use super::{
    acl, ca, catalog, config, events, intentions, nodes, queries, sessions, settings, txn,
};
use crate::types::{
    Command, CommandResult, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, TypeConfig,
};

/// Owned by openraft's state-machine worker: applies run one at a time.
pub struct StateMachine {
    reader: StateReader,
    snap: SnapFile,
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachine {
    pub(crate) fn new(reader: StateReader, snap: SnapFile) -> Self {
        StateMachine {
            reader,
            snap,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        }
    }

    fn tree(&self) -> &sled::Tree {
        self.reader.tree()
    }

    fn read_markers(&self) -> Result<(Option<LogId>, StoredMembership), StateError> {
        let applied = match self.tree().get(APPLIED)? {
            Some(raw) => {
                serde_json::from_slice(&raw).map_err(|e| StateError::Corrupt(e.to_string()))?
            }
            None => None,
        };
        let membership = match self.tree().get(MEMBERSHIP)? {
            Some(raw) => {
                serde_json::from_slice(&raw).map_err(|e| StateError::Corrupt(e.to_string()))?
            }
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(v).map_err(|e| StateError::Corrupt(e.to_string()))
}

/// Apply one command into `batch`: whether it did, and what else it answers (a transaction's
/// results). Bad data never fails the state machine (that would be fatal to the node); it
/// answers `ok: false` instead.
fn apply_command(
    batch: &mut StateBatch<'_>,
    cmd: Command,
    index: u64,
) -> Result<(bool, Option<serde_json::Value>), StateError> {
    match cmd {
        Command::Txn { ops, now_ms } => {
            txn::apply(batch, &ops, now_ms, index).map(|(ok, detail)| (ok, Some(detail)))
        }
        // Decided here, on the applied state (a follower's replica may not have the session
        // yet): Consul refuses an unknown session with an error, not `false`.
        Command::KvSet {
            lock: Some(sessions::KvLock::Acquire { ref session, .. }),
            ..
        } if sessions::get(batch, session)?.is_none() => Ok((
            false,
            Some(serde_json::json!({"Error": format!("invalid session {session:?}")})),
        )),
        Command::AclSet { object, create } => Ok(match acl::set(batch, object, create, index)? {
            Ok(()) => (true, None),
            Err(why) => (false, Some(serde_json::json!({ "Error": why }))),
        }),
        Command::QuerySet {
            query,
            token_accessor,
            create,
        } => Ok(
            match queries::set(batch, query, token_accessor, create, index)? {
                Ok(()) => (true, None),
                Err(why) => (false, Some(serde_json::json!({ "Error": why }))),
            },
        ),
        other => apply_plain(batch, other, index).map(|ok| (ok, None)),
    }
}

fn apply_plain(batch: &mut StateBatch<'_>, cmd: Command, index: u64) -> Result<bool, StateError> {
    match cmd {
        Command::KvSet {
            key,
            value,
            flags,
            cas,
            lock,
        } => {
            let k = kv_key(&key);
            let existing = batch
                .get(&k)?
                .map(|raw| KvEntry::decode(&raw))
                .transpose()?;
            match (cas, &existing) {
                (Some(0), Some(_)) => return Ok(false),
                (Some(n), Some(e)) if n != 0 && e.modify_index != n => return Ok(false),
                (Some(n), None) if n != 0 => return Ok(false),
                _ => {}
            }
            let bumps = match &lock {
                Some(l) => match sessions::lock_write(batch, &key, l)? {
                    Some(b) => b,
                    None => return Ok(false),
                },
                None => false,
            };
            let entry = KvEntry {
                create_index: existing.as_ref().map_or(index, |e| e.create_index),
                modify_index: index,
                lock_index: existing.as_ref().map_or(0, |e| e.lock_index) + u64::from(bumps),
                flags,
                value,
                session: None,
            };
            batch.insert(k, entry.encode());
            batch.remove(tomb_key(&key));
            batch.insert(KV_INDEX.to_vec(), index.to_be_bytes().to_vec());
            Ok(true)
        }
        Command::KvDelete { key, recurse, cas } => {
            let doomed: Vec<Vec<u8>> = if recurse {
                batch.keys_with_prefix(&kv_key(&key))?
            } else {
                let k = kv_key(&key);
                let existing = batch
                    .get(&k)?
                    .map(|raw| KvEntry::decode(&raw))
                    .transpose()?;
                if let Some(n) = cas {
                    match &existing {
                        Some(e) if e.modify_index == n => {}
                        _ => return Ok(false),
                    }
                }
                existing.map(|_| k).into_iter().collect()
            };
            for k in &doomed {
                let name = &k[KV_PREFIX.len()..];
                let mut t = state::TOMB_PREFIX.to_vec();
                t.extend_from_slice(name);
                batch.insert(t, index.to_be_bytes().to_vec());
                // A deleted key holds no lock.
                let mut l = sessions::LOCK_PREFIX.to_vec();
                l.extend_from_slice(name);
                batch.remove(l);
                batch.remove(k.clone());
            }
            if !doomed.is_empty() {
                batch.insert(KV_INDEX.to_vec(), index.to_be_bytes().to_vec());
            }
            Ok(true)
        }
        Command::CatalogRegister {
            registration,
            replace_checks,
            keep_owner,
        } => catalog::register(batch, registration, replace_checks, keep_owner, index),
        Command::CatalogDeregister { service_id, at_ms } => {
            let checks: Vec<String> = catalog::checks_of(batch, &service_id)?
                .into_iter()
                .map(|c| c.id)
                .collect();
            let ok = catalog::deregister(batch, &service_id, index)?;
            for c in checks {
                sessions::check_failed(batch, &c, at_ms, index)?;
            }
            Ok(ok)
        }
        Command::NodeRegister {
            node,
            skip_node_update,
            service,
            checks,
        } => nodes::register(batch, node, skip_node_update, service, checks, index),
        Command::NodeDeregister {
            node,
            service_id,
            check_id,
            service,
        } => {
            let target = match (&service_id, &check_id) {
                (Some(id), _) => nodes::Target::Service(id),
                (None, Some(id)) => nodes::Target::Check(id),
                (None, None) => nodes::Target::Node,
            };
            nodes::deregister(batch, &node, target, service.as_deref(), index)
        }
        Command::CheckRegister { check } => catalog::register_check(batch, check, index),
        Command::CheckDeregister { check_id, at_ms } => {
            let ok = catalog::deregister_check(batch, &check_id, index)?;
            if ok {
                sessions::check_failed(batch, &check_id, at_ms, index)?;
            }
            Ok(ok)
        }
        Command::CheckUpdate {
            check_id,
            status,
            output,
            at_ms,
        } => {
            let ok = catalog::update_check(batch, &check_id, status, output, index)?;
            if ok && status == lucid_core::catalog::CheckStatus::Critical {
                sessions::check_failed(batch, &check_id, at_ms, index)?;
            }
            Ok(ok)
        }
        Command::SettingSet { name, value, cas } => settings::set(batch, &name, value, cas, index),
        Command::CoordinateSet { node, coord } => settings::set_coordinate(batch, &node, &coord),
        Command::EventFire { event } => events::fire(batch, event, index),
        Command::SessionCreate { session } => sessions::create(batch, session, index),
        Command::SessionRenew { id, at_ms } => sessions::renew(batch, &id, at_ms),
        Command::SessionDestroy { id, now_ms } => sessions::destroy(batch, &id, now_ms, index),
        // Handled by `apply_command`.
        Command::Txn { .. } => Ok(false),
        Command::CaInit { material } => ca::init_root(batch, &material),
        Command::AclBootstrap { token } => acl::bootstrap(batch, token, index),
        Command::AclTokenCreate { token } => acl::create(batch, token, index),
        Command::AclTokenDelete { accessor_id } => {
            acl::delete(batch, acl::AclKind::Token, &accessor_id)
        }
        Command::AclDelete { kind, id } => acl::delete(batch, kind, &id),
        // Handled by `apply_command`.
        Command::AclSet { .. } | Command::QuerySet { .. } => Ok(false),
        Command::QueryDelete { id } => queries::delete(batch, &id, index),
        Command::IntentionSet {
            intention,
            create_only,
        } => intentions::set(batch, intention, create_only, index),
        Command::IntentionDelete {
            source,
            destination,
        } => intentions::delete(batch, &source, &destination, index),
        Command::PolicyApply {
            planes,
            intentions: list,
        } => intentions::apply_policy(batch, &planes, list, index),
        Command::ConfigSet { entry, cas } => config::set(batch, entry, cas, index),
        Command::ConfigDelete { kind, name, cas } => config::delete(batch, kind, &name, cas, index),
        Command::CertIssued { cert } => ca::record(batch, &cert),
        Command::CertRevoke { serial } => ca::revoke(batch, &serial, index),
        Command::CertRevokeService { service, now } => {
            ca::revoke_service(batch, &service, now, index)
        }
        Command::CertPrune { before } => ca::prune(batch, before, index),
        Command::Restore { blob } => {
            let pairs = match state::decode_blob(&blob) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(index, error = %e, "rejected a restore blob that does not decode");
                    return Ok(false);
                }
            };
            batch.clear_data()?;
            for (k, v) in pairs {
                // Restored records are restamped with the restore's index where they carry
                // one: the old indexes belong to another log and would confuse blocking
                // queries and CAS.
                let Some(kind) = super::kinds::kind_of(&k) else {
                    continue;
                };
                if let Some(v) = (kind.restamp)(&k, v, index)? {
                    batch.insert(k, v);
                }
            }
            for kind in super::kinds::KINDS {
                for i in kind.indexes {
                    batch.insert(i.to_vec(), index.to_be_bytes().to_vec());
                }
            }
            Ok(true)
        }
    }
}

// === impl StateMachine: openraft traits ===

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.read_markers()
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let tree = self.reader.tree().clone();
        let mut batch = StateBatch::new(&tree);
        let mut results = Vec::new();
        let mut last: Option<LogId> = None;
        let mut membership: Option<StoredMembership> = None;
        let mut restored = false;
        for entry in entries {
            let index = entry.log_id.index;
            let mut detail = None;
            let ok = match entry.payload {
                EntryPayload::Blank => true,
                EntryPayload::Normal(cmd) => {
                    restored |= matches!(cmd, Command::Restore { .. });
                    let (ok, d) = apply_command(&mut batch, cmd, index)
                        .map_err(|e| StorageIOError::apply(entry.log_id, &e))?;
                    detail = d;
                    ok
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    true
                }
            };
            last = Some(entry.log_id);
            results.push(CommandResult {
                ok,
                index,
                detail: detail.take(),
            });
        }
        let Some(last) = last else {
            return Ok(results);
        };
        let write = |batch: &mut StateBatch<'_>| -> Result<(), StateError> {
            batch.insert(APPLIED.to_vec(), json(&Some(last))?);
            if let Some(m) = &membership {
                batch.insert(MEMBERSHIP.to_vec(), json(m)?);
            }
            Ok(())
        };
        write(&mut batch).map_err(|e| StorageIOError::write_state_machine(&e))?;
        let touched = std::mem::take(&mut batch.touched);
        let touched_instances = std::mem::take(&mut batch.touched_instances);
        let touched_kv = std::mem::take(&mut batch.touched_kv);
        let touched_queries = batch.touched_queries;
        batch
            .commit(&self.reader)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        self.reader.publish_applied(last.index);
        self.reader.publish_services(&touched, last.index);
        self.reader.publish_instances(touched_instances);
        self.reader.publish_kv(&touched_kv, restored, last.index);
        if touched_queries {
            self.reader.publish_queries();
        }
        if restored {
            self.reader.publish_all_services(last.index);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Read here, on the state-machine worker, so no apply runs while we copy: the
        // snapshot is of exactly one point in the log.
        let taken = self.read_markers().and_then(|(applied, membership)| {
            Ok((applied, membership, state::export_tree(self.tree())?))
        });
        SnapshotBuilder {
            taken: taken.map_err(|e| e.to_string()),
            snap: self.snap.clone(),
            seq: self.snapshot_seq.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let sig = Some(meta.signature());
        // Validate, then make it durable, then load it: the log may be purged once we return.
        state::decode_blob(&data).map_err(|e| StorageIOError::read_snapshot(sig.clone(), &e))?;
        let snap = self.snap.clone();
        let (m, d) = (meta.clone(), data.clone());
        tokio::task::spawn_blocking(move || snap.save(&m, &d))
            .await
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        load_into_state(&self.reader, meta, &data)
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let snap = self.snap.clone();
        let loaded = tokio::task::spawn_blocking(move || snap.load())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Replace the state with a snapshot's (install, or recovery when sled is older than the
/// snapshot file after a crash). One atomic batch.
pub(crate) fn load_into_state(
    reader: &StateReader,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), StateError> {
    let pairs = state::decode_blob(data)?;
    let tree = reader.tree().clone();
    let mut batch = StateBatch::new(&tree);
    batch.clear_data()?;
    for (k, v) in pairs {
        batch.insert(k, v);
    }
    batch.insert(APPLIED.to_vec(), json(&meta.last_log_id)?);
    batch.insert(MEMBERSHIP.to_vec(), json(&meta.last_membership)?);
    batch.commit(reader)?;
    if let Some(l) = meta.last_log_id {
        reader.publish_applied(l.index);
        reader.publish_all_services(l.index);
        reader.publish_kv(&Default::default(), true, l.index);
    }
    Ok(())
}

/// Holds a point-in-time copy taken by `get_snapshot_builder`.
pub struct SnapshotBuilder {
    taken: Result<(Option<LogId>, StoredMembership, Vec<u8>), String>,
    snap: SnapFile,
    seq: Arc<AtomicU64>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (last, membership, data) = self
            .taken
            .clone()
            .map_err(|e| StorageIOError::read_state_machine(&std::io::Error::other(e)))?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, seq),
            None => format!("0-0-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id,
        };
        // openraft purges the log up to this snapshot once we return: it must be on disk.
        let snap = self.snap.clone();
        let (m, d) = (meta.clone(), data.clone());
        let sig = Some(meta.signature());
        tokio::task::spawn_blocking(move || snap.save(&m, &d))
            .await
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
