//! Consul's config entry endpoints: `PUT /v1/config` (with `?cas=`), `GET /v1/config/<kind>`,
//! `GET|DELETE /v1/config/<kind>/<name>`; reads are blocking-capable on the config index.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::config_entry::{parse_entry, ConfigKind, EntryError};
use lucid_core::intention::Party;
use lucid_core::ErrorCode;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::read::{self, Blocking};
use super::ApiState;
use crate::store::config::StoredEntry;
use crate::types::Command;

fn kind(s: &str) -> Result<ConfigKind, ApiError> {
    ConfigKind::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "config entry kind {s:?} is not supported (service-defaults, proxy-defaults, ingress-gateway)"
        ))
    })
}

fn entry_json(s: &StoredEntry) -> Value {
    let mut v = serde_json::to_value(&s.entry).unwrap_or(Value::Null);
    v["CreateIndex"] = json!(s.create_index);
    v["ModifyIndex"] = json!(s.modify_index);
    v
}

/// `PUT /v1/config[?cas=N]`: `true`, or `false` when the cas did not match.
pub async fn put(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let cas = req.params.u64("cas")?;
    let v: Value = body.json()?;
    let entry = parse_entry(&v).map_err(|e| match e {
        EntryError::CircuitBreaker(m) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::CircuitBreakerConfigInvalid,
            m,
        ),
        EntryError::Traffic(m) => {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::TrafficPolicyFailed, m)
        }
        other => ApiError::bad_request(other.to_string()),
    })?;
    if entry.kind == ConfigKind::ServiceDefaults && entry.protocol.as_deref() == Some("tcp") {
        let (_, intentions, _) = api.node.state.intentions()?;
        if let Some(i) = intentions.iter().find(|i| {
            !i.permissions.is_empty()
                && matches!(&i.destination, Party::Service(d) if *d == entry.name)
        }) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::PolicyValidationFailed,
                format!(
                    "{} cannot speak tcp: the intention {} -> {} has L7 Permissions (remove them first)",
                    entry.name, i.source, i.destination
                ),
            ));
        }
    }
    let r = api.node.write(Command::ConfigSet { entry, cas }).await?;
    Ok(Json(r.ok).into_response())
}

/// `GET /v1/config/<kind>`.
pub async fn list(
    State(api): State<Arc<ApiState>>,
    Path(k): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let kind = kind(&k)?;
    let blocking = Blocking::from_params(&req.params)?;
    let state = &api.node.state;
    let (index, entries) = read::block_on(&api.node, read::Watch::All, blocking, || {
        let (index, entries) = state.config_entries(kind)?;
        Ok((index, entries.iter().map(entry_json).collect::<Vec<_>>()))
    })
    .await?;
    Ok(read::indexed_json(&api.node, index, entries))
}

/// `GET /v1/config/<kind>/<name>`: 404 when absent.
pub async fn get(
    State(api): State<Arc<ApiState>>,
    Path((k, name)): Path<(String, String)>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let kind = kind(&k)?;
    let blocking = Blocking::from_params(&req.params)?;
    let state = &api.node.state;
    let (index, entry) = read::block_on(&api.node, read::Watch::All, blocking, || {
        Ok(state.config_entry(kind, &name)?)
    })
    .await?;
    match entry {
        Some(e) => Ok(read::indexed_json(&api.node, index, entry_json(&e))),
        None => {
            let mut resp =
                ApiError::not_found(format!("no {} entry named {name:?}", kind.as_str()))
                    .into_response();
            read::meta_headers(&api.node, index, resp.headers_mut());
            Ok(resp)
        }
    }
}

/// `DELETE /v1/config/<kind>/<name>[?cas=N]`: `true`; 404 when absent.
pub async fn delete(
    State(api): State<Arc<ApiState>>,
    Path((k, name)): Path<(String, String)>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let kind = kind(&k)?;
    let cas = req.params.u64("cas")?;
    let r = api
        .node
        .write(Command::ConfigDelete {
            kind,
            name: name.clone(),
            cas,
        })
        .await?;
    if !r.ok && cas.is_none() {
        return Err(ApiError::not_found(format!(
            "no {} entry named {name:?}",
            kind.as_str()
        )));
    }
    Ok(Json(r.ok).into_response())
}
