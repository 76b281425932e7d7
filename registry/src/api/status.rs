//! Lucid native status: `GET /health`, `GET /status`, `GET /metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::wire::operator::{Status, StatusMember};
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
pub async fn status(State(api): State<Arc<ApiState>>, caller: Caller) -> Json<Status> {
    let node = &api.node;
    let m = node.raft.metrics().borrow().clone();
    let known = caller.is_known();
    let leader = node.leader().map(|(id, member)| StatusMember {
        http_addr: known.then(|| member.http_addr.clone()),
        id,
        raft_addr: known.then(|| member.raft_addr.clone()),
        voter: None,
    });
    let mut status = Status {
        applied_index: node.state.applied_index(),
        ca_signing: api.ca.can_sign().is_ok(),
        commit_index: node.commit_index(),
        leader,
        node_id: node.id,
        role: role(m.state).to_owned(),
        term: m.current_term,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Status::default()
    };
    if known {
        let peers = peers(node)
            .into_iter()
            .map(|p| StatusMember {
                http_addr: Some(p.member.http_addr),
                id: p.id,
                raft_addr: Some(p.member.raft_addr),
                voter: Some(p.voter),
            })
            .collect();
        status = Status {
            ca_signing_problem: api.ca.can_sign().err(),
            http_addr: Some(node.me.http_addr.clone()),
            last_log_index: Some(m.last_log_index.unwrap_or(0)),
            peers: Some(peers),
            purged_index: Some(m.purged.map_or(0, |s| s.index)),
            quorum_ack_ms: m.millis_since_quorum_ack,
            raft_addr: Some(node.me.raft_addr.clone()),
            snapshot_index: Some(m.snapshot.map_or(0, |s| s.index)),
            ..status
        };
    }
    Json(status)
}

pub async fn metrics(State(api): State<Arc<ApiState>>) -> Response {
    let mut resp = api.metrics.render().into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// `GET /`: what this is (Consul redirects to its UI here; health checks pointed at the
/// agent's own address expect a 2xx).
pub async fn root() -> &'static str {
    "lucid-registry: Consul-compatible API under /v1/, Lucid's under /status, /health, /metrics\n"
}
