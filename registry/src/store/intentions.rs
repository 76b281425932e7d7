//! Intentions and the plane map in the state tree: `q:<source>\0<destination>` (one intention
//! per pair, as Consul's "exact" API has it), `p:planes` (plane -> services, from the policy
//! file) and `m:intention_index`, the index blocking reads wait on.

use std::collections::BTreeMap;

use lucid_core::intention::{Intention, Party};

use super::state::{be_u64, StateBatch, StateError, StateReader};

pub(crate) const PREFIX: &[u8] = b"q:";
pub(crate) const PLANES: &[u8] = b"p:planes";
pub(crate) const INDEX: &[u8] = b"m:intention_index";

/// plane -> its services.
pub type Planes = BTreeMap<String, Vec<String>>;

fn key(source: &Party, destination: &Party) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(source.to_string().as_bytes());
    k.push(0);
    k.extend_from_slice(destination.to_string().as_bytes());
    k
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(raw).map_err(|e| StateError::Corrupt(format!("intention record: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(v).map_err(|e| StateError::Corrupt(e.to_string()))
}

pub(crate) fn is_intention_key(k: &[u8]) -> bool {
    k.starts_with(PREFIX) || k == PLANES || k == INDEX
}

pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    if k == INDEX {
        be_u64(v).map(|_| ())
    } else if k == PLANES {
        decode::<Planes>(v).map(|_| ())
    } else {
        decode::<Intention>(v).map(|_| ())
    }
}

fn bump(batch: &mut StateBatch<'_>, index: u64) {
    batch.insert(INDEX.to_vec(), index.to_be_bytes().to_vec());
}

/// Create or replace the intention for its pair. With `create_only`, `false` when the pair
/// already has one. A replaced intention keeps its id.
pub(crate) fn set(
    batch: &mut StateBatch<'_>,
    mut i: Intention,
    create_only: bool,
    index: u64,
) -> Result<bool, StateError> {
    let k = key(&i.source, &i.destination);
    if let Some(old) = batch.get(&k)? {
        if create_only {
            return Ok(false);
        }
        i.id = decode::<Intention>(&old)?.id;
    }
    batch.insert(k, encode(&i)?);
    bump(batch, index);
    Ok(true)
}

/// Delete the intention of a pair; `false` when there is none.
pub(crate) fn delete(
    batch: &mut StateBatch<'_>,
    source: &Party,
    destination: &Party,
    index: u64,
) -> Result<bool, StateError> {
    let k = key(source, destination);
    if batch.get(&k)?.is_none() {
        return Ok(false);
    }
    batch.remove(k);
    bump(batch, index);
    Ok(true)
}

/// Apply a policy document: the plane map replaces the old one, its intentions are set.
pub(crate) fn apply_policy(
    batch: &mut StateBatch<'_>,
    planes: &Planes,
    intentions: Vec<Intention>,
    index: u64,
) -> Result<bool, StateError> {
    batch.insert(PLANES.to_vec(), encode(planes)?);
    for i in intentions {
        set(batch, i, false, index)?;
    }
    bump(batch, index);
    Ok(true)
}

// === impl StateReader: intention reads ===

impl StateReader {
    /// Every intention, the plane map, and the intention index.
    pub fn intentions(&self) -> Result<(u64, Vec<Intention>, Planes), StateError> {
        self.read_consistent(|| {
            let index = match self.tree().get(INDEX)? {
                Some(raw) => be_u64(&raw)?,
                None => 0,
            };
            let mut out = Vec::new();
            for item in self.tree().scan_prefix(PREFIX) {
                let (_, v) = item?;
                out.push(decode(&v)?);
            }
            let planes = match self.tree().get(PLANES)? {
                Some(raw) => decode(&raw)?,
                None => Planes::new(),
            };
            Ok((index, out, planes))
        })
    }
}
