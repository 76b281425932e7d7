//! Consul's sessions: `PUT /v1/session/create`, `PUT /v1/session/destroy/<id>`,
//! `PUT /v1/session/renew/<id>`, `GET /v1/session/info/<id>`, `/v1/session/node/<node>`,
//! `/v1/session/list` (the reads blocking-capable on the session index). The TTLs are counted
//! by the leader (`registry/src/sessions.rs`); the locks live in `store/sessions.rs`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::catalog::CheckStatus;
use serde_json::{json, Value};

use super::agent::NODE;
use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::read::{self, Blocking};
use super::ApiState;
use crate::store::sessions::{Behavior, ServiceCheck, Session};
use crate::types::{now_ms, Command};

/// A session as Consul answers it.
pub(crate) fn session_json(s: &Session) -> Value {
    json!({
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": s.lock_delay_ns,
        "Behavior": match s.behavior { Behavior::Release => "release", Behavior::Delete => "delete" },
        "TTL": s.ttl,
        "NodeChecks": s.node_checks,
        "ServiceChecks": (!s.service_checks.is_empty()).then(|| {
            s.service_checks.iter().map(|c| json!({"ID": c.id, "Namespace": c.namespace})).collect::<Vec<_>>()
        }),
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
}

/// `PUT /v1/session/create`: `{"ID": "<uuid>"}`.
pub async fn create(State(api): State<Arc<ApiState>>, body: ApiBody) -> Result<Response, ApiError> {
    let v: Value = if body.0.is_empty() {
        Value::Null
    } else {
        body.json()?
    };
    let r = lucid_core::session::parse(&v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let node = r.node.unwrap_or_else(|| NODE.to_owned());
    if node != NODE {
        return Err(ApiError::bad_request(format!(
            "Missing node registration: {node:?} (this agent's node is {NODE:?})"
        )));
    }
    // A session cannot start bound to a check that is missing or already failing.
    for c in r.node_checks.iter().chain(&r.service_checks) {
        if c == lucid_core::session::SERF_HEALTH {
            continue;
        }
        match api.node.state.check(c)? {
            None => {
                return Err(ApiError::bad_request(format!(
                    "Missing check '{c}' registration"
                )))
            }
            Some(check) if check.status == CheckStatus::Critical => {
                return Err(ApiError::bad_request(format!(
                    "Check '{c}' is in critical state"
                )))
            }
            Some(_) => {}
        }
    }
    let id = super::acl::new_id();
    let session = Session {
        id: id.clone(),
        name: r.name,
        node,
        lock_delay_ns: u64::try_from(r.lock_delay.as_nanos()).unwrap_or(u64::MAX),
        behavior: if r.delete {
            Behavior::Delete
        } else {
            Behavior::Release
        },
        ttl_ms: r
            .ttl_value
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ttl: r.ttl,
        node_checks: r.node_checks,
        service_checks: r
            .service_checks
            .into_iter()
            .map(|id| ServiceCheck {
                id,
                namespace: String::new(),
            })
            .collect(),
        create_index: 0,
        modify_index: 0,
        renewed_ms: now_ms(),
    };
    let res = api.node.write(Command::SessionCreate { session }).await?;
    if !res.ok {
        return Err(ApiError::conflict(
            "a session with this ID exists; try again",
        ));
    }
    let mut resp = Json(json!({"ID": id})).into_response();
    read::meta_headers(&api.node, res.index, resp.headers_mut());
    Ok(resp)
}

/// `PUT /v1/session/destroy/<id>`: `true` (also for a session already gone, as Consul).
pub async fn destroy(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let res = api
        .node
        .write(Command::SessionDestroy {
            id,
            now_ms: now_ms(),
        })
        .await?;
    let mut resp = Json(true).into_response();
    read::meta_headers(&api.node, res.index, resp.headers_mut());
    Ok(resp)
}

/// `PUT /v1/session/renew/<id>`: `[session]`, or 404 when it is gone (the holder must then
/// give up its locks: they are released or deleted already).
pub async fn renew(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let res = api
        .node
        .write(Command::SessionRenew {
            id: id.clone(),
            at_ms: now_ms(),
        })
        .await?;
    if !res.ok {
        let mut resp = ApiError::not_found(format!("Session id '{id}' not found")).into_response();
        read::meta_headers(&api.node, res.index, resp.headers_mut());
        return Ok(resp);
    }
    let (index, s) = api.node.state.session(&id)?;
    let list: Vec<Value> = s.iter().map(session_json).collect();
    Ok(read::indexed_json(&api.node, index.max(res.index), list))
}

/// The sessions `keep` selects, blocking on the session index.
async fn list_where(
    api: &ApiState,
    req: &Incoming,
    keep: impl Fn(&Session) -> bool,
) -> Result<Response, ApiError> {
    let blocking = Blocking::from_params(&req.params)?;
    let state = &api.node.state;
    let (index, list) = read::block_on(&api.node, read::Watch::All, blocking, || {
        let (index, all) = state.sessions()?;
        let list: Vec<Value> = all.iter().filter(|s| keep(s)).map(session_json).collect();
        Ok((index.max(1), list))
    })
    .await?;
    Ok(read::indexed_json(&api.node, index, list))
}

/// `GET /v1/session/info/<id>`: `[session]`, or `[]` when there is none.
pub async fn info(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    list_where(&api, &req, |s| s.id == id).await
}

/// `GET /v1/session/node/<node>`.
pub async fn node(
    State(api): State<Arc<ApiState>>,
    Path(node): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    list_where(&api, &req, |s| s.node == node).await
}

/// `GET /v1/session/list`.
pub async fn list(State(api): State<Arc<ApiState>>, req: Incoming) -> Result<Response, ApiError> {
    list_where(&api, &req, |_| true).await
}
