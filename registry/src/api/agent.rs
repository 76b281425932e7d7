//! Consul agent endpoints over the replicated catalog: service and check registration,
//! TTL updates, and the agent's view of services and checks. Every node serves the whole
//! catalog (there is no per-agent local state).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::catalog::{parse_check, parse_registration, Check, CheckStatus};
use lucid_core::wire::catalog::{AgentService, HealthCheck};
use serde_json::{json, Value};

use super::authz::Caller;
use super::error::ApiError;
use super::extract::{ApiBody, Params};
use super::read;
use super::ApiState;
use crate::types::Command;

/// The node name every instance reports (one logical node: the registry).
pub const NODE: &str = "lucid";
pub const DATACENTER: &str = "dc1";

fn refused(e: lucid_core::catalog::RegistrationError) -> ApiError {
    ApiError::bad_request(format!("invalid registration: {e}"))
}

async fn write(api: &ApiState, cmd: Command, missing: &str) -> Result<Response, ApiError> {
    let res = api.node.write(cmd).await?;
    if !res.ok {
        return Err(ApiError::not_found(missing.to_owned()));
    }
    let mut resp = StatusCode::OK.into_response();
    read::meta_headers(&api.node, res.index, resp.headers_mut());
    Ok(resp)
}

pub async fn register_service(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    params: Params,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let registration = parse_registration(&v, |name| name.to_owned()).map_err(refused)?;
    // `Connect.SidecarService`: Consul registers the sidecar with the service.
    let sidecar =
        lucid_core::catalog::parse_sidecar_service(&v, &registration.instance).map_err(refused)?;
    let replace_checks = params.flag("replace-existing-checks");
    // Both are authorised before either is written: a refused sidecar leaves nothing behind.
    if let Some(side) = &sidecar {
        super::register::vet(&api, &caller, side)?;
    }
    let mut res = super::register::register(&api, &caller, registration, replace_checks).await?;
    if let Some(side) = sidecar {
        res = super::register::register(&api, &caller, side, replace_checks).await?;
    }
    let mut resp = StatusCode::OK.into_response();
    read::meta_headers(&api.node, res.index, resp.headers_mut());
    Ok(resp)
}

/// A decoded path id, in the one character set ids have.
pub(super) fn path_id(id: &str) -> Result<(), ApiError> {
    match lucid_core::catalog::invalid_id(id) {
        None => Ok(()),
        Some(why) => Err(ApiError::bad_request(format!("id {why}"))),
    }
}

/// The caller may act for the service owning instance `id` (decoded). An unknown id is left
/// to the handler (404) for management, and refused for anyone else: a service token learns
/// nothing about ids it does not own.
pub(super) fn owns_instance(api: &ApiState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    path_id(id)?;
    if caller.is_management() {
        return Ok(());
    }
    match api.node.state.instance_entry(id)? {
        // One refusal whether the id is unknown or another service's: the error of
        // `act_for` would name that service.
        Some((i, _)) if caller.act_for(&i.name).is_ok() => Ok(()),
        _ => Err(not_owned()),
    }
}

/// The one refusal for an instance or check the caller does not own, or that does not exist.
pub(super) fn not_owned() -> ApiError {
    super::authz::denied("not found or not owned by this token's service")
}

/// Same, for the instance owning check `id`. A node-level check stays management's: its
/// probe may point anywhere from the registry's host.
pub(super) fn owns_check(api: &ApiState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    path_id(id)?;
    if caller.is_management() {
        return Ok(());
    }
    match api.node.state.check(id)? {
        Some(c) if !c.service_id.is_empty() => owns_instance(api, caller, &c.service_id),
        _ => Err(not_owned()),
    }
}

pub async fn deregister_service(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    owns_instance(&api, &caller, &id)?;
    // A sidecar Consul registered with the service goes with it: only one that fronts this
    // very instance (another service's proxy may carry the same id pattern).
    let sidecar = format!("{id}-sidecar-proxy");
    if let Some((side, _)) = api.node.state.instance_entry(&sidecar)? {
        let fronts = side
            .extras
            .proxy
            .as_ref()
            .and_then(|p| p.get("DestinationServiceID"))
            .and_then(|d| d.as_str())
            == Some(id.as_str());
        if side.extras.kind == "connect-proxy"
            && fronts
            && owns_instance(&api, &caller, &sidecar).is_ok()
        {
            let cmd = Command::CatalogDeregister {
                service_id: sidecar,
                at_ms: crate::types::now_ms(),
            };
            api.node.write(cmd).await?;
        }
    }
    let cmd = Command::CatalogDeregister {
        service_id: id.clone(),
        at_ms: crate::types::now_ms(),
    };
    write(&api, cmd, &format!("unknown service ID {id:?}")).await
}

/// `PUT /v1/agent/check/register`. A check on a service instance needs `service:write` on
/// that service and passes every check a registration's checks pass (`register::vet`: its
/// probe aimed at the instance itself, no script, no other instance's check id), as Consul
/// asks `service:write`; a node-level check needs management.
pub async fn register_check(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let check = parse_check(&v).map_err(refused)?;
    super::register::scripts_allowed(&api, std::slice::from_ref(&check))?;
    if !caller.is_management() {
        let owner = api
            .node
            .state
            .instance_entry(&check.service_id)?
            .filter(|_| !check.service_id.is_empty())
            .map(|(instance, _)| instance)
            .ok_or_else(|| {
                super::authz::denied(
                    "a check on no instance of this token's services needs acl:write",
                )
            })?;
        let reg = lucid_core::catalog::Registration {
            instance: owner,
            checks: vec![check.clone()],
        };
        super::register::vet(&api, &caller, &reg)?;
    }
    let missing = format!("check names unknown service ID {:?}", check.service_id);
    write(&api, Command::CheckRegister { check }, &missing).await
}

/// `PUT /v1/agent/check/deregister/<id>`: `service:write` on the check's service.
pub async fn deregister_check(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    owns_check(&api, &caller, &id)?;
    let cmd = Command::CheckDeregister {
        check_id: id.clone(),
        at_ms: crate::types::now_ms(),
    };
    write(&api, cmd, &format!("unknown check ID {id:?}")).await
}

async fn set_status(
    api: &ApiState,
    id: String,
    status: CheckStatus,
    output: String,
) -> Result<Response, ApiError> {
    let missing = format!("unknown check ID {id:?}");
    write(
        api,
        Command::CheckUpdate {
            check_id: id,
            status,
            output,
            at_ms: crate::types::now_ms(),
        },
        &missing,
    )
    .await
}

/// `PUT /v1/agent/check/{pass,warn,fail}/<id>?note=...`: the note becomes the output.
async fn ttl_update(
    api: &ApiState,
    caller: &Caller,
    id: String,
    params: &Params,
    status: CheckStatus,
) -> Result<Response, ApiError> {
    owns_check(api, caller, &id)?;
    let note = params.get("note").unwrap_or_default().to_owned();
    set_status(api, id, status, note).await
}

pub async fn pass(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    ttl_update(&api, &caller, id, &params, CheckStatus::Passing).await
}

pub async fn warn(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    ttl_update(&api, &caller, id, &params, CheckStatus::Warning).await
}

pub async fn fail(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    ttl_update(&api, &caller, id, &params, CheckStatus::Critical).await
}

/// `PUT /v1/agent/check/update/<id>` with `{"Status": "...", "Output": "..."}`.
pub async fn update(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    owns_check(&api, &caller, &id)?;
    let v: Value = body.json()?;
    let get = |k: &str| {
        v.as_object()
            .and_then(|o| o.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)))
            .map(|(_, v)| v)
    };
    let status = get("status")
        .and_then(Value::as_str)
        .and_then(CheckStatus::parse)
        .ok_or_else(|| ApiError::bad_request("Status must be passing, warning or critical"))?;
    let output = get("output")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    set_status(&api, id, status, output).await
}

pub async fn services(
    State(api): State<Arc<ApiState>>,
    req: super::extract::Incoming,
) -> Result<Response, ApiError> {
    let filter = super::filter::from_request(&req, super::filter::node_service())?;
    let (index, instances, _) = api.node.state.catalog()?;
    let out: BTreeMap<String, AgentService> = instances
        .iter()
        .map(|i| (i.id.clone(), AgentService::new(i, DATACENTER)))
        .filter(|(_, s)| super::filter::passes(filter.as_ref(), s))
        .collect();
    Ok(read::indexed_json(&api.node, index, out))
}

pub async fn checks(
    State(api): State<Arc<ApiState>>,
    req: super::extract::Incoming,
) -> Result<Response, ApiError> {
    let filter = super::filter::from_request(&req, super::filter::health_check())?;
    let (index, instances, checks) = api.node.state.catalog()?;
    let out: BTreeMap<String, HealthCheck> = checks
        .iter()
        .map(|c| {
            let service = instances.iter().find(|i| i.id == c.service_id);
            (c.id.clone(), HealthCheck::new(c, service, NODE))
        })
        .filter(|(_, c)| super::filter::passes(filter.as_ref(), c))
        .collect();
    Ok(read::indexed_json(&api.node, index, out))
}

/// A registry node's member name (Consul's server name in the gossip pools).
pub fn member_name(id: crate::types::NodeId) -> String {
    format!("node-{id}")
}

/// One raft member as a Consul agent member (`Status` 1 = alive); the WAN pool names a
/// server `<name>.<datacenter>`, as Consul does.
fn member_json(id: crate::types::NodeId, raft_addr: &str, wan: bool) -> Value {
    let (addr, port) = raft_addr.rsplit_once(':').unwrap_or((raft_addr, "0"));
    let name = if wan {
        format!("{}.{DATACENTER}", member_name(id))
    } else {
        member_name(id)
    };
    json!({"Name": name, "Addr": addr, "Port": port.parse::<u16>().unwrap_or(0),
           "Tags": {"role": "consul", "dc": DATACENTER, "build": env!("CARGO_PKG_VERSION")}, "Status": 1,
           "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2, "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4})
}

/// `GET /v1/agent/members[?wan=1]`: every Raft member.
pub async fn members(State(api): State<Arc<ApiState>>, params: Params) -> Json<Vec<Value>> {
    let wan = params.flag("wan");
    Json(
        super::operator::peers(&api.node)
            .iter()
            .map(|p| member_json(p.id, &p.member.raft_addr, wan))
            .collect(),
    )
}

/// `GET /v1/agent/self`: enough of Consul's shape for clients that inspect it
/// (`Stats.consul.leader_addr` is what `/v1/status/leader` answers).
pub async fn agent_self(State(api): State<Arc<ApiState>>) -> Json<Value> {
    let node = &api.node;
    let leader = node.leader().map(|(_, m)| m.raft_addr).unwrap_or_default();
    Json(json!({
        // The catalog's node: every registry node answers for the one logical node `lucid`.
        "Config": {"Datacenter": DATACENTER, "NodeName": NODE, "NodeID": node.id.to_string(),
                   "Server": true, "Revision": "lucid", "Version": env!("CARGO_PKG_VERSION"),
                   "PrimaryDatacenter": DATACENTER},
        "DebugConfig": {"Datacenter": DATACENTER, "NodeName": NODE, "ServerMode": true,
                        "ACLsEnabled": api.acl.enabled, "DNSDomain": "consul"},
        "Coord": {"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5},
        "Member": member_json(node.id, &node.me.raft_addr, false),
        // No Envoy here: lucid-proxy is the sidecar, and it needs no xDS port.
        "xDS": {"SupportedProxies": {"envoy": []}, "Port": -1, "Ports": {"Plaintext": -1, "TLS": -1}},
        "Meta": {},
        "Stats": {"consul": {"leader": node.is_leader().to_string(), "leader_addr": leader, "server": "true",
                             "known_datacenters": "1"}},
    }))
}

/// `PUT /v1/agent/service/maintenance/<id>?enable=true|false&reason=...`: a critical
/// `_service_maintenance:<id>` check takes the instance out of healthy answers until disabled.
pub async fn maintenance(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    owns_instance(&api, &caller, &id)?;
    let enable = match params.get("enable") {
        Some("true") => true,
        Some("false") => false,
        _ => return Err(ApiError::bad_request("enable must be true or false")),
    };
    let check_id = format!("_service_maintenance:{id}");
    if !enable {
        let res = api
            .node
            .write(Command::CheckDeregister {
                check_id,
                at_ms: crate::types::now_ms(),
            })
            .await?;
        let mut resp = StatusCode::OK.into_response();
        read::meta_headers(&api.node, res.index, resp.headers_mut());
        return Ok(resp);
    }
    let reason = params.get("reason").unwrap_or_default();
    let notes = if reason.is_empty() {
        "Maintenance mode is enabled for this service".into()
    } else {
        reason.to_owned()
    };
    let check = Check::maintenance(check_id, "Service Maintenance Mode", id.clone(), notes);
    write(
        &api,
        Command::CheckRegister { check },
        &format!("unknown service ID {id:?}"),
    )
    .await
}
