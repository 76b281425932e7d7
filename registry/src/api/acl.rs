//! ACL tokens (DESIGN §9), Consul's way, on with `--acl-enabled`: `/v1/acl/bootstrap`,
//! `/v1/acl/token` (create, with chosen IDs or not), `/v1/acl/token/<accessor>` (read,
//! update, delete), `/v1/acl/token/<accessor>/clone`, `/v1/acl/token/self`,
//! `/v1/acl/tokens` (with `?policy=`, `?role=`, `?authmethod=`, `?servicename=`). Tokens link
//! policies and roles, carry service and node identities and templated policies, may be
//! local and may expire. Policies, roles and auth methods are in `acl_objects.rs` and
//! `acl_methods.rs`; what a token may do is decided in `acl_resolve.rs`. Every `/v1/acl/*`
//! route answers 401 while ACLs are off, as Consul does.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use lucid_core::acl::{Access, Resource};
use lucid_core::acl_request::{self, is_uuid, Link, TokenRequest};
use lucid_core::ErrorCode;
use rand::Rng;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::acl_resolve::{self as resolve, ANONYMOUS_ID};
use super::authz::{caller_of, denied, secret_of, Caller};
use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::ApiState;
use crate::store::acl::{AclKind, AclObject, AclToken};
use crate::types::{Command, CommandResult};

/// ACL settings of this node.
#[derive(Debug, Clone, Default)]
pub struct AclSettings {
    pub enabled: bool,
    /// `--acl-bootstrap-token`: the initial management secret.
    pub bootstrap_secret: Option<String>,
    /// Seals token secrets so they can be shown back (`--ca-key-secret-file`).
    pub sealer: Option<Arc<lucid_tls::seal::Sealer>>,
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

/// SHA-256 of a secret, lower-case hex. A UUID-shaped secret is hashed lower-cased: Consul
/// compares them without case, so `ABC...` and `abc...` must be one secret, not two tokens.
pub fn hash(secret: &str) -> String {
    if is_uuid(secret) {
        return lucid_tls::sha256_hex(secret.to_ascii_lowercase().as_bytes());
    }
    lucid_tls::sha256_hex(secret.as_bytes())
}

/// Consul's bounds on a token's lifetime (its `acl.token_min_expiration_ttl` / `max`).
const MIN_TTL: i64 = 60;
const MAX_TTL: i64 = 24 * 3600;

/// Every ACL route, 401 while ACLs are off.
pub(super) fn routes(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    use super::{acl_methods as methods, acl_objects as objects};
    Router::new()
        .route("/v1/acl/bootstrap", put(bootstrap))
        .route("/v1/acl/token", put(create))
        .route("/v1/acl/tokens", get(list))
        .route("/v1/acl/token/self", get(token_self))
        .route(
            "/v1/acl/token/{accessor}",
            get(read).put(update).delete(delete),
        )
        .route("/v1/acl/token/{accessor}/clone", put(clone))
        .route("/v1/acl/policies", get(objects::policies))
        .route("/v1/acl/policy", put(objects::policy_create))
        .route(
            "/v1/acl/policy/{id}",
            get(objects::policy_read)
                .put(objects::policy_update)
                .delete(objects::policy_delete),
        )
        .route("/v1/acl/policy/name/{name}", get(objects::policy_by_name))
        .route("/v1/acl/roles", get(objects::roles))
        .route("/v1/acl/role", put(objects::role_create))
        .route(
            "/v1/acl/role/{id}",
            get(objects::role_read)
                .put(objects::role_update)
                .delete(objects::role_delete),
        )
        .route("/v1/acl/role/name/{name}", get(objects::role_by_name))
        .route("/v1/acl/templated-policies", get(objects::templates))
        .route(
            "/v1/acl/templated-policy/name/{*name}",
            get(objects::template_read),
        )
        .route(
            "/v1/acl/templated-policy/preview/{*name}",
            post(objects::template_preview),
        )
        .route("/v1/acl/auth-methods", get(methods::list))
        .route("/v1/acl/auth-method", put(methods::create))
        .route(
            "/v1/acl/auth-method/{name}",
            get(methods::read)
                .put(methods::update)
                .delete(methods::delete),
        )
        .route("/v1/acl/binding-rules", get(methods::rules))
        .route("/v1/acl/binding-rule", put(methods::rule_create))
        .route(
            "/v1/acl/binding-rule/{id}",
            get(methods::rule_read)
                .put(methods::rule_update)
                .delete(methods::rule_delete),
        )
        .route("/v1/acl/login", post(methods::login))
        .route("/v1/acl/logout", post(methods::logout))
        .route_layer(middleware::from_fn_with_state(state, only_when_enabled))
}

async fn only_when_enabled(State(api): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    if api.acl.enabled {
        return next.run(req).await;
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::SecurityPolicyViolation,
        "ACL support disabled (start the registry with --acl-enabled)",
    )
    .into_response()
}

/// A write refused on the applied state: its reason, as a 400.
pub(super) fn refused(r: &CommandResult, otherwise: &str) -> ApiError {
    let why = r
        .detail
        .as_ref()
        .and_then(|d| d["Error"].as_str())
        .unwrap_or(otherwise);
    ApiError::bad_request(why)
}

/// A path ID that must be a UUID: anything else is a 400, not "not found" (Consul's UUID
/// index; clients rely on the difference).
pub(super) fn uuid_path(id: &str, what: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad_request(format!("Missing {what}")));
    }
    if !is_uuid(id) {
        return Err(ApiError::bad_request(format!(
            "{what} {id:?} is not a valid UUID"
        )));
    }
    Ok(())
}

/// Policy links by ID or name to IDs; each must exist.
pub(super) fn policy_ids(api: &ApiState, links: &[Link]) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for l in links {
        let id = match l {
            Link::Id(id) => resolve::policy(api, id)?.map(|p| p.id).ok_or_else(|| {
                ApiError::bad_request(format!("No such ACL policy with ID {id:?}"))
            })?,
            Link::Name(n) => resolve::policy_id(api, n)?.ok_or_else(|| {
                ApiError::bad_request(format!("No such ACL policy with name {n:?}"))
            })?,
        };
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&id)) {
            out.push(id);
        }
    }
    Ok(out)
}

fn role_ids(api: &ApiState, links: &[Link]) -> Result<Vec<String>, ApiError> {
    let st = &api.node.state;
    let mut out: Vec<String> = Vec::new();
    for l in links {
        let id = match l {
            Link::Id(id) => st
                .acl_role(id)?
                .map(|r| r.id)
                .ok_or_else(|| ApiError::bad_request(format!("No such ACL role with ID {id:?}")))?,
            Link::Name(n) => st.acl_role_id(n)?.ok_or_else(|| {
                ApiError::bad_request(format!("No such ACL role with name {n:?}"))
            })?,
        };
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&id)) {
            out.push(id);
        }
    }
    Ok(out)
}

/// `ExpirationTime` or now + `ExpirationTTL`, within Consul's bounds.
fn expiry(req: &TokenRequest, now: i64) -> Result<Option<i64>, ApiError> {
    let at = match (&req.expiration_time, req.expiration_ttl) {
        (None, None) => return Ok(None),
        (Some(t), _) => {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| ApiError::bad_request(format!("ExpirationTime {t:?}: {e}")))?
                .unix_timestamp()
        }
        (None, Some(d)) => now.saturating_add(d.as_secs() as i64),
    };
    let left = at - now;
    if !(MIN_TTL..=MAX_TTL).contains(&left) {
        return Err(ApiError::bad_request(format!(
            "Token expiration must be between 1m and 24h from now (got {left}s)"
        )));
    }
    Ok(Some(at))
}

/// The links, identities and flags of a token request, checked against the state.
fn token_from(api: &ApiState, req: &TokenRequest, base: AclToken) -> Result<AclToken, ApiError> {
    Ok(AclToken {
        description: req.description.clone(),
        policies: policy_ids(api, &req.policies)?,
        roles: role_ids(api, &req.roles)?,
        service_identities: req.service_identities.clone(),
        node_identities: req.node_identities.clone(),
        templated_policies: req.templated_policies.clone(),
        local: req.local,
        ..base
    })
}

/// Store `t` (new or replacing) and answer it as stored, its secret shown.
async fn store(api: &ApiState, t: AclToken, create: bool) -> Result<Response, ApiError> {
    let r = api
        .node
        .write(Command::AclSet {
            object: AclObject::Token(t.clone()),
            create,
        })
        .await?;
    if !r.ok {
        return Err(refused(&r, "the token was not stored"));
    }
    let stored = api
        .node
        .state
        .acl_token(&t.accessor_id)?
        .unwrap_or(AclToken {
            create_index: r.index,
            modify_index: r.index,
            ..t
        });
    Ok(Json(resolve::view(api, &stored, true)?).into_response())
}

fn body_token(body: &ApiBody, creating: bool) -> Result<TokenRequest, ApiError> {
    let v: Value = body.json()?;
    acl_request::token(&v, creating)
        .map_err(|e| ApiError::bad_request(format!("Token decoding failed: {e}")))
}

/// `PUT /v1/acl/bootstrap`: the first management token, once.
pub async fn bootstrap(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let secret = new_id();
    let accessor = new_id();
    let token = AclToken {
        secret_sealed: resolve::seal(&api, &accessor, &secret),
        accessor_id: accessor,
        secret_hash: hash(&secret),
        description: "Bootstrap Token (Global Management)".into(),
        policies: vec![lucid_core::acl::GLOBAL_MANAGEMENT_ID.into()],
        create_time: lucid_core::unix_now(),
        ..AclToken::default()
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
        modify_index: r.index,
        ..token
    };
    let mut view = resolve::view(&api, &stored, false)?;
    view.secret_id = Some(secret);
    Ok(Json(view).into_response())
}

/// `PUT /v1/acl/token`: a new token; `AccessorID` and `SecretID` may be chosen (UUIDs).
pub async fn create(State(api): State<Arc<ApiState>>, body: ApiBody) -> Result<Response, ApiError> {
    let req = body_token(&body, true)?;
    let accessor = req.accessor_id.clone().unwrap_or_else(new_id);
    let secret = req.secret_id.clone().unwrap_or_else(new_id);
    let now = lucid_core::unix_now();
    let base = AclToken {
        secret_sealed: resolve::seal(&api, &accessor, &secret),
        accessor_id: accessor,
        secret_hash: hash(&secret),
        create_time: now,
        expires_at: expiry(&req, now)?,
        ..AclToken::default()
    };
    let t = token_from(&api, &req, base)?;
    store(&api, t, true).await
}

/// The live token `accessor`, the anonymous one included; `None` for a valid UUID that
/// names no token or an expired one (an expired token is gone in all but storage).
fn existing(api: &ApiState, accessor: &str) -> Result<Option<AclToken>, ApiError> {
    uuid_path(accessor, "token AccessorID")?;
    if accessor.eq_ignore_ascii_case(ANONYMOUS_ID) {
        return resolve::anonymous(api).map(Some);
    }
    let now = lucid_core::unix_now();
    Ok(api
        .node
        .state
        .acl_token(accessor)?
        .filter(|t| !t.expired(now)))
}

/// `PUT /v1/acl/token/<accessor>`: replace what the token links and says. Its secret,
/// locality and expiry stay (Consul refuses to change them).
pub async fn update(
    State(api): State<Arc<ApiState>>,
    Path(accessor): Path<String>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let req = body_token(&body, false)?;
    if let Some(a) = &req.accessor_id {
        if !a.eq_ignore_ascii_case(&accessor) {
            return Err(ApiError::bad_request(
                "Token Accessor ID in URL and payload do not match",
            ));
        }
    }
    let old = existing(&api, &accessor)?
        .ok_or_else(|| ApiError::not_found(format!("Cannot find token {accessor:?}")))?;
    if let Some(s) = &req.secret_id {
        if hash(s) != old.secret_hash {
            return Err(ApiError::bad_request(
                "Changing a tokens SecretID is not permitted",
            ));
        }
    }
    if req.local != old.local {
        return Err(ApiError::bad_request(format!(
            "cannot toggle local mode of {accessor}"
        )));
    }
    if (req.expiration_time.is_some() || req.expiration_ttl.is_some())
        && expiry(&req, lucid_core::unix_now()).ok().flatten() != old.expires_at
    {
        return Err(ApiError::bad_request(format!(
            "Cannot change expiration time of {accessor}"
        )));
    }
    // The anonymous token is stored the first time an operator gives it something.
    let first =
        old.accessor_id == ANONYMOUS_ID && api.node.state.acl_token(ANONYMOUS_ID)?.is_none();
    let t = token_from(&api, &req, old)?;
    store(&api, t, first).await
}

/// `PUT /v1/acl/token/<accessor>/clone` `{"Description"}`: a new token with the same links.
pub async fn clone(
    State(api): State<Arc<ApiState>>,
    Path(accessor): Path<String>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let old = existing(&api, &accessor)?.ok_or_else(|| denied("ACL not found"))?;
    if !old.auth_method.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot clone a token created from an auth method",
        ));
    }
    let description = if body.0.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: Value = body.json()?;
        let o = v
            .as_object()
            .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
        o.iter()
            .find(|(k, _)| lucid_core::fold_key(k) == "description")
            .and_then(|(_, d)| d.as_str().map(str::to_owned))
    };
    let (accessor, secret) = (new_id(), new_id());
    let t = AclToken {
        secret_sealed: resolve::seal(&api, &accessor, &secret),
        accessor_id: accessor,
        secret_hash: hash(&secret),
        description: description.unwrap_or_else(|| old.description.clone()),
        create_time: lucid_core::unix_now(),
        create_index: 0,
        modify_index: 0,
        ..old
    };
    store(&api, t, true).await
}

fn may_see_secrets(caller: &Caller) -> bool {
    caller
        .authorizer()
        .allowed(Resource::Acl, "", Access::Write)
}

/// `GET /v1/acl/tokens`: every live token (the anonymous one too), filtered by at most one
/// of `?policy=`, `?role=`, `?authmethod=`, `?servicename=` (direct links only).
pub async fn list(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    req: Incoming,
) -> Result<Response, ApiError> {
    let p = &req.params;
    let filters: Vec<(&str, &str)> = ["policy", "role", "authmethod", "servicename"]
        .into_iter()
        .filter_map(|k| p.get(k).filter(|v| !v.is_empty()).map(|v| (k, v)))
        .collect();
    if filters.len() > 1 {
        return Err(ApiError::bad_request(
            "can only filter by one of policy, role, serviceName, or methodName at a time",
        ));
    }
    let now = lucid_core::unix_now();
    let mut tokens = api.node.state.acl_tokens()?;
    if !tokens.iter().any(|t| t.accessor_id == ANONYMOUS_ID) {
        tokens.push(resolve::anonymous(&api)?);
    }
    tokens.retain(|t| !t.expired(now));
    if let Some((k, v)) = filters.first() {
        tokens.retain(|t| match *k {
            "policy" => t.links_policy(v),
            "role" => t.roles.iter().any(|r| r.eq_ignore_ascii_case(v)),
            "authmethod" => t.auth_method == *v,
            _ => t.service_identities.iter().any(|s| s.service_name == *v),
        });
    }
    tokens.sort_by_key(|t| t.accessor_id.to_ascii_lowercase());
    let show = may_see_secrets(&caller);
    let out = tokens
        .iter()
        .map(|t| resolve::view(&api, t, show))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(out).into_response())
}

/// `GET /v1/acl/token/<accessor>`: a token, its secret shown to who may write ACLs. A valid
/// UUID that names no token is `403 ACL not found`, as Consul answers.
pub async fn read(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(accessor): Path<String>,
) -> Result<Response, ApiError> {
    let t = existing(&api, &accessor)?
        .filter(|t| !t.expired(lucid_core::unix_now()))
        .ok_or_else(|| denied("ACL not found"))?;
    Ok(Json(resolve::view(&api, &t, may_see_secrets(&caller))?).into_response())
}

/// `DELETE /v1/acl/token/<accessor>`: `true`, also when there was none. The anonymous token
/// and the caller's own token cannot be deleted.
pub async fn delete(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(accessor): Path<String>,
) -> Result<Response, ApiError> {
    uuid_path(&accessor, "token AccessorID")?;
    if accessor.eq_ignore_ascii_case(ANONYMOUS_ID) {
        return Err(ApiError::bad_request(
            "Delete operation not permitted on the anonymous token",
        ));
    }
    if caller
        .accessor()
        .is_some_and(|a| a.eq_ignore_ascii_case(&accessor))
    {
        return Err(ApiError::bad_request(
            "Deletion of the request's authorization token is not permitted",
        ));
    }
    api.node
        .write(Command::AclDelete {
            kind: AclKind::Token,
            id: accessor,
        })
        .await?;
    Ok(Json(true).into_response())
}

/// `GET /v1/acl/token/self`: the token whose secret the request carries, secret included.
pub async fn token_self(
    State(api): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = secret_of(&headers).ok_or_else(|| denied("ACL not found"))?;
    // Resolving the caller checks the token exists and is live.
    caller_of(&api, &headers)?;
    let t = resolve::by_secret(&api, &secret)?.ok_or_else(|| denied("ACL not found"))?;
    let mut view = resolve::view(&api, &t, false)?;
    view.secret_id = Some(secret);
    Ok(Json(view).into_response())
}

/// While this node leads, make sure the `--acl-bootstrap-token` secret is a stored
/// management token: Consul's initial management token.
pub(crate) async fn ensure_bootstrap(api: Arc<ApiState>, stop: CancellationToken) {
    let Some(secret) = api.acl.bootstrap_secret.clone().filter(|_| api.acl.enabled) else {
        return;
    };
    let mut metrics = api.node.raft.metrics();
    loop {
        if api.node.is_leader()
            && matches!(api.node.state.acl_token_by_hash(&hash(&secret)), Ok(None))
        {
            let token = resolve::initial_management(&hash(&secret));
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
            _ = stop.cancelled() => return,
        }
    }
}
