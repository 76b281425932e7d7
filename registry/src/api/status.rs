//! Lucid native status: `GET /health`, `GET /status`, `GET /metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::ServerState;
use serde_json::json;

use super::authz::Caller;
use super::error::ApiError;
use super::operator::peers;
use super::ApiState;

/// 200 while Raft runs; 503 once it has stopped (a fatal storage or state-machine error), so
/// a supervisor or orchestrator restarts the node instead of leaving a zombie in service.
pub async fn health(State(api): State<Arc<ApiState>>) -> Response {
    let m = api.node.raft.metrics().borrow().clone();
    match &m.running_state {
        Ok(()) if m.state != ServerState::Shutdown => {
            Json(json!({ "status": "ok" })).into_response()
        }
        Ok(()) => ApiError::unavailable("raft has shut down").into_response(),
        Err(fatal) => ApiError::unavailable(format!("raft stopped: {fatal}")).into_response(),
    }
}

fn role(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// `GET /status`. Anonymous callers (ACLs on, no token) see the node's own state but no
/// addresses: the Raft addresses of every member are a map for an attacker.
pub async fn status(State(api): State<Arc<ApiState>>, caller: Caller) -> Json<serde_json::Value> {
    let node = &api.node;
    if !caller.is_known() {
        let m = node.raft.metrics().borrow().clone();
        return Json(json!({
            "node_id": node.id,
            "role": role(m.state),
            "term": m.current_term,
            "leader": node.leader().map(|(id, _)| json!({ "id": id })),
            "commit_index": node.commit_index(),
            "applied_index": node.state.applied_index(),
            "ca_signing": api.ca.can_sign().is_ok(),
            "version": env!("CARGO_PKG_VERSION"),
        }));
    }
    let m = node.raft.metrics().borrow().clone();
    let leader = node.leader().map(|(id, member)| {
        json!({ "id": id, "raft_addr": member.raft_addr, "http_addr": member.http_addr })
    });
    let peers: Vec<_> = peers(node)
        .into_iter()
        .map(|p| json!({ "id": p.id, "raft_addr": p.member.raft_addr, "http_addr": p.member.http_addr, "voter": p.voter }))
        .collect();
    Json(json!({
        "node_id": node.id,
        "role": role(m.state),
        "term": m.current_term,
        "leader": leader,
        "commit_index": node.commit_index(),
        "applied_index": node.state.applied_index(),
        "last_log_index": m.last_log_index.unwrap_or(0),
        "snapshot_index": m.snapshot.map_or(0, |s| s.index),
        "purged_index": m.purged.map_or(0, |s| s.index),
        "quorum_ack_ms": m.millis_since_quorum_ack,
        "raft_addr": node.me.raft_addr,
        "http_addr": node.me.http_addr,
        "peers": peers,
        "ca_signing": api.ca.can_sign().is_ok(),
        "ca_signing_problem": api.ca.can_sign().err(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

pub async fn metrics(State(api): State<Arc<ApiState>>) -> Response {
    let mut resp = api.metrics.render().into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
