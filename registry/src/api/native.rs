//! The Lucid controller API the platform's services already call: `GET /services`,
//! `POST /services/register`, `GET /services/<name>`, `DELETE /services/<name>`. Errors use
//! the JSON envelope with `LUCID_ERR_1001..1005`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::catalog::{parse_registration, Check, CheckStatus, Instance};
use lucid_core::ErrorCode;
use rand::Rng;
use serde_json::{json, Value};

use super::authz::Caller;
use super::error::ApiError;
use super::extract::ApiBody;
use super::read;
use super::ApiState;
use crate::node::WriteError;
use crate::types::Command;

fn instance_json(i: &Instance, checks: &[Check]) -> Value {
    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(CheckStatus::Passing);
    json!({"id": i.id, "name": i.name, "address": i.address, "port": i.port, "tags": i.tags,
           "meta": i.meta, "mesh_port": i.mesh_port, "status": status.as_str(),
           "checks": checks.iter().map(|c| json!({"id": c.id, "status": c.status.as_str(), "output": c.output})).collect::<Vec<_>>()})
}

fn failed(e: WriteError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RegistrationFailed,
        format!("registration failed: {e}"),
    )
}

/// `POST /services/register`: 201 with the instance id (generated `<name>-<8 hex>` when absent).
pub async fn register(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidConfiguration,
            e.message,
        )
    })?;
    let registration = parse_registration(&v, |name| {
        format!("{name}-{:08x}", rand::rng().random::<u32>())
    })
    .map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidConfiguration,
            format!("invalid service configuration: {e}"),
        )
    })?;
    let id = registration.instance.id.clone();
    let name = registration.instance.name.clone();
    caller.act_for(&name)?;
    let (_, existing) = api.node.state.service(&name)?;
    if existing
        .iter()
        .any(|(i, _)| i.node.is_empty() && i.id == id)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyRegistered,
            format!("instance {id:?} of {name:?} is already registered"),
        ));
    }
    let res = super::register::register(&api, &caller, registration, true)
        .await
        .map_err(|e| {
            if e.status == StatusCode::SERVICE_UNAVAILABLE {
                ApiError::new(
                    e.status,
                    ErrorCode::RegistrationFailed,
                    format!("registration failed: {}", e.message),
                )
            } else {
                e
            }
        })?;
    let mut resp = (StatusCode::CREATED, Json(json!({"id": id, "name": name}))).into_response();
    read::meta_headers(&api.node, res.index, resp.headers_mut());
    Ok(resp)
}

pub async fn list(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let (index, instances, checks) = api.node.state.catalog()?;
    let mut by_name: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for i in &instances {
        let own: Vec<Check> = checks
            .iter()
            .filter(|c| c.service_id == i.id)
            .cloned()
            .collect();
        by_name
            .entry(i.name.clone())
            .or_default()
            .push(instance_json(i, &own));
    }
    let services: Vec<Value> = by_name
        .into_iter()
        .map(|(name, inst)| json!({"name": name, "instances": inst}))
        .collect();
    Ok(read::indexed_json(
        &api.node,
        index,
        json!({"services": services}),
    ))
}

pub async fn get(
    State(api): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (index, entries) = api.node.state.service(&name)?;
    if entries.is_empty() {
        return Err(ApiError::not_found(format!("service {name:?} not found")));
    }
    let inst: Vec<Value> = entries.iter().map(|(i, c)| instance_json(i, c)).collect();
    Ok(read::indexed_json(
        &api.node,
        index,
        json!({"name": name, "instances": inst}),
    ))
}

/// `DELETE /services/<name>`: deregister every instance of the service.
pub async fn delete(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.act_for(&name)?;
    let (_, mut entries) = api.node.state.service(&name)?;
    // The registry's own node's instances: an external node's go through the catalog API.
    entries.retain(|(i, _)| i.node.is_empty());
    if entries.is_empty() {
        return Err(ApiError::not_found(format!("service {name:?} not found")));
    }
    let mut removed = 0;
    for (i, _) in entries {
        if api
            .node
            .write(Command::CatalogDeregister {
                service_id: i.id,
                at_ms: crate::types::now_ms(),
            })
            .await
            .map_err(failed)?
            .ok
        {
            removed += 1;
        }
    }
    Ok(Json(json!({"name": name, "deregistered": removed})).into_response())
}
