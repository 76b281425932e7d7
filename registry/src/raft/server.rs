//! The server half of the Raft transport, on `--raft-addr`.
//!
//! With cluster TLS, only peers presenting a certificate from the cluster CA get here (see
//! `crate::serve`). Snapshot chunks are also assembled here and the whole snapshot is
//! validated before its last chunk reaches openraft: a snapshot the state machine cannot
//! load would otherwise stop Raft on this node for good.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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

/// What the Raft handlers share.
pub struct RaftApi {
    node: Arc<Node>,
    /// The snapshot being received: its id and the bytes so far.
    incoming: Mutex<Option<(String, Vec<u8>)>>,
}

/// Routes for the Raft listener.
pub fn router(node: Arc<Node>) -> Router {
    let api = Arc::new(RaftApi {
        node,
        incoming: Mutex::new(None),
    });
    Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_VOTE, post(vote))
        .route(PATH_SNAPSHOT, post(snapshot))
        .route(PATH_WRITE, post(write))
        .route(PATH_ELECT, post(elect))
        .layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT))
        .with_state(api)
}

type RaftResult<T, E = Infallible> = Json<Result<T, RaftError<NodeId, E>>>;

async fn append(
    State(api): State<Arc<RaftApi>>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> RaftResult<AppendEntriesResponse<NodeId>> {
    let res = api.node.raft.append_entries(req).await;
    if res.is_ok() {
        api.node.note_leader_contact();
    }
    Json(res)
}

async fn vote(
    State(api): State<Arc<RaftApi>>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> RaftResult<VoteResponse<NodeId>> {
    Json(api.node.raft.vote(req).await)
}

async fn snapshot(State(api): State<Arc<RaftApi>>, Json(chunk): Json<SnapshotChunk>) -> Response {
    if let Err(why) = api.admit_chunk(&chunk) {
        tracing::warn!(snapshot = %chunk.meta.snapshot_id, %why, "snapshot chunk refused");
        metrics::counter!("lucid_raft_snapshot_chunks_refused_total").increment(1);
        return (StatusCode::BAD_REQUEST, why).into_response();
    }
    let req = InstallSnapshotRequest {
        vote: chunk.vote,
        meta: chunk.meta,
        offset: chunk.offset,
        data: chunk.data,
        done: chunk.done,
    };
    let res = api.node.raft.install_snapshot(req).await;
    if res.is_ok() {
        api.node.note_leader_contact();
    }
    let res: RaftResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> = Json(res);
    res.into_response()
}

impl RaftApi {
    /// Follow the chunks of one snapshot in order; on the last, check the whole snapshot
    /// decodes as the state machine will decode it.
    fn admit_chunk(&self, chunk: &SnapshotChunk) -> Result<(), String> {
        let mut incoming = self.incoming.lock().unwrap_or_else(PoisonError::into_inner);
        let id = &chunk.meta.snapshot_id;
        if chunk.offset == 0 {
            *incoming = Some((id.clone(), Vec::new()));
        }
        let Some((cur, buf)) = incoming.as_mut() else {
            return Err(format!(
                "chunk at offset {} of a snapshot never begun",
                chunk.offset
            ));
        };
        // A retransmitted chunk (the sender timed out waiting for our answer) rewrites the tail.
        if cur != id || chunk.offset > buf.len() as u64 {
            return Err(format!(
                "chunk of {id} at offset {} does not follow {cur} at {}",
                chunk.offset,
                buf.len()
            ));
        }
        buf.truncate(chunk.offset as usize);
        if buf.len() + chunk.data.len() > RAFT_BODY_LIMIT {
            *incoming = None;
            return Err(format!("snapshot larger than {RAFT_BODY_LIMIT} bytes"));
        }
        buf.extend_from_slice(&chunk.data);
        if chunk.done {
            let whole = incoming.take().map(|(_, b)| b).unwrap_or_default();
            crate::store::state::decode_blob(&whole)
                .map_err(|e| format!("snapshot {id} does not decode: {e}"))?;
        }
        Ok(())
    }
}

/// A follower forwarding a client write; applied here only if this node leads.
async fn write(State(api): State<Arc<RaftApi>>, Json(cmd): Json<Command>) -> Json<ForwardedWrite> {
    Json(api.node.write_local(cmd).await)
}

/// Leadership transfer: campaign until elected or the deadline passes.
async fn elect(State(api): State<Arc<RaftApi>>) -> Json<bool> {
    Json(api.node.campaign().await)
}
