//! Cluster answers: the node's `/status`, Consul's `/v1/operator/raft/configuration`, the
//! join call between registry nodes, and the policy endpoints a sidecar follows.

use serde::{Deserialize, Serialize};

use crate::intention::Action;

/// Body of `POST /v1/operator/raft/join`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub node_id: u64,
    pub raft_addr: String,
    pub http_addr: String,
}

/// The answer to a join.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct JoinAnswer {
    /// The node was already a voter: nothing changed.
    pub already_member: bool,
    pub node_id: u64,
    pub voter: bool,
}

/// `GET /v1/operator/raft/configuration`, Consul's shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RaftConfiguration {
    #[serde(rename = "Index")]
    pub index: u64,
    #[serde(rename = "Servers")]
    pub servers: Vec<RaftServer>,
}

/// One member of [`RaftConfiguration`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RaftServer {
    /// Raft address.
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "HTTPAddress")]
    pub http_address: String,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Leader")]
    pub leader: bool,
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "ProtocolVersion")]
    pub protocol_version: String,
    #[serde(rename = "Voter")]
    pub voter: bool,
}

/// `GET /status`: this node's Raft view. Anonymous callers (ACLs on, no token) get no
/// addresses, so the `Option` fields are absent for them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Status {
    pub applied_index: u64,
    pub ca_signing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_signing_problem: Option<String>,
    pub commit_index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_log_index: Option<u64>,
    pub leader: Option<StatusMember>,
    pub node_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<StatusMember>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged_index: Option<u64>,
    /// Milliseconds since a quorum last acknowledged this leader; absent on followers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum_ack_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_addr: Option<String>,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_index: Option<u64>,
    pub term: u64,
    pub version: String,
}

/// The leader or a peer in [`Status`]; addresses only for callers with a token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct StatusMember {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voter: Option<bool>,
}

/// `GET /v1/connect/intentions/default`: what applies when no intention matches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct DefaultAction {
    #[serde(rename = "Action")]
    pub action: Action,
}

/// The answer to `PUT /v1/connect/policy`: what the applied document held.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PolicySummary {
    pub intentions: usize,
    pub planes: usize,
}
