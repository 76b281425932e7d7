//! lucid-proxy: the Lucid Mesh sidecar (DESIGN §11): identity from the registry's CA with
//! rotation, registration with a TTL check, intentions, config entries and revocations
//! followed with blocking queries, mTLS inbound (authorised and rate limited per request) and
//! outbound (discovery, load balancing, circuit breaking, retries, timeouts, pooled HTTP/2),
//! an Envoy-like admin port (optionally also on a unix socket), and a graceful drain on
//! SIGTERM or `POST /drain`.
//!
//! # Layout
//! - [`config`] holds the flags; [`mesh`] identity, registration, policy followers, rotation;
//!   [`control`] is the connection to the registry, [`entries`] the config-entry snapshot.
//! - [`inbound`], [`outbound`], [`admin`]: the three listeners; [`serve`] their accept loop
//!   and limits; [`trust`] ends connections whose peer certificate is revoked or expires.
//! - What passes them: [`path`] (normalised before L7 intentions), [`hop`] (hop-by-hop
//!   headers dropped), [`admin::gate`] (who may write on the admin port).
//! - Outbound parts: [`cluster`] (endpoints, balancing), [`breaker`], [`pool`].
//! - Beyond request/response: [`grpc`] (deadlines, statuses, refusals as gRPC statuses),
//!   [`upgrade`] (HTTP Upgrade/WebSocket), [`tcp`] (`--upstream` listeners and inbound TCP
//!   streams), [`tunnel`] (splicing two byte streams), [`health`] (probing the app by kind).
//! - [`ratelimit`] (inbound), [`stats`] (metrics and admin views), [`reply`] (own errors).

#![forbid(unsafe_code)]

pub mod admin;
pub mod breaker;
pub mod cluster;
pub mod config;
pub mod control;
pub mod entries;
pub mod grpc;
pub mod health;
pub mod hop;
pub mod inbound;
pub mod mesh;
pub mod outbound;
pub mod path;
pub mod pool;
pub mod ratelimit;
pub mod refusal;
pub mod reply;
pub mod serve;
pub mod stats;
pub mod tcp;
pub mod trust;
pub mod tunnel;
pub mod upgrade;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use serde_json::json;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::ProxyConfig;

/// The body type of everything the proxy sends and answers.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// After deregistering, keep serving this long so callers' discovery catches up before the
/// listeners close (at most half the grace period).
const SETTLE: Duration = Duration::from_secs(1);

/// The bound listeners.
pub struct Listeners {
    pub inbound: TcpListener,
    pub outbound: TcpListener,
    pub admin: TcpListener,
    /// `--admin-socket`, bound with [`admin::socket::bind`].
    pub admin_socket: Option<UnixListener>,
    /// One per `--upstream`.
    pub upstreams: Vec<(config::Upstream, TcpListener)>,
}

/// Deregister, let callers notice, then tell the data-plane listeners to drain.
async fn begin_drain(mesh: Option<Arc<mesh::Mesh>>, drain: CancellationToken, grace: Duration) {
    if drain.is_cancelled() {
        return;
    }
    if let Some(m) = mesh {
        m.deregister().await;
        tokio::time::sleep(SETTLE.min(grace / 2)).await;
    }
    tracing::info!("draining: no new connections; in-flight requests have {grace:?}");
    drain.cancel();
}

/// With the inbound listener on every interface and no `--address`: the local IP this host
/// uses to reach the registry, which peers on the same network can reach too (a UDP
/// "connect" sends nothing, it only asks the kernel for the route). Loopback if unknown.
async fn route_to(registries: &[String]) -> String {
    for r in registries {
        let hostport = r.split("://").last().unwrap_or(r).trim_end_matches('/');
        let Ok(mut addrs) = tokio::net::lookup_host(hostport).await else {
            continue;
        };
        let Some(target) = addrs.next() else { continue };
        let bind = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        if let Ok(sock) = tokio::net::UdpSocket::bind(bind).await {
            if sock.connect(target).await.is_ok() {
                if let Ok(local) = sock.local_addr() {
                    tracing::info!(address = %local.ip(), "advertising the address that routes to the registry");
                    return local.ip().to_string();
                }
            }
        }
    }
    "127.0.0.1".to_owned()
}

/// The admin socket goes with the process, so a later one finds no stale file.
fn remove_socket(path: Option<&std::path::Path>) {
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
}

/// Run the sidecar until `shutdown`, then drain and deregister.
pub async fn run(
    cfg: ProxyConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = lucid_runtime::metrics::install();
    let inbound_addr = listeners.inbound.local_addr()?;
    let outbound_addr = listeners.outbound.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    let address = match cfg.address {
        Some(ip) => ip.to_string(),
        None if inbound_addr.ip().is_unspecified() => route_to(&cfg.registry).await,
        None => inbound_addr.ip().to_string(),
    };
    tracing::info!("listening inbound {inbound_addr}");
    tracing::info!("listening outbound {outbound_addr}");
    tracing::info!("listening admin {admin_addr}");
    let mut upstream_listeners = Vec::new();
    for (u, l) in listeners.upstreams {
        let addr = l.local_addr()?;
        tracing::info!("listening upstream:{} {addr}", u.service);
        let stats = Arc::new(tcp::UpstreamStats::new(&u, addr.to_string()));
        upstream_listeners.push((stats, l));
    }
    let upstream_stats: Vec<_> = upstream_listeners.iter().map(|(s, _)| s.clone()).collect();
    let grace = cfg.drain_grace;
    let limits = lucid_core::conn_limit::ConnLimits::from_fd_limit()
        .with(cfg.max_connections, cfg.max_connections_per_ip);
    // Three latches, in the order they fire: `stop` (the signal: stop following the
    // registry and begin draining), `drain` (listeners refuse new connections; open ones get
    // the grace period) and `admin_stop` (last, so /ready shows the drain to the end).
    let stop = CancellationToken::new();
    let admin_stop = CancellationToken::new();
    let drain = CancellationToken::new();
    let (mesh_tx, mesh_rx) = watch::channel(None);
    let drain_fn = {
        let (mesh_rx, drain) = (mesh_rx.clone(), drain.clone());
        Arc::new(move || {
            let mesh = mesh_rx.borrow().clone();
            tokio::spawn(begin_drain(mesh, drain.clone(), grace));
        })
    };
    let admin_socket = cfg
        .admin_socket
        .clone()
        .filter(|_| listeners.admin_socket.is_some());
    if let Some(p) = &admin_socket {
        tracing::info!(path = %p.display(), "admin also on a unix socket (mode 0600)");
    }
    let admin = tokio::spawn(admin::run(
        listeners.admin,
        listeners.admin_socket,
        admin::Admin {
            mesh: mesh_rx,
            metrics: metrics.clone(),
            drain: drain_fn,
            listeners: json!({"inbound": inbound_addr, "outbound": outbound_addr, "admin": admin_addr,
                "admin_socket": admin_socket,
                "upstreams": upstream_stats.iter().map(|u| json!({"service": u.service, "listen": u.listen}))
                    .collect::<Vec<_>>()}),
            token: cfg.admin_token.as_deref().map(Arc::from),
        },
        admin_stop.clone(),
        limits,
    ));
    tokio::spawn(lucid_runtime::metrics::upkeep(
        metrics,
        Duration::from_secs(1),
        admin_stop.clone(),
    ));
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });
    let mesh = match mesh::Mesh::start(
        cfg,
        inbound_addr.port(),
        address,
        upstream_stats,
        stop.clone(),
    )
    .await
    {
        Ok(m) => m,
        Err(e) => {
            admin_stop.cancel();
            let _ = admin.await;
            remove_socket(admin_socket.as_deref());
            return Err(e);
        }
    };
    mesh.spawn_followers(stop.clone());
    let inbound = tokio::spawn(inbound::run(
        listeners.inbound,
        mesh.clone(),
        drain.clone(),
        grace,
        limits,
    ));
    let outbound = tokio::spawn(outbound::run(
        listeners.outbound,
        mesh.clone(),
        stop.clone(),
        drain.clone(),
        grace,
        limits,
    ));
    let mut upstreams = Vec::new();
    for (stats, l) in upstream_listeners {
        // Discover the destination now, so `/clusters` shows it before the first connection.
        let (m, st, service) = (mesh.clone(), stop.clone(), stats.service.clone());
        tokio::spawn(async move {
            let _ = control::retry("discovering an upstream", &st, || {
                m.clusters.get(&service, &st)
            })
            .await;
        });
        upstreams.push(tokio::spawn(tcp::run_upstream(
            l,
            stats,
            mesh.clone(),
            stop.clone(),
            drain.clone(),
            grace,
            limits,
        )));
    }
    let _ = mesh_tx.send(Some(mesh.clone()));
    tracing::info!(identity = %mesh.me, "ready");
    stop.cancelled().await;
    begin_drain(Some(mesh.clone()), drain, grace).await;
    let _ = tokio::join!(inbound, outbound);
    for u in upstreams {
        let _ = u.await;
    }
    admin_stop.cancel();
    let _ = admin.await;
    remove_socket(admin_socket.as_deref());
    tracing::info!("stopped");
    Ok(())
}
