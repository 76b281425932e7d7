//! Start-up and shutdown of a node: open the store, serve the Raft and HTTP listeners,
//! bootstrap or join, export Raft metrics, and stop cleanly on the shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lucid_client::{ClientError, HttpClient, JoinRequest, RegistryClient};
use openraft::ServerState;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::config::RegistryConfig;
use crate::node::{Node, NodeOptions, StartError};
use crate::raft;
use crate::serve::serve;
use crate::store::StoreOptions;
use crate::types::Member;

/// How long in-flight requests (blocking queries included) get once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How often histogram samples are folded into buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(1);
/// How long the recursor gets to answer a forwarded query.
const DNS_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// The bound listeners a node serves.
pub struct Listeners {
    pub http: TcpListener,
    pub raft: TcpListener,
    /// DNS over UDP and TCP, normally on the same port.
    pub dns_udp: UdpSocket,
    pub dns_tcp: TcpListener,
    /// The HTTP API over TLS (`--https-addr`), when cluster TLS is configured.
    pub https: Option<TcpListener>,
}

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

fn advertised(bound: SocketAddr, cfg: &RegistryConfig, which: &str) -> Result<String, RunError> {
    let ip = match cfg.advertise {
        Some(ip) => ip,
        None if bound.ip().is_unspecified() => {
            return Err(RunError::Config(format!(
                "{which} listens on {bound}; set --advertise to the IP peers should use"
            )))
        }
        None => bound.ip(),
    };
    Ok(SocketAddr::new(ip, bound.port()).to_string())
}

/// Run a registry node until `shutdown` resolves.
pub async fn run(
    cfg: RegistryConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let http_bound = listeners.http.local_addr()?;
    let raft_bound = listeners.raft.local_addr()?;
    let https_bound = match &listeners.https {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let tls = match &cfg.tls {
        Some(f) => Some(
            lucid_tls::cluster::ClusterTls::load(&f.cert, &f.key, &f.ca)
                .map_err(|e| RunError::Config(format!("cluster TLS: {e}")))?,
        ),
        None => None,
    };
    if tls.is_some() != https_bound.is_some() {
        return Err(RunError::Config(
            "cluster TLS and the HTTPS listener go together (--tls-* files and --https-addr)"
                .into(),
        ));
    }
    // Peers reach this node's API where it speaks TLS when cluster TLS is on.
    let api_bound = https_bound.unwrap_or(http_bound);
    let me = Member {
        raft_addr: advertised(raft_bound, &cfg, "--raft-addr")?,
        http_addr: advertised(api_bound, &cfg, "--http-addr")?,
    };
    crate::store::private_dir(&cfg.data_dir)?;
    let opts = NodeOptions {
        node_id: cfg.node_id,
        data_dir: cfg.data_dir.clone(),
        heartbeat_ms: cfg.heartbeat_ms,
        election_min_ms: cfg.heartbeat_ms * 4,
        election_max_ms: cfg.heartbeat_ms * 8,
        snapshot_threshold: cfg.snapshot_threshold,
        keep_after_snapshot: (cfg.snapshot_threshold / 10).max(1),
        store: StoreOptions {
            cache_capacity: cfg.cache_mb * 1024 * 1024,
        },
    };
    let sealer = match &cfg.ca_key_secret {
        Some(f) => Some(Arc::new(load_sealer(f)?)),
        None => {
            tracing::warn!(
                "no --ca-key-secret-file: this node replicates the mesh CA but cannot sign"
            );
            None
        }
    };
    let metrics = lucid_runtime::metrics::install();
    let peer_client = match &tls {
        Some(t) => HttpClient::with_tls(Duration::from_secs(10), t.client.clone()),
        None => HttpClient::new(Duration::from_secs(10)),
    };
    let node = Node::start(&opts, me.clone(), peer_client).await?;
    tracing::info!(node_id = cfg.node_id, data_dir = %cfg.data_dir.display(), "node started");

    let stop = CancellationToken::new();
    // `PUT /v1/agent/leave` ends the node as the shutdown signal does.
    let leave = CancellationToken::new();
    let raft_srv = serve(
        listeners.raft,
        tls.as_ref().map(|t| t.raft_server.clone()),
        raft::server::router(node.clone()),
        cfg.conn_limits,
        stop.clone(),
    );
    let api_metrics = metrics.clone();
    let ca = Arc::new(crate::ca::Ca::new(
        node.clone(),
        cfg.leaf_ttl,
        sealer.clone(),
    ));
    let api_state = Arc::new(ApiState {
        node: node.clone(),
        metrics,
        ca,
        intentions_default: cfg.intentions_default,
        acl: api::acl::AclSettings {
            enabled: cfg.acl_enabled,
            bootstrap_secret: cfg.acl_bootstrap_token.clone(),
            sealer: sealer.clone(),
        },
        watchers: api::limits::Watchers::new(cfg.max_blocking_per_token, cfg.max_blocking_per_ip),
        signing: api::limits::Signing::new(cfg.ca_sign_rate, cfg.ca_sign_burst),
        script_checks: cfg.enable_script_checks,
        leave: leave.clone(),
        agent_tokens: Default::default(),
    });
    let acl_api = api_state.clone();
    let router = api::router(api_state);
    let https_srv = match (listeners.https, &tls) {
        (Some(l), Some(t)) => Some(serve(
            l,
            Some(t.https_server.clone()),
            router.clone(),
            cfg.conn_limits,
            stop.clone(),
        )),
        _ => None,
    };
    let http_srv = serve(listeners.http, None, router, cfg.conn_limits, stop.clone());
    let dns_bound = listeners.dns_udp.local_addr()?;
    if cfg.dns_recursor == Some(dns_bound) {
        return Err(RunError::Config(format!(
            "--dns-recursor {dns_bound} is this node's own DNS address: every query outside the zone would loop"
        )));
    }
    let zone = crate::dns::initial(&node.state, cfg.dns_zone.clone());
    tokio::spawn(crate::dns::follow(
        node.state.clone(),
        zone.clone(),
        stop.clone(),
    ));
    let forward = cfg
        .dns_recursor
        .map(|addr| lucid_dns::Forwarder::new(addr, DNS_FORWARD_TIMEOUT));
    let dns_stop = stop.clone();
    let dns_srv = tokio::spawn(lucid_dns::serve(
        lucid_dns::DnsHandler::with_policy(
            zone,
            forward,
            lucid_dns::Policy {
                acl: cfg.dns_acl.clone(),
                recursor_allow: cfg.dns_recursor_allow.clone(),
                rrl: std::num::NonZeroU32::new(cfg.dns_rrl_rate)
                    .map(|r| lucid_dns::Rrl::new(r, cfg.dns_rrl_slip)),
                rrl_exempt: cfg.dns_rrl_exempt.clone(),
            },
        ),
        listeners.dns_udp,
        listeners.dns_tcp,
        async move {
            dns_stop.cancelled().await;
        },
    ));
    tracing::info!("listening raft {raft_bound}");
    tracing::info!("listening http {http_bound}");
    if let Some(a) = https_bound {
        tracing::info!("listening https {a}");
    }
    tracing::info!("listening dns {dns_bound}");

    if cfg.bootstrap {
        match node.bootstrap().await {
            Ok(true) => tracing::info!("bootstrapped a new cluster"),
            Ok(false) => tracing::info!("existing state found; not bootstrapping again"),
            Err(e) => tracing::error!(error = %e, "bootstrap failed"),
        }
    } else if !cfg.join.is_empty() {
        if node.is_initialized().await {
            tracing::info!("existing state found; rejoining the cluster without asking");
        } else {
            tokio::spawn(join_loop(
                node.clone(),
                cfg.join.clone(),
                cfg.acl_bootstrap_token.clone(),
                stop.clone(),
            ));
        }
    } else if !node.is_initialized().await {
        tracing::warn!(
            "no state, no --bootstrap, no --join: waiting for a member to add this node"
        );
    }
    tokio::spawn(export_raft_metrics(node.clone(), stop.clone()));
    tokio::spawn(lucid_runtime::metrics::upkeep(
        api_metrics,
        METRICS_UPKEEP,
        stop.clone(),
    ));
    tokio::spawn(crate::health::run(node.clone(), stop.clone()));
    tokio::spawn(crate::sessions::run(node.clone(), stop.clone()));
    tokio::spawn(crate::tokens::reap(node.clone(), stop.clone()));
    tokio::spawn(crate::ca::prune_expired(node.clone(), stop.clone()));
    tokio::spawn(crate::ca::ensure_root(node.clone(), sealer, stop.clone()));
    tokio::spawn(api::acl::ensure_bootstrap(acl_api, stop.clone()));

    tokio::select! {
        () = shutdown => {}
        () = leave.cancelled() => {}
    }
    tracing::info!("shutting down");
    stop.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = tokio::join!(http_srv, raft_srv, dns_srv);
        if let Some(h) = https_srv {
            let _ = h.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight requests still open after the grace period; closing them");
    }
    if let Err(e) = node.raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    node.flush();
    Ok(())
}

/// The CA key sealer from the secret file; `--dev` creates a random secret (0600) when absent.
fn load_sealer(f: &crate::config::SecretFile) -> Result<lucid_tls::seal::Sealer, RunError> {
    let bad =
        |e: String| RunError::Config(format!("--ca-key-secret-file {}: {e}", f.path.display()));
    if f.generate && !f.path.exists() {
        use rand::Rng;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
            .collect();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&f.path)
            .map_err(|e| bad(e.to_string()))?;
        file.write_all(secret.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| bad(e.to_string()))?;
        tracing::info!(path = %f.path.display(), "created a CA key secret for --dev");
    }
    let secret = std::fs::read(&f.path).map_err(|e| bad(e.to_string()))?;
    lucid_tls::seal::Sealer::from_secret(&secret).map_err(|e| bad(e.to_string()))
}

/// Ask the given members to add this node until one does.
async fn join_loop(
    node: Arc<Node>,
    targets: Vec<String>,
    token: Option<String>,
    stop: CancellationToken,
) {
    let req = JoinRequest {
        node_id: node.id,
        raft_addr: node.me.raft_addr.clone(),
        http_addr: node.me.http_addr.clone(),
    };
    let mut backoff =
        lucid_runtime::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        for target in &targets {
            // A bare host:port gets this node's peer scheme (https with cluster TLS).
            let base = if target.contains("://") {
                target.clone()
            } else {
                node.http.url(target, "")
            };
            let client = RegistryClient::with_http(&base, node.http.clone());
            // An ACL-enabled cluster admits members with the management token.
            let client = match &token {
                Some(t) => client.with_token(t.clone()),
                None => client,
            };
            match client.join(&req).await {
                Ok(v) => {
                    tracing::info!(via = %target, already_member = v.already_member, "joined the cluster");
                    return;
                }
                Err(ClientError::Status {
                    status, message, ..
                }) if status.is_client_error() => {
                    tracing::error!(via = %target, %status, %message, "join refused; will retry");
                }
                Err(e) => {
                    tracing::warn!(via = %target, error = %lucid_client::http::report(&e), "join attempt failed; will retry")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Mirror Raft metrics into Prometheus gauges and count leader changes.
async fn export_raft_metrics(node: Arc<Node>, stop: CancellationToken) {
    let mut rx = node.raft.metrics();
    let mut last_leader = None;
    loop {
        {
            let m = rx.borrow_and_update();
            metrics::gauge!("lucid_raft_term").set(m.current_term as f64);
            metrics::gauge!("lucid_raft_last_log_index").set(m.last_log_index.unwrap_or(0) as f64);
            metrics::gauge!("lucid_raft_applied_index")
                .set(m.last_applied.map_or(0, |l| l.index) as f64);
            metrics::gauge!("lucid_raft_commit_index").set(node.commit_index() as f64);
            metrics::gauge!("lucid_raft_is_leader").set(if m.state == ServerState::Leader {
                1.0
            } else {
                0.0
            });
            metrics::gauge!("lucid_raft_peers")
                .set(m.membership_config.membership().voter_ids().count() as f64);
            if m.current_leader.is_some() && m.current_leader != last_leader {
                metrics::counter!("lucid_raft_leader_changes_total").increment(1);
            }
            last_leader = m.current_leader;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}
