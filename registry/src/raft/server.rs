//! The server half of the Raft transport, on `--raft-addr`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{Infallible, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::{SnapshotChunk, PATH_APPEND, PATH_ELECT, PATH_SNAPSHOT, PATH_VOTE, PATH_WRITE};
use crate::node::{ForwardedWrite, Node};
use crate::types::{Command, NodeId, TypeConfig};

/// Peers ship whole batches and snapshot chunks; restores can carry a full backup.
const RAFT_BODY_LIMIT: usize = 256 * 1024 * 1024;

/// Routes for the Raft listener.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_VOTE, post(vote))
        .route(PATH_SNAPSHOT, post(snapshot))
        .route(PATH_WRITE, post(write))
        .route(PATH_ELECT, post(elect))
        .layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT))
        .with_state(node)
}

type RaftResult<T, E = Infallible> = Json<Result<T, RaftError<NodeId, E>>>;

async fn append(
    State(node): State<Arc<Node>>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> RaftResult<AppendEntriesResponse<NodeId>> {
    let res = node.raft.append_entries(req).await;
    if res.is_ok() {
        node.note_leader_contact();
    }
    Json(res)
}

async fn vote(
    State(node): State<Arc<Node>>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> RaftResult<VoteResponse<NodeId>> {
    Json(node.raft.vote(req).await)
}

async fn snapshot(
    State(node): State<Arc<Node>>,
    Json(chunk): Json<SnapshotChunk>,
) -> RaftResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
    let req = InstallSnapshotRequest {
        vote: chunk.vote,
        meta: chunk.meta,
        offset: chunk.offset,
        data: chunk.data,
        done: chunk.done,
    };
    let res = node.raft.install_snapshot(req).await;
    if res.is_ok() {
        node.note_leader_contact();
    }
    Json(res)
}

/// A follower forwarding a client write; applied here only if this node leads.
async fn write(State(node): State<Arc<Node>>, Json(cmd): Json<Command>) -> Json<ForwardedWrite> {
    Json(node.write_local(cmd).await)
}

/// Leadership transfer: campaign until elected or the deadline passes.
async fn elect(State(node): State<Arc<Node>>) -> Json<bool> {
    Json(node.campaign().await)
}
