//! ACLs (DESIGN §9), on with `--acl-enabled`: the token endpoints (`/v1/acl/bootstrap`,
//! `/v1/acl/token`, `/v1/acl/tokens`, `/v1/acl/token/self`) and the layer that decides, for
//! every request, which token it needs. Tokens come as `X-Consul-Token` or
//! `Authorization: Bearer`. Anonymous requests may reach `/health`, and like Consul's status
//! endpoints, `/status` and `/v1/status/*` (and DNS, which is not HTTP). Refusals are 403
//! `LUCID_ERR_1203`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::ErrorCode;
use rand::Rng;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::ApiBody;
use super::ApiState;
use crate::store::acl::{AclToken, TokenKind};
use crate::types::Command;

/// ACL settings of this node.
#[derive(Debug, Clone, Default)]
pub struct AclSettings {
    pub enabled: bool,
    /// `--acl-bootstrap-token`: the initial management secret.
    pub bootstrap_secret: Option<String>,
}

/// A random UUID-shaped id (Consul's accessor and secret ids look like this).
pub fn new_id() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// SHA-256 of a secret, lower-case hex.
pub fn hash(secret: &str) -> String {
    lucid_tls::sha256_hex(secret.as_bytes())
}

fn denied(why: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::SecurityPolicyViolation,
        format!("permission denied: {}", why.into()),
    )
}

fn secret_of(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers.get("x-consul-token").and_then(|v| v.to_str().ok()) {
        return Some(t.trim().to_owned()).filter(|t| !t.is_empty());
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// What a request needs.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    Open,
    Read,
    Manage,
    /// A service token for this service (or management).
    Service(String),
    /// ... for the service of this instance.
    InstanceOwner(String),
    /// ... for the service of this check's instance.
    CheckOwner(String),
    /// ... for the service the JSON body names.
    BodyService,
}

fn need(method: &Method, path: &str) -> Need {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let read = *method == Method::GET || *method == Method::HEAD;
    match (read, seg.as_slice()) {
        // As in Consul, status is not ACL-protected (load balancers and orchestration read it).
        (_, ["health"]) | (true, ["status"]) | (true, ["v1", "status", _]) => Need::Open,
        (false, ["v1", "acl", "bootstrap"]) => Need::Open,
        (true, ["v1", "acl", "tokens"]) | (true, ["certificates"]) | (true, ["v1", "snapshot"]) => {
            Need::Manage
        }
        (true, ["v1", "agent", "connect", "ca", "leaf", svc]) => Need::Service((*svc).to_owned()),
        (true, _) => Need::Read,
        (false, ["v1", "agent", "service", "register"])
        | (false, ["v1", "catalog", "register"])
        | (false, ["services", "register"])
        | (false, ["v1", "connect", "ca", "sign"]) => Need::BodyService,
        (false, ["v1", "agent", "service", "deregister" | "maintenance", id]) => {
            Need::InstanceOwner((*id).to_owned())
        }
        (false, ["v1", "agent", "check", "pass" | "warn" | "fail" | "update", id]) => {
            Need::CheckOwner((*id).to_owned())
        }
        (false, ["certificates", svc]) if *method == Method::POST => {
            Need::Service((*svc).to_owned())
        }
        (false, ["services", svc]) if *method == Method::DELETE => Need::Service((*svc).to_owned()),
        (false, ["v1", "agent", "connect", "authorize"]) => Need::Read,
        _ => Need::Manage,
    }
}

/// The service a registration or signing body names (`Name`, `Service`, or Consul's catalog
/// form `{"Service": {"Service": ...}}`), keys case-insensitive.
fn body_service(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let field = |o: &serde_json::Map<String, Value>, names: &[&str]| {
        o.iter()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v.clone())
    };
    let o = v.as_object()?;
    match field(o, &["name", "service"])? {
        Value::String(s) => Some(s),
        Value::Object(inner) => match field(&inner, &["service", "name"])? {
            Value::String(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn token_for(api: &ApiState, secret: &str) -> Result<Option<TokenKind>, ApiError> {
    if api.acl.bootstrap_secret.as_deref() == Some(secret) {
        return Ok(Some(TokenKind::Management));
    }
    Ok(api
        .node
        .state
        .acl_token_by_hash(&hash(secret))?
        .map(|t| t.kind))
}

/// The layer: decide and refuse before the handler runs. Off when ACLs are disabled.
pub async fn enforce(State(api): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    if !api.acl.enabled {
        return next.run(req).await;
    }
    match check(&api, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn check(api: &ApiState, req: Request) -> Result<Request, ApiError> {
    let need = need(req.method(), req.uri().path());
    if need == Need::Open {
        return Ok(req);
    }
    let secret =
        secret_of(req.headers()).ok_or_else(|| denied("this endpoint needs an ACL token"))?;
    let kind = token_for(api, &secret)?.ok_or_else(|| denied("ACL not found"))?;
    let mine = |svc: &str| matches!(&kind, TokenKind::Service { name } if name == svc);
    match (&need, &kind) {
        (_, TokenKind::Management) | (Need::Read, _) => return Ok(req),
        (Need::Manage, _) => return Err(denied("this needs a management token")),
        (_, TokenKind::ReadOnly) => return Err(denied("a read-only token cannot write")),
        _ => {}
    }
    let owner = match need {
        Need::Service(s) => Some(s),
        Need::InstanceOwner(id) => api.node.state.instance_entry(&id)?.map(|(i, _)| i.name),
        Need::CheckOwner(id) => {
            let (_, _, checks) = api.node.state.catalog()?;
            let owner = checks
                .into_iter()
                .find(|c| c.id == id)
                .map(|c| c.service_id);
            match owner {
                Some(sid) => api.node.state.instance_entry(&sid)?.map(|(i, _)| i.name),
                None => None,
            }
        }
        Need::BodyService => {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, super::extract::API_BODY_LIMIT)
                .await
                .map_err(|_| ApiError::too_large("body over the size limit"))?;
            let svc = body_service(&bytes);
            let req = Request::from_parts(parts, Body::from(bytes));
            return match svc {
                Some(s) if mine(&s) => Ok(req),
                Some(s) => Err(denied(format!("this token may not act for service {s:?}"))),
                None => Err(denied("the body names no service this token may act for")),
            };
        }
        Need::Open | Need::Read | Need::Manage => None,
    };
    match owner {
        Some(s) if mine(&s) => Ok(req),
        Some(s) => Err(denied(format!("this token may not act for service {s:?}"))),
        None => Err(denied("not found or not owned by this token's service")),
    }
}

fn token_json(t: &AclToken, secret: Option<&str>) -> Value {
    let mut v = json!({"AccessorID": t.accessor_id, "Description": t.description, "CreateIndex": t.create_index});
    match &t.kind {
        TokenKind::Management => v["Policies"] = json!([{"Name": "global-management"}]),
        TokenKind::ReadOnly => v["Policies"] = json!([{"Name": "read-only"}]),
        TokenKind::Service { name } => v["ServiceIdentities"] = json!([{"ServiceName": name}]),
    }
    if let Some(s) = secret {
        v["SecretID"] = json!(s);
    }
    v
}

fn acl_off() -> ApiError {
    ApiError::bad_request("ACL support is disabled (start the registry with --acl-enabled)")
}

/// `PUT /v1/acl/bootstrap`: the first management token, once.
pub async fn bootstrap(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    if !api.acl.enabled {
        return Err(acl_off());
    }
    let secret = new_id();
    let token = AclToken {
        accessor_id: new_id(),
        secret_hash: hash(&secret),
        description: "Bootstrap Token (Global Management)".into(),
        kind: TokenKind::Management,
        create_index: 0,
    };
    let r = api
        .node
        .write(Command::AclBootstrap {
            token: token.clone(),
        })
        .await?;
    if !r.ok {
        return Err(denied("ACL bootstrap no longer allowed"));
    }
    let stored = AclToken {
        create_index: r.index,
        ..token
    };
    Ok(Json(token_json(&stored, Some(&secret))).into_response())
}

/// `PUT /v1/acl/token`: `{Description, ServiceIdentities: [{ServiceName}]}` or
/// `{Policies: [{Name: "global-management" | "read-only"}]}`, optional `SecretID`.
pub async fn create(State(api): State<Arc<ApiState>>, body: ApiBody) -> Result<Response, ApiError> {
    if !api.acl.enabled {
        return Err(acl_off());
    }
    let v: Value = body.json()?;
    let kind = match (v["ServiceIdentities"].as_array(), v["Policies"].as_array()) {
        (Some(ids), None) if ids.len() == 1 => {
            let name = ids[0]["ServiceName"].as_str().unwrap_or_default();
            if !lucid_core::catalog::valid_service_name(name) {
                return Err(ApiError::bad_request(format!(
                    "ServiceIdentities[0].ServiceName {name:?} is not a service name"
                )));
            }
            TokenKind::Service {
                name: name.to_owned(),
            }
        }
        (None, Some(p)) if p.len() == 1 => match p[0]["Name"].as_str() {
            Some("global-management") => TokenKind::Management,
            Some("read-only") => TokenKind::ReadOnly,
            other => {
                return Err(ApiError::bad_request(format!(
                    "policy {other:?} is not global-management or read-only"
                )))
            }
        },
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of ServiceIdentities: [{ServiceName}] or Policies: [{Name}]",
            ))
        }
    };
    let secret = match v["SecretID"].as_str() {
        Some(s) if s.len() >= 16 => s.to_owned(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "SecretID must be at least 16 characters",
            ))
        }
        None => new_id(),
    };
    let token = AclToken {
        accessor_id: new_id(),
        secret_hash: hash(&secret),
        description: v["Description"].as_str().unwrap_or_default().to_owned(),
        kind,
        create_index: 0,
    };
    let r = api
        .node
        .write(Command::AclTokenCreate {
            token: token.clone(),
        })
        .await?;
    if !r.ok {
        return Err(ApiError::conflict("a token with this SecretID exists"));
    }
    let stored = AclToken {
        create_index: r.index,
        ..token
    };
    Ok(Json(token_json(&stored, Some(&secret))).into_response())
}

/// `GET /v1/acl/tokens`: every token, without secrets.
pub async fn list(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let tokens = api.node.state.acl_tokens()?;
    Ok(Json(
        tokens
            .iter()
            .map(|t| token_json(t, None))
            .collect::<Vec<_>>(),
    )
    .into_response())
}

/// `GET /v1/acl/token/self`.
pub async fn token_self(
    State(api): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = secret_of(&headers).ok_or_else(|| denied("no token"))?;
    match api.node.state.acl_token_by_hash(&hash(&secret))? {
        Some(t) => Ok(Json(token_json(&t, None)).into_response()),
        None if api.acl.bootstrap_secret.as_deref() == Some(secret.as_str()) => {
            Ok(Json(json!({"Description": "--acl-bootstrap-token", "Policies": [{"Name": "global-management"}]})).into_response())
        }
        None => Err(denied("ACL not found")),
    }
}

/// While this node leads, make sure the `--acl-bootstrap-token` secret is a stored
/// management token.
pub(crate) async fn ensure_bootstrap(
    api: Arc<ApiState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(secret) = api.acl.bootstrap_secret.clone().filter(|_| api.acl.enabled) else {
        return;
    };
    let mut metrics = api.node.raft.metrics();
    loop {
        if api.node.is_leader()
            && matches!(api.node.state.acl_token_by_hash(&hash(&secret)), Ok(None))
        {
            let token = AclToken {
                accessor_id: new_id(),
                secret_hash: hash(&secret),
                description: "Bootstrap Token (--acl-bootstrap-token)".into(),
                kind: TokenKind::Management,
                create_index: 0,
            };
            // The flag's token is the bootstrap: PUT /v1/acl/bootstrap is refused after it.
            let cmd = match api.node.state.acl_bootstrapped() {
                Ok(false) => Command::AclBootstrap { token },
                _ => Command::AclTokenCreate { token },
            };
            match api.node.write(cmd).await {
                Ok(_) => tracing::info!("stored the --acl-bootstrap-token management token"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot store the bootstrap token yet; will retry")
                }
            }
        }
        tokio::select! {
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_design_says() {
        let g = Method::GET;
        let p = Method::PUT;
        assert_eq!(need(&g, "/health"), Need::Open);
        assert_eq!(need(&g, "/metrics"), Need::Read);
        assert_eq!(need(&g, "/status"), Need::Open);
        assert_eq!(need(&g, "/v1/status/leader"), Need::Open);
        assert_eq!(need(&g, "/v1/kv/a"), Need::Read);
        assert_eq!(need(&p, "/v1/kv/a"), Need::Manage);
        assert_eq!(need(&p, "/v1/agent/service/register"), Need::BodyService);
        assert_eq!(
            need(&Method::POST, "/v1/connect/ca/sign"),
            Need::BodyService
        );
        assert_eq!(
            need(&p, "/v1/agent/check/pass/c1"),
            Need::CheckOwner("c1".into())
        );
        assert_eq!(
            need(&p, "/v1/agent/service/deregister/w1"),
            Need::InstanceOwner("w1".into())
        );
        assert_eq!(
            need(&Method::DELETE, "/v1/connect/ca/certs/ab"),
            Need::Manage
        );
        assert_eq!(need(&g, "/v1/acl/tokens"), Need::Manage);
        assert_eq!(need(&p, "/v1/acl/bootstrap"), Need::Open);
        assert_eq!(need(&Method::POST, "/v1/operator/raft/join"), Need::Manage);
        assert_eq!(
            need(&g, "/v1/agent/connect/ca/leaf/web"),
            Need::Service("web".into())
        );
    }

    #[test]
    fn body_service_reads_consul_shapes() {
        assert_eq!(body_service(br#"{"Name":"web"}"#).as_deref(), Some("web"));
        assert_eq!(body_service(br#"{"name":"web"}"#).as_deref(), Some("web"));
        assert_eq!(
            body_service(br#"{"csr":"x","service":"api"}"#).as_deref(),
            Some("api")
        );
        assert_eq!(
            body_service(br#"{"Node":"n","Service":{"Service":"db"}}"#).as_deref(),
            Some("db")
        );
        assert_eq!(body_service(b"nope"), None);
    }
}
