//! Consul's intention endpoints (`/v1/connect/intentions` list and create, `/exact` get, put
//! and delete, `/check`, `/match`, by id), `/v1/agent/connect/authorize` for sidecars, and
//! Lucid's `PUT /v1/connect/policy` (the platform's planeIsolation document) with
//! `GET /v1/connect/planes`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::config_entry::ConfigKind;
use lucid_core::intention::{
    allowed, from_plane_isolation, parse_intention, Caller, Intention, Party,
};
use lucid_core::wire::operator::{DefaultAction, PolicySummary};
use lucid_core::ErrorCode;
use lucid_tls::SpiffeId;
use serde_json::{json, Value};

use super::acl::new_id;
use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::read::{self, Blocking};
use super::ApiState;
use crate::store::intentions::Planes;
use crate::types::Command;

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::PolicyValidationFailed,
        m,
    )
}

fn intention_json(i: &Intention) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
    v["Precedence"] = json!(i.precedence());
    v
}

fn party_param(req: &Incoming, name: &str) -> Result<Party, ApiError> {
    let s = req
        .params
        .get(name)
        .ok_or_else(|| ApiError::bad_request(format!("?{name}= is required")))?;
    Party::parse(s).ok_or_else(|| {
        invalid(format!(
            "{name} {s:?} is not a service name, plane:<plane> or *"
        ))
    })
}

/// The plane of a service: the policy's plane map, else its instances' `plane` meta.
pub(super) fn plane_of(
    api: &ApiState,
    planes: &Planes,
    service: &str,
) -> Result<Option<String>, ApiError> {
    if let Some((p, _)) = planes.iter().find(|(_, s)| s.iter().any(|x| x == service)) {
        return Ok(Some(p.clone()));
    }
    let (_, entries) = api.node.state.service(service)?;
    Ok(entries
        .iter()
        .find_map(|(i, _)| i.meta.get("plane").cloned()))
}

/// Does `service` speak raw TCP (its `service-defaults` say `Protocol = "tcp"`)?
pub(super) fn speaks_tcp(api: &ApiState, service: &str) -> Result<bool, ApiError> {
    let (_, e) = api
        .node
        .state
        .config_entry(ConfigKind::ServiceDefaults, service)?;
    Ok(e.is_some_and(|e| e.entry.protocol.as_deref() == Some("tcp")))
}

/// L7 permissions (methods, paths) mean nothing to a `tcp` service, whose sidecar sees bytes,
/// not requests: refuse them at write time, as Consul does (400 `LUCID_ERR_1102`).
fn l4_only(api: &ApiState, intentions: &[Intention]) -> Result<(), ApiError> {
    for i in intentions.iter().filter(|i| !i.permissions.is_empty()) {
        if let Party::Service(d) = &i.destination {
            if speaks_tcp(api, d)? {
                return Err(invalid(format!(
                    "intention {} -> {d}: {d} speaks tcp (its service-defaults Protocol), so its intentions cannot have L7 Permissions; use Action allow or deny",
                    i.source
                )));
            }
        }
    }
    Ok(())
}

/// `GET /v1/connect/intentions` (blocking-capable).
pub async fn list(State(api): State<Arc<ApiState>>, req: Incoming) -> Result<Response, ApiError> {
    let blocking = Blocking::from_params(&req.params)?;
    let state = &api.node.state;
    let (index, list) = read::block_on(&api.node, read::Watch::All, blocking, || {
        let (index, list, _) = state.intentions()?;
        Ok((index, list.iter().map(intention_json).collect::<Vec<_>>()))
    })
    .await?;
    Ok(read::indexed_json(&api.node, index, list))
}

/// `POST /v1/connect/intentions`: create; 409 when the pair already has one.
pub async fn create(State(api): State<Arc<ApiState>>, body: ApiBody) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let intention = parse_intention(&v, new_id()).map_err(|e| invalid(e.to_string()))?;
    l4_only(&api, std::slice::from_ref(&intention))?;
    let id = intention.id.clone();
    let r = api
        .node
        .write(Command::IntentionSet {
            intention,
            create_only: true,
        })
        .await?;
    if !r.ok {
        return Err(ApiError::conflict(
            "an intention for this source and destination exists (use PUT /v1/connect/intentions/exact)",
        ));
    }
    Ok(Json(json!({"ID": id})).into_response())
}

/// `PUT /v1/connect/intentions/exact?source=&destination=`: create or replace.
pub async fn put_exact(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let source = party_param(&req, "source")?;
    let destination = party_param(&req, "destination")?;
    let mut v: Value = body.json()?;
    if let Some(o) = v.as_object_mut() {
        o.insert("SourceName".into(), json!(source.to_string()));
        o.insert("DestinationName".into(), json!(destination.to_string()));
    }
    let intention = parse_intention(&v, new_id()).map_err(|e| invalid(e.to_string()))?;
    l4_only(&api, std::slice::from_ref(&intention))?;
    api.node
        .write(Command::IntentionSet {
            intention,
            create_only: false,
        })
        .await?;
    Ok(Json(true).into_response())
}

fn find<'a>(list: &'a [Intention], source: &Party, destination: &Party) -> Option<&'a Intention> {
    list.iter()
        .find(|i| i.source == *source && i.destination == *destination)
}

/// `GET /v1/connect/intentions/exact?source=&destination=`.
pub async fn get_exact(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let source = party_param(&req, "source")?;
    let destination = party_param(&req, "destination")?;
    let (index, list, _) = api.node.state.intentions()?;
    match find(&list, &source, &destination) {
        Some(i) => Ok(read::indexed_json(&api.node, index, intention_json(i))),
        None => Err(ApiError::not_found(format!(
            "no intention {source} -> {destination}"
        ))),
    }
}

/// `DELETE /v1/connect/intentions/exact?source=&destination=`.
pub async fn delete_exact(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let source = party_param(&req, "source")?;
    let destination = party_param(&req, "destination")?;
    delete_pair(&api, source, destination).await
}

async fn delete_pair(
    api: &ApiState,
    source: Party,
    destination: Party,
) -> Result<Response, ApiError> {
    let what = format!("{source} -> {destination}");
    let r = api
        .node
        .write(Command::IntentionDelete {
            source,
            destination,
        })
        .await?;
    if !r.ok {
        return Err(ApiError::not_found(format!("no intention {what}")));
    }
    Ok(Json(true).into_response())
}

/// `GET /v1/connect/intentions/<id>`.
pub async fn get_id(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (index, list, _) = api.node.state.intentions()?;
    match list.iter().find(|i| i.id == id) {
        Some(i) => Ok(read::indexed_json(&api.node, index, intention_json(i))),
        None => Err(ApiError::not_found(format!("no intention with id {id}"))),
    }
}

/// `DELETE /v1/connect/intentions/<id>`.
pub async fn delete_id(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, list, _) = api.node.state.intentions()?;
    let i = list
        .into_iter()
        .find(|i| i.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no intention with id {id}")))?;
    delete_pair(&api, i.source, i.destination).await
}

fn service_param<'a>(req: &'a Incoming, name: &str) -> Result<&'a str, ApiError> {
    let s = req
        .params
        .get(name)
        .ok_or_else(|| ApiError::bad_request(format!("?{name}= is required")))?;
    if !lucid_core::catalog::valid_service_name(s) {
        return Err(invalid(format!("{name} {s:?} is not a service name")));
    }
    Ok(s)
}

/// `GET /v1/connect/intentions/check?source=&destination=[&method=&path=]`: `{"Allowed"}`.
pub async fn check(State(api): State<Arc<ApiState>>, req: Incoming) -> Result<Response, ApiError> {
    let source = service_param(&req, "source")?;
    let destination = service_param(&req, "destination")?;
    let request = match (req.params.get("method"), req.params.get("path")) {
        (None, None) => None,
        (m, p) => Some((m.unwrap_or("GET"), p.unwrap_or("/"))),
    };
    let (index, list, planes) = api.node.state.intentions()?;
    let sp = plane_of(&api, &planes, source)?;
    let dp = plane_of(&api, &planes, destination)?;
    let (ok, by) = allowed(
        &list,
        Caller {
            service: source,
            plane: sp.as_deref(),
        },
        Caller {
            service: destination,
            plane: dp.as_deref(),
        },
        request,
        api.intentions_default,
    );
    Ok(read::indexed_json(
        &api.node,
        index,
        json!({"Allowed": ok, "Intention": by.map(|i| i.id.clone()),
               "SourcePlane": sp, "DestinationPlane": dp}),
    ))
}

/// `GET /v1/connect/intentions/match?by=source|destination&name=N`: the intentions that apply,
/// most specific first.
pub async fn matches(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let by = req.params.get("by").unwrap_or("destination");
    if by != "source" && by != "destination" {
        return Err(ApiError::bad_request("?by= must be source or destination"));
    }
    let name = service_param(&req, "name")?;
    let (index, list, planes) = api.node.state.intentions()?;
    let plane = plane_of(&api, &planes, name)?;
    let me = Party::Service(name.to_owned());
    let mine = |p: &Party| match p {
        Party::Any => true,
        Party::Plane(x) => plane.as_deref() == Some(x.as_str()),
        s => *s == me,
    };
    let mut hits: Vec<&Intention> = list
        .iter()
        .filter(|i| {
            mine(if by == "source" {
                &i.source
            } else {
                &i.destination
            })
        })
        .collect();
    hits.sort_by_key(|i| std::cmp::Reverse(i.precedence()));
    let out: Vec<Value> = hits.into_iter().map(intention_json).collect();
    Ok(read::indexed_json(&api.node, index, json!({ name: out })))
}

/// `POST /v1/agent/connect/authorize` `{Target, ClientCertURI, ClientCertSerial}`.
pub async fn authorize(
    State(api): State<Arc<ApiState>>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let target = v["Target"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("Target is required"))?;
    let uri = v["ClientCertURI"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("ClientCertURI is required"))?;
    if !lucid_core::catalog::valid_service_name(target) {
        return Err(invalid(format!("Target {target:?} is not a service name")));
    }
    let Some(id) = SpiffeId::parse(uri) else {
        return Ok(Json(
            json!({"Authorized": false, "Reason": format!("{uri:?} is not a mesh identity")}),
        )
        .into_response());
    };
    if let Some(serial) = v["ClientCertSerial"].as_str() {
        let serial = serial.replace(':', "").to_ascii_lowercase();
        if api.node.state.is_revoked(&serial)? {
            return Ok(Json(
                json!({"Authorized": false, "Reason": "the client certificate is revoked"}),
            )
            .into_response());
        }
    }
    let (_, list, planes) = api.node.state.intentions()?;
    let dp = plane_of(&api, &planes, target)?;
    let (ok, by) = allowed(
        &list,
        Caller {
            service: &id.service,
            plane: Some(&id.plane),
        },
        Caller {
            service: target,
            plane: dp.as_deref(),
        },
        None,
        api.intentions_default,
    );
    let reason = match by {
        Some(i) => format!(
            "matched intention {} ({} -> {})",
            i.id, i.source, i.destination
        ),
        None => "no intention matched; default action".to_owned(),
    };
    Ok(Json(json!({"Authorized": ok, "Reason": reason})).into_response())
}

/// `PUT /v1/connect/policy`: the platform's planeIsolation document (JSON). Replaces the
/// plane map and sets the policy's intentions, in one replicated step.
pub async fn apply_policy(
    State(api): State<Arc<ApiState>>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    // Accept the whole file, its serviceMesh section, or planeIsolation itself.
    let doc = v
        .pointer("/serviceMesh/planeIsolation")
        .or_else(|| v.get("planeIsolation"))
        .unwrap_or(&v);
    let mut policy = from_plane_isolation(doc).map_err(|e| invalid(e.to_string()))?;
    for i in &mut policy.intentions {
        i.id = new_id();
    }
    l4_only(&api, &policy.intentions)?;
    let summary = PolicySummary {
        intentions: policy.intentions.len(),
        planes: policy.planes.len(),
    };
    api.node
        .write(Command::PolicyApply {
            planes: policy.planes,
            intentions: policy.intentions,
        })
        .await?;
    Ok(Json(summary).into_response())
}

/// `GET /v1/connect/intentions/default`: what applies when no intention matches
/// (`--intentions-default`), so sidecars decide as the registry does.
pub async fn default_action(State(api): State<Arc<ApiState>>) -> Response {
    Json(DefaultAction {
        action: api.intentions_default,
    })
    .into_response()
}

/// `GET /v1/connect/planes`: plane -> services.
pub async fn planes(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let (index, _, planes) = api.node.state.intentions()?;
    Ok(read::indexed_json(&api.node, index, planes))
}
