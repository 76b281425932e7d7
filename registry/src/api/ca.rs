//! The mesh CA over HTTP: Consul's roots and agent leaf endpoints, CSR signing, revocation
//! (one serial, or every leaf of a service) with a blocking-capable revoked list, and the Lucid
//! controller's `/certificates` endpoints.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::wire::ca::{
    AgentLeaf, CaCert, CaRoot, CaRoots, CertRecord, IssueRequest, Revoked, RevokedService,
    SignRequest, SignedLeaf,
};
use lucid_core::ErrorCode;
use lucid_tls::{inspect_pem, Leaf, Signer, SpiffeId, TRUST_DOMAIN};

use super::authz::Caller;
use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::read::{self, Blocking};
use super::ApiState;
use crate::ca::{now, CaOpError};
use crate::store::ca::IssuedCert;
use crate::types::Command;

/// The plane a leaf gets when nobody says otherwise.
const DEFAULT_PLANE: &str = "default";

impl From<CaOpError> for ApiError {
    fn from(e: CaOpError) -> Self {
        match e {
            CaOpError::NotReady | CaOpError::NoKey(_) => ApiError::unavailable(e.to_string()),
            CaOpError::Csr(m) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MtlsConfigFailed,
                format!("invalid CSR: {m}"),
            ),
            CaOpError::Sign(m) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::MtlsConfigFailed,
                m,
            ),
            CaOpError::Write(w) => w.into(),
            CaOpError::State(s) => s.into(),
        }
    }
}

/// Unix seconds as RFC 3339 (Consul's time format), `""` when out of range.
pub(super) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The identity to sign for: valid names, and once a policy has defined the planes, a plane
/// that exists and is the service's own (when the plane map lists the service).
fn checked_identity(api: &ApiState, service: &str, plane: &str) -> Result<SpiffeId, ApiError> {
    let id = identity(service, plane)?;
    let (_, _, planes) = api.node.state.intentions()?;
    if planes.is_empty() {
        return Ok(id);
    }
    // `default` always exists: it is where a service the map does not list belongs.
    if plane != DEFAULT_PLANE && !planes.contains_key(plane) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::PolicyValidationFailed,
            format!(
                "unknown plane {plane:?} (the applied policy defines: {})",
                planes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if let Some((own, _)) = planes.iter().find(|(_, s)| s.iter().any(|x| x == service)) {
        if own != plane {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::PolicyValidationFailed,
                format!("service {service:?} belongs to plane {own:?}, not {plane:?}"),
            ));
        }
    }
    Ok(id)
}

fn identity(service: &str, plane: &str) -> Result<SpiffeId, ApiError> {
    SpiffeId::new(plane, service).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidConfiguration,
            format!(
                "service {service:?} and plane {plane:?} must be lower-case letters, digits and '-', 1 to 63 characters"
            ),
        )
    })
}

/// The plane a leaf for `service` gets. A service's own token never chooses it: the
/// operator's plane map decides, else `default`, and a different plane in the request is
/// refused. Management callers (operators, and everyone while ACLs are off) may name a plane;
/// without one, the plane map decides, else the instances' `plane` meta, else `default`.
fn leaf_plane(
    api: &ApiState,
    caller: &Caller,
    service: &str,
    asked: Option<String>,
) -> Result<String, ApiError> {
    caller.act_for(service)?;
    let (_, _, planes) = api.node.state.intentions()?;
    if caller.is_management() {
        return match asked {
            Some(p) => Ok(p),
            None => Ok(super::intentions::plane_of(api, &planes, service)?
                .unwrap_or_else(|| DEFAULT_PLANE.to_owned())),
        };
    }
    let own = planes
        .iter()
        .find(|(_, s)| s.iter().any(|x| x == service))
        .map_or(DEFAULT_PLANE, |(p, _)| p.as_str())
        .to_owned();
    match asked {
        Some(p) if p != own => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::SecurityPolicyViolation,
            format!(
                "permission denied: service {service:?} is in plane {own:?} by the operator's plane map; it cannot ask for {p:?}"
            ),
        )),
        _ => Ok(own),
    }
}

fn signed_leaf(leaf: &Leaf, signer: &Signer) -> SignedLeaf {
    SignedLeaf {
        cert_pem: leaf.cert_pem.clone(),
        chain_pem: signer.root_pem().to_owned(),
        not_after: rfc3339(leaf.not_after),
        serial: leaf.serial.clone(),
        ..SignedLeaf::default()
    }
}

/// `GET /v1/connect/ca/roots` (also under `/v1/agent/`): Consul's shape.
pub async fn roots(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let index = api.node.state.applied_index();
    let Some(signer) = api.ca.signer()? else {
        return Ok(read::indexed_json(
            &api.node,
            index,
            CaRoots {
                trust_domain: TRUST_DOMAIN.to_owned(),
                ..CaRoots::default()
            },
        ));
    };
    let info = inspect_pem(signer.root_pem()).map_err(|e| CaOpError::Sign(e.to_string()))?;
    let root = CaRoot {
        active: true,
        id: info.sha256.clone(),
        intermediate_certs: Vec::new(),
        name: "Lucid Mesh root CA".into(),
        not_after: rfc3339(info.not_after),
        not_before: rfc3339(info.not_before),
        private_key_bits: 256,
        private_key_type: "ec".into(),
        root_cert: signer.root_pem().to_owned(),
        serial_number: info.serial,
        signing_key_id: String::new(),
        trust_domain: TRUST_DOMAIN.to_owned(),
    };
    Ok(read::indexed_json(
        &api.node,
        index,
        CaRoots {
            active_root_id: info.sha256,
            roots: vec![root],
            trust_domain: TRUST_DOMAIN.to_owned(),
        },
    ))
}

/// `POST /v1/connect/ca/sign` `{csr, service, plane}`.
pub async fn sign(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let req: SignRequest = body.json()?;
    // A management caller without a plane gets `default`, as before the plane map existed.
    let asked = match (&req.plane, caller.is_management()) {
        (None, true) => Some(DEFAULT_PLANE.to_owned()),
        _ => req.plane.clone(),
    };
    let plane = leaf_plane(&api, &caller, &req.service, asked)?;
    let id = checked_identity(&api, &req.service, &plane)?;
    let (leaf, signer) = api.ca.sign_csr(&req.csr, &id).await?;
    Ok(Json(signed_leaf(&leaf, &signer)).into_response())
}

/// `GET /v1/agent/connect/ca/leaf/<service>[?plane=]`: a leaf with a key generated here, in
/// Consul's shape.
pub async fn agent_leaf(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(service): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let asked = req.params.get("plane").map(str::to_owned);
    let plane = leaf_plane(&api, &caller, &service, asked)?;
    let id = checked_identity(&api, &service, &plane)?;
    let (leaf, _) = api.ca.issue(&id).await?;
    Ok(Json(AgentLeaf {
        cert_pem: leaf.cert_pem,
        private_key_pem: leaf.key_pem,
        serial_number: leaf.serial,
        service,
        service_uri: id.to_string(),
        valid_after: rfc3339(leaf.not_before),
        valid_before: rfc3339(leaf.not_after),
    })
    .into_response())
}

fn valid_serial(serial: &str) -> Result<String, ApiError> {
    let s = serial.replace(':', "").to_ascii_lowercase();
    if s.is_empty() || s.len() > 40 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "serial {serial:?} is not hexadecimal"
        )));
    }
    Ok(s)
}

/// `DELETE /v1/connect/ca/certs/<serial>`.
pub async fn revoke(
    State(api): State<Arc<ApiState>>,
    Path(serial): Path<String>,
) -> Result<Response, ApiError> {
    let serial = valid_serial(&serial)?;
    let r = api
        .node
        .write(Command::CertRevoke {
            serial: serial.clone(),
        })
        .await?;
    if !r.ok {
        return Err(ApiError::not_found(format!(
            "no unrevoked certificate with serial {serial}"
        )));
    }
    Ok(Json(Revoked {
        index: r.index,
        revoked: vec![serial],
    })
    .into_response())
}

fn cert_record(c: &IssuedCert) -> CertRecord {
    CertRecord {
        not_after: rfc3339(c.not_after),
        not_after_unix: c.not_after,
        plane: c.plane.clone(),
        revoked: c.revoked_index.is_some(),
        revoked_index: c.revoked_index,
        serial: c.serial.clone(),
        service: c.service.clone(),
    }
}

/// `GET /v1/connect/ca/revoked`: blocking-capable on the revocation index. `?since=N` answers
/// only the leaves revoked after index N (a follower's delta); an index that went backwards
/// (a restore) is the caller's sign to fetch everything again.
pub async fn revoked(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let blocking = Blocking::from_params(&req.params)?;
    let since = match req.params.get("since") {
        None => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("?since={s:?} is not a log index")))?,
    };
    let state = &api.node.state;
    let (index, list) = read::block_on(&api.node, read::Watch::All, blocking, || {
        let (index, certs) = state.revoked_certs(since)?;
        Ok((index, certs.iter().map(cert_record).collect::<Vec<_>>()))
    })
    .await?;
    Ok(read::indexed_json(&api.node, index, list))
}

/// `GET /certificates`: every leaf the CA signed.
pub async fn list(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let certs = api.node.state.issued_certs()?;
    Ok(Json(certs.iter().map(cert_record).collect::<Vec<_>>()).into_response())
}

/// `GET /certificates/ca`: the root.
pub async fn ca_cert(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let signer = api.ca.signer()?.ok_or(CaOpError::NotReady)?;
    Ok(Json(CaCert {
        ca_pem: signer.root_pem().to_owned(),
        trust_domain: TRUST_DOMAIN.to_owned(),
    })
    .into_response())
}

/// `POST /certificates/<service>` (optional body `{plane}`): a leaf with its key.
pub async fn issue(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(service): Path<String>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let req: IssueRequest = if body.0.is_empty() {
        IssueRequest::default()
    } else {
        body.json::<Option<IssueRequest>>()?.unwrap_or_default()
    };
    let plane = leaf_plane(&api, &caller, &service, req.plane)?;
    let id = checked_identity(&api, &service, &plane)?;
    let (leaf, signer) = api.ca.issue(&id).await?;
    let v = SignedLeaf {
        key_pem: leaf.key_pem.clone(),
        service: Some(service),
        spiffe_id: Some(id.to_string()),
        ..signed_leaf(&leaf, &signer)
    };
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `DELETE /certificates/<service>`: revoke every unexpired leaf of the service.
pub async fn revoke_service(
    State(api): State<Arc<ApiState>>,
    Path(service): Path<String>,
) -> Result<Response, ApiError> {
    let r = api
        .node
        .write(Command::CertRevokeService {
            service: service.clone(),
            now: now(),
        })
        .await?;
    if !r.ok {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ServiceNotFound,
            format!("no unrevoked certificate for service {service:?}"),
        ));
    }
    Ok(Json(RevokedService {
        index: r.index,
        service,
    })
    .into_response())
}
