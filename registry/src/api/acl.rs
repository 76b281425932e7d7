//! ACL tokens (DESIGN §9), on with `--acl-enabled`: `/v1/acl/bootstrap`, `/v1/acl/token`
//! (create; read and delete by accessor id), `/v1/acl/tokens`, `/v1/acl/token/self`. Tokens
//! may expire (Consul's `ExpirationTime` / `ExpirationTTL`). Who may call what is decided in
//! [`super::authz`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::wire::acl::{PolicyLink, ServiceIdentity, TokenView};
use rand::Rng;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::authz::{denied, secret_of};
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

/// Consul's bounds on `ExpirationTTL` (its `acl.token_min_expiration_ttl` / `max` defaults).
const MIN_TTL: i64 = 60;
const MAX_TTL: i64 = 24 * 3600;

/// `ExpirationTime` (RFC 3339) or `ExpirationTTL` (a duration), at most one, to unix seconds.
fn expiry(v: &Value, now: i64) -> Result<Option<i64>, ApiError> {
    let at = v["ExpirationTime"].as_str();
    let ttl = v["ExpirationTTL"].as_str();
    let at = match (at, ttl) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Expiration TTL and Expiration Time cannot both be set",
            ))
        }
        (Some(t), None) => {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| ApiError::bad_request(format!("ExpirationTime {t:?}: {e}")))?
                .unix_timestamp()
        }
        (None, Some(d)) => {
            let d = lucid_core::duration::parse_duration(d)
                .map_err(|e| ApiError::bad_request(format!("ExpirationTTL {d:?}: {e}")))?;
            now.saturating_add(d.as_secs() as i64)
        }
    };
    let left = at - now;
    if !(MIN_TTL..=MAX_TTL).contains(&left) {
        return Err(ApiError::bad_request(format!(
            "Token expiration must be between 1m and 24h from now (got {left}s)"
        )));
    }
    Ok(Some(at))
}

fn token_json(t: &AclToken, secret: Option<&str>) -> TokenView {
    let policy = |name: &str| {
        vec![PolicyLink {
            name: name.to_owned(),
        }]
    };
    let (policies, service_identities) = match &t.kind {
        TokenKind::Management => (policy("global-management"), Vec::new()),
        TokenKind::ReadOnly => (policy("read-only"), Vec::new()),
        TokenKind::Service { name } => (
            Vec::new(),
            vec![ServiceIdentity {
                service_name: name.clone(),
            }],
        ),
    };
    TokenView {
        accessor_id: t.accessor_id.clone(),
        create_index: t.create_index,
        description: t.description.clone(),
        expiration_time: t.expires_at.map(super::ca::rfc3339),
        policies,
        secret_id: secret.map(str::to_owned),
        service_identities,
    }
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
        expires_at: None,
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
        expires_at: expiry(&v, lucid_core::unix_now())?,
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

/// `GET /v1/acl/token/<accessor>` (management).
pub async fn read(
    State(api): State<Arc<ApiState>>,
    Path(accessor): Path<String>,
) -> Result<Response, ApiError> {
    match api.node.state.acl_token(&accessor)? {
        Some(t) => Ok(Json(token_json(&t, None)).into_response()),
        None => Err(ApiError::not_found(format!(
            "no token with AccessorID {accessor:?}"
        ))),
    }
}

/// `DELETE /v1/acl/token/<accessor>` (management): `true`, as Consul answers.
pub async fn delete(
    State(api): State<Arc<ApiState>>,
    Path(accessor): Path<String>,
) -> Result<Response, ApiError> {
    if !api.acl.enabled {
        return Err(acl_off());
    }
    let r = api
        .node
        .write(Command::AclTokenDelete {
            accessor_id: accessor.clone(),
        })
        .await?;
    if !r.ok {
        return Err(ApiError::not_found(format!(
            "no token with AccessorID {accessor:?}"
        )));
    }
    Ok(Json(true).into_response())
}

/// `GET /v1/acl/token/self`.
pub async fn token_self(
    State(api): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = secret_of(&headers).ok_or_else(|| denied("no token"))?;
    let now = lucid_core::unix_now();
    match api
        .node
        .state
        .acl_token_by_hash(&hash(&secret))?
        .filter(|t| !t.expired(now))
    {
        Some(t) => Ok(Json(token_json(&t, None)).into_response()),
        None if api.acl.bootstrap_secret.as_deref() == Some(secret.as_str()) => {
            Ok(Json(json!({"Description": "--acl-bootstrap-token", "Policies": [{"Name": "global-management"}]})).into_response())
        }
        None => Err(denied("ACL not found")),
    }
}

/// While this node leads, make sure the `--acl-bootstrap-token` secret is a stored
/// management token.
pub(crate) async fn ensure_bootstrap(api: Arc<ApiState>, stop: CancellationToken) {
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
                expires_at: None,
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
            _ = stop.cancelled() => return,
        }
    }
}
