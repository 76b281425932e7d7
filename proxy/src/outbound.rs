//! Outbound (127.0.0.1:15002): plain HTTP/1.1 or HTTP/2 (h2c) from the app to a destination
//! service, through its peer sidecars. One request goes down this stack, each stage in its
//! own file and tested there:
//!
//! 1. [`route`]: the destination from the absolute URI or `Host: <svc>.lucid.internal`;
//! 2. cluster: the destination's endpoints and settings (`cluster.rs`, discovered on first use);
//! 3. [`replay`]: hold the body when the request may be sent more than once;
//! 4. per try, within the breaker's `Timeout` (504 `LUCID_ERR_1305`): balance (the cluster's
//!    pick, skipping open circuits, `cluster.rs`), admit (the endpoint's breaker permit,
//!    `breaker.rs`), then [`attempt`]: the pooled mTLS connection (`pool.rs`) within the
//!    try's timeout;
//! 5. [`classify`]: the try as the breaker records it (a refusal never counts);
//! 6. [`retry`]: resend a refusal, retry another endpoint, or answer the app
//!    ([`attempt::Try::reply`]).

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

use self::attempt::attempt;
use self::replay::Payload;
use self::retry::{Next, Progress};
use crate::breaker::Permit;
use crate::cluster::Endpoint;
use crate::mesh::Mesh;
use crate::pool::Refusal;
use crate::reply::refuse;
use crate::{hop, serve, stats, Body};

struct Outbound {
    mesh: Arc<Mesh>,
    stop: CancellationToken,
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
    let out = Arc::new(Outbound { mesh, stop });
    serve::accept_loop(
        listener,
        drain,
        grace,
        "outbound",
        limits,
        move |tcp, conn| {
            let out = out.clone();
            async move {
                let svc = hyper::service::service_fn(move |req| {
                    let out = out.clone();
                    async move { Ok::<_, Infallible>(out.handle(req).await) }
                });
                conn.serve(tcp, svc, std::future::pending()).await;
            }
        },
    )
    .await;
}

/// Increments a counter for the guard's lifetime.
pub(super) struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    pub(super) fn new(c: &'a AtomicU64) -> Self {
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
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        let Some(service) = route::destination(&req) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::RoutingInvalid,
                "the destination must be <service>.lucid.internal (Host header or absolute URI)",
            );
        };
        let resp = self.forward(&service, req).await;
        stats::request("outbound", &service, resp.status(), start.elapsed());
        resp
    }

    async fn forward(&self, service: &str, req: Request<Incoming>) -> Response<Body> {
        let cluster = match self.mesh.clusters.get(service, &self.stop).await {
            Ok(c) => c,
            Err(e) => {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::UpstreamUnavailable,
                    &format!("discovery of {service}: {e:#}"),
                )
            }
        };
        let settings = cluster.settings.load_full();
        let (mut parts, body) = req.into_parts();
        // To the peer sidecar over HTTP/2, where gRPC's `TE: trailers` is allowed.
        hop::strip(&mut parts.headers, true);
        let mut payload = match Payload::new(&parts, body, settings.retry.attempts).await {
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
        let deadline = Instant::now() + settings.circuit_breaker.timeout;
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
            let permit = Permit::new(&endpoint.breaker, pick.admission);
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

            let report = result.report();
            if report.rq_error() {
                endpoint.rq_error.fetch_add(1, Ordering::Relaxed);
            }
            permit.record(
                report.breaker_failure(&settings.circuit_breaker.error_types),
                Instant::now(),
            );
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
                    let timeout = settings.circuit_breaker.timeout.min(per_try);
                    return result.reply(service, &endpoint, timeout);
                }
            }
        }
    }

    /// Wait (until `deadline` at most) for our certificate to be replaced.
    async fn rotated_from(&self, generation: u64, deadline: Instant) {
        let mut rx = self.mesh.generation.subscribe();
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, rx.wait_for(|g| *g != generation)).await;
    }
}
