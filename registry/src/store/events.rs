//! Consul's user events (`/v1/event/fire`, `/v1/event/list`), replicated through Raft instead
//! of gossip: every node lists the same events. Bounded: the last [`KEEP`] are kept
//! (`u:<20-digit sequence>`), as Consul's agents keep a ring of the last 256 they heard.

use serde::{Deserialize, Serialize};

use super::state::{be_u64, StateBatch, StateError, StateReader};

pub(crate) const EVENT_PREFIX: &[u8] = b"u:";
pub(crate) const EVENT_INDEX: &[u8] = b"m:event_index";
/// How many events are kept.
pub const KEEP: u64 = 256;

/// One user event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    pub id: String,
    pub name: String,
    #[serde(with = "crate::types::b64")]
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    /// The event's sequence number (Consul's `LTime`), set on apply.
    #[serde(default)]
    pub ltime: u64,
}

fn key(seq: u64) -> Vec<u8> {
    let mut k = EVENT_PREFIX.to_vec();
    k.extend_from_slice(format!("{seq:020}").as_bytes());
    k
}

fn corrupt(e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt(e.to_string())
}

pub(crate) fn is_event_key(k: &[u8]) -> bool {
    k.starts_with(EVENT_PREFIX) || k == EVENT_INDEX
}

pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    if k.starts_with(EVENT_PREFIX) {
        serde_json::from_slice::<UserEvent>(v)
            .map(|_| ())
            .map_err(corrupt)
    } else {
        be_u64(v).map(|_| ())
    }
}

/// Record `e` as the next event and drop the oldest past [`KEEP`].
pub(crate) fn fire(
    batch: &mut StateBatch<'_>,
    mut e: UserEvent,
    index: u64,
) -> Result<bool, StateError> {
    let seq = match batch.get(EVENT_INDEX)? {
        Some(raw) => be_u64(&raw)? + 1,
        None => 1,
    };
    e.ltime = seq;
    batch.insert(key(seq), serde_json::to_vec(&e).map_err(corrupt)?);
    batch.insert(EVENT_INDEX.to_vec(), seq.to_be_bytes().to_vec());
    if seq > KEEP {
        batch.remove(key(seq - KEEP));
    }
    let _ = index;
    Ok(true)
}

impl StateReader {
    /// Every kept event, oldest first.
    pub fn events(&self) -> Result<Vec<UserEvent>, StateError> {
        let mut out = Vec::new();
        for item in self.tree().scan_prefix(EVENT_PREFIX) {
            let (_, v) = item?;
            out.push(serde_json::from_slice(&v).map_err(corrupt)?);
        }
        Ok(out)
    }
}
