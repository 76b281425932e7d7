//! Raw TCP across the mesh (Consul Connect's upstreams). On the caller's side, each
//! `--upstream SERVICE=ADDR:PORT` listener takes the app's connections and sends each one over
//! mTLS (ALPN `lucid-tcp/1`, a connection of its own) to a healthy instance of SERVICE, picked
//! as HTTP requests are (balancing, the endpoint's breaker, which counts failed connects). On
//! the destination's side the inbound listener sees that ALPN, applies the L4 intentions to
//! the caller's identity, and forwards the bytes to its app when the service's protocol is
//! `tcp`. Before any app byte moves, the destination answers one byte, its verdict, so the
//! caller's sidecar can tell a refusal (denied: close; no app: try another instance) from a
//! working stream. A denied caller's bytes never reach the app: it is not even dialled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lucid_core::conn_limit::ConnLimits;
use lucid_core::intention::{allowed, Caller};
use lucid_tls::mtls::PeerCert;
use lucid_tls::SpiffeId;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::breaker::{Outcome, Permit};
use crate::cluster::Endpoint;
use crate::config::{AppProtocol, Upstream};
use crate::mesh::{Mesh, Policy};
use crate::outbound::InFlight;
use crate::pool::Dial;
use crate::serve;
use crate::tunnel::{self, Bounds, Counters};

/// The destination's verdict on a TCP stream, its first byte back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Verdict {
    /// Connected to the app: bytes flow.
    Open = 0,
    /// An intention denies the caller.
    Denied = 1,
    /// The destination is not a `tcp` service.
    NotTcp = 2,
    /// The destination's app did not take the connection.
    NoApp = 3,
}

impl Verdict {
    fn of(b: u8) -> Option<Verdict> {
        [
            Verdict::Open,
            Verdict::Denied,
            Verdict::NotTcp,
            Verdict::NoApp,
        ]
        .into_iter()
        .find(|v| *v as u8 == b)
    }
}

/// How long dialling a peer (and hearing its verdict) or the app may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the destination's sidecar gives its app to take a connection.
const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Instances tried for one connection before giving up on it.
const MAX_TRIES: usize = 3;

/// One `--upstream` listener's counters (the `/clusters`, `/config_dump` and Prometheus views).
#[derive(Debug)]
pub struct UpstreamStats {
    pub service: String,
    pub listen: String,
    pub cx_opened: AtomicU64,
    pub cx_active: AtomicU64,
    /// Connections refused: no instance took them, or an intention denied them.
    pub cx_failed: AtomicU64,
    /// `from_a`: bytes the app sent; `from_b`: bytes it received.
    pub bytes: Counters,
}

impl UpstreamStats {
    pub fn new(u: &Upstream, listen: String) -> UpstreamStats {
        UpstreamStats {
            service: u.service.clone(),
            listen,
            cx_opened: AtomicU64::new(0),
            cx_active: AtomicU64::new(0),
            cx_failed: AtomicU64::new(0),
            bytes: Counters::default(),
        }
    }

    pub fn bytes_sent(&self) -> u64 {
        self.bytes.from_a.load(Ordering::Relaxed)
    }

    pub fn bytes_received(&self) -> u64 {
        self.bytes.from_b.load(Ordering::Relaxed)
    }
}

/// Serve one `--upstream` listener until `drain`; open connections get `grace`.
pub async fn run_upstream(
    listener: TcpListener,
    stats: Arc<UpstreamStats>,
    mesh: Arc<Mesh>,
    stop: CancellationToken,
    drain: CancellationToken,
    grace: Duration,
    limits: ConnLimits,
) {
    let bounds = Bounds {
        idle: mesh.cfg.tcp_idle_timeout,
        drain: drain.clone(),
        grace,
    };
    serve::accept_loop(
        listener,
        drain,
        grace,
        "upstream",
        limits,
        move |app, conn| {
            let (mesh, stats, stop, bounds) =
                (mesh.clone(), stats.clone(), stop.clone(), bounds.clone());
            async move {
                stats.cx_opened.fetch_add(1, Ordering::Relaxed);
                let _active = InFlight::new(&stats.cx_active);
                if !forward(app, &mesh, &stats, &stop, &bounds).await {
                    stats.cx_failed.fetch_add(1, Ordering::Relaxed);
                }
                drop(conn);
            }
        },
    )
    .await;
}

/// One app connection to `stats.service`; `false` when no instance took it.
async fn forward(
    app: TcpStream,
    mesh: &Mesh,
    stats: &UpstreamStats,
    stop: &CancellationToken,
    bounds: &Bounds,
) -> bool {
    let service = &stats.service;
    let cluster = match mesh.clusters.get(service, stop).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(service, error = %format!("{e:#}"), "upstream: discovery failed; closing the connection");
            return false;
        }
    };
    let settings = cluster.settings.load_full();
    let error_types = &settings.circuit_breaker.error_types;
    let mut tried: Vec<Arc<Endpoint>> = Vec::new();
    while tried.len() < MAX_TRIES {
        let Some(pick) = cluster.pick(settings.load_balancer.policy, &tried, Instant::now()) else {
            break;
        };
        let ep = pick.endpoint;
        let permit = Permit::new(ep.breaker.clone(), pick.admission);
        tried.push(ep.clone());
        ep.rq_total.fetch_add(1, Ordering::Relaxed);
        let dial = Dial {
            addr: &ep.addr,
            port: ep.port,
            service,
            tls: &cluster.tls.tcp,
            generation: *mesh.generation.borrow(),
            connect_timeout: CONNECT_TIMEOUT,
            trust: &mesh.trust,
        };
        let opened = async {
            let (mut tls, peer) = crate::pool::dial(&dial, &cluster.tls.tcp).await?;
            let verdict = tokio::time::timeout(CONNECT_TIMEOUT, tls.read_u8())
                .await
                .map_err(|_| anyhow::anyhow!("no verdict within {CONNECT_TIMEOUT:?}"))??;
            anyhow::Ok((tls, peer, Verdict::of(verdict)))
        };
        match opened.await {
            Ok((tls, peer, Some(Verdict::Open))) => {
                permit.record(false, Instant::now());
                let _active = InFlight::new(&ep.rq_active);
                let untrusted = mesh.trust.until_untrusted(&peer);
                let why = tunnel::splice(app, tls, bounds, Some(&stats.bytes), async move {
                    untrusted.await;
                })
                .await;
                tracing::debug!(service, reason = why.label(), "upstream connection ended");
                return true;
            }
            Ok((_, _, Some(v @ (Verdict::Denied | Verdict::NotTcp)))) => {
                // Not the endpoint's fault, and every instance would say the same.
                drop(permit);
                tracing::debug!(service, verdict = ?v, "upstream connection refused");
                metrics::counter!("lucid_proxy_upstream_refused_total", "upstream" => service.clone(),
                    "verdict" => if v == Verdict::Denied { "denied" } else { "not_tcp" })
                .increment(1);
                return false;
            }
            Ok((_, _, verdict)) => {
                ep.rq_error.fetch_add(1, Ordering::Relaxed);
                permit.record(Outcome::Connect.fails(error_types, None), Instant::now());
                tracing::warn!(service, endpoint = %format!("{}:{}", ep.addr, ep.port), ?verdict,
                    "upstream: the instance did not take the connection; trying another");
            }
            Err(e) => {
                ep.rq_error.fetch_add(1, Ordering::Relaxed);
                permit.record(Outcome::Connect.fails(error_types, None), Instant::now());
                tracing::warn!(service, endpoint = %format!("{}:{}", ep.addr, ep.port), error = %format!("{e:#}"),
                    "upstream: cannot reach the instance; trying another");
            }
        }
    }
    tracing::warn!(
        service,
        tried = tried.len(),
        "upstream: no instance took the connection"
    );
    false
}

/// A peer's TCP stream into this sidecar (inbound, ALPN `lucid-tcp/1`): the verdict, then the
/// bytes to and from the app until either side is done.
pub async fn inbound<S>(mut peer_io: S, mesh: &Mesh, peer: &PeerCert, bounds: &Bounds)
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    let caller = &peer.id;
    let policy = mesh.policy.load();
    let verdict = if mesh.app_protocol() != AppProtocol::Tcp {
        Verdict::NotTcp
    } else if !allowed_l4(&policy, caller, &mesh.me) {
        Verdict::Denied
    } else {
        Verdict::Open
    };
    metrics::counter!("lucid_proxy_tcp_inbound_connections_total", "peer" => caller.service.clone(),
        "verdict" => format!("{verdict:?}").to_lowercase())
    .increment(1);
    if verdict != Verdict::Open {
        // Counted above; at debug, so a denied peer cannot flood the log.
        tracing::debug!(peer = %caller, ?verdict, "inbound TCP stream refused");
        refuse(peer_io, verdict).await;
        return;
    }
    // Within the caller's wait for the verdict (`CONNECT_TIMEOUT`), so it hears "no app".
    let app = match tokio::time::timeout(
        APP_CONNECT_TIMEOUT,
        TcpStream::connect(("127.0.0.1", mesh.cfg.app_port)),
    )
    .await
    {
        Ok(Ok(app)) => app,
        _ => {
            tracing::warn!(
                port = mesh.cfg.app_port,
                "inbound TCP stream: the app did not take the connection"
            );
            refuse(peer_io, Verdict::NoApp).await;
            return;
        }
    };
    let _ = app.set_nodelay(true);
    if peer_io.write_all(&[Verdict::Open as u8]).await.is_err() {
        return;
    }
    let untrusted = mesh.trust.until_untrusted(peer);
    let why = tunnel::splice(peer_io, app, bounds, None, async move {
        untrusted.await;
    })
    .await;
    tracing::debug!(peer = %caller, reason = why.label(), "inbound TCP stream ended");
}

/// May `caller` open a TCP stream to `me`? An intention with L7 permissions (methods, paths)
/// cannot be checked on bytes, so when one governs the pair it denies: a caller allowed only
/// `GET /reports` must not get a raw stream (Consul refuses L7 intentions for tcp services;
/// a plane-wide one can still govern a tcp service here). A tcp service is opened to a caller
/// by an intention with an `Action`.
fn allowed_l4(policy: &Policy, caller: &SpiffeId, me: &SpiffeId) -> bool {
    let (source, destination) = (
        Caller {
            service: &caller.service,
            plane: Some(&caller.plane),
        },
        Caller {
            service: &me.service,
            plane: Some(&me.plane),
        },
    );
    match allowed(
        &policy.intentions,
        source,
        destination,
        None,
        policy.default,
    ) {
        (ok, None) => ok,
        (ok, Some(i)) => ok && i.permissions.is_empty(),
    }
}

async fn refuse<S: AsyncWrite + Unpin>(mut io: S, verdict: Verdict) {
    let _ = io.write_all(&[verdict as u8]).await;
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_round_trip_and_unknown_bytes_are_none() {
        for v in [
            Verdict::Open,
            Verdict::Denied,
            Verdict::NotTcp,
            Verdict::NoApp,
        ] {
            assert_eq!(Verdict::of(v as u8), Some(v));
        }
        assert_eq!(Verdict::of(9), None);
    }

    #[test]
    fn an_l7_intention_never_opens_a_tcp_stream() {
        use lucid_core::intention::{Action, Intention, Party, Permission};
        let id = |plane: &str, svc: &str| SpiffeId::new(plane, svc).unwrap();
        let (web, cache) = (id("ops", "web"), id("data", "cache"));
        let intention =
            |source: &str, action: Option<Action>, permissions: Vec<Permission>| Intention {
                id: "x".into(),
                source: Party::parse(source).unwrap(),
                destination: Party::parse("plane:data").unwrap(),
                action,
                permissions,
                description: String::new(),
            };
        let get_only = vec![Permission {
            action: Action::Allow,
            methods: vec!["GET".into()],
            path_exact: None,
            path_prefix: Some("/reports".into()),
        }];
        let policy = |intentions| Policy {
            intentions,
            planes: Default::default(),
            default: Action::Allow,
        };
        assert!(
            !allowed_l4(
                &policy(vec![intention("plane:ops", None, get_only.clone())]),
                &web,
                &cache
            ),
            "GET /reports on the plane is no raw stream"
        );
        assert!(allowed_l4(
            &policy(vec![intention("plane:ops", Some(Action::Allow), vec![])]),
            &web,
            &cache
        ));
        assert!(!allowed_l4(
            &policy(vec![intention("*", Some(Action::Deny), vec![])]),
            &web,
            &cache
        ));
        assert!(
            allowed_l4(&policy(vec![]), &web, &cache),
            "the default decides"
        );
    }
}
