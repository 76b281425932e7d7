//! Consul's prepared queries: `POST/GET /v1/query`, `GET/PUT/DELETE /v1/query/<id>`,
//! `GET /v1/query/<id-or-name>/execute` and `.../explain`. The definition is
//! `lucid_core::query` (parsed once, resolved by the same lookup DNS uses); writes go through
//! Raft, where names are kept unique.
//!
//! ACLs: writing needs `query:write` on the query's name (the old and the new one on
//! update); reading a definition needs `query:read` on it, and its token shows only to
//! `acl:write`. Executing needs no query rule, as in Consul: the answer is what the query's
//! own token (or the caller's, when it has none) may read of the service.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::acl::{Access, Resource};
use lucid_core::query::{self, PreparedQuery, QueryTable, REDACTED};
use lucid_core::wire::catalog::ServiceEntry;
use rand::seq::SliceRandom;
use serde_json::{json, Value};

use super::agent::DATACENTER;
use super::authz::{caller_with, Caller};
use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::health::{instances_of, node, service_entry, Of};
use super::read;
use super::ApiState;
use crate::types::Command;

fn not_found() -> ApiError {
    ApiError::not_found("Query not found")
}

/// The definition as this caller may see it.
fn shown(caller: &Caller, mut q: PreparedQuery) -> PreparedQuery {
    if !q.token.is_empty() && !caller.is_management() {
        q.token = REDACTED.to_owned();
    }
    q
}

fn parse(body: &ApiBody) -> Result<PreparedQuery, ApiError> {
    let v: Value = body.json()?;
    query::parse(&v).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn store(api: &ApiState, q: PreparedQuery, create: bool) -> Result<(), ApiError> {
    let r = api
        .node
        .write(Command::QuerySet { query: q, create })
        .await?;
    if !r.ok {
        return Err(super::acl::refused(&r, "the query was not stored"));
    }
    Ok(())
}

/// `POST /v1/query`: `{"ID": ...}`.
pub async fn create(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Json<Value>, ApiError> {
    let mut q = parse(&body)?;
    if !q.id.is_empty() {
        return Err(ApiError::bad_request(
            "ID must be empty when creating a new prepared query",
        ));
    }
    caller.allows(Resource::Query, &q.name, Access::Write)?;
    q.id = super::acl::new_id();
    let id = q.id.clone();
    store(&api, q, true).await?;
    Ok(Json(json!({ "ID": id })))
}

fn by_id(api: &ApiState, id: &str) -> Result<(u64, PreparedQuery), ApiError> {
    let (index, all) = api.node.state.queries()?;
    let q = all.into_iter().find(|q| q.id == id).ok_or_else(not_found)?;
    Ok((index, q))
}

/// `PUT /v1/query/<id>`: replace the definition.
pub async fn update(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiBody,
) -> Result<Json<Value>, ApiError> {
    let mut q = parse(&body)?;
    if !q.id.is_empty() && q.id != id {
        return Err(ApiError::bad_request(format!(
            "the body's ID {:?} is not the path's {id:?}",
            q.id
        )));
    }
    let (_, old) = by_id(&api, &id)?;
    caller.allows(Resource::Query, &old.name, Access::Write)?;
    caller.allows(Resource::Query, &q.name, Access::Write)?;
    q.id = id;
    store(&api, q, false).await?;
    Ok(Json(Value::Null))
}

/// `DELETE /v1/query/<id>`.
pub async fn delete(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, old) = by_id(&api, &id)?;
    caller.allows(Resource::Query, &old.name, Access::Write)?;
    let r = api.node.write(Command::QueryDelete { id }).await?;
    if !r.ok {
        return Err(not_found());
    }
    Ok(Json(Value::Null))
}

/// `GET /v1/query`: the definitions this caller may read.
pub async fn list(State(api): State<Arc<ApiState>>, caller: Caller) -> Result<Response, ApiError> {
    let (index, all) = api.node.state.queries()?;
    let out: Vec<PreparedQuery> = all
        .into_iter()
        .filter(|q| {
            caller
                .authorizer()
                .allowed(Resource::Query, &q.name, Access::Read)
        })
        .map(|q| shown(&caller, q))
        .collect();
    Ok(read::indexed_json(&api.node, index, out))
}

/// `GET /v1/query/<id>`: `[definition]`.
pub async fn get(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (index, q) = by_id(&api, &id)?;
    caller.allows(Resource::Query, &q.name, Access::Read)?;
    Ok(read::indexed_json(&api.node, index, [shown(&caller, q)]))
}

/// The query `asked` names, rendered for it.
fn resolve(api: &ApiState, asked: &str) -> Result<(u64, PreparedQuery), ApiError> {
    let (index, all) = api.node.state.queries()?;
    let q = QueryTable::new(all)
        .resolve(asked)
        .ok_or_else(not_found)?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((index, q))
}

/// `GET /v1/query/<id-or-name>/explain`: `{"Query": rendered}`.
pub async fn explain(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(asked): Path<String>,
) -> Result<Response, ApiError> {
    let (index, q) = resolve(&api, &asked)?;
    caller.allows(Resource::Query, &q.name, Access::Read)?;
    Ok(read::indexed_json(
        &api.node,
        index,
        json!({ "Query": shown(&caller, q) }),
    ))
}

/// `GET /v1/query/<id-or-name>/execute[?limit=N]`: the healthy instances the query selects,
/// shuffled (every instance is on this one node, so `Near` has nothing to sort by), as
/// `/v1/health/service` shows them. One datacenter: `Failovers` is always 0.
pub async fn execute(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(asked): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let limit = req.params.u64("limit")?;
    let (_, q) = resolve(&api, &asked)?;
    let runner = if q.token.is_empty() {
        caller
    } else {
        caller_with(&api, Some(&q.token))?
    };
    let s = &q.service;
    let node = node(&api);
    let of = if s.connect { Of::Connect } else { Of::Service };
    let (index, all) = instances_of(&api.node.state, &s.service, of)?;
    let readable = runner
        .authorizer()
        .allowed(Resource::Service, &s.service, Access::Read);
    let mut nodes: Vec<ServiceEntry> = all
        .iter()
        .filter(|_| readable && s.peer.is_empty() && s.admits_node(&node.meta))
        .filter(|(i, checks)| {
            s.admits(&i.tags, &i.meta)
                && s.healthy(checks.iter().map(|c| (c.id.as_str(), c.status)))
        })
        .map(|(i, checks)| service_entry(&node, i, checks))
        .collect();
    nodes.shuffle(&mut rand::rng());
    if let Some(n) = limit {
        nodes.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let body = json!({
        "Service": s.service,
        "Namespace": "",
        "Nodes": nodes,
        "DNS": q.dns,
        "Datacenter": DATACENTER,
        "Failovers": 0,
    });
    let mut resp = Json(body).into_response();
    read::meta_headers(&api.node, index, resp.headers_mut());
    Ok(resp)
}
