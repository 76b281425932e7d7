//! Cluster admin: `/v1/status/{leader,peers}`, `/v1/operator/raft/{configuration,join,peer,
//! transfer-leader}`. Membership changes run on the leader; other nodes forward them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::wire::operator::{JoinAnswer, JoinRequest, RaftConfiguration, RaftServer};
use serde_json::json;

use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::read;
use super::ApiState;
use crate::node::Node;
use crate::types::{Member, NodeId};

/// A membership change may wait for a new learner to catch up.
const ADMIN_FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// One member as the API reports it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: NodeId,
    pub member: Member,
    pub voter: bool,
}

/// Current members, voters first, by id.
pub fn peers(node: &Node) -> Vec<Peer> {
    let m = node.raft.metrics().borrow().membership_config.clone();
    let membership = m.membership();
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    let mut out: Vec<Peer> = membership
        .nodes()
        .map(|(id, member)| Peer {
            id: *id,
            member: member.clone(),
            voter: voters.contains(id),
        })
        .collect();
    out.sort_by_key(|p| (!p.voter, p.id));
    out
}

fn membership_index(node: &Node) -> u64 {
    let m = node.raft.metrics().borrow().membership_config.clone();
    m.log_id().map_or(0, |l| l.index)
}

pub async fn leader(State(api): State<Arc<ApiState>>) -> Json<String> {
    Json(
        api.node
            .leader()
            .map(|(_, m)| m.raft_addr)
            .unwrap_or_default(),
    )
}

pub async fn peers_handler(State(api): State<Arc<ApiState>>) -> Json<Vec<String>> {
    Json(
        peers(&api.node)
            .into_iter()
            .filter(|p| p.voter)
            .map(|p| p.member.raft_addr)
            .collect(),
    )
}

pub async fn configuration(State(api): State<Arc<ApiState>>) -> Response {
    let leader = api.node.leader().map(|(id, _)| id);
    let servers: Vec<_> = peers(&api.node)
        .into_iter()
        .map(|p| RaftServer {
            address: p.member.raft_addr,
            http_address: p.member.http_addr,
            id: p.id.to_string(),
            leader: Some(p.id) == leader,
            node: format!("node-{}", p.id),
            protocol_version: "3".into(),
            voter: p.voter,
        })
        .collect();
    let index = membership_index(&api.node);
    let mut resp = Json(RaftConfiguration { index, servers }).into_response();
    read::meta_headers(&api.node, index, resp.headers_mut());
    resp
}

/// Run on the leader: `None` when this node leads, else the leader's answer.
async fn on_leader(
    node: &Node,
    req: &Incoming,
    body: Vec<u8>,
) -> Result<Option<Response>, ApiError> {
    if node.is_leader() {
        return Ok(None);
    }
    read::to_leader(node, req, body, ADMIN_FORWARD_TIMEOUT)
        .await
        .map(Some)
}

fn check_addr(field: &str, addr: &str) -> Result<(), ApiError> {
    match addr.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => Ok(()),
        Ok(_) => Err(ApiError::bad_request(format!(
            "{field} {addr:?} must be a routable address with a non-zero port"
        ))),
        Err(_) => Err(ApiError::bad_request(format!(
            "{field} {addr:?} is not an IP:PORT address"
        ))),
    }
}

pub async fn join(
    State(api): State<Arc<ApiState>>,
    incoming: Incoming,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let req: JoinRequest = body.json()?;
    check_addr("raft_addr", &req.raft_addr)?;
    check_addr("http_addr", &req.http_addr)?;
    let node = &api.node;
    if let Some(resp) = on_leader(node, &incoming, body.0.to_vec()).await? {
        return Ok(resp);
    }
    let _serial = node.membership_lock.lock().await;
    let current = peers(node);
    let member = Member {
        raft_addr: req.raft_addr.clone(),
        http_addr: req.http_addr.clone(),
    };
    if let Some(p) = current.iter().find(|p| p.id == req.node_id) {
        if p.member != member {
            return Err(ApiError::conflict(format!(
                "node {} is already a member at raft {} / http {}; remove it before joining it with new addresses",
                p.id, p.member.raft_addr, p.member.http_addr
            )));
        }
        if p.voter {
            // A retried join, or a node whose data was wiped: nothing to change.
            return Ok(Json(JoinAnswer {
                already_member: true,
                node_id: req.node_id,
                voter: true,
            })
            .into_response());
        }
    }
    if let Some(p) = current
        .iter()
        .find(|p| p.id != req.node_id && p.member.raft_addr == req.raft_addr)
    {
        return Err(ApiError::conflict(format!(
            "raft address {} already belongs to node {}",
            req.raft_addr, p.id
        )));
    }
    tracing::info!(node_id = req.node_id, raft = %req.raft_addr, "adding node to the cluster");
    node.add_voter(req.node_id, member)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(JoinAnswer {
        already_member: false,
        node_id: req.node_id,
        voter: true,
    })
    .into_response())
}

pub async fn remove_peer(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let node = &api.node;
    let params = &req.params;
    let id = params.u64("id")?;
    let address = params.get("address").map(str::to_owned);
    if id.is_none() && address.is_none() {
        return Err(ApiError::bad_request(
            "give the peer as ?id=<node id> or ?address=<raft addr>",
        ));
    }
    if let Some(resp) = on_leader(node, &req, Vec::new()).await? {
        return Ok(resp);
    }
    let _serial = node.membership_lock.lock().await;
    let current = peers(node);
    let peer = current
        .iter()
        .find(|p| Some(p.id) == id || Some(&p.member.raft_addr) == address.as_ref())
        // Consul answers an unknown peer with an error, not 404: clients read 404 on a
        // DELETE as "nothing to do" and would report the removal as done.
        .ok_or_else(|| {
            ApiError::bad_request(match (&address, id) {
                (Some(a), _) => format!("address {a:?} was not found in the Raft configuration"),
                (None, Some(i)) => format!("id {i:?} was not found in the Raft configuration"),
                (None, None) => "peer was not found in the Raft configuration".to_owned(),
            })
        })?;
    let voters = current.iter().filter(|p| p.voter).count();
    if peer.voter && voters <= 1 {
        return Err(ApiError::bad_request(format!(
            "node {} is the last voter; removing it would leave the cluster without a quorum",
            peer.id
        )));
    }
    tracing::info!(node_id = peer.id, "removing node from the cluster");
    node.remove_member(peer.id, peer.voter)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(true).into_response())
}

pub async fn transfer_leader(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let node = &api.node;
    let params = &req.params;
    let wanted = params.u64("id")?;
    if let Some(resp) = on_leader(node, &req, Vec::new()).await? {
        return Ok(resp);
    }
    let candidates: Vec<Peer> = peers(node)
        .into_iter()
        .filter(|p| p.voter && p.id != node.id)
        .collect();
    let target = match wanted {
        Some(id) if id == node.id => {
            return Err(ApiError::bad_request(format!("node {id} already leads")))
        }
        Some(id) => candidates.into_iter().find(|p| p.id == id).ok_or_else(|| {
            ApiError::not_found(format!("node {id} is not a voter of this cluster"))
        })?,
        None => candidates
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::bad_request("no other voter to transfer leadership to"))?,
    };
    let _serial = node.membership_lock.lock().await;
    let ok = node
        .transfer_leadership(&target.member)
        .await
        .map_err(|e| {
            ApiError::unavailable(format!("transfer to node {} failed: {e}", target.id))
        })?;
    if !ok {
        return Err(ApiError::unavailable(format!(
            "node {} did not win the election; retry",
            target.id
        )));
    }
    Ok(Json(json!({ "Success": true, "Leader": target.id })).into_response())
}
