//! Consul's `/v1/catalog/register` and `/v1/catalog/deregister`. The registry is one logical
//! node, so the node fields are accepted and ignored; services go through the same parser and
//! commands as agent registration.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lucid_core::catalog::parse_registration;
use serde_json::Value;

use super::error::ApiError;
use super::extract::ApiBody;
use super::read;
use super::ApiState;
use crate::types::Command;

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.replace('_', "").eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

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
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    if field(&v, "check").is_some() || field(&v, "checks").is_some() {
        return Err(ApiError::bad_request(
            "catalog-level checks are not supported; register checks with the service via /v1/agent/service/register",
        ));
    }
    let service = field(&v, "service").ok_or_else(|| {
        ApiError::bad_request("Service is required (node-only registration is not supported)")
    })?;
    let registration = parse_registration(service, |name| name.to_owned())
        .map_err(|e| ApiError::bad_request(format!("invalid registration: Service.{e}")))?;
    done(
        &api,
        Command::CatalogRegister {
            registration,
            replace_checks: false,
        },
        String::new(),
    )
    .await
}

pub async fn deregister(
    State(api): State<Arc<ApiState>>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let text = |name: &str| field(&v, name).and_then(Value::as_str).map(str::to_owned);
    if let Some(id) = text("serviceid") {
        return done(
            &api,
            Command::CatalogDeregister {
                service_id: id.clone(),
            },
            format!("unknown service ID {id:?}"),
        )
        .await;
    }
    if let Some(id) = text("checkid") {
        return done(
            &api,
            Command::CheckDeregister {
                check_id: id.clone(),
            },
            format!("unknown check ID {id:?}"),
        )
        .await;
    }
    Err(ApiError::bad_request(
        "give ServiceID or CheckID (the registry node itself cannot be deregistered)",
    ))
}
