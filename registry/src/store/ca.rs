//! The mesh CA in the state tree: the root (`a:root`, certificate and key), every leaf the CA
//! signed (`a:c:<serial>`), a per-service index of them (`a:s:<service>\0<serial>`), revoked
//! serials (`a:r:<serial>`, the index they were revoked at) and the revocation index
//! (`m:revoked_index`) blocking queries on the revoked list wait on.

use lucid_tls::CaMaterial;
use serde::{Deserialize, Serialize};

use super::state::{be_u64, StateBatch, StateError, StateReader};

pub(crate) const ROOT: &[u8] = b"a:root";
pub(crate) const CERT_PREFIX: &[u8] = b"a:c:";
pub(crate) const SERVICE_PREFIX: &[u8] = b"a:s:";
pub(crate) const REVOKED_PREFIX: &[u8] = b"a:r:";
pub(crate) const REVOKED_INDEX: &[u8] = b"m:revoked_index";

/// A leaf the CA signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// Lower-case hex.
    pub serial: String,
    pub service: String,
    pub plane: String,
    /// Unix seconds.
    pub not_after: i64,
    /// The log index it was revoked at.
    #[serde(default)]
    pub revoked_index: Option<u64>,
}

fn key(prefix: &[u8], s: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(s.as_bytes());
    k
}

fn service_key(service: &str, serial: &str) -> Vec<u8> {
    let mut k = key(SERVICE_PREFIX, service);
    k.push(0);
    k.extend_from_slice(serial.as_bytes());
    k
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(v).map_err(|e| StateError::Corrupt(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(raw).map_err(|e| StateError::Corrupt(format!("CA record: {e}")))
}

pub(crate) fn is_ca_key(k: &[u8]) -> bool {
    k == ROOT
        || k == REVOKED_INDEX
        || k.starts_with(CERT_PREFIX)
        || k.starts_with(SERVICE_PREFIX)
        || k.starts_with(REVOKED_PREFIX)
}

/// Validate a CA record from a snapshot blob.
pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    if k == ROOT {
        let m: CaMaterial = decode(v)?;
        lucid_tls::seal::check_stored(&m).map_err(|e| StateError::Corrupt(e.to_string()))?;
        Ok(())
    } else if k.starts_with(CERT_PREFIX) {
        decode::<IssuedCert>(v).map(|_| ())
    } else if k.starts_with(SERVICE_PREFIX) {
        // An index entry: the key is the data, the value is empty.
        Ok(())
    } else {
        be_u64(v).map(|_| ())
    }
}

/// A restored CA record, restamped to the restore's log index. Revocations carry the index
/// they happened at in the other log, which may be below what a sidecar following deltas has
/// already seen; restamped, every restored revocation is newer than anything it saw, so the
/// next delta brings it.
pub(crate) fn restamp(k: &[u8], v: Vec<u8>, index: u64) -> Result<Option<Vec<u8>>, StateError> {
    if k.starts_with(REVOKED_PREFIX) {
        return Ok(Some(index.to_be_bytes().to_vec()));
    }
    if k.starts_with(CERT_PREFIX) {
        let mut c: IssuedCert = decode(&v)?;
        if c.revoked_index.is_some() {
            c.revoked_index = Some(index);
            return Ok(Some(json(&c)?));
        }
    }
    Ok(Some(v))
}

/// Store the root unless there is one; `false` when there already is.
pub(crate) fn init_root(batch: &mut StateBatch<'_>, m: &CaMaterial) -> Result<bool, StateError> {
    if batch.get(ROOT)?.is_some() {
        return Ok(false);
    }
    batch.insert(ROOT.to_vec(), json(m)?);
    Ok(true)
}

/// Record a signed leaf.
pub(crate) fn record(batch: &mut StateBatch<'_>, c: &IssuedCert) -> Result<bool, StateError> {
    batch.insert(key(CERT_PREFIX, &c.serial), json(c)?);
    batch.insert(service_key(&c.service, &c.serial), Vec::new());
    Ok(true)
}

fn revoke_one(batch: &mut StateBatch<'_>, mut c: IssuedCert, index: u64) -> Result<(), StateError> {
    c.revoked_index = Some(index);
    batch.insert(key(CERT_PREFIX, &c.serial), json(&c)?);
    batch.insert(key(REVOKED_PREFIX, &c.serial), index.to_be_bytes().to_vec());
    batch.insert(REVOKED_INDEX.to_vec(), index.to_be_bytes().to_vec());
    Ok(())
}

/// Revoke one serial; `false` when the CA never signed it or it is already revoked.
pub(crate) fn revoke(
    batch: &mut StateBatch<'_>,
    serial: &str,
    index: u64,
) -> Result<bool, StateError> {
    let Some(raw) = batch.get(&key(CERT_PREFIX, serial))? else {
        return Ok(false);
    };
    let c: IssuedCert = decode(&raw)?;
    if c.revoked_index.is_some() {
        return Ok(false);
    }
    revoke_one(batch, c, index)?;
    Ok(true)
}

/// Revoke every unrevoked leaf of `service` still valid at `now`; `false` when there was none.
pub(crate) fn revoke_service(
    batch: &mut StateBatch<'_>,
    service: &str,
    now: i64,
    index: u64,
) -> Result<bool, StateError> {
    let mut prefix = key(SERVICE_PREFIX, service);
    prefix.push(0);
    let mut any = false;
    for k in batch.keys_with_prefix(&prefix)? {
        let serial = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        let Some(raw) = batch.get(&key(CERT_PREFIX, &serial))? else {
            continue;
        };
        let c: IssuedCert = decode(&raw)?;
        if c.revoked_index.is_none() && c.not_after > now {
            revoke_one(batch, c, index)?;
            any = true;
        }
    }
    Ok(any)
}

/// Drop every leaf that expired before `before`: its record, its service index entry and its
/// revocation. An expired certificate fails every handshake anyway, so neither the issued list
/// nor the revoked list needs it; without this both grow forever. Removing a revocation moves
/// the revocation index, so followers of the full list shrink theirs. `false` when nothing
/// had expired.
pub(crate) fn prune(
    batch: &mut StateBatch<'_>,
    before: i64,
    index: u64,
) -> Result<bool, StateError> {
    let (mut any, mut revocations) = (false, false);
    for k in batch.keys_with_prefix(CERT_PREFIX)? {
        let Some(raw) = batch.get(&k)? else {
            continue;
        };
        let c: IssuedCert = decode(&raw)?;
        if c.not_after >= before {
            continue;
        }
        batch.remove(k);
        batch.remove(service_key(&c.service, &c.serial));
        if c.revoked_index.is_some() {
            batch.remove(key(REVOKED_PREFIX, &c.serial));
            revocations = true;
        }
        any = true;
    }
    if revocations {
        batch.insert(REVOKED_INDEX.to_vec(), index.to_be_bytes().to_vec());
    }
    Ok(any)
}

// === impl StateReader: CA reads ===

impl StateReader {
    /// The mesh root, once the first leader has created it.
    pub fn ca_root(&self) -> Result<Option<CaMaterial>, StateError> {
        self.tree().get(ROOT)?.map(|raw| decode(&raw)).transpose()
    }

    /// Every leaf the CA signed, by serial.
    pub fn issued_certs(&self) -> Result<Vec<IssuedCert>, StateError> {
        let mut out = Vec::new();
        for item in self.tree().scan_prefix(CERT_PREFIX) {
            let (_, v) = item?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// Is `serial` (lower-case hex) revoked?
    pub fn is_revoked(&self, serial: &str) -> Result<bool, StateError> {
        Ok(self.tree().get(key(REVOKED_PREFIX, serial))?.is_some())
    }

    /// How many leaves expired before `before` (what [`prune`] would remove).
    pub fn expired_certs(&self, before: i64) -> Result<usize, StateError> {
        Ok(self
            .issued_certs()?
            .iter()
            .filter(|c| c.not_after < before)
            .count())
    }

    /// The leaves revoked after log index `since` (0: every revoked leaf), and the index of
    /// the last change to the revoked list. Followers pass the index they last saw and get a
    /// delta, so revoking a service with thousands of leaves is not re-sent on every change.
    pub fn revoked_certs(&self, since: u64) -> Result<(u64, Vec<IssuedCert>), StateError> {
        self.read_consistent(|| {
            let index = match self.tree().get(REVOKED_INDEX)? {
                Some(raw) => be_u64(&raw)?,
                None => 0,
            };
            let mut out = Vec::new();
            for item in self.tree().scan_prefix(REVOKED_PREFIX) {
                let (k, at) = item?;
                if be_u64(&at)? <= since {
                    continue;
                }
                let serial = String::from_utf8_lossy(&k[REVOKED_PREFIX.len()..]).into_owned();
                if let Some(raw) = self.tree().get(key(CERT_PREFIX, &serial))? {
                    out.push(decode(&raw)?);
                }
            }
            Ok((index, out))
        })
    }
}
