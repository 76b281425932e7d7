//! A registry node: the Raft handle, the local replica, and the cluster-level operations the
//! API builds on: writes from any node (forwarded to the leader), linearizable reads,
//! membership changes and leadership transfer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::Method;
use lucid_client::{ClientError, HttpClient};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::raft::network::Network;
use crate::raft::{PATH_ELECT, PATH_WRITE};
use crate::store::{self, StateReader, StoreOptions};
use crate::types::{Command, CommandResult, Member, NodeId, Raft};

/// How long a write waits for a leader before answering 503.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// How long a transfer target campaigns before giving up.
const CAMPAIGN_DEADLINE: Duration = Duration::from_secs(4);

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot (and purge the log) after this many entries.
    pub snapshot_threshold: u64,
    /// Entries kept after a snapshot, so slightly lagging followers need no snapshot.
    pub keep_after_snapshot: u64,
    pub store: StoreOptions,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::OpenError),
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("no cluster leader: {0}")]
    NoLeader(String),
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
}

/// The answer to a write forwarded over the Raft listener.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardedWrite {
    Ok(CommandResult),
    /// This node does not lead; the sender should look again and retry.
    NotLeader,
    /// This node leads but cannot reach a quorum; nothing was appended.
    NoQuorum,
    Failed(String),
}

/// One registry node.
pub struct Node {
    pub id: NodeId,
    pub me: Member,
    pub raft: Raft,
    pub state: StateReader,
    pub http: HttpClient,
    committed: Arc<AtomicU64>,
    /// When a leader last reached us, for `X-Consul-LastContact`.
    last_contact: Mutex<Option<Instant>>,
    /// When a quorum last acknowledged this leader, as an instant: openraft reports it as
    /// "milliseconds ago" at the moment it published its metrics, which ages as soon as it is
    /// read. Kept current by [`track_quorum_ack`].
    quorum_ack: Arc<Mutex<Option<Instant>>>,
    /// Membership changes one at a time: openraft refuses overlapping ones.
    pub membership_lock: tokio::sync::Mutex<()>,
}

impl Node {
    /// Open the store and start Raft (not yet initialised or joined).
    pub async fn start(
        opts: &NodeOptions,
        me: Member,
        http: HttpClient,
    ) -> Result<Arc<Node>, StartError> {
        let (log, sm, state) = store::open(&opts.data_dir, &opts.store)?;
        let committed = log.committed_index();
        let config = openraft::Config {
            cluster_name: "lucid".into(),
            heartbeat_interval: opts.heartbeat_ms,
            election_timeout_min: opts.election_min_ms,
            election_timeout_max: opts.election_max_ms,
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 1024 * 1024,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_threshold),
            max_in_snapshot_log_to_keep: opts.keep_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;
        let raft = Raft::new(
            opts.node_id,
            Arc::new(config),
            Network::new(http.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let quorum_ack = Arc::new(Mutex::new(None));
        tokio::spawn(track_quorum_ack(raft.metrics(), quorum_ack.clone()));
        Ok(Arc::new(Node {
            id: opts.node_id,
            me,
            raft,
            state,
            http,
            committed,
            last_contact: Mutex::new(Some(Instant::now())),
            quorum_ack,
            membership_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// Has this node a log or vote (bootstrapped, joined, or restarted)?
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Make this node the single voter of a new cluster, unless it already has state.
    pub async fn bootstrap(&self) -> Result<bool, WriteError> {
        if self.is_initialized().await {
            return Ok(false);
        }
        let members = BTreeMap::from([(self.id, self.me.clone())]);
        match self.raft.initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(WriteError::Unavailable(e.to_string())),
        }
    }

    /// The current leader and how to reach it.
    pub fn leader(&self) -> Option<(NodeId, Member)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let member = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, member))
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// Milliseconds since a leader last reached us (0 on the leader itself).
    pub fn last_contact_ms(&self) -> u64 {
        if self.is_leader() {
            return 0;
        }
        let last = *self
            .last_contact
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.map_or(u64::MAX, |t| t.elapsed().as_millis() as u64)
    }

    pub(crate) fn note_leader_contact(&self) {
        *self
            .last_contact
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// The highest log index known committed here.
    pub fn commit_index(&self) -> u64 {
        self.committed
            .load(Ordering::Relaxed)
            .max(self.state.applied_index())
    }

    /// Apply a command through Raft from any node: locally when leading, else forwarded.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, WriteError> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut last_problem = String::from("no leader elected");
        loop {
            match self.write_local(cmd.clone()).await {
                ForwardedWrite::Ok(r) => return Ok(r),
                ForwardedWrite::Failed(e) => return Err(WriteError::Unavailable(e)),
                ForwardedWrite::NoQuorum => {
                    last_problem = "the leader cannot reach a quorum".into()
                }
                ForwardedWrite::NotLeader => {}
            }
            if let Some((id, leader)) = self.leader().filter(|(id, _)| *id != self.id) {
                match self.forward_write(&leader, &cmd).await {
                    Ok(ForwardedWrite::Ok(r)) => return Ok(r),
                    Ok(ForwardedWrite::Failed(e)) => return Err(WriteError::Unavailable(e)),
                    Ok(ForwardedWrite::NotLeader) => {
                        last_problem = format!("node {id} stopped leading")
                    }
                    Ok(ForwardedWrite::NoQuorum) => {
                        last_problem = format!("leader {id} cannot reach a quorum")
                    }
                    // Never retry once the request may have reached the leader: it may have
                    // been applied, and a retry would apply it twice.
                    Err(e) if !e.is_connect() => {
                        return Err(WriteError::Unavailable(format!(
                            "forwarding to leader {id} failed, outcome unknown: {}",
                            lucid_client::http::report(&e)
                        )))
                    }
                    Err(e) => {
                        last_problem = format!(
                            "leader {id} unreachable: {}",
                            lucid_client::http::report(&e)
                        )
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(WriteError::NoLeader(last_problem));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Apply a command only if this node leads.
    pub async fn write_local(&self, cmd: Command) -> ForwardedWrite {
        if self.is_leader() && !self.has_quorum() {
            // Refuse before appending: an entry appended now could commit much later, after
            // the client was told the write failed.
            return ForwardedWrite::NoQuorum;
        }
        match tokio::time::timeout(WRITE_DEADLINE, self.raft.client_write(cmd)).await {
            Ok(Ok(resp)) => ForwardedWrite::Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => ForwardedWrite::NotLeader,
            Ok(Err(e)) => ForwardedWrite::Failed(e.to_string()),
            Err(_) => ForwardedWrite::Failed(format!(
                "not committed within {WRITE_DEADLINE:?}; it may still be applied if the cluster recovers"
            )),
        }
    }

    /// Has this leader heard from a quorum within an election timeout?
    fn has_quorum(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        match m.millis_since_quorum_ack {
            Some(ms) => ms <= self.raft.config().election_timeout_max,
            // Not measured yet (a leader that just took over): let Raft decide.
            None => true,
        }
    }

    async fn forward_write(
        &self,
        leader: &Member,
        cmd: &Command,
    ) -> Result<ForwardedWrite, ClientError> {
        let body = serde_json::to_vec(cmd).map_err(|e| ClientError::Request(e.to_string()))?;
        let url = self.http.url(&leader.raft_addr, PATH_WRITE);
        self.http
            .send(
                Method::POST,
                &url,
                &[("content-type", "application/json")],
                body,
            )
            .await?
            .error_for_status()?
            .json()
    }

    /// May this leader answer a default-mode read from its own state? Only while its lease
    /// holds: a quorum acknowledged it (counted from when the acknowledged request was sent)
    /// less than the minimum election timeout ago, less a tenth for clock drift. Followers
    /// refuse to vote for anyone else within that time, so no other leader can have
    /// committed a write this one has not seen.
    pub fn lease_valid(&self) -> bool {
        let min = self.raft.config().election_timeout_min;
        let lease = min.saturating_sub(min / 10);
        let acked = *self
            .quorum_ack
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let m = self.raft.metrics();
        let m = m.borrow();
        // A new leader's lease also waits until its own first entry is applied: entries that
        // earlier terms committed may still be on their way into the state machine.
        m.state == ServerState::Leader
            && m.current_leader == Some(self.id)
            && m.last_applied
                .is_some_and(|l| l.leader_id.term == m.current_term)
            && acked.is_some_and(|at| at.elapsed() < Duration::from_millis(lease))
    }

    /// Wait until this node's reads are linearizable (leader only).
    pub async fn linearize(&self) -> Result<(), WriteError> {
        self.raft
            .ensure_linearizable()
            .await
            .map(|_| ())
            .map_err(|e| WriteError::NoLeader(e.to_string()))
    }

    /// Campaign for leadership until elected or the deadline passes (transfer target side).
    pub async fn campaign(&self) -> bool {
        let deadline = Instant::now() + CAMPAIGN_DEADLINE;
        while Instant::now() < deadline {
            if self.is_leader() {
                return true;
            }
            if self.raft.trigger().elect().await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.is_leader()
    }

    /// Hand leadership to `target` (a voter): stop heartbeating so followers' leases lapse,
    /// and have the target campaign. openraft 0.9 has no transfer of its own.
    pub async fn transfer_leadership(&self, target: &Member) -> Result<bool, ClientError> {
        self.raft.runtime_config().heartbeat(false);
        let url = self.http.url(&target.raft_addr, PATH_ELECT);
        let res = self
            .http
            .send_with_timeout(
                Method::POST,
                &url,
                &[],
                Vec::new(),
                CAMPAIGN_DEADLINE + Duration::from_secs(2),
            )
            .await;
        self.raft.runtime_config().heartbeat(true);
        res?.error_for_status()?.json()
    }

    /// Add a node as learner (waiting for it to catch up), then promote it to voter.
    pub async fn add_voter(&self, id: NodeId, member: Member) -> Result<(), String> {
        self.raft
            .add_learner(id, member, true)
            .await
            .map_err(|e| format!("adding node {id} as learner: {e}"))?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
            .await
            .map_err(|e| format!("promoting node {id} to voter: {e}"))?;
        Ok(())
    }

    /// Remove a voter (or learner) from the cluster.
    pub async fn remove_member(&self, id: NodeId, is_voter: bool) -> Result<(), String> {
        let change = if is_voter {
            ChangeMembers::RemoveVoters([id].into())
        } else {
            ChangeMembers::RemoveNodes([id].into())
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| format!("removing node {id}: {e}"))?;
        Ok(())
    }
}

impl Node {
    /// Flush everything to disk (shutdown).
    pub fn flush(&self) {
        if let Err(e) = self.state.tree().flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// Turn each published "quorum acknowledged N ms ago" into the instant it happened, so the
/// lease is measured at the moment a read asks, not when the metrics were last published.
async fn track_quorum_ack(
    mut metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, Member>>,
    into: Arc<Mutex<Option<Instant>>>,
) {
    loop {
        let at = metrics
            .borrow_and_update()
            .millis_since_quorum_ack
            .and_then(|ms| Instant::now().checked_sub(Duration::from_millis(ms)));
        *into.lock().unwrap_or_else(PoisonError::into_inner) = at;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
