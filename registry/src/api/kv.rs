//! Consul KV: `GET|PUT|DELETE /v1/kv/<key>` with cas, flags, recurse, keys, separator, raw,
//! blocking queries, and the locks of sessions (`?acquire=<session>`, `?release=<session>`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lucid_client::KvPair;
use lucid_core::acl::{Access, Resource};

use super::authz::Caller;
use super::error::ApiError;
use super::extract::{ApiBody, Incoming, Params};
use super::read::{self, Blocking};
use super::ApiState;
use crate::store::sessions::KvLock;
use crate::store::KvEntry;
use crate::types::Command;

/// Consul's KV value limit.
pub const MAX_VALUE: usize = 512 * 1024;
/// Longest key we accept.
pub const MAX_KEY: usize = 2048;

fn key_of(path: Option<Path<String>>) -> String {
    path.map(|Path(k)| k).unwrap_or_default()
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.len() > MAX_KEY {
        return Err(ApiError::bad_request(format!(
            "key is {} bytes; the limit is {MAX_KEY}",
            key.len()
        )));
    }
    Ok(())
}

fn pair(key: String, e: KvEntry) -> KvPair {
    KvPair {
        key,
        create_index: e.create_index,
        modify_index: e.modify_index,
        lock_index: e.lock_index,
        flags: e.flags,
        // Consul sends an empty value as null (py-consul's test_kv_encoding relies on it).
        value: (!e.value.is_empty()).then(|| STANDARD.encode(&e.value)),
        session: e.session,
    }
}

/// What a KV read found.
enum Found {
    Missing,
    Raw(Vec<u8>),
    Pairs(Vec<KvPair>),
    Keys(Vec<String>),
}

pub async fn get(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    path: Option<Path<String>>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let node = &api.node;
    let params = &req.params;
    let key = key_of(path);
    check_key(&key)?;
    let blocking = Blocking::from_params(params)?;
    let separator = params.get("separator").map(str::to_owned);
    let (keys, recurse, raw) = (
        params.get("keys").is_some(),
        params.flag("recurse"),
        params.get("raw").is_some(),
    );
    // One key: key:read on it, refused even when it does not exist (as Consul does). A
    // listing: only the keys the caller may read, none of the others.
    if !keys && !recurse {
        caller.allows(Resource::Key, &key, Access::Read)?;
    }
    let readable = |k: &str| caller.authorizer().allowed(Resource::Key, k, Access::Read);
    let state = &node.state;
    let (index, found) = read::block_on(node, read::Watch::Kv(&key), blocking, || {
        if keys {
            let (i, mut ks) = state.kv_keys(&key, separator.as_deref())?;
            ks.retain(|k| readable(k));
            Ok((
                i,
                if ks.is_empty() {
                    Found::Missing
                } else {
                    Found::Keys(ks)
                },
            ))
        } else if recurse {
            let (i, list) = state.kv_list(&key)?;
            let pairs: Vec<KvPair> = list
                .into_iter()
                .filter(|(k, _)| readable(k))
                .map(|(k, e)| pair(k, e))
                .collect();
            Ok((
                i,
                if pairs.is_empty() {
                    Found::Missing
                } else {
                    Found::Pairs(pairs)
                },
            ))
        } else {
            let (i, e) = state.kv_get(&key)?;
            Ok((
                i,
                match e {
                    None => Found::Missing,
                    Some(e) if raw => Found::Raw(e.value),
                    Some(e) => Found::Pairs(vec![pair(key.clone(), e)]),
                },
            ))
        }
    })
    .await?;
    let mut resp = match found {
        Found::Missing => StatusCode::NOT_FOUND.into_response(),
        Found::Raw(v) => {
            let mut r = Response::new(Body::from(v));
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Found::Pairs(p) => Json(p).into_response(),
        Found::Keys(k) => Json(k).into_response(),
    };
    read::meta_headers(node, index, resp.headers_mut());
    Ok(resp)
}

pub async fn put(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    path: Option<Path<String>>,
    params: Params,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let key = key_of(path);
    if key.is_empty() {
        return Err(ApiError::bad_request("missing key name"));
    }
    check_key(&key)?;
    caller.allows(Resource::Key, &key, Access::Write)?;
    let lock = match (params.get("acquire"), params.get("release")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "acquire and release cannot be combined",
            ))
        }
        (Some(session), None) => {
            if session.is_empty() {
                return Err(ApiError::bad_request("acquire needs a session ID"));
            }
            // The leader's state has every session a client was told exists: refuse without
            // a write. A follower's replica may lag; there the state machine decides.
            if api.node.is_leader() && api.node.state.session(session)?.1.is_none() {
                return Err(ApiError::bad_request(format!(
                    "invalid session {session:?}"
                )));
            }
            Some(KvLock::Acquire {
                session: session.to_owned(),
                now_ms: crate::types::now_ms(),
            })
        }
        (None, Some(session)) => Some(KvLock::Release {
            session: session.to_owned(),
        }),
        (None, None) => None,
    };
    if body.0.len() > MAX_VALUE {
        return Err(ApiError::too_large(format!(
            "value is {} bytes; the limit is {MAX_VALUE}",
            body.0.len()
        )));
    }
    let cmd = Command::KvSet {
        key,
        value: body.0.to_vec(),
        flags: params.u64("flags")?.unwrap_or(0),
        cas: params.u64("cas")?,
        lock,
    };
    let res = api.node.write(cmd).await?;
    // The state machine decided on the applied state that the session does not exist.
    if let Some(why) = res.detail.as_ref().and_then(|d| d["Error"].as_str()) {
        return Err(ApiError::bad_request(why));
    }
    Ok(bool_response(&api, res.ok, res.index))
}

pub async fn delete(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    path: Option<Path<String>>,
    params: Params,
) -> Result<Response, ApiError> {
    let key = key_of(path);
    let recurse = params.flag("recurse");
    // A recursive delete needs write on the prefix and on every rule under it.
    let may = if recurse {
        caller.authorizer().key_write_prefix(&key)
    } else {
        caller
            .authorizer()
            .allowed(Resource::Key, &key, Access::Write)
    };
    if !may {
        return Err(super::authz::denied(format!(
            "this token lacks permission 'key:write' on {key:?}{}",
            if recurse {
                " and every key under it"
            } else {
                ""
            }
        )));
    }
    if key.is_empty() && !recurse {
        return Err(ApiError::bad_request(
            "missing key name (use ?recurse to delete every key)",
        ));
    }
    check_key(&key)?;
    let cas = params.u64("cas")?;
    if recurse && cas.is_some() {
        return Err(ApiError::bad_request("cas cannot be combined with recurse"));
    }
    let res = api
        .node
        .write(Command::KvDelete { key, recurse, cas })
        .await?;
    Ok(bool_response(&api, res.ok, res.index))
}

fn bool_response(api: &ApiState, ok: bool, index: u64) -> Response {
    let mut resp = Json(ok).into_response();
    read::meta_headers(&api.node, index, resp.headers_mut());
    resp
}
