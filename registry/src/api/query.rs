//! Consul's prepared queries: `POST/GET /v1/query`, `GET/PUT/DELETE /v1/query/<id>`,
//! `GET /v1/query/<id-or-name>/execute` and `.../explain`. The definition is
//! `lucid_core::query` (parsed once, resolved by the same lookup DNS uses); writes go through
//! Raft, where names are kept unique.
//!
//! ACLs: writing needs `query:write` on the query's name, as written and in lower case
//! (lookups ignore case, so a name must not be squatted in another spelling), the old and
//! the new name on update. Reading a definition needs `query:read` on its name; an unnamed
//! query is listed only to `acl:write` and read by whoever holds its ID, as in Consul. Its
//! token shows only to `acl:write`. Executing needs no query rule: the answer is what the
//! query's own token (or the caller's, when it has none) may read of the service.
//!
//! The token is stored by accessor (`store/queries.rs`); it must be a live token when the
//! query is written.

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
use super::authz::{caller_for, denied, Caller};
use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::health::{instances_of, service_entry, Nodes, Of};
use super::read;
use super::ApiState;
use crate::store::queries::StoredQuery;
use crate::types::Command;

fn not_found() -> ApiError {
    ApiError::not_found("Query not found")
}

/// Neither named nor a template: known only to whoever holds its ID.
fn unnamed(q: &PreparedQuery) -> bool {
    q.name.is_empty() && !q.is_template()
}

/// `query:write` on `name` in both spellings.
fn may_write(caller: &Caller, name: &str) -> Result<(), ApiError> {
    caller.allows(Resource::Query, name, Access::Write)?;
    caller.allows(Resource::Query, &name.to_ascii_lowercase(), Access::Write)
}

/// The definition as this caller may see it: the token's secret only to `acl:write`, and
/// only when this node can unseal it.
fn shown(api: &ApiState, caller: &Caller, s: StoredQuery) -> Result<PreparedQuery, ApiError> {
    let mut q = s.query;
    if !s.token_accessor.is_empty() {
        let secret = if caller.is_management() {
            api.node
                .state
                .acl_token(&s.token_accessor)?
                .and_then(|t| super::acl_resolve::secret(api, &t))
        } else {
            None
        };
        q.token = secret.unwrap_or_else(|| REDACTED.to_owned());
    }
    Ok(q)
}

fn parse(body: &ApiBody) -> Result<PreparedQuery, ApiError> {
    let v: Value = body.json()?;
    query::parse(&v).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The accessor of the token a definition names ("" for none, and while ACLs are off, when
/// no token means anything).
fn token_accessor(api: &ApiState, q: &PreparedQuery) -> Result<String, ApiError> {
    if q.token.is_empty() || !api.acl.enabled {
        return Ok(String::new());
    }
    super::acl_resolve::by_secret(api, &q.token)?
        .map(|t| t.accessor_id)
        .ok_or_else(|| ApiError::bad_request("Token: ACL not found"))
}

async fn store(api: &ApiState, q: PreparedQuery, create: bool) -> Result<(), ApiError> {
    let token_accessor = token_accessor(api, &q)?;
    let r = api
        .node
        .write(Command::QuerySet {
            query: q,
            token_accessor,
            create,
        })
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
    may_write(&caller, &q.name)?;
    q.id = super::acl::new_id();
    let id = q.id.clone();
    store(&api, q, true).await?;
    Ok(Json(json!({ "ID": id })))
}

fn by_id(api: &ApiState, id: &str) -> Result<(u64, StoredQuery), ApiError> {
    let (index, all) = api.node.state.queries()?;
    let q = all
        .into_iter()
        .find(|s| s.query.id == id)
        .ok_or_else(not_found)?;
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
    may_write(&caller, &old.query.name)?;
    may_write(&caller, &q.name)?;
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
    may_write(&caller, &old.query.name)?;
    let r = api.node.write(Command::QueryDelete { id }).await?;
    if !r.ok {
        return Err(not_found());
    }
    Ok(Json(Value::Null))
}

/// `GET /v1/query`: the definitions this caller may read.
pub async fn list(State(api): State<Arc<ApiState>>, caller: Caller) -> Result<Response, ApiError> {
    let (index, all) = api.node.state.queries()?;
    let management = caller.is_management();
    let out = all
        .into_iter()
        .filter(|s| {
            let q = &s.query;
            if unnamed(q) {
                management
            } else {
                caller
                    .authorizer()
                    .allowed(Resource::Query, &q.name, Access::Read)
            }
        })
        .map(|s| shown(&api, &caller, s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(read::indexed_json(&api.node, index, out))
}

/// `GET /v1/query/<id>`: `[definition]`.
pub async fn get(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (index, s) = by_id(&api, &id)?;
    if !unnamed(&s.query) {
        caller.allows(Resource::Query, &s.query.name, Access::Read)?;
    }
    let shown = shown(&api, &caller, s)?;
    Ok(read::indexed_json(&api.node, index, [shown]))
}

/// The query `asked` names, rendered for it, with the accessor of its token.
fn resolve(api: &ApiState, asked: &str) -> Result<(u64, StoredQuery), ApiError> {
    let (index, all) = api.node.state.queries()?;
    let table = QueryTable::new(all.iter().map(|s| s.query.clone()).collect());
    let q = table
        .resolve(asked)
        .ok_or_else(not_found)?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let token_accessor = all
        .into_iter()
        .find(|s| s.query.id == q.id)
        .map(|s| s.token_accessor)
        .unwrap_or_default();
    Ok((
        index,
        StoredQuery {
            query: q,
            token_accessor,
        },
    ))
}

/// `GET /v1/query/<id-or-name>/explain`: `{"Query": rendered}`.
pub async fn explain(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(asked): Path<String>,
) -> Result<Response, ApiError> {
    let (index, s) = resolve(&api, &asked)?;
    if unnamed(&s.query) {
        if !caller.is_management() {
            return Err(denied("explaining an unnamed query needs acl:write"));
        }
    } else {
        caller.allows(Resource::Query, &s.query.name, Access::Read)?;
    }
    let shown = shown(&api, &caller, s)?;
    Ok(read::indexed_json(
        &api.node,
        index,
        json!({ "Query": shown }),
    ))
}

/// Who an execute runs as: the query's own token when it has one, else the caller.
fn runner(api: &ApiState, caller: Caller, token_accessor: &str) -> Result<Caller, ApiError> {
    if token_accessor.is_empty() || !api.acl.enabled {
        return Ok(caller);
    }
    let now = lucid_core::unix_now();
    let token = api
        .node
        .state
        .acl_token(token_accessor)?
        .filter(|t| !t.expired(now))
        .ok_or_else(|| denied("the query's token no longer exists"))?;
    caller_for(api, token)
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
    // Consul: a limit of 0 is no limit.
    let limit = req.params.u64("limit")?.filter(|n| *n > 0);
    let (_, stored) = resolve(&api, &asked)?;
    let runner = runner(&api, caller, &stored.token_accessor)?;
    let q = stored.query;
    let s = &q.service;
    let of = if s.connect { Of::Connect } else { Of::Service };
    let (index, all) = instances_of(&api.node.state, &s.service, of)?;
    let known = Nodes::of_entries(&api, &all)?;
    let readable = runner
        .authorizer()
        .allowed(Resource::Service, &s.service, Access::Read);
    let mut nodes: Vec<ServiceEntry> = all
        .iter()
        .map(|(i, checks)| (known.of(i), i, checks))
        .filter(|(node, _, _)| readable && s.peer.is_empty() && s.admits_node(&node.meta))
        .filter(|(_, i, checks)| {
            s.admits(&i.tags, &i.meta)
                && s.healthy(checks.iter().map(|c| (c.id.as_str(), c.status)))
        })
        .map(|(node, i, checks)| service_entry(&node, i, checks))
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
