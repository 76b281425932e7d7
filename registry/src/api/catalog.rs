//! Consul's `/v1/catalog/register` and `/v1/catalog/deregister`.
//!
//! On the registry's own node (`Node` absent or `lucid`), services go through the same
//! parser, checks and commands as agent registration, and a deregistration needs
//! `service:write` on what it removes, as the agent's does. Any other `Node` is an external
//! node (a machine without an agent, as in Consul): it needs `node:write` on the node, and
//! `service:write` on each service written; its checks are status-only and never probed.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lucid_core::acl::{Access, Resource};
use lucid_core::catalog::{
    parse_catalog_deregistration, parse_catalog_registration, CatalogRegistration, CatalogTarget,
};
use serde_json::Value;

use super::agent::{DATACENTER, NODE};
use super::authz::Caller;
use super::error::ApiError;
use super::extract::ApiBody;
use super::read;
use super::ApiState;
use crate::types::Command;

/// A body's `Datacenter` must be this one, as `?dc=` must (see `one_datacenter`).
fn this_datacenter(dc: &str) -> Result<(), ApiError> {
    if dc.is_empty() || dc == DATACENTER {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "No path to datacenter {dc:?}"
    )))
}

/// Does a `Node` field name the registry's own node?
fn own(node: &str) -> bool {
    node.is_empty() || node == NODE
}

/// Consul's answer to a catalog write: `true`, with the index it was applied at.
fn acknowledged(api: &ApiState, index: u64) -> Response {
    let mut resp = axum::Json(true).into_response();
    read::meta_headers(&api.node, index, resp.headers_mut());
    resp
}

async fn done(api: &ApiState, cmd: Command, missing: String) -> Result<Response, ApiError> {
    let res = api.node.write(cmd).await?;
    if !res.ok {
        return Err(ApiError::not_found(missing));
    }
    Ok(acknowledged(api, res.index))
}

pub async fn register(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let reg = parse_catalog_registration(&v)
        .map_err(|e| ApiError::bad_request(format!("invalid registration: {e}")))?;
    this_datacenter(&reg.datacenter)?;
    if !own(&reg.node.name) && reg.node.name.eq_ignore_ascii_case(NODE) {
        return Err(ApiError::bad_request(format!(
            "invalid registration: Node: {:?} is the registry's own node name in another case (node names have no case)",
            reg.node.name
        )));
    }
    if !own(&reg.node.name) {
        return external(&api, &caller, reg).await;
    }
    if !reg.checks.is_empty() {
        return Err(ApiError::bad_request(
            "invalid registration: Check: catalog-level checks on the registry's own node are not supported; register checks with the service via /v1/agent/service/register",
        ));
    }
    let Some(registration) = reg.service else {
        return Err(ApiError::bad_request(
            "invalid registration: Service: is required on the registry's own node",
        ));
    };
    let res = super::register::register(&api, &caller, registration, false).await?;
    Ok(acknowledged(&api, res.index))
}

/// The refusal for a registration touching a service the caller may not write: it names no
/// service, since the caller may not be able to read the one that is there.
fn not_all_services(node: &str) -> ApiError {
    super::authz::denied(format!(
        "writing to node {node:?} needs service:write on every service the registration touches"
    ))
}

/// A registration on an external node: the node, its service and its checks in one command.
async fn external(
    api: &ApiState,
    caller: &Caller,
    reg: CatalogRegistration,
) -> Result<Response, ApiError> {
    let name = reg.node.name.clone();
    if reg.node.address.is_empty() && !reg.skip_node_update {
        return Err(ApiError::bad_request(
            "Must provide address if SkipNodeUpdate is not set",
        ));
    }
    caller.allows(Resource::Node, &name, Access::Write)?;
    let state = &api.node.state;
    if reg.node.address.is_empty() && state.external_node_fields(&name)?.is_none() {
        return Err(ApiError::bad_request(format!(
            "node {name:?} does not exist yet: it needs an Address (SkipNodeUpdate keeps an existing node's)"
        )));
    }
    let service = match reg.service {
        None => None,
        Some(r) if !r.checks.is_empty() => {
            return Err(ApiError::bad_request(
                "invalid registration: Service.Check: an external node's checks go at the top level (Check, Checks)",
            ))
        }
        Some(r) => {
            super::register::may_write(caller, &r.instance)?;
            // Replacing another service's instance needs write on that service too.
            if let Some((old, _)) = state.external_instance(&name, &r.instance.id)? {
                caller.act_for(&old.name).map_err(|_| not_all_services(&name))?;
            }
            Some(r.instance)
        }
    };
    // A service check needs write on its service: the one registered now or one the node
    // already has.
    for c in reg.checks.iter().filter(|c| !c.service_id.is_empty()) {
        let owner = match service.as_ref().filter(|i| i.id == c.service_id) {
            Some(i) => Some(i.name.clone()),
            None => state
                .external_instance(&name, &c.service_id)?
                .map(|(i, _)| i.name),
        };
        match owner {
            Some(owner) => caller
                .act_for(&owner)
                .map_err(|_| not_all_services(&name))?,
            None => {
                return Err(ApiError::bad_request(format!(
                    "Unknown service ID {:?} for check ID {:?}",
                    c.service_id, c.id
                )))
            }
        }
    }
    let res = api
        .node
        .write(Command::NodeRegister {
            node: reg.node,
            skip_node_update: reg.skip_node_update,
            service,
            checks: reg.checks,
        })
        .await?;
    if !res.ok {
        return Err(super::register::conflict(format!(
            "refused: node {name:?} differs from another node's name only in case, the service's DNS name (<id>.<node>.node, without case) is another instance's, its service name is a live service's in another case, or the node or a check's service went meanwhile"
        )));
    }
    Ok(acknowledged(api, res.index))
}

pub async fn deregister(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let d = parse_catalog_deregistration(&v)
        .map_err(|e| ApiError::bad_request(format!("invalid deregistration: {e}")))?;
    this_datacenter(&d.datacenter)?;
    if !own(&d.node) {
        return deregister_external(&api, &caller, &d.node, d.target).await;
    }
    let at_ms = crate::types::now_ms();
    let (cmd, missing) = match d.target {
        CatalogTarget::Service(id) => {
            super::agent::owns_instance(&api, &caller, &id)?;
            let missing = format!("unknown service ID {id:?}");
            let cmd = Command::CatalogDeregister {
                service_id: id,
                at_ms,
            };
            (cmd, missing)
        }
        CatalogTarget::Check(id) => {
            super::agent::owns_check(&api, &caller, &id)?;
            let missing = format!("unknown check ID {id:?}");
            let cmd = Command::CheckDeregister {
                check_id: id,
                at_ms,
            };
            (cmd, missing)
        }
        CatalogTarget::Node => {
            return Err(ApiError::bad_request(
                "invalid deregistration: give ServiceID or CheckID (the registry's own node cannot be deregistered)",
            ))
        }
    };
    done(&api, cmd, missing).await
}

/// Removing from an external node needs `node:write` on it, or `service:write` on the
/// service whose instance or check goes (then the command carries that service, and applies
/// only if the target still belongs to it). One refusal for every target the caller may not
/// touch, existing or not, so a refusal tells nothing about the catalog.
async fn deregister_external(
    api: &ApiState,
    caller: &Caller,
    node: &str,
    target: CatalogTarget,
) -> Result<Response, ApiError> {
    let service = if caller.allows(Resource::Node, node, Access::Write).is_ok() {
        None
    } else {
        let state = &api.node.state;
        let owner = match &target {
            CatalogTarget::Service(id) => state.external_instance(node, id)?.map(|(i, _)| i),
            CatalogTarget::Check(id) => match state.external_check(node, id)? {
                Some(c) if !c.service_id.is_empty() => state
                    .external_instance(node, &c.service_id)?
                    .map(|(i, _)| i),
                _ => None,
            },
            CatalogTarget::Node => None,
        };
        match owner {
            Some(i) if caller.act_for(&i.name).is_ok() => Some(i.name),
            _ => {
                return Err(super::authz::denied(format!(
                    "deregistering from node {node:?} needs node:write on it, or service:write on the service whose instance or check goes"
                )))
            }
        }
    };
    let (service_id, check_id, missing) = match target {
        CatalogTarget::Service(id) => {
            let m = format!("unknown service ID {id:?} on node {node:?}");
            (Some(id), None, m)
        }
        CatalogTarget::Check(id) => {
            let m = format!("unknown check ID {id:?} on node {node:?}");
            (None, Some(id), m)
        }
        CatalogTarget::Node => (None, None, format!("unknown node {node:?}")),
    };
    let cmd = Command::NodeDeregister {
        node: node.to_owned(),
        service_id,
        check_id,
        service,
    };
    done(api, cmd, missing).await
}
