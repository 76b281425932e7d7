//! Consul's user events and network coordinates, without gossip. Events
//! (`PUT /v1/event/fire/<name>`, `GET /v1/event/list`) are replicated through Raft and the last
//! 256 kept (`store/events.rs`), so every node lists the same ones. Coordinates
//! (`/v1/coordinate/{datacenters,nodes,node/<n>,update}`) are what nodes report; a node that
//! reported none is at the origin (lucid measures no round-trip times).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lucid_core::acl::{Access, Resource};
use serde_json::{json, Value};

use super::agent::{DATACENTER, NODE};
use super::authz::Caller;
use super::error::ApiError;
use super::extract::{ApiBody, Incoming, Params};
use super::read::{self, Blocking};
use super::ApiState;
use crate::store::events::UserEvent;
use crate::types::Command;

/// Consul's limit on an event's payload.
const MAX_PAYLOAD: usize = 100 * 1024;

fn event_json(e: &UserEvent) -> Value {
    json!({
        "ID": e.id,
        "Name": e.name,
        "Payload": (!e.payload.is_empty()).then(|| STANDARD.encode(&e.payload)),
        "NodeFilter": e.node_filter,
        "ServiceFilter": e.service_filter,
        "TagFilter": e.tag_filter,
        "Version": 1,
        "LTime": e.ltime,
    })
}

/// `PUT /v1/event/fire/<name>[?node=&service=&tag=]`, the body its payload.
pub async fn fire(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
    params: Params,
    body: ApiBody,
) -> Result<Json<Value>, ApiError> {
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request(
            "an event needs a name of 1-128 characters",
        ));
    }
    caller.allows(Resource::Event, &name, Access::Write)?;
    if body.0.len() > MAX_PAYLOAD {
        return Err(ApiError::too_large(format!(
            "the payload is {} bytes; the limit is {MAX_PAYLOAD}",
            body.0.len()
        )));
    }
    let filter = |k: &str| params.get(k).unwrap_or_default().to_owned();
    let mut event = UserEvent {
        id: super::acl::new_id(),
        name,
        payload: body.0.to_vec(),
        node_filter: filter("node"),
        service_filter: filter("service"),
        tag_filter: filter("tag"),
        ltime: 0,
    };
    api.node
        .write(Command::EventFire {
            event: event.clone(),
        })
        .await?;
    // Consul answers the event before it travels: its LTime is not known yet.
    event.ltime = 0;
    Ok(Json(event_json(&event)))
}

/// `GET /v1/event/list[?name=]`: the kept events, oldest first, blocking on the newest.
pub async fn list(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    req: Incoming,
) -> Result<Response, ApiError> {
    let name = req.params.get("name").map(str::to_owned);
    // Only the events the caller may read (`event` rules by name), as Consul filters.
    let readable = |n: &str| {
        caller
            .authorizer()
            .allowed(Resource::Event, n, Access::Read)
    };
    let blocking = Blocking::from_params(&req.params)?;
    let state = &api.node.state;
    let (index, out) = read::block_on(&api.node, read::Watch::All, blocking, || {
        let events = state.events()?;
        let index = events.last().map_or(1, |e| e.ltime);
        let out: Vec<Value> = events
            .iter()
            .filter(|e| name.as_deref().is_none_or(|n| e.name == n) && readable(&e.name))
            .map(event_json)
            .collect();
        Ok((index, out))
    })
    .await?;
    Ok(read::indexed_json(&api.node, index, out))
}

/// A node that reported no coordinate is at the origin.
fn origin() -> Value {
    json!({"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5})
}

fn coordinate(api: &ApiState, node: &str) -> Result<Value, ApiError> {
    Ok(api
        .node
        .state
        .coordinates()?
        .into_iter()
        .find(|(n, _)| n == node)
        .map_or_else(origin, |(_, c)| c))
}

/// `GET /v1/coordinate/datacenters`: the servers (the WAN pool), by `<name>.<dc>`.
pub async fn datacenters(State(api): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    let mut coords = Vec::new();
    for p in super::operator::peers(&api.node) {
        let name = format!("{}.{DATACENTER}", super::agent::member_name(p.id));
        coords.push(json!({"Node": name, "Segment": "", "Coord": coordinate(&api, &name)?}));
    }
    Ok(Json(
        json!([{"Datacenter": DATACENTER, "AreaID": "wan", "Coordinates": coords}]),
    ))
}

/// `GET /v1/coordinate/nodes`: the catalog's node.
pub async fn nodes(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let (index, _, _) = api.node.state.catalog()?;
    let body = json!([{"Node": NODE, "Segment": "", "Coord": coordinate(&api, NODE)?}]);
    Ok(read::indexed_json(&api.node, index, body))
}

/// `GET /v1/coordinate/node/<node>`: `[]` for a node with no coordinate and no catalog entry.
pub async fn node(
    State(api): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (index, _, _) = api.node.state.catalog()?;
    let reported = api
        .node
        .state
        .coordinates()?
        .into_iter()
        .find(|(n, _)| *n == name);
    let body = match reported {
        Some((n, c)) => json!([{"Node": n, "Segment": "", "Coord": c}]),
        None if name == NODE => json!([{"Node": NODE, "Segment": "", "Coord": origin()}]),
        None => json!([]),
    };
    Ok(read::indexed_json(&api.node, index, body))
}

/// `PUT /v1/coordinate/update` `{"Node", "Segment", "Coord": {"Vec", "Error", "Adjustment",
/// "Height"}}`, with `node:write` on the node.
pub async fn update(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Json<bool>, ApiError> {
    let v: Value = body.json()?;
    let get = |k: &str| {
        v.as_object()
            .and_then(|o| o.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)))
            .map(|(_, v)| v.clone())
    };
    let node = get("Node")
        .and_then(|n| n.as_str().map(str::to_owned))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Node is required"))?;
    // Consul: `node:write` on the node the coordinate is for.
    caller.allows(Resource::Node, &node, Access::Write)?;
    let coord = get("Coord").ok_or_else(|| ApiError::bad_request("Coord is required"))?;
    let ok = coord
        .get("Vec")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().all(Value::is_number))
        && ["Error", "Adjustment", "Height"]
            .iter()
            .all(|k| coord.get(*k).is_none_or(Value::is_number));
    if !ok {
        return Err(ApiError::bad_request(
            "Coord must be {\"Vec\": [numbers], \"Error\", \"Adjustment\", \"Height\"}",
        ));
    }
    api.node
        .write(Command::CoordinateSet { node, coord })
        .await?;
    Ok(Json(true))
}
