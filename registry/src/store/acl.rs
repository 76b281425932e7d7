//! ACL tokens in the state tree: `g:t:<accessor id>` (the token, its secret only as a SHA-256
//! hash), `g:h:<secret hash>` (accessor id, for lookups by secret), and `g:bootstrapped`
//! (set once, by the first bootstrap). Secrets never reach the log or the disk.

use serde::{Deserialize, Serialize};

use super::state::{StateBatch, StateError, StateReader};

pub(crate) const TOKEN_PREFIX: &[u8] = b"g:t:";
pub(crate) const HASH_PREFIX: &[u8] = b"g:h:";
pub(crate) const BOOTSTRAPPED: &[u8] = b"g:bootstrapped";

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenKind {
    /// Everything.
    Management,
    /// Register, deregister and update its own service's instances and checks, sign CSRs for
    /// its own identity; read the catalog, health and KV.
    Service { name: String },
    /// Read only.
    ReadOnly,
}

/// A token as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    pub accessor_id: String,
    /// SHA-256 of the secret, lower-case hex.
    pub secret_hash: String,
    pub description: String,
    pub kind: TokenKind,
    #[serde(default)]
    pub create_index: u64,
    /// Unix seconds after which the token no longer authenticates (Consul's
    /// `ExpirationTime`); `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl AclToken {
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

fn key(prefix: &[u8], s: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(s.as_bytes());
    k
}

fn decode(raw: &[u8]) -> Result<AclToken, StateError> {
    serde_json::from_slice(raw).map_err(|e| StateError::Corrupt(format!("ACL token: {e}")))
}

pub(crate) fn is_acl_key(k: &[u8]) -> bool {
    k.starts_with(TOKEN_PREFIX) || k.starts_with(HASH_PREFIX) || k == BOOTSTRAPPED
}

pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    if k.starts_with(TOKEN_PREFIX) {
        decode(v).map(|_| ())
    } else {
        Ok(())
    }
}

/// Store a token (refused when its secret hash is taken).
pub(crate) fn create(
    batch: &mut StateBatch<'_>,
    mut t: AclToken,
    index: u64,
) -> Result<bool, StateError> {
    let h = key(HASH_PREFIX, &t.secret_hash);
    if batch.get(&h)?.is_some() {
        return Ok(false);
    }
    t.create_index = index;
    let raw = serde_json::to_vec(&t).map_err(|e| StateError::Corrupt(e.to_string()))?;
    batch.insert(h, t.accessor_id.as_bytes().to_vec());
    batch.insert(key(TOKEN_PREFIX, &t.accessor_id), raw);
    Ok(true)
}

/// Delete a token and its secret lookup; `false` when unknown.
pub(crate) fn delete(batch: &mut StateBatch<'_>, accessor_id: &str) -> Result<bool, StateError> {
    let k = key(TOKEN_PREFIX, accessor_id);
    let Some(raw) = batch.get(&k)? else {
        return Ok(false);
    };
    let t = decode(&raw)?;
    batch.remove(key(HASH_PREFIX, &t.secret_hash));
    batch.remove(k);
    Ok(true)
}

/// The first management token; `false` once bootstrapping has happened.
pub(crate) fn bootstrap(
    batch: &mut StateBatch<'_>,
    t: AclToken,
    index: u64,
) -> Result<bool, StateError> {
    if batch.get(BOOTSTRAPPED)?.is_some() {
        return Ok(false);
    }
    if !create(batch, t, index)? {
        return Ok(false);
    }
    batch.insert(BOOTSTRAPPED.to_vec(), index.to_be_bytes().to_vec());
    Ok(true)
}

// === impl StateReader: ACL reads ===

impl StateReader {
    /// The token whose secret hashes to `hash`.
    pub fn acl_token_by_hash(&self, hash: &str) -> Result<Option<AclToken>, StateError> {
        let Some(acc) = self.tree().get(key(HASH_PREFIX, hash))? else {
            return Ok(None);
        };
        let acc = String::from_utf8_lossy(&acc).into_owned();
        self.tree()
            .get(key(TOKEN_PREFIX, &acc))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    pub fn acl_token(&self, accessor_id: &str) -> Result<Option<AclToken>, StateError> {
        self.tree()
            .get(key(TOKEN_PREFIX, accessor_id))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    pub fn acl_tokens(&self) -> Result<Vec<AclToken>, StateError> {
        let mut out = Vec::new();
        for item in self.tree().scan_prefix(TOKEN_PREFIX) {
            let (_, v) = item?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    pub fn acl_bootstrapped(&self) -> Result<bool, StateError> {
        Ok(self.tree().get(BOOTSTRAPPED)?.is_some())
    }
}
