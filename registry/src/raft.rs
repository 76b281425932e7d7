//! Raft transport: RPCs between registry nodes as JSON over HTTP on `--raft-addr`.
//!
//! - [`network`]: the client side openraft calls (`RaftNetworkFactory`).
//! - [`server`]: the listener that feeds peers' RPCs into the local `Raft`, plus the two
//!   cluster-internal calls: a follower forwarding a write, and leadership transfer.

pub mod network;
pub mod server;

use serde::{Deserialize, Serialize};

use crate::types::{SnapshotMeta, Vote};

/// `InstallSnapshotRequest` with its data as base64 rather than a JSON array of numbers.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub offset: u64,
    #[serde(with = "crate::types::b64")]
    pub data: Vec<u8>,
    pub done: bool,
}

pub(crate) const PATH_APPEND: &str = "/raft/append";
pub(crate) const PATH_VOTE: &str = "/raft/vote";
pub(crate) const PATH_SNAPSHOT: &str = "/raft/snapshot";
pub(crate) const PATH_WRITE: &str = "/raft/write";
pub(crate) const PATH_ELECT: &str = "/raft/elect";
