//! The client half of the Raft transport.

use std::time::Duration;

use http::Method;
use lucid_client::{ClientError, HttpClient};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{SnapshotChunk, PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE};
use crate::types::{Member, NodeId, TypeConfig};

/// Creates one [`PeerConn`] per replication target; all share one connection pool.
#[derive(Clone)]
pub struct Network {
    http: HttpClient,
}

impl Network {
    pub fn new(http: HttpClient) -> Self {
        Network { http }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConn;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerConn {
        PeerConn {
            http: self.http.clone(),
            target,
            raft_addr: node.raft_addr.clone(),
        }
    }
}

/// RPCs to one peer.
pub struct PeerConn {
    http: HttpClient,
    target: NodeId,
    raft_addr: String,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Member, RaftError<NodeId, E>>;

impl PeerConn {
    async fn post<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = self.http.url(&self.raft_addr, path);
        let resp = self
            .http
            .send_with_timeout(
                Method::POST,
                &url,
                &[("content-type", "application/json")],
                body,
                ttl,
            )
            .await
            .map_err(|e| match e {
                // Refused or unroutable: openraft backs off instead of hammering the peer.
                ClientError::Transport { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        if !resp.status.is_success() {
            let e = std::io::Error::other(format!(
                "peer {} answered {}: {}",
                self.target,
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&resp.body)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.post(PATH_APPEND, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let chunk = SnapshotChunk {
            vote: rpc.vote,
            meta: rpc.meta,
            offset: rpc.offset,
            data: rpc.data,
            done: rpc.done,
        };
        self.post(PATH_SNAPSHOT, &chunk, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.post(PATH_VOTE, &rpc, option.hard_ttl()).await
    }
}
