//! Outbound (127.0.0.1:15002): plain HTTP/1.1 or HTTP/2 (h2c, gRPC) from the app to a
//! destination service, through its peer sidecars. One request goes down this stack, each
//! stage in its own file and tested there:
//!
//! 1. [`route`]: the destination from the absolute URI or `Host: <svc>.lucid.internal`;
//! 2. cluster: the destination's endpoints and settings (`cluster.rs`, discovered on first use);
//! 3. [`replay`]: hold the body when the request may be sent more than once (an idempotent
//!    request, or a gRPC call to a service that retries gRPC statuses: a copy of what streams);
//! 4. per try, within the breaker's `Timeout` or the gRPC caller's `grpc-timeout` (504
//!    `LUCID_ERR_1305`): balance (the cluster's pick, skipping open circuits, `cluster.rs`),
//!    admit (the endpoint's breaker permit, `breaker.rs`), then [`attempt`]: the pooled mTLS
//!    connection (`pool.rs`) within the try's timeout;
//! 5. [`classify`]: the try as the breaker records it (a refusal never counts; a gRPC call's
//!    status counts when its trailers pass, `grpc::Watched`);
//! 6. [`retry`]: resend a refusal, retry another endpoint, or answer the app
//!    ([`attempt::Try::reply`]); a gRPC caller gets the mesh's refusals as gRPC statuses.
//!
//! An HTTP/1.1 `Upgrade` (WebSocket) takes [`upgrade`](Outbound::upgrade) instead: one try, on
//! an HTTP/1.1 connection of its own, then the two upgraded connections are spliced.

mod attempt;
mod classify;
mod replay;
mod retry;
mod route;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use lucid_core::conn_limit::ConnLimits;
use lucid_core::ErrorCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::attempt::attempt;
use self::replay::Payload;
use self::retry::{Next, Progress};
use crate::breaker::{Outcome, Permit};
use crate::cluster::Endpoint;
use crate::mesh::Mesh;
use crate::pool::{Dial, Refusal};
use crate::reply::refuse;
use crate::tunnel::Bounds;
use crate::{grpc, hop, serve, stats, upgrade, Body};

struct Outbound {
    mesh: Arc<Mesh>,
    stop: CancellationToken,
    /// Upgraded connections end on drain after the grace period, or when idle.
    bounds: Bounds,
}

/// Serve the app's outbound requests until `drain`, then finish within `grace`.
pub async fn run(
    listener: tokio::net::TcpListener,
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
    let out = Arc::new(Outbound { mesh, stop, bounds });
    serve::accept_loop(
        listener,
        drain,
        grace,
        "outbound",
        limits,
        move |tcp, conn| {
            let out = out.clone();
            async move {
                let tracker = conn.tracker();
                let svc = hyper::service::service_fn(move |req| {
                    let (out, tracker) = (out.clone(), tracker.clone());
                    async move { Ok::<_, Infallible>(out.handle(req, &tracker).await) }
                });
                conn.serve(tcp, svc, std::future::pending()).await;
            }
        },
    )
    .await;
}

/// Increments a counter for the guard's lifetime.
pub(crate) struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    pub(crate) fn new(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Outbound {
    async fn handle(&self, req: Request<Incoming>, tracker: &TaskTracker) -> Response<Body> {
        let start = Instant::now();
        let is_grpc = grpc::is_grpc(req.headers());
        let resp = match route::destination(&req) {
            None => refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::RoutingInvalid,
                "the destination must be <service>.lucid.internal (Host header or absolute URI)",
            ),
            Some(service) => {
                let resp = match upgrade::requested(&req) {
                    Some(protocol) => self.upgrade(&service, req, protocol, tracker).await,
                    None => self.forward(&service, req, is_grpc).await,
                };
                stats::request("outbound", &service, resp.status(), start.elapsed());
                resp
            }
        };
        if is_grpc {
            grpc::for_caller(resp)
        } else {
            resp
        }
    }

    async fn cluster(&self, service: &str) -> Result<Arc<crate::cluster::Cluster>, Response<Body>> {
        self.mesh
            .clusters
            .get(service, &self.stop)
            .await
            .map_err(|e| {
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::UpstreamUnavailable,
                    &format!("discovery of {service}: {e:#}"),
                )
            })
    }

    async fn forward(
        &self,
        service: &str,
        req: Request<Incoming>,
        is_grpc: bool,
    ) -> Response<Body> {
        let cluster = match self.cluster(service).await {
            Ok(c) => c,
            Err(refused) => return refused,
        };
        let settings = cluster.settings.load_full();
        let (mut parts, body) = req.into_parts();
        // To the peer sidecar over HTTP/2, where gRPC's `TE: trailers` is allowed.
        hop::strip(&mut parts.headers, true);
        parts.headers.remove(hop::ORIG_PROTO);
        if parts.version == http::Version::HTTP_2 {
            parts
                .headers
                .insert(hop::ORIG_PROTO, http::HeaderValue::from_static("HTTP/2"));
        }
        let replay = if is_grpc {
            replay::Replay::GrpcStatuses
        } else {
            replay::Replay::Idempotent
        };
        let mut payload = match Payload::new(&parts, body, settings.retry.attempts, replay).await {
            Ok(p) => p,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::RoutingInvalid,
                    &format!("reading the request body: {e}"),
                )
            }
        };
        let _active = InFlight::new(&cluster.active);
        // A gRPC caller's own deadline is the request's when it is sooner than the service's
        // `Timeout` (which it never extends); running out of the caller's time says nothing
        // about the endpoint, so that timeout does not count on the breaker.
        let service_timeout = settings.circuit_breaker.timeout;
        let timeout = is_grpc
            .then(|| grpc::timeout(&parts.headers))
            .flatten()
            .map_or(service_timeout, |t| t.min(service_timeout));
        let callers_deadline = timeout < service_timeout;
        let deadline = Instant::now() + timeout;
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        let mut unsent: Option<Request<Body>> = None;
        let mut refusals = 0;
        loop {
            let now = Instant::now();
            let Some(pick) = cluster.pick(settings.load_balancer.policy, &tried, now) else {
                let (n, open) = cluster.summary(now);
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::UpstreamUnavailable,
                    &if n == 0 {
                        format!("no healthy endpoint of {service}")
                    } else {
                        format!("no usable endpoint of {service}: {n} endpoint(s), {open} circuit(s) open")
                    },
                );
            };
            let endpoint = pick.endpoint;
            let permit = Permit::new(endpoint.breaker.clone(), pick.admission);
            let retrying = !tried.is_empty();
            tried.push(endpoint.clone());
            let Some(req) = payload.next(&parts, unsent.take()) else {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::UpstreamUnavailable,
                    &format!("{service}: the request body was already sent"),
                );
            };
            let left = deadline.saturating_duration_since(now);
            let per_try = if payload.held() {
                settings.retry.per_try_timeout.min(left)
            } else {
                left
            };
            let _retry = retrying.then(|| InFlight::new(&cluster.retries_active));
            let generation = *self.mesh.generation.borrow();
            let result = attempt(&self.mesh, &cluster, &endpoint, req, per_try, generation).await;

            let report = result.report(is_grpc);
            // A gRPC call answered with its headers only says how it went in its trailers:
            // the breaker hears of it then (unless it is retried, which cannot happen now).
            let later =
                is_grpc && report.outcome == Outcome::Status(200) && report.refused.is_none();
            let mut permit = Some(permit);
            if !later {
                if report.rq_error() {
                    endpoint.rq_error.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(p) = permit.take() {
                    let failed = report.breaker_failure(&settings.circuit_breaker.error_types)
                        && !(callers_deadline && report.outcome == Outcome::Timeout);
                    p.record(failed, Instant::now());
                }
            }
            let ours = report.refused == Some(Refusal::OurCertificate);
            if ours {
                self.mesh.rotate_soon(generation);
            }
            let progress = Progress {
                held: payload.held(),
                tries: tried.len(),
                refusals,
                before_deadline: Instant::now() < deadline,
                budget_ok: retry::budget_allows(
                    cluster.active.load(Ordering::Relaxed),
                    cluster.retries_active.load(Ordering::Relaxed),
                ),
                status_only: is_grpc,
            };
            match retry::decide(&settings.retry, &report, &progress) {
                Next::Resend => {
                    // On a fresh connection, after our rotation when the peer refused our
                    // certificate; the endpoint may be picked again.
                    refusals += 1;
                    tried.pop();
                    if ours {
                        self.rotated_from(generation, deadline).await;
                    }
                    unsent = result.into_unsent();
                }
                Next::Retry => {
                    cluster.retries.fetch_add(1, Ordering::Relaxed);
                    stats::retry(service);
                    unsent = result.into_unsent();
                }
                Next::Reply => {
                    let resp = result.reply(service, &endpoint, timeout.min(per_try));
                    return match permit {
                        Some(p) => trailers_decide(resp, p, endpoint, &settings),
                        None => resp,
                    };
                }
            }
        }
    }

    /// An HTTP/1.1 upgrade: one endpoint, a connection of its own, and when the destination's
    /// app switches protocols, the two upgraded connections spliced.
    async fn upgrade(
        &self,
        service: &str,
        mut req: Request<Incoming>,
        protocol: http::HeaderValue,
        tracker: &TaskTracker,
    ) -> Response<Body> {
        let cluster = match self.cluster(service).await {
            Ok(c) => c,
            Err(refused) => return refused,
        };
        let settings = cluster.settings.load_full();
        let Some(pick) = cluster.pick(settings.load_balancer.policy, &[], Instant::now()) else {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::UpstreamUnavailable,
                &format!("no usable endpoint of {service}"),
            );
        };
        let endpoint = pick.endpoint;
        let permit = Permit::new(endpoint.breaker.clone(), pick.admission);
        let error_types = &settings.circuit_breaker.error_types;
        endpoint.rq_total.fetch_add(1, Ordering::Relaxed);
        let ours = hyper::upgrade::on(&mut req);
        let (mut parts, body) = req.into_parts();
        hop::strip(&mut parts.headers, false);
        parts.headers.remove(hop::ORIG_PROTO);
        upgrade::restore(&mut parts.headers, protocol.clone());
        if let Ok(host) = http::HeaderValue::from_str(&format!("{service}.lucid.internal")) {
            parts.headers.insert(http::header::HOST, host);
        }
        if let Some(pq) = parts.uri.path_and_query().cloned() {
            parts.uri = pq.into();
        }
        let dial = Dial {
            addr: &endpoint.addr,
            port: endpoint.port,
            service,
            tls: &cluster.tls.upgrade,
            generation: *self.mesh.generation.borrow(),
            connect_timeout: attempt::CONNECT_TIMEOUT,
            trust: &self.mesh.trust,
        };
        let (tls, peer) = match crate::pool::dial(&dial, &cluster.tls.upgrade).await {
            Ok(c) => c,
            Err(e) => {
                endpoint.rq_error.fetch_add(1, Ordering::Relaxed);
                permit.record(Outcome::Connect.fails(error_types, None), Instant::now());
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::UpstreamUnavailable,
                    &format!("{service} at {}:{}: {e:#}", endpoint.addr, endpoint.port),
                );
            }
        };
        let untrusted = self.mesh.trust.until_untrusted(&peer);
        let sent = tokio::time::timeout(
            settings.circuit_breaker.timeout,
            upgrade::send(
                tls,
                Request::from_parts(parts, http_body_util::BodyExt::boxed(body)),
            ),
        )
        .await;
        let mut resp = match sent {
            Ok(Ok(r)) => r,
            failed => {
                let outcome = if failed.is_err() {
                    Outcome::Timeout
                } else {
                    Outcome::Reset
                };
                endpoint.rq_error.fetch_add(1, Ordering::Relaxed);
                permit.record(outcome.fails(error_types, None), Instant::now());
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::UpstreamUnavailable,
                    &format!("{service}: the upgrade request got no answer"),
                );
            }
        };
        let outcome = Outcome::Status(resp.status().as_u16());
        permit.record(outcome.fails(error_types, None), Instant::now());
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            hop::strip(resp.headers_mut(), false);
            return resp.map(http_body_util::BodyExt::boxed);
        }
        if !upgrade::switched(&resp, &protocol) {
            return refuse(
                StatusCode::BAD_GATEWAY,
                ErrorCode::UpstreamUnavailable,
                &format!("{service} switched to another protocol than the one asked for"),
            );
        }
        let theirs = hyper::upgrade::on(&mut resp);
        let labels = ("outbound", service.to_owned());
        upgrade::splice(
            tracker,
            ours,
            theirs,
            self.bounds.clone(),
            labels,
            async move {
                untrusted.await;
            },
        );
        resp.map(|_| crate::reply::full(bytes::Bytes::new()))
    }

    /// Wait (until `deadline` at most) for our certificate to be replaced.
    async fn rotated_from(&self, generation: u64, deadline: Instant) {
        let mut rx = self.mesh.generation.subscribe();
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, rx.wait_for(|g| *g != generation)).await;
    }
}

/// A gRPC answer whose status is still to come in its trailers: the breaker (and `rq_error`)
/// hear of it when they pass; a caller that goes away first gives the probe slot back.
fn trailers_decide(
    resp: Response<Body>,
    permit: Permit,
    endpoint: Arc<Endpoint>,
    settings: &lucid_core::config_entry::Resolved,
) -> Response<Body> {
    let error_types = settings.circuit_breaker.error_types.clone();
    resp.map(move |body| {
        let on_end = move |end: grpc::End| {
            let outcome = match end {
                grpc::End::Status(code) => Outcome::Grpc(code),
                grpc::End::Broken => Outcome::Reset,
                grpc::End::Dropped => return drop(permit),
            };
            let report = classify::Report::of(outcome);
            if report.rq_error() {
                endpoint.rq_error.fetch_add(1, Ordering::Relaxed);
            }
            permit.record(report.breaker_failure(&error_types), Instant::now());
        };
        http_body_util::BodyExt::boxed(grpc::Watched::new(body, on_end))
    })
}
