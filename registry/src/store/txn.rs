//! Consul's `/v1/txn`: KV, session, service and check operations applied as one Raft command,
//! all or nothing. Each operation runs on the batch as the earlier ones left it; the first
//! that fails rolls the whole batch back to before the transaction, and the answer names
//! every failure Consul would (`{"Errors": [{"OpIndex", "What"}]}`); otherwise it carries the
//! results (`{"Results": [{"KV": ...}, ...]}`, with `Errors: null`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lucid_core::catalog::{Check, Registration};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::catalog;
use super::sessions::{self, KvLock};
use super::state::{kv_key, KvEntry, StateBatch, StateError, KV_INDEX, KV_PREFIX, TOMB_PREFIX};

/// Consul's KV verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvVerb {
    Set,
    Cas,
    Lock,
    Unlock,
    Get,
    GetTree,
    CheckIndex,
    CheckSession,
    CheckNotExists,
    Delete,
    DeleteTree,
    DeleteCas,
}

/// The catalog verbs of service and check operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CatalogVerb {
    Set,
    Get,
    Delete,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TxnOp {
    Kv {
        verb: KvVerb,
        key: String,
        #[serde(with = "crate::types::b64")]
        value: Vec<u8>,
        flags: u64,
        /// `ModifyIndex` for cas, check-index and delete-cas.
        index: u64,
        session: String,
    },
    /// Consul's only session verb in a transaction: `delete` (destroy).
    Session { id: String },
    Service {
        verb: CatalogVerb,
        /// The service id (`get`, `delete`).
        id: String,
        registration: Option<Registration>,
        /// Refuse a `set` that would take another service's instance id (anyone but
        /// management); absent in entries written before it existed.
        #[serde(default)]
        keep_owner: bool,
    },
    Check {
        verb: CatalogVerb,
        id: String,
        check: Option<Check>,
    },
}

/// The most operations one transaction may hold (Consul's `maxTxnOps`).
pub const MAX_OPS: usize = 64;

/// Consul's `TxnKVResult`: the entry, its value only when read.
fn kv_json(key: &str, e: &KvEntry, with_value: bool) -> Value {
    json!({"KV": {
        "LockIndex": e.lock_index,
        "Key": key,
        "Flags": e.flags,
        "Value": (with_value && !e.value.is_empty()).then(|| STANDARD.encode(&e.value)),
        "Session": e.session.clone().unwrap_or_default(),
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
        "Namespace": "default",
        "Partition": "default",
    }})
}

fn read_kv(batch: &StateBatch<'_>, key: &str) -> Result<Option<KvEntry>, StateError> {
    let Some(raw) = batch.get(&kv_key(key))? else {
        return Ok(None);
    };
    let mut e = KvEntry::decode(&raw)?;
    e.session = batch
        .get(&sessions::lock_key(key))?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    Ok(Some(e))
}

/// Write `value` at `key` as one KV set would; `None` when `lock` refuses.
fn write_kv(
    batch: &mut StateBatch<'_>,
    key: &str,
    value: &[u8],
    flags: u64,
    lock: Option<&KvLock>,
    index: u64,
) -> Result<Option<KvEntry>, StateError> {
    let existing = read_kv(batch, key)?;
    let bumps = match lock {
        Some(l) => match sessions::lock_write(batch, key, l)? {
            Some(b) => b,
            None => return Ok(None),
        },
        None => false,
    };
    let e = KvEntry {
        create_index: existing.as_ref().map_or(index, |e| e.create_index),
        modify_index: index,
        lock_index: existing.as_ref().map_or(0, |e| e.lock_index) + u64::from(bumps),
        flags,
        value: value.to_vec(),
        session: None,
    };
    batch.insert(kv_key(key), e.encode());
    let mut t = TOMB_PREFIX.to_vec();
    t.extend_from_slice(key.as_bytes());
    batch.remove(t);
    batch.insert(KV_INDEX.to_vec(), index.to_be_bytes().to_vec());
    read_kv(batch, key)
}

fn delete_kv(batch: &mut StateBatch<'_>, keys: &[Vec<u8>], index: u64) {
    for k in keys {
        let name = &k[KV_PREFIX.len()..];
        let mut t = TOMB_PREFIX.to_vec();
        t.extend_from_slice(name);
        batch.insert(t, index.to_be_bytes().to_vec());
        let mut l = sessions::LOCK_PREFIX.to_vec();
        l.extend_from_slice(name);
        batch.remove(l);
        batch.remove(k.clone());
    }
    if !keys.is_empty() {
        batch.insert(KV_INDEX.to_vec(), index.to_be_bytes().to_vec());
    }
}

/// One KV operation: its results, or why it failed.
fn kv(
    batch: &mut StateBatch<'_>,
    op: &TxnOp,
    now_ms: i64,
    index: u64,
) -> Result<Result<Vec<Value>, String>, StateError> {
    let TxnOp::Kv {
        verb,
        key,
        value,
        flags,
        index: want,
        session,
    } = op
    else {
        return Ok(Ok(Vec::new()));
    };
    let k = key.as_str();
    let current = read_kv(batch, k)?;
    let missing = || format!("key {k:?} doesn't exist");
    Ok(match verb {
        KvVerb::Set => {
            let e = write_kv(batch, k, value, *flags, None, index)?;
            Ok(e.iter().map(|e| kv_json(k, e, false)).collect())
        }
        KvVerb::Cas => {
            let fits = match &current {
                None => *want == 0,
                Some(e) => e.modify_index == *want,
            };
            if !fits {
                Err(format!("failed to set key {k:?}, index is stale"))
            } else {
                let e = write_kv(batch, k, value, *flags, None, index)?;
                Ok(e.iter().map(|e| kv_json(k, e, false)).collect())
            }
        }
        KvVerb::Lock | KvVerb::Unlock => {
            let lock = if *verb == KvVerb::Lock {
                KvLock::Acquire {
                    session: session.clone(),
                    now_ms,
                }
            } else {
                KvLock::Release {
                    session: session.clone(),
                }
            };
            match write_kv(batch, k, value, *flags, Some(&lock), index)? {
                Some(e) => Ok(vec![kv_json(k, &e, false)]),
                None if *verb == KvVerb::Lock => {
                    Err(format!("failed to lock key {k:?}, lock is already held"))
                }
                None => Err(format!(
                    "failed to unlock key {k:?}, lock isn't held, or is held by another session"
                )),
            }
        }
        KvVerb::Get => match &current {
            Some(e) => Ok(vec![kv_json(k, e, true)]),
            None => Err(missing()),
        },
        KvVerb::GetTree => {
            let mut out = Vec::new();
            for raw_key in batch.keys_with_prefix(&kv_key(k))? {
                let name = String::from_utf8_lossy(&raw_key[KV_PREFIX.len()..]).into_owned();
                if let Some(e) = read_kv(batch, &name)? {
                    out.push(kv_json(&name, &e, true));
                }
            }
            Ok(out)
        }
        KvVerb::CheckIndex => match &current {
            Some(e) if e.modify_index == *want => Ok(vec![kv_json(k, e, false)]),
            Some(e) => Err(format!(
                "current modify index {} != {want} for key {k:?}",
                e.modify_index
            )),
            None => Err(missing()),
        },
        KvVerb::CheckSession => match &current {
            Some(e) if e.session.as_deref().unwrap_or("") == session => {
                Ok(vec![kv_json(k, e, false)])
            }
            Some(e) => Err(format!(
                "failed session check for key {k:?}, current session {:?} != {session:?}",
                e.session.as_deref().unwrap_or("")
            )),
            None => Err(missing()),
        },
        KvVerb::CheckNotExists => match &current {
            Some(_) => Err(format!("key {k:?} exists")),
            None => Ok(Vec::new()),
        },
        KvVerb::Delete => {
            if current.is_some() {
                delete_kv(batch, &[kv_key(k)], index);
            }
            Ok(Vec::new())
        }
        KvVerb::DeleteTree => {
            let keys = batch.keys_with_prefix(&kv_key(k))?;
            delete_kv(batch, &keys, index);
            Ok(Vec::new())
        }
        KvVerb::DeleteCas => match &current {
            Some(e) if e.modify_index == *want => {
                delete_kv(batch, &[kv_key(k)], index);
                Ok(Vec::new())
            }
            _ => Err(format!("failed to delete key {k:?}, index is stale")),
        },
    })
}

fn service_json(i: &lucid_core::catalog::Instance, index: u64) -> Value {
    json!({"Service": {"ID": i.id, "Service": i.name, "Tags": i.tags, "Address": i.address,
        "Port": i.port, "Meta": i.meta, "EnableTagOverride": i.enable_tag_override,
        "CreateIndex": index, "ModifyIndex": index}})
}

fn check_json(c: &Check) -> Value {
    json!({"Check": {"CheckID": c.id, "Name": c.name, "Status": c.status.as_str(),
        "ServiceID": c.service_id, "Output": c.output, "ModifyIndex": c.updated_index}})
}

/// One catalog or session operation.
fn other(
    batch: &mut StateBatch<'_>,
    op: &TxnOp,
    now_ms: i64,
    index: u64,
) -> Result<Result<Vec<Value>, String>, StateError> {
    Ok(match op {
        TxnOp::Kv { .. } => Ok(Vec::new()),
        TxnOp::Session { id } => {
            if sessions::destroy(batch, id, now_ms, index)? {
                Ok(Vec::new())
            } else {
                Err(format!("failed to delete session {id:?}: unknown session"))
            }
        }
        TxnOp::Service {
            verb,
            id,
            registration,
            keep_owner,
        } => match (verb, registration) {
            (CatalogVerb::Set, Some(reg)) => {
                let reg = reg.clone();
                let id = reg.instance.id.clone();
                if catalog::register(batch, reg, false, *keep_owner, index)? {
                    let i = catalog::instance(batch, &id)?;
                    Ok(i.iter().map(|i| service_json(i, index)).collect())
                } else {
                    Err(format!(
                        "failed to set service {id:?}: its id or its checks belong to another service or instance, or its DNS name or service name (without case) is taken"
                    ))
                }
            }
            (CatalogVerb::Get, _) => match catalog::instance(batch, id)? {
                Some(i) => Ok(vec![service_json(&i, index)]),
                None => Err(format!("service {id:?} doesn't exist")),
            },
            (CatalogVerb::Delete, _) => {
                let checks: Vec<String> = catalog::checks_of(batch, id)?
                    .into_iter()
                    .map(|c| c.id)
                    .collect();
                catalog::deregister(batch, id, index)?;
                for c in checks {
                    sessions::check_failed(batch, &c, now_ms, index)?;
                }
                Ok(Vec::new())
            }
            (CatalogVerb::Set, None) => Err("a service set needs a Service".to_owned()),
        },
        TxnOp::Check { verb, id, check } => match (verb, check) {
            (CatalogVerb::Set, Some(c)) => {
                let cid = c.id.clone();
                let critical = c.status == lucid_core::catalog::CheckStatus::Critical;
                if catalog::register_check(batch, c.clone(), index)? {
                    if critical {
                        sessions::check_failed(batch, &cid, now_ms, index)?;
                    }
                    let c = catalog::check(batch, &cid)?;
                    Ok(c.iter().map(check_json).collect())
                } else {
                    Err(format!("failed to set check {cid:?}: unknown service"))
                }
            }
            (CatalogVerb::Get, _) => match catalog::check(batch, id)? {
                Some(c) => Ok(vec![check_json(&c)]),
                None => Err(format!("check {id:?} doesn't exist")),
            },
            (CatalogVerb::Delete, _) => {
                if catalog::deregister_check(batch, id, index)? {
                    sessions::check_failed(batch, id, now_ms, index)?;
                }
                Ok(Vec::new())
            }
            (CatalogVerb::Set, None) => Err("a check set needs a Check".to_owned()),
        },
    })
}

/// Apply every operation or none: `(ok, Consul's answer)`.
pub(crate) fn apply(
    batch: &mut StateBatch<'_>,
    ops: &[TxnOp],
    now_ms: i64,
    index: u64,
) -> Result<(bool, Value), StateError> {
    let before = batch.checkpoint();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let r = match op {
            TxnOp::Kv { .. } => kv(batch, op, now_ms, index)?,
            _ => other(batch, op, now_ms, index)?,
        };
        match r {
            Ok(mut v) => results.append(&mut v),
            Err(what) => errors.push(json!({"OpIndex": i, "What": what})),
        }
    }
    if errors.is_empty() {
        Ok((true, json!({"Results": results, "Errors": null})))
    } else {
        batch.rollback(before);
        Ok((false, json!({"Results": null, "Errors": errors})))
    }
}
