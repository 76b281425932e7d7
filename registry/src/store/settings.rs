//! Small replicated documents that are not records of their own kind: cluster settings
//! changed at run time (`z:<name>`: the autopilot configuration, the CA configuration), each
//! with its create and modify index for Consul's `?cas=`, and the network coordinates nodes
//! report (`o:<node>`, Consul's `/v1/coordinate`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::{StateBatch, StateError, StateReader};

pub(crate) const SETTING_PREFIX: &[u8] = b"z:";
pub(crate) const COORD_PREFIX: &[u8] = b"o:";

/// A setting as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub value: Value,
    pub create_index: u64,
    pub modify_index: u64,
}

fn key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn corrupt(e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt(e.to_string())
}

pub(crate) fn is_settings_key(k: &[u8]) -> bool {
    k.starts_with(SETTING_PREFIX) || k.starts_with(COORD_PREFIX)
}

pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    if k.starts_with(SETTING_PREFIX) {
        serde_json::from_slice::<Setting>(v)
            .map(|_| ())
            .map_err(corrupt)
    } else {
        serde_json::from_slice::<Value>(v)
            .map(|_| ())
            .map_err(corrupt)
    }
}

/// Set `name` to `value`, if `cas` (when given) is its modify index (0: only when absent).
pub(crate) fn set(
    batch: &mut StateBatch<'_>,
    name: &str,
    value: Value,
    cas: Option<u64>,
    index: u64,
) -> Result<bool, StateError> {
    let k = key(SETTING_PREFIX, name);
    let old: Option<Setting> = batch
        .get(&k)?
        .map(|raw| serde_json::from_slice(&raw).map_err(corrupt))
        .transpose()?;
    if let Some(want) = cas {
        if old.as_ref().map_or(0, |s| s.modify_index) != want {
            return Ok(false);
        }
    }
    let s = Setting {
        value,
        create_index: old.map_or(index, |o| o.create_index),
        modify_index: index,
    };
    batch.insert(k, serde_json::to_vec(&s).map_err(corrupt)?);
    Ok(true)
}

/// A node's coordinate (Consul's `Coord` object, kept as sent).
pub(crate) fn set_coordinate(
    batch: &mut StateBatch<'_>,
    node: &str,
    coord: &Value,
) -> Result<bool, StateError> {
    batch.insert(
        key(COORD_PREFIX, node),
        serde_json::to_vec(coord).map_err(corrupt)?,
    );
    Ok(true)
}

impl StateReader {
    /// A setting, if it was ever set.
    pub fn setting(&self, name: &str) -> Result<Option<Setting>, StateError> {
        self.tree()
            .get(key(SETTING_PREFIX, name))?
            .map(|raw| serde_json::from_slice(&raw).map_err(corrupt))
            .transpose()
    }

    /// Every reported coordinate, by node.
    pub fn coordinates(&self) -> Result<Vec<(String, Value)>, StateError> {
        let mut out = Vec::new();
        for item in self.tree().scan_prefix(COORD_PREFIX) {
            let (k, v) = item?;
            let node = String::from_utf8_lossy(&k[COORD_PREFIX.len()..]).into_owned();
            out.push((node, serde_json::from_slice(&v).map_err(corrupt)?));
        }
        Ok(out)
    }
}
