//! Consul's `/v1/catalog/register` and `/v1/catalog/deregister`. The registry is one logical
//! node, so the node fields are accepted and ignored; services go through the same parser,
//! checks and commands as agent registration, and a deregistration needs `service:write` on
//! what it removes, as the agent's does.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lucid_core::catalog::{
    parse_catalog_deregistration, parse_catalog_registration, CatalogTarget,
};
use serde_json::Value;

use super::authz::Caller;
use super::error::ApiError;
use super::extract::ApiBody;
use super::read;
use super::ApiState;
use crate::types::Command;

async fn done(api: &ApiState, cmd: Command, missing: String) -> Result<Response, ApiError> {
    let res = api.node.write(cmd).await?;
    if !res.ok {
        return Err(ApiError::not_found(missing));
    }
    let mut resp = axum::Json(true).into_response();
    read::meta_headers(&api.node, res.index, resp.headers_mut());
    Ok(resp)
}

pub async fn register(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let registration = parse_catalog_registration(&v)
        .map_err(|e| ApiError::bad_request(format!("invalid registration: {e}")))?;
    let res = super::register::register(&api, &caller, registration, false).await?;
    let mut resp = axum::Json(true).into_response();
    read::meta_headers(&api.node, res.index, resp.headers_mut());
    Ok(resp)
}

pub async fn deregister(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let target = parse_catalog_deregistration(&v)
        .map_err(|e| ApiError::bad_request(format!("invalid deregistration: {e}")))?;
    match &target {
        CatalogTarget::Service(id) => super::agent::owns_instance(&api, &caller, id)?,
        CatalogTarget::Check(id) => super::agent::owns_check(&api, &caller, id)?,
    }
    match target {
        CatalogTarget::Service(id) => {
            let missing = format!("unknown service ID {id:?}");
            done(
                &api,
                Command::CatalogDeregister {
                    service_id: id,
                    at_ms: crate::types::now_ms(),
                },
                missing,
            )
            .await
        }
        CatalogTarget::Check(id) => {
            let missing = format!("unknown check ID {id:?}");
            done(
                &api,
                Command::CheckDeregister {
                    check_id: id,
                    at_ms: crate::types::now_ms(),
                },
                missing,
            )
            .await
        }
    }
}
