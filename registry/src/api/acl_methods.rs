//! ACL auth methods and binding rules (`/v1/acl/auth-method{,s}`,
//! `/v1/acl/binding-rule{,s}`), stored and shown as Consul does: a jwt method must say how it
//! checks signatures, a binding rule's selector must be a valid expression over the method's
//! identity and its method must exist; deleting a method deletes its rules and the tokens
//! it issued. Logging in with a method (`/v1/acl/login`) is not served yet: an unknown
//! method is `403 ACL not found` as in Consul, a known one `501`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::acl_request;
use lucid_core::filter::{fields, Filter, Kind};
use lucid_core::wire::acl::{AuthMethodView, BindingRuleView};
use lucid_core::ErrorCode;
use serde_json::Value;

use super::acl::{new_id, refused, uuid_path};
use super::authz::{denied, secret_of};
use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::ApiState;
use crate::store::acl::{AclKind, AclObject};
use crate::types::Command;

fn body_method(body: &ApiBody) -> Result<AuthMethodView, ApiError> {
    let v: Value = body.json()?;
    let m = acl_request::auth_method(&v)
        .map_err(|e| ApiError::bad_request(format!("AuthMethod decoding failed: {e}")))?;
    Ok(AuthMethodView {
        name: m.name,
        kind: m.kind,
        display_name: m.display_name,
        description: m.description,
        max_token_ttl: m
            .max_token_ttl
            .map(lucid_core::format_duration)
            .unwrap_or_default(),
        token_locality: m.token_locality,
        config: Some(m.config),
        ..AuthMethodView::default()
    })
}

async fn store_method(api: &ApiState, m: AuthMethodView) -> Result<Response, ApiError> {
    let name = m.name.clone();
    let r = api
        .node
        .write(Command::AclSet {
            object: AclObject::AuthMethod(m),
            create: true,
        })
        .await?;
    if !r.ok {
        return Err(refused(&r, "the auth method was not stored"));
    }
    let stored = api.node.state.acl_auth_method(&name)?.ok_or_else(|| {
        ApiError::unavailable("the auth method was stored but is not readable here yet")
    })?;
    Ok(Json(stored).into_response())
}

/// `GET /v1/acl/auth-methods`: every method, without its `Config`.
pub async fn list(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let mut all = api.node.state.acl_auth_methods()?;
    for m in &mut all {
        m.config = None;
    }
    Ok(Json(all).into_response())
}

/// `PUT /v1/acl/auth-method`.
pub async fn create(State(api): State<Arc<ApiState>>, body: ApiBody) -> Result<Response, ApiError> {
    let m = body_method(&body)?;
    store_method(&api, m).await
}

/// `PUT /v1/acl/auth-method/<name>`.
pub async fn update(
    State(api): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let m = body_method(&body)?;
    if m.name != name {
        return Err(ApiError::bad_request(
            "AuthMethod Name in URL and payload do not match",
        ));
    }
    if api.node.state.acl_auth_method(&name)?.is_none() {
        return Err(ApiError::not_found(format!(
            "cannot find auth method {name:?}"
        )));
    }
    store_method(&api, m).await
}

/// `GET /v1/acl/auth-method/<name>`.
pub async fn read(
    State(api): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    api.node
        .state
        .acl_auth_method(&name)?
        .map(|m| Json(m).into_response())
        .ok_or_else(|| ApiError::not_found("Requested auth method does not exist: ACL not found"))
}

/// `DELETE /v1/acl/auth-method/<name>`: `true`, also when there was none.
pub async fn delete(
    State(api): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    api.node
        .write(Command::AclDelete {
            kind: AclKind::AuthMethod,
            id: name,
        })
        .await?;
    Ok(Json(true).into_response())
}

/// What a selector may name: the verified identity's claims, as Consul's jwt, oidc and
/// kubernetes methods expose them (`value.<claim>` for strings, `list.<claim>` for lists).
fn check_selector(selector: &str) -> Result<(), ApiError> {
    if selector.trim().is_empty() {
        return Ok(());
    }
    let schema = fields([
        ("value", Kind::Map(Box::new(Kind::Str))),
        ("list", Kind::Map(Box::new(Kind::StrList))),
    ]);
    Filter::new(selector, &schema).map(|_| ()).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid Binding Rule: Selector is invalid: {}",
            e.0
        ))
    })
}

fn body_rule(body: &ApiBody) -> Result<(Option<String>, BindingRuleView), ApiError> {
    let v: Value = body.json()?;
    let r = acl_request::binding_rule(&v)
        .map_err(|e| ApiError::bad_request(format!("BindingRule decoding failed: {e}")))?;
    check_selector(&r.selector)?;
    Ok((
        r.id,
        BindingRuleView {
            description: r.description,
            auth_method: r.auth_method,
            selector: r.selector,
            bind_type: r.bind_type,
            bind_name: r.bind_name,
            bind_vars: r.bind_vars,
            ..BindingRuleView::default()
        },
    ))
}

async fn store_rule(
    api: &ApiState,
    r: BindingRuleView,
    create: bool,
) -> Result<Response, ApiError> {
    let id = r.id.clone();
    let res = api
        .node
        .write(Command::AclSet {
            object: AclObject::BindingRule(r),
            create,
        })
        .await?;
    if !res.ok {
        return Err(refused(&res, "the binding rule was not stored"));
    }
    let stored = api.node.state.acl_binding_rule(&id)?.ok_or_else(|| {
        ApiError::unavailable("the binding rule was stored but is not readable here yet")
    })?;
    Ok(Json(stored).into_response())
}

/// `GET /v1/acl/binding-rules[?authmethod=]`.
pub async fn rules(State(api): State<Arc<ApiState>>, req: Incoming) -> Result<Response, ApiError> {
    let method = req.params.get("authmethod").filter(|m| !m.is_empty());
    let mut all = api.node.state.acl_binding_rules()?;
    all.retain(|r| method.is_none_or(|m| r.auth_method == m));
    Ok(Json(all).into_response())
}

/// `PUT /v1/acl/binding-rule`.
pub async fn rule_create(
    State(api): State<Arc<ApiState>>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let (id, r) = body_rule(&body)?;
    if id.is_some() {
        return Err(ApiError::bad_request(
            "Cannot specify the ID when creating a new binding rule",
        ));
    }
    store_rule(&api, BindingRuleView { id: new_id(), ..r }, true).await
}

/// `PUT /v1/acl/binding-rule/<id>`.
pub async fn rule_update(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    uuid_path(&id, "binding rule ID")?;
    let (body_id, r) = body_rule(&body)?;
    if body_id.is_some_and(|b| !b.eq_ignore_ascii_case(&id)) {
        return Err(ApiError::bad_request(
            "BindingRule ID in URL and payload do not match",
        ));
    }
    let old = api
        .node
        .state
        .acl_binding_rule(&id)?
        .ok_or_else(|| ApiError::not_found(format!("cannot find binding rule {id}")))?;
    store_rule(&api, BindingRuleView { id: old.id, ..r }, false).await
}

/// `GET /v1/acl/binding-rule/<id>`.
pub async fn rule_read(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    uuid_path(&id, "binding rule ID")?;
    api.node
        .state
        .acl_binding_rule(&id)?
        .map(|r| Json(r).into_response())
        .ok_or_else(|| ApiError::not_found("Requested binding rule does not exist: ACL not found"))
}

/// `DELETE /v1/acl/binding-rule/<id>`: `true`, also when there was none.
pub async fn rule_delete(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    uuid_path(&id, "binding rule ID")?;
    api.node
        .write(Command::AclDelete {
            kind: AclKind::BindingRule,
            id,
        })
        .await?;
    Ok(Json(true).into_response())
}

/// `POST /v1/acl/login` `{"AuthMethod", "BearerToken"}`.
pub async fn login(State(api): State<Arc<ApiState>>, body: ApiBody) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let method = v
        .as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| lucid_core::fold_key(k) == "authmethod")
        })
        .and_then(|(_, m)| m.as_str())
        .unwrap_or_default()
        .to_owned();
    if api.node.state.acl_auth_method(&method)?.is_none() {
        return Err(denied(format!(
            "ACL not found: auth method {method:?} not found"
        )));
    }
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        ErrorCode::InvalidConfiguration,
        "logging in with an auth method is not supported by lucid-registry yet; create tokens with PUT /v1/acl/token",
    ))
}

/// `POST /v1/acl/logout`: only tokens made by a login can log out, and none are.
pub async fn logout(
    State(api): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(secret) = secret_of(&headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::SecurityPolicyViolation,
            "Supplied token does not exist",
        ));
    };
    match super::acl_resolve::by_secret(&api, &secret)? {
        None => Err(denied("ACL not found")),
        Some(_) => Err(denied(
            "Permission denied: only tokens created by a login can log out",
        )),
    }
}
