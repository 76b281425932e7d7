//! Config entries in the state tree: `e:<kind>/<name>` (the entry with its create and modify
//! index) and `m:config_index`, the index blocking reads of entries wait on.

use lucid_core::config_entry::{ConfigEntry, ConfigKind};
use serde::{Deserialize, Serialize};

use super::state::{be_u64, StateBatch, StateError, StateReader};

pub(crate) const ENTRY_PREFIX: &[u8] = b"e:";
pub(crate) const CONFIG_INDEX: &[u8] = b"m:config_index";

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub entry: ConfigEntry,
    pub create_index: u64,
    pub modify_index: u64,
}

fn key(kind: ConfigKind, name: &str) -> Vec<u8> {
    let mut k = ENTRY_PREFIX.to_vec();
    k.extend_from_slice(kind.as_str().as_bytes());
    k.push(b'/');
    k.extend_from_slice(name.as_bytes());
    k
}

fn decode(raw: &[u8]) -> Result<StoredEntry, StateError> {
    serde_json::from_slice(raw).map_err(|e| StateError::Corrupt(format!("config entry: {e}")))
}

pub(crate) fn is_config_key(k: &[u8]) -> bool {
    k.starts_with(ENTRY_PREFIX) || k == CONFIG_INDEX
}

pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    if k == CONFIG_INDEX {
        be_u64(v).map(|_| ())
    } else {
        decode(v).map(|_| ())
    }
}

/// Set an entry; with `cas`, only if its modify index is `cas` (0: only when absent).
pub(crate) fn set(
    batch: &mut StateBatch<'_>,
    entry: ConfigEntry,
    cas: Option<u64>,
    index: u64,
) -> Result<bool, StateError> {
    let k = key(entry.kind, &entry.name);
    let old = batch.get(&k)?.map(|raw| decode(&raw)).transpose()?;
    if let Some(want) = cas {
        if old.as_ref().map_or(0, |o| o.modify_index) != want {
            return Ok(false);
        }
    }
    let stored = StoredEntry {
        entry,
        create_index: old.map_or(index, |o| o.create_index),
        modify_index: index,
    };
    let raw = serde_json::to_vec(&stored).map_err(|e| StateError::Corrupt(e.to_string()))?;
    batch.insert(k, raw);
    batch.insert(CONFIG_INDEX.to_vec(), index.to_be_bytes().to_vec());
    Ok(true)
}

/// Delete an entry; `false` when absent or the `cas` does not match.
pub(crate) fn delete(
    batch: &mut StateBatch<'_>,
    kind: ConfigKind,
    name: &str,
    cas: Option<u64>,
    index: u64,
) -> Result<bool, StateError> {
    let k = key(kind, name);
    let Some(old) = batch.get(&k)?.map(|raw| decode(&raw)).transpose()? else {
        return Ok(false);
    };
    if cas.is_some_and(|c| c != old.modify_index) {
        return Ok(false);
    }
    batch.remove(k);
    batch.insert(CONFIG_INDEX.to_vec(), index.to_be_bytes().to_vec());
    Ok(true)
}

// === impl StateReader: config entry reads ===

impl StateReader {
    fn config_index(&self) -> Result<u64, StateError> {
        match self.tree().get(CONFIG_INDEX)? {
            Some(raw) => be_u64(&raw),
            None => Ok(0),
        }
    }

    /// One entry, and the config index.
    pub fn config_entry(
        &self,
        kind: ConfigKind,
        name: &str,
    ) -> Result<(u64, Option<StoredEntry>), StateError> {
        self.read_consistent(|| {
            let e = self
                .tree()
                .get(key(kind, name))?
                .map(|raw| decode(&raw))
                .transpose()?;
            Ok((self.config_index()?, e))
        })
    }

    /// Every entry of a kind, and the config index.
    pub fn config_entries(&self, kind: ConfigKind) -> Result<(u64, Vec<StoredEntry>), StateError> {
        self.read_consistent(|| {
            let mut prefix = ENTRY_PREFIX.to_vec();
            prefix.extend_from_slice(kind.as_str().as_bytes());
            prefix.push(b'/');
            let mut out = Vec::new();
            for item in self.tree().scan_prefix(prefix) {
                let (_, v) = item?;
                out.push(decode(&v)?);
            }
            Ok((self.config_index()?, out))
        })
    }
}
