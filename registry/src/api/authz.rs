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
use lucid_core::acl::{Access, Authorizer, Resource};
use lucid_core::ErrorCode;

use super::agent::NODE;
use super::error::ApiError;
use super::limits::Key;
use super::ApiState;

/// The caller of one request: what its token may do.
#[derive(Clone)]
pub struct Caller {
    authz: Arc<Authorizer>,
    /// The token's accessor; `None` while ACLs are off.
    accessor: Option<String>,
    anonymous: bool,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("accessor", &self.accessor)
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

pub(crate) fn denied(why: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::SecurityPolicyViolation,
        format!("permission denied: {}", why.into()),
    )
}

impl Caller {
    /// Any request while ACLs are off.
    pub fn unrestricted() -> Caller {
        Caller {
            authz: Arc::new(Authorizer::manage_all()),
            accessor: None,
            anonymous: false,
        }
    }

    /// A request the layer did not see: nothing allowed.
    fn nobody() -> Caller {
        Caller {
            authz: Arc::new(Authorizer::new(&[], lucid_core::acl::Default::Deny)),
            accessor: None,
            anonymous: true,
        }
    }

    /// May this caller do `access` on `resource` named `segment`? The refusal names the
    /// permission missing, as Consul's does.
    pub fn allows(
        &self,
        resource: Resource,
        segment: &str,
        access: Access,
    ) -> Result<(), ApiError> {
        if self.authz.allowed(resource, segment, access) {
            return Ok(());
        }
        let who = match (&self.accessor, self.anonymous) {
            (_, true) | (None, _) => "the anonymous token".to_owned(),
            (Some(a), false) => format!("token with AccessorID '{a}'"),
        };
        let on = if segment.is_empty() {
            String::new()
        } else {
            format!(" on {segment:?}")
        };
        Err(denied(format!(
            "{who} lacks permission '{}:{}'{on}",
            resource.as_str(),
            access.as_str()
        )))
    }

    /// May this caller act for `service` (register, deregister, update checks, sign)?
    pub fn act_for(&self, service: &str) -> Result<(), ApiError> {
        self.allows(Resource::Service, service, Access::Write)
    }

    /// May do anything: ACL write is the power to mint any token.
    pub fn is_management(&self) -> bool {
        self.authz.allowed(Resource::Acl, "", Access::Write)
    }

    /// May see cluster topology (peer addresses)? Any valid token may.
    pub fn is_known(&self) -> bool {
        !self.anonymous
    }

    /// The token's accessor (`None` while ACLs are off).
    pub fn accessor(&self) -> Option<&str> {
        self.accessor.as_deref()
    }

    pub fn authorizer(&self) -> &Authorizer {
        &self.authz
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // The layer always inserts one; a route outside it may do nothing.
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::nobody))
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
    /// Anyone, even with an unknown token (status, health, bootstrap, login).
    Open,
    /// The handler decides, on the value it parsed and will act on (a service name, a key,
    /// an event name): one parser per request.
    Scoped,
    /// One rule decided here: a resource without a name (acl, operator, keyring), or named by
    /// the route alone (this agent's node).
    Rule(Resource, Access),
    /// Reads of the catalog as a whole: every service readable.
    ReadAll,
}

/// Decided on the method and the matched route shape only; anything not listed needs
/// `acl = "write"` (management).
pub(crate) fn need(method: &Method, path: &str) -> Need {
    use Access::{Read, Write};
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let read = *method == Method::GET || *method == Method::HEAD;
    let rw = if read { Read } else { Write };
    match (read, seg.as_slice()) {
        // As in Consul, status is not ACL-protected (load balancers and orchestration read
        // it); `/status` hides peer addresses from anonymous callers.
        (_, ["health"]) | (true, ["status"]) | (true, ["v1", "status", _]) => Need::Open,
        (false, ["v1", "acl", "bootstrap" | "login" | "logout"]) => Need::Open,
        // The secret itself is the credential.
        (true, ["v1", "acl", "token", "self"]) => Need::Scoped,
        (false, ["v1", "acl", "templated-policy", "preview", ..]) => {
            Need::Rule(Resource::Acl, Read)
        }
        (_, ["v1", "acl", ..]) => Need::Rule(Resource::Acl, rw),
        (_, ["v1", "snapshot"]) | (true, ["certificates"]) => Need::Rule(Resource::Acl, Write),
        (_, ["v1", "operator", "keyring"]) => Need::Rule(Resource::Keyring, rw),
        (_, ["v1", "operator", ..]) | (_, ["v1", "connect", "ca", "configuration"]) => {
            Need::Rule(Resource::Operator, rw)
        }
        (false, ["v1", "agent", "force-leave", ..]) => Need::Rule(Resource::Operator, Write),
        (true, ["v1", "agent", "self" | "metrics" | "monitor" | "members" | "host"]) => {
            Need::Rule(Resource::Agent, Read)
        }
        (false, ["v1", "agent", "reload" | "leave" | "token", ..]) => {
            Need::Rule(Resource::Agent, Write)
        }
        (false, ["v1", "agent", "maintenance"]) => Need::Rule(Resource::Node, Write),
        (_, ["v1", "session", ..]) => Need::Rule(Resource::Session, rw),
        // Filtered per event, per service, per check: the handler reads what it lists.
        (true, ["v1", "event", "list"])
        | (true, ["v1", "health", "service" | "checks" | "connect", _])
        | (true, ["v1", "catalog", "service" | "connect", _]) => Need::Scoped,
        (_, ["v1", "kv", ..]) | (false, ["v1", "txn"]) | (false, ["v1", "event", "fire", _]) => {
            Need::Scoped
        }
        (true, ["v1", "agent", "connect", "ca", "leaf", _]) => Need::Scoped,
        // Decided per query (its name) and per answer (the service it reads).
        (_, ["v1", "query", ..]) => Need::Scoped,
        (true, _) => Need::ReadAll,
        (false, ["v1", "agent", "service", "register"])
        | (false, ["v1", "catalog", "register" | "deregister"])
        | (false, ["v1", "agent", "check", "register" | "deregister", ..])
        | (false, ["v1", "coordinate", "update"])
        | (false, ["services", "register"])
        | (false, ["v1", "connect", "ca", "sign"])
        | (false, ["v1", "agent", "service", "deregister" | "maintenance", _])
        | (false, ["v1", "agent", "check", "pass" | "warn" | "fail" | "update", _]) => Need::Scoped,
        (false, ["certificates", _]) if *method == Method::POST => Need::Scoped,
        (false, ["services", _]) if *method == Method::DELETE => Need::Scoped,
        (false, ["v1", "agent", "connect", "authorize"]) => Need::ReadAll,
        // Consul's POST form only carries compile options: still a read.
        (false, ["v1", "discovery-chain", _]) if *method == Method::POST => Need::ReadAll,
        (false, ["v1", "connect", "intentions", ..]) | (false, ["v1", "connect", "policy"]) => {
            Need::Rule(Resource::Intention, Write)
        }
        _ => Need::Rule(Resource::Acl, Write),
    }
}

/// Resolve the caller of a request (used by the layer, and by `/v1/acl/token/self`).
pub(crate) fn caller_of(api: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    caller_with(api, secret_of(headers).as_deref())
}

/// The caller a secret makes (`None`: the anonymous token); unrestricted while ACLs are off.
fn caller_with(api: &ApiState, secret: Option<&str>) -> Result<Caller, ApiError> {
    if !api.acl.enabled {
        return Ok(Caller::unrestricted());
    }
    let token = match secret {
        None => super::acl_resolve::anonymous(api)?,
        Some(secret) => {
            super::acl_resolve::by_secret(api, secret)?.ok_or_else(|| denied("ACL not found"))?
        }
    };
    caller_for(api, token)
}

/// The caller a resolved token makes.
pub(crate) fn caller_for(
    api: &ApiState,
    token: crate::store::acl::AclToken,
) -> Result<Caller, ApiError> {
    let anonymous = token
        .accessor_id
        .eq_ignore_ascii_case(super::acl_resolve::ANONYMOUS_ID);
    Ok(Caller {
        authz: Arc::new(super::acl_resolve::authorizer(api, &token)?),
        accessor: Some(token.accessor_id),
        anonymous,
    })
}

/// The layer: resolve the caller, refuse what the route alone decides, and hand the caller
/// to the handler.
pub async fn enforce(State(api): State<Arc<ApiState>>, mut req: Request, next: Next) -> Response {
    let need = need(req.method(), req.uri().path());
    let caller = match caller_of(&api, req.headers()) {
        Ok(c) => c,
        // An unknown token on an open route (a health probe with a stale token) is anonymous.
        Err(_) if need == Need::Open => Caller::nobody(),
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
    match need {
        Need::Open | Need::Scoped => Ok(()),
        // Named by the route alone: this agent's node; the rest have no name.
        Need::Rule(r, a) => match r {
            Resource::Agent | Resource::Node | Resource::Session => caller.allows(r, NODE, a),
            _ => caller.allows(r, "", a),
        },
        Need::ReadAll if caller.authz.read_all(Resource::Service) => Ok(()),
        Need::ReadAll => Err(denied(
            "reading the catalog needs service:read on every service (service_prefix \"\")",
        )),
    }
}

#[cfg(test)]
mod tests {
    use lucid_core::acl::{parse, service_identity_rules, Default};

    use super::*;

    fn caller(rules: &[&str]) -> Caller {
        let policies: Vec<_> = rules.iter().map(|r| parse(r).unwrap()).collect();
        Caller {
            authz: Arc::new(Authorizer::new(&policies, Default::Deny)),
            accessor: Some("acc".into()),
            anonymous: false,
        }
    }

    #[test]
    fn routes_need_what_design_says() {
        use Access::{Read, Write};
        let g = Method::GET;
        let p = Method::PUT;
        assert_eq!(need(&g, "/health"), Need::Open);
        assert_eq!(need(&g, "/metrics"), Need::ReadAll);
        assert_eq!(need(&g, "/status"), Need::Open);
        assert_eq!(need(&g, "/v1/status/leader"), Need::Open);
        assert_eq!(need(&g, "/v1/kv/a"), Need::Scoped);
        assert_eq!(need(&p, "/v1/kv/a"), Need::Scoped);
        assert_eq!(need(&p, "/v1/txn"), Need::Scoped);
        assert_eq!(need(&p, "/v1/agent/service/register"), Need::Scoped);
        assert_eq!(need(&Method::POST, "/v1/connect/ca/sign"), Need::Scoped);
        assert_eq!(need(&p, "/v1/agent/check/pass/c1"), Need::Scoped);
        assert_eq!(need(&p, "/v1/agent/check/register"), Need::Scoped);
        assert_eq!(need(&p, "/v1/agent/check/deregister/c1"), Need::Scoped);
        assert_eq!(need(&p, "/v1/catalog/deregister"), Need::Scoped);
        assert_eq!(need(&p, "/v1/coordinate/update"), Need::Scoped);
        assert_eq!(need(&p, "/v1/agent/service/deregister/w1"), Need::Scoped);
        assert_eq!(
            need(&Method::DELETE, "/v1/connect/ca/certs/ab"),
            Need::Rule(Resource::Acl, Write)
        );
        assert_eq!(
            need(&Method::DELETE, "/v1/acl/token/x"),
            Need::Rule(Resource::Acl, Write)
        );
        assert_eq!(need(&g, "/v1/acl/tokens"), Need::Rule(Resource::Acl, Read));
        assert_eq!(need(&g, "/v1/acl/token/self"), Need::Scoped);
        assert_eq!(need(&p, "/v1/acl/bootstrap"), Need::Open);
        assert_eq!(need(&Method::POST, "/v1/acl/login"), Need::Open);
        assert_eq!(need(&g, "/v1/snapshot"), Need::Rule(Resource::Acl, Write));
        assert_eq!(
            need(&Method::POST, "/v1/operator/raft/join"),
            Need::Rule(Resource::Operator, Write)
        );
        assert_eq!(
            need(&g, "/v1/operator/raft/configuration"),
            Need::Rule(Resource::Operator, Read)
        );
        assert_eq!(
            need(&Method::DELETE, "/v1/operator/keyring"),
            Need::Rule(Resource::Keyring, Write)
        );
        assert_eq!(need(&g, "/v1/agent/connect/ca/leaf/web"), Need::Scoped);
        assert_eq!(
            need(&Method::POST, "/v1/discovery-chain/web"),
            Need::ReadAll
        );
        assert_eq!(
            need(&p, "/v1/connect/ca/configuration"),
            Need::Rule(Resource::Operator, Write)
        );
        assert_eq!(need(&p, "/v1/event/fire/deploy"), Need::Scoped);
        assert_eq!(need(&g, "/v1/event/list"), Need::Scoped);
        assert_eq!(need(&g, "/v1/health/service/web"), Need::Scoped);
        assert_eq!(need(&g, "/v1/catalog/services"), Need::ReadAll);
        assert_eq!(
            need(&p, "/v1/session/create"),
            Need::Rule(Resource::Session, Write)
        );
        assert_eq!(
            need(&p, "/v1/agent/reload"),
            Need::Rule(Resource::Agent, Write)
        );
        assert_eq!(need(&p, "/v1/config"), Need::Rule(Resource::Acl, Write));
        assert_eq!(need(&Method::POST, "/v1/query"), Need::Scoped);
        assert_eq!(need(&g, "/v1/query/q/execute"), Need::Scoped);
        assert_eq!(need(&Method::DELETE, "/v1/query/q"), Need::Scoped);
    }

    #[test]
    fn callers_are_held_to_their_rules() {
        let web = caller(&[&service_identity_rules("web")]);
        assert!(web.act_for("web").is_ok());
        assert!(web.act_for("web-sidecar-proxy").is_ok());
        let e = web.act_for("db").unwrap_err();
        assert!(
            e.message.contains("service:write") && e.message.contains("db"),
            "{}",
            e.message
        );
        assert!(!web.is_management());
        assert!(admit(&web, Need::ReadAll).is_ok());
        assert!(admit(&web, Need::Rule(Resource::Operator, Access::Read)).is_err());

        let ro = caller(&[lucid_core::acl::global_read_only_rules()]);
        assert!(ro.act_for("web").is_err());
        assert!(admit(&ro, Need::ReadAll).is_ok());
        assert!(admit(&ro, Need::Rule(Resource::Agent, Access::Read)).is_ok());
        assert!(admit(&ro, Need::Rule(Resource::Agent, Access::Write)).is_err());

        let admin = caller(&[lucid_core::acl::global_management_rules()]);
        assert!(admin.is_management() && admin.act_for("db").is_ok());

        let kv = caller(&["key_prefix \"app/\" { policy = \"write\" }"]);
        assert!(admit(&kv, Need::ReadAll).is_err());
        assert!(kv.allows(Resource::Key, "app/x", Access::Write).is_ok());
        assert!(kv.allows(Resource::Key, "other", Access::Read).is_err());

        assert!(admit(&Caller::nobody(), Need::ReadAll).is_err());
        assert!(admit(&Caller::nobody(), Need::Open).is_ok());
        assert!(Caller::unrestricted().is_management());
    }
}
