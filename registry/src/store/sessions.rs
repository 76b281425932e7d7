//! Sessions (Consul's `/v1/session`) and the KV locks they hold, in the state tree:
//! `s:<id>` a session (JSON), `L:<key>` the session holding the lock on a KV key, `D:<key>`
//! until when (unix ms) the key may not be acquired after its session was invalidated (the
//! session's lock-delay), and `m:session_index`.
//!
//! Everything time-based is decided on times the commands carry (the writing node's clock,
//! stamped when the command was made), so every replica applies a command alike: a renewal
//! records its time, and the leader invalidates a session whose last renewal is more than
//! twice its TTL ago (Consul's multiplier). Renewals go through Raft, so a new leader knows
//! them all and a failover neither resets a TTL nor loses one.

use serde::{Deserialize, Serialize};

use super::state::{be_u64, kv_key, StateBatch, StateError, KV_INDEX, TOMB_PREFIX};

pub(crate) const SESSION_PREFIX: &[u8] = b"s:";
pub(crate) const LOCK_PREFIX: &[u8] = b"L:";
pub(crate) const DELAY_PREFIX: &[u8] = b"D:";
pub(crate) const SESSION_INDEX: &[u8] = b"m:session_index";

/// What happens to a session's locks when it is invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// The locks are released; the keys stay.
    #[default]
    Release,
    /// The keys are deleted.
    Delete,
}

/// A service check a session is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCheck {
    pub id: String,
    #[serde(default)]
    pub namespace: String,
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    pub lock_delay_ns: u64,
    pub behavior: Behavior,
    /// As given (`"20s"`), echoed back as Consul does; `""` for none.
    pub ttl: String,
    pub ttl_ms: u64,
    pub node_checks: Vec<String>,
    pub service_checks: Vec<ServiceCheck>,
    pub create_index: u64,
    pub modify_index: u64,
    /// The last renewal (or the creation), unix ms on the clock of the node that took it; 0
    /// after a restore (the leader counts from when it first sees the session).
    #[serde(default)]
    pub renewed_ms: i64,
}

impl Session {
    /// Every check whose going critical invalidates the session.
    pub fn checks(&self) -> impl Iterator<Item = &str> {
        self.node_checks
            .iter()
            .map(String::as_str)
            .chain(self.service_checks.iter().map(|c| c.id.as_str()))
    }
}

/// A lock operation on a KV write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum KvLock {
    /// Take the lock for `session` (or keep it, when it holds it), unless another session
    /// holds it or the key is in its lock-delay at `now_ms`.
    Acquire { session: String, now_ms: i64 },
    /// Give the lock up, if `session` holds it.
    Release { session: String },
}

fn key(prefix: &[u8], s: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(s.as_bytes());
    k
}

pub(crate) fn session_key(id: &str) -> Vec<u8> {
    key(SESSION_PREFIX, id)
}

pub(crate) fn lock_key(kv: &str) -> Vec<u8> {
    key(LOCK_PREFIX, kv)
}

fn delay_key(kv: &str) -> Vec<u8> {
    key(DELAY_PREFIX, kv)
}

fn corrupt(e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt(e.to_string())
}

pub(crate) fn decode(raw: &[u8]) -> Result<Session, StateError> {
    serde_json::from_slice(raw).map_err(corrupt)
}

fn encode(s: &Session) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(s).map_err(corrupt)
}

/// Does the record belong to the sessions kind (locks are the KV kind's)?
pub(crate) fn is_session_key(k: &[u8]) -> bool {
    k.starts_with(SESSION_PREFIX) || k.starts_with(DELAY_PREFIX) || k == SESSION_INDEX
}

/// Validate one record from a snapshot or backup.
pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    if k.starts_with(SESSION_PREFIX) {
        decode(v).map(|_| ())
    } else {
        be_u64(v).map(|_| ())
    }
}

/// A restored session counts its TTL from when the leader first sees it, and carries the
/// restore's index; lock-delays and the index belong to the other log's time.
pub(crate) fn restamp(k: &[u8], v: Vec<u8>, index: u64) -> Result<Option<Vec<u8>>, StateError> {
    if k.starts_with(SESSION_PREFIX) {
        let mut s = decode(&v)?;
        s.create_index = index;
        s.modify_index = index;
        s.renewed_ms = 0;
        return Ok(Some(encode(&s)?));
    }
    Ok(None)
}

pub(crate) fn get(batch: &StateBatch<'_>, id: &str) -> Result<Option<Session>, StateError> {
    batch
        .get(&session_key(id))?
        .map(|raw| decode(&raw))
        .transpose()
}

fn bump(batch: &mut StateBatch<'_>, index: u64) {
    batch.insert(SESSION_INDEX.to_vec(), index.to_be_bytes().to_vec());
}

/// Create `s`; `false` when the id is taken.
pub(crate) fn create(
    batch: &mut StateBatch<'_>,
    mut s: Session,
    index: u64,
) -> Result<bool, StateError> {
    if get(batch, &s.id)?.is_some() {
        return Ok(false);
    }
    s.create_index = index;
    s.modify_index = index;
    batch.insert(session_key(&s.id), encode(&s)?);
    bump(batch, index);
    Ok(true)
}

/// Note a renewal at `at_ms`; `false` when the session is gone. The session's index does not
/// move: nothing a reader sees changed, and watchers of the session list stay asleep.
pub(crate) fn renew(batch: &mut StateBatch<'_>, id: &str, at_ms: i64) -> Result<bool, StateError> {
    let Some(mut s) = get(batch, id)? else {
        return Ok(false);
    };
    s.renewed_ms = s.renewed_ms.max(at_ms);
    batch.insert(session_key(id), encode(&s)?);
    Ok(true)
}

/// The keys `id` holds locks on.
fn held_by(batch: &StateBatch<'_>, id: &str) -> Result<Vec<String>, StateError> {
    let mut out = Vec::new();
    for k in batch.keys_with_prefix(LOCK_PREFIX)? {
        if batch.get(&k)?.as_deref() == Some(id.as_bytes()) {
            out.push(
                String::from_utf8(k[LOCK_PREFIX.len()..].to_vec())
                    .map_err(|_| corrupt("non-UTF-8 lock key"))?,
            );
        }
    }
    Ok(out)
}

/// Invalidate session `id` at `now_ms`: its locks are released (or their keys deleted, with
/// `Behavior::Delete`), and each key may not be acquired again for the session's lock-delay.
/// `false` when there was no such session.
pub(crate) fn destroy(
    batch: &mut StateBatch<'_>,
    id: &str,
    now_ms: i64,
    index: u64,
) -> Result<bool, StateError> {
    let Some(s) = get(batch, id)? else {
        return Ok(false);
    };
    let delay_ms = i64::try_from(s.lock_delay_ns / 1_000_000).unwrap_or(i64::MAX);
    let keys = held_by(batch, id)?;
    for k in &keys {
        batch.remove(lock_key(k));
        match s.behavior {
            Behavior::Release => {
                // The entry's index moves (its Session is gone), so blocking readers wake.
                if let Some(raw) = batch.get(&kv_key(k))? {
                    let mut e = super::state::KvEntry::decode(&raw)?;
                    e.modify_index = index;
                    batch.insert(kv_key(k), e.encode());
                }
            }
            Behavior::Delete => {
                batch.remove(kv_key(k));
                let mut t = TOMB_PREFIX.to_vec();
                t.extend_from_slice(k.as_bytes());
                batch.insert(t, index.to_be_bytes().to_vec());
            }
        }
        if delay_ms > 0 && now_ms > 0 {
            let until = now_ms.saturating_add(delay_ms);
            batch.insert(delay_key(k), (until as u64).to_be_bytes().to_vec());
        }
    }
    if !keys.is_empty() {
        batch.insert(KV_INDEX.to_vec(), index.to_be_bytes().to_vec());
    }
    batch.remove(session_key(id));
    super::queries::session_gone(batch, id, index)?;
    bump(batch, index);
    Ok(true)
}

/// A check went critical or away: invalidate the sessions bound to it.
pub(crate) fn check_failed(
    batch: &mut StateBatch<'_>,
    check_id: &str,
    now_ms: i64,
    index: u64,
) -> Result<(), StateError> {
    let mut doomed = Vec::new();
    for k in batch.keys_with_prefix(SESSION_PREFIX)? {
        if let Some(raw) = batch.get(&k)? {
            let s = decode(&raw)?;
            if s.checks().any(|c| c == check_id) {
                doomed.push(s.id);
            }
        }
    }
    for id in doomed {
        tracing::info!(session = %id, check = check_id, "session invalidated: its check is critical or gone");
        destroy(batch, &id, now_ms, index)?;
    }
    Ok(())
}

/// Apply `lock` to the write of KV `key` (whose new entry the caller is about to store):
/// `Ok(Some(bumps LockIndex))` to go ahead, `Ok(None)` to refuse the write (`false`).
pub(crate) fn lock_write(
    batch: &mut StateBatch<'_>,
    key: &str,
    lock: &KvLock,
) -> Result<Option<bool>, StateError> {
    let holder = batch
        .get(&lock_key(key))?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    match lock {
        KvLock::Acquire { session, now_ms } => {
            if get(batch, session)?.is_none() {
                return Ok(None);
            }
            match holder.as_deref() {
                Some(h) if h == session => return Ok(Some(false)),
                Some(_) => return Ok(None),
                None => {}
            }
            if let Some(until) = batch.get(&delay_key(key))? {
                if i64::try_from(be_u64(&until)?).unwrap_or(i64::MAX) > *now_ms {
                    return Ok(None);
                }
                batch.remove(delay_key(key));
            }
            batch.insert(lock_key(key), session.as_bytes().to_vec());
            Ok(Some(true))
        }
        KvLock::Release { session } => {
            if holder.as_deref() != Some(session.as_str()) {
                return Ok(None);
            }
            batch.remove(lock_key(key));
            Ok(Some(false))
        }
    }
}

// === impl StateReader: session reads ===

impl super::state::StateReader {
    /// The session index: the last create or invalidation.
    pub fn session_index(&self) -> Result<u64, StateError> {
        match self.tree().get(SESSION_INDEX)? {
            Some(raw) => be_u64(&raw),
            None => Ok(0),
        }
    }

    /// Every session, and the session index.
    pub fn sessions(&self) -> Result<(u64, Vec<Session>), StateError> {
        self.read_consistent(|| {
            let mut out = Vec::new();
            for item in self.tree().scan_prefix(SESSION_PREFIX) {
                let (_, v) = item?;
                out.push(decode(&v)?);
            }
            Ok((self.session_index()?, out))
        })
    }

    /// One session, and the session index.
    pub fn session(&self, id: &str) -> Result<(u64, Option<Session>), StateError> {
        self.read_consistent(|| {
            let s = self
                .tree()
                .get(session_key(id))?
                .map(|raw| decode(&raw))
                .transpose()?;
            Ok((self.session_index()?, s))
        })
    }
}
