//! Who is calling, and what the route lets them do (DESIGN §9).
//!
//! The layer [`enforce`] resolves the token once into a [`Caller`] and refuses what the
//! method and route alone decide (anonymous, read, management). Routes that act for one
//! service are [`Need::Scoped`]: the layer only admits management and service tokens there,
//! and the *handler* authorises with [`Caller::act_for`] on the value it parsed and will act
//! on — the decoded path id, the parsed registration's name — so the permission check and
//! the action can never read the request by different rules.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lucid_core::ErrorCode;

use super::error::ApiError;
use super::limits::Key;
use super::ApiState;
use crate::store::acl::TokenKind;

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No token (or ACLs on and none sent).
    Anonymous,
    /// A management token, or any request while ACLs are off.
    Management,
    ReadOnly,
    /// A token with one service identity.
    Service(String),
}

pub(crate) fn denied(why: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::SecurityPolicyViolation,
        format!("permission denied: {}", why.into()),
    )
}

impl Caller {
    /// May this caller act for `service` (register, deregister, update checks, sign)?
    pub fn act_for(&self, service: &str) -> Result<(), ApiError> {
        match self {
            Caller::Management => Ok(()),
            Caller::Service(own) if own == service => Ok(()),
            Caller::Service(_) => Err(denied(format!(
                "this token may not act for service {service:?}"
            ))),
            Caller::ReadOnly => Err(denied("a read-only token cannot write")),
            Caller::Anonymous => Err(denied("this endpoint needs an ACL token")),
        }
    }

    pub fn is_management(&self) -> bool {
        *self == Caller::Management
    }

    /// May see cluster topology (peer addresses)? Any valid token may.
    pub fn is_known(&self) -> bool {
        *self != Caller::Anonymous
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // The layer always inserts one; a route outside it is treated as anonymous.
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous))
    }
}

pub(crate) fn secret_of(headers: &HeaderMap) -> Option<String> {
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

/// What a route needs before its handler runs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Need {
    Open,
    Read,
    Manage,
    /// Management or a service token; the handler decides which service it acts for.
    Scoped,
}

/// Decided on the method and the matched route shape only; anything not listed needs
/// management.
pub(crate) fn need(method: &Method, path: &str) -> Need {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let read = *method == Method::GET || *method == Method::HEAD;
    match (read, seg.as_slice()) {
        // As in Consul, status is not ACL-protected (load balancers and orchestration read
        // it); `/status` hides peer addresses from anonymous callers.
        (_, ["health"]) | (true, ["status"]) | (true, ["v1", "status", _]) => Need::Open,
        (false, ["v1", "acl", "bootstrap"]) => Need::Open,
        (true, ["v1", "acl", "token", "self"]) => Need::Read,
        (true, ["v1", "acl", "tokens"])
        | (true, ["v1", "acl", "token", _])
        | (true, ["certificates"])
        | (true, ["v1", "snapshot"]) => Need::Manage,
        (true, ["v1", "agent", "connect", "ca", "leaf", _]) => Need::Scoped,
        (true, _) => Need::Read,
        (false, ["v1", "agent", "service", "register"])
        | (false, ["v1", "catalog", "register"])
        | (false, ["services", "register"])
        | (false, ["v1", "connect", "ca", "sign"])
        | (false, ["v1", "agent", "service", "deregister" | "maintenance", _])
        | (false, ["v1", "agent", "check", "pass" | "warn" | "fail" | "update", _]) => Need::Scoped,
        (false, ["certificates", _]) if *method == Method::POST => Need::Scoped,
        (false, ["services", _]) if *method == Method::DELETE => Need::Scoped,
        (false, ["v1", "agent", "connect", "authorize"]) => Need::Read,
        // Consul's POST form only carries compile options: still a read.
        (false, ["v1", "discovery-chain", _]) if *method == Method::POST => Need::Read,
        _ => Need::Manage,
    }
}

fn token_for(api: &ApiState, secret: &str) -> Result<Option<TokenKind>, ApiError> {
    let hashed = super::acl::hash(secret);
    if let Some(boot) = &api.acl.bootstrap_secret {
        if lucid_tls::constant_time_eq(super::acl::hash(boot).as_bytes(), hashed.as_bytes()) {
            return Ok(Some(TokenKind::Management));
        }
    }
    let now = lucid_core::unix_now();
    Ok(api
        .node
        .state
        .acl_token_by_hash(&hashed)?
        .filter(|t| !t.expired(now))
        .map(|t| t.kind))
}

/// Resolve the caller of a request (used by the layer, and by `/v1/acl/token/self`).
pub(crate) fn caller_of(api: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if !api.acl.enabled {
        return Ok(Caller::Management);
    }
    let Some(secret) = secret_of(headers) else {
        return Ok(Caller::Anonymous);
    };
    Ok(match token_for(api, &secret)? {
        None => return Err(denied("ACL not found")),
        Some(TokenKind::Management) => Caller::Management,
        Some(TokenKind::ReadOnly) => Caller::ReadOnly,
        Some(TokenKind::Service { name }) => Caller::Service(name),
    })
}

/// The layer: resolve the caller, refuse what the route alone decides, and hand the caller
/// to the handler.
pub async fn enforce(State(api): State<Arc<ApiState>>, mut req: Request, next: Next) -> Response {
    let need = need(req.method(), req.uri().path());
    let caller = match caller_of(&api, req.headers()) {
        Ok(c) => c,
        // An unknown token on an open route (a health probe with a stale token) is anonymous.
        Err(_) if need == Need::Open => Caller::Anonymous,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = admit(&caller, need) {
        return e.into_response();
    }
    if signs(req.method(), req.uri().path()) {
        if let Err(e) = api
            .signing
            .check(&limit_key(req.headers(), req.extensions()))
        {
            return e.into_response();
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Who per-caller limits count against: the token (its hash), else the client address.
/// Computed only by the routes that limit, so ordinary requests hash no secret twice.
pub(crate) fn limit_key(headers: &HeaderMap, ext: &axum::http::Extensions) -> Key {
    match secret_of(headers) {
        Some(s) => Key::Token(super::acl::hash(&s)),
        None => Key::Ip(
            ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip()),
        ),
    }
}

/// The routes that have the CA sign something.
fn signs(method: &Method, path: &str) -> bool {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        (method.as_str(), seg.as_slice()),
        ("POST", ["v1", "connect", "ca", "sign"])
            | ("GET", ["v1", "agent", "connect", "ca", "leaf", _])
            | ("POST", ["certificates", _])
    )
}

fn admit(caller: &Caller, need: Need) -> Result<(), ApiError> {
    match (need, caller) {
        (Need::Open, _) | (_, Caller::Management) => Ok(()),
        (_, Caller::Anonymous) => Err(denied("this endpoint needs an ACL token")),
        (Need::Read, _) => Ok(()),
        (Need::Manage, _) => Err(denied("this needs a management token")),
        (Need::Scoped, Caller::ReadOnly) => Err(denied("a read-only token cannot write")),
        (Need::Scoped, Caller::Service(_)) => Ok(()),
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
        assert_eq!(need(&p, "/v1/agent/service/register"), Need::Scoped);
        assert_eq!(need(&Method::POST, "/v1/connect/ca/sign"), Need::Scoped);
        assert_eq!(need(&p, "/v1/agent/check/pass/c1"), Need::Scoped);
        assert_eq!(need(&p, "/v1/agent/check/register"), Need::Manage);
        assert_eq!(need(&p, "/v1/agent/service/deregister/w1"), Need::Scoped);
        assert_eq!(
            need(&Method::DELETE, "/v1/connect/ca/certs/ab"),
            Need::Manage
        );
        assert_eq!(need(&Method::DELETE, "/v1/acl/token/x"), Need::Manage);
        assert_eq!(need(&g, "/v1/acl/tokens"), Need::Manage);
        assert_eq!(need(&p, "/v1/acl/bootstrap"), Need::Open);
        assert_eq!(need(&Method::POST, "/v1/operator/raft/join"), Need::Manage);
        assert_eq!(need(&g, "/v1/agent/connect/ca/leaf/web"), Need::Scoped);
        assert_eq!(need(&Method::POST, "/v1/discovery-chain/web"), Need::Read);
        assert_eq!(need(&p, "/v1/connect/ca/configuration"), Need::Manage);
        assert_eq!(need(&p, "/v1/event/fire/deploy"), Need::Manage);
    }

    #[test]
    fn scoped_callers_act_only_for_their_service() {
        let web = Caller::Service("web".into());
        assert!(web.act_for("web").is_ok());
        assert!(web.act_for("db").is_err());
        assert!(Caller::Management.act_for("db").is_ok());
        assert!(Caller::ReadOnly.act_for("web").is_err());
        assert!(admit(&Caller::ReadOnly, Need::Scoped).is_err());
        assert!(admit(&Caller::Anonymous, Need::Read).is_err());
        assert!(admit(&web, Need::Manage).is_err());
        assert!(admit(&web, Need::Scoped).is_ok());
    }
}
