//! Prepared queries in the state tree: `y:<id>` (a [`StoredQuery`]: the definition with its
//! indexes, and the accessor of the token it runs with) and `m:query_index`. Names are unique
//! without case and may not be another query's ID; a query bound to a session goes when the
//! session does. A query's token is kept by accessor, never as its secret: ACL secrets are
//! stored hashed (and sealed), and a query must not be the one place one sits in the clear
//! in the log, snapshots and backups.

use lucid_core::query::PreparedQuery;
use serde::{Deserialize, Serialize};

use super::state::{be_u64, StateBatch, StateError, StateReader};

pub(crate) const QUERY_PREFIX: &[u8] = b"y:";
pub(crate) const QUERY_INDEX: &[u8] = b"m:query_index";

fn key(id: &str) -> Vec<u8> {
    [QUERY_PREFIX, id.as_bytes()].concat()
}

/// A query as stored: its `Token` always empty, the token's accessor beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredQuery {
    pub query: PreparedQuery,
    /// The accessor of the token the query runs with ("" for the caller's).
    pub token_accessor: String,
}

fn decode(raw: &[u8]) -> Result<StoredQuery, StateError> {
    serde_json::from_slice(raw).map_err(|e| StateError::Corrupt(format!("prepared query: {e}")))
}

fn encode(q: &StoredQuery) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(q).map_err(|e| StateError::Corrupt(e.to_string()))
}

pub(crate) fn is_query_key(k: &[u8]) -> bool {
    k.starts_with(QUERY_PREFIX) || k == QUERY_INDEX
}

pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    if k == QUERY_INDEX {
        be_u64(v).map(|_| ())
    } else {
        decode(v).map(|_| ())
    }
}

/// A restored query's indexes are the restore's (the old ones belong to another log).
pub(crate) fn restamp(k: &[u8], v: Vec<u8>, index: u64) -> Result<Option<Vec<u8>>, StateError> {
    if k == QUERY_INDEX {
        return Ok(Some(v));
    }
    let mut q = decode(&v)?;
    q.query.create_index = index;
    q.query.modify_index = index;
    Ok(Some(encode(&q)?))
}

fn all(batch: &StateBatch<'_>) -> Result<Vec<PreparedQuery>, StateError> {
    let mut out = Vec::new();
    for k in batch.keys_with_prefix(QUERY_PREFIX)? {
        if let Some(raw) = batch.get(&k)? {
            out.push(decode(&raw)?.query);
        }
    }
    Ok(out)
}

fn changed(batch: &mut StateBatch<'_>, index: u64) {
    batch.insert(QUERY_INDEX.to_vec(), index.to_be_bytes().to_vec());
    batch.touched_queries = true;
}

/// Create (`create`) or replace query `q`; `Err` carries Consul's refusal. Decided here, on
/// the applied state, so two racing writers cannot both take a name.
pub(crate) fn set(
    batch: &mut StateBatch<'_>,
    mut q: PreparedQuery,
    token_accessor: String,
    create: bool,
    index: u64,
) -> Result<Result<(), String>, StateError> {
    let existing = all(batch)?;
    let old = existing.iter().find(|o| o.id == q.id);
    match (create, old) {
        (true, Some(_)) => return Ok(Err(format!("query ID {:?} is in use", q.id))),
        (false, None) => {
            return Ok(Err(format!(
                "Cannot modify non-existent prepared query: '{}'",
                q.id
            )))
        }
        _ => {}
    }
    let others = || existing.iter().filter(|o| o.id != q.id);
    if !q.name.is_empty() {
        if others().any(|o| o.name.eq_ignore_ascii_case(&q.name)) {
            return Ok(Err(format!(
                "name '{}' aliases an existing query name",
                q.name
            )));
        }
        if others().any(|o| o.id.eq_ignore_ascii_case(&q.name)) {
            return Ok(Err(format!(
                "name '{}' aliases an existing query id",
                q.name
            )));
        }
    } else if q.is_template() && others().any(|o| o.is_template() && o.name.is_empty()) {
        return Ok(Err(
            "a query template with an empty name already exists".into()
        ));
    }
    if !q.session.is_empty() && super::sessions::get(batch, &q.session)?.is_none() {
        return Ok(Err(format!("invalid session {:?}", q.session)));
    }
    q.create_index = old.map_or(index, |o| o.create_index);
    q.modify_index = index;
    // Never the secret (see the module's header).
    q.token.clear();
    let stored = StoredQuery {
        query: q,
        token_accessor,
    };
    batch.insert(key(&stored.query.id), encode(&stored)?);
    changed(batch, index);
    Ok(Ok(()))
}

/// Delete query `id`; `false` when there is none.
pub(crate) fn delete(batch: &mut StateBatch<'_>, id: &str, index: u64) -> Result<bool, StateError> {
    if batch.get(&key(id))?.is_none() {
        return Ok(false);
    }
    batch.remove(key(id));
    changed(batch, index);
    Ok(true)
}

/// Session `session` is gone: so are the queries bound to it.
pub(crate) fn session_gone(
    batch: &mut StateBatch<'_>,
    session: &str,
    index: u64,
) -> Result<(), StateError> {
    for q in all(batch)? {
        if q.session == session {
            delete(batch, &q.id, index)?;
        }
    }
    Ok(())
}

impl StateReader {
    /// Every prepared query, and the query index.
    pub fn queries(&self) -> Result<(u64, Vec<StoredQuery>), StateError> {
        self.read_consistent(|| {
            let mut out = Vec::new();
            for item in self.tree().scan_prefix(QUERY_PREFIX) {
                let (_, v) = item?;
                out.push(decode(&v)?);
            }
            let index = match self.tree().get(QUERY_INDEX)? {
                Some(raw) => be_u64(&raw)?,
                None => 0,
            };
            Ok((index, out))
        })
    }
}
