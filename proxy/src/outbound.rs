//! Outbound (127.0.0.1:15002): plain HTTP/1.1 or HTTP/2 (h2c) from the app; the destination
//! service from an absolute-form URI (`HTTP_PROXY`) or the Host header
//! `<service>.lucid.internal[:port]`. Each request gets an endpoint from the cluster's
//! balancer (skipping open circuits), goes over the endpoint's pooled mTLS connection to the
//! peer sidecar, and is retried on another endpoint when the service's retry policy, the
//! method and the retry budget allow; the whole exchange is bounded by the circuit breaker's
//! `Timeout` (504 `LUCID_ERR_1305`).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use lucid_core::config_entry::Retry;
use lucid_core::conn_limit::ConnLimits;
use lucid_core::ErrorCode;
use tokio_util::sync::CancellationToken;

use crate::breaker::{Outcome, Permit};
use crate::cluster::{Cluster, Endpoint};
use crate::mesh::Mesh;
use crate::pool::{Dial, Refusal, SendError};
use crate::reply::refuse;
use crate::{hop, serve, stats, Body};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Idempotent requests with bodies up to this size are held so they can be retried.
const MAX_REPLAY: u64 = 64 * 1024;
/// Retries in flight may be this share of requests in flight (Envoy's default budget)...
const BUDGET_PERCENT: u64 = 20;
/// ...but at least this many.
const BUDGET_MIN: u64 = 3;
/// Sends of one request that a peer refused unprocessed (GOAWAY, our certificate), beyond
/// its retries: each goes to a fresh connection, so more than a few means something else.
const MAX_REFUSALS: u32 = 3;

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

/// `<service>` from `web.lucid.internal[:port]`.
fn service_of(host: &str) -> Option<String> {
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host.strip_suffix(".lucid.internal")
        .map(str::to_owned)
        .filter(|s| lucid_core::catalog::valid_service_name(s))
}

fn destination(req: &Request<Incoming>) -> Option<String> {
    let host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })?;
    service_of(host)
}

/// The request body: held (so the request can be sent again) or streamed once.
enum Payload {
    Held(Bytes),
    Stream(Option<Incoming>),
}

/// Increments a counter for the guard's lifetime.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Does the retry policy cover this outcome?
fn retry_on(retry: &Retry, o: Outcome) -> bool {
    let on = |t: &str| retry.on.iter().any(|x| x == t);
    match o {
        Outcome::Status(s) => {
            (s >= 500 && on("5xx")) || (matches!(s, 502..=504) && on("gateway-error"))
        }
        Outcome::Connect => on("connect-failure"),
        Outcome::Reset => on("reset"),
        Outcome::Timeout => on("timeout"),
    }
}

/// What one try came to.
enum Try {
    Answered(Response<Incoming>),
    Failed {
        outcome: Outcome,
        error: String,
        /// The request, when the peer never saw it.
        unsent: Option<Request<Body>>,
        /// The peer refused it unprocessed (the request itself did not come back).
        refused: Option<Refusal>,
    },
}

impl Outbound {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        let Some(service) = destination(&req) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::RoutingInvalid,
                "the destination must be <service>.lucid.internal (Host header or absolute URI)",
            );
        };
        let resp = self.route(&service, req).await;
        stats::request("outbound", &service, resp.status(), start.elapsed());
        resp
    }

    async fn route(&self, service: &str, req: Request<Incoming>) -> Response<Body> {
        let cluster = match self
            .mesh
            .clusters
            .get(&self.mesh, service, &self.stop)
            .await
        {
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
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let replayable = idempotent
            && settings.retry.attempts > 0
            && body.size_hint().upper().is_some_and(|n| n <= MAX_REPLAY);
        let mut payload = if replayable {
            match body.collect().await {
                Ok(b) => Payload::Held(b.to_bytes()),
                Err(e) => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::RoutingInvalid,
                        &format!("reading the request body: {e}"),
                    )
                }
            }
        } else {
            Payload::Stream(Some(body))
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
            let req = match (unsent.take(), &mut payload) {
                (Some(r), _) => r,
                (None, Payload::Held(b)) => {
                    let body = Full::new(b.clone()).map_err(|never| match never {}).boxed();
                    Request::from_parts(parts.clone(), body)
                }
                (None, Payload::Stream(s)) => match s.take() {
                    Some(b) => Request::from_parts(parts.clone(), b.boxed()),
                    None => {
                        return refuse(
                            StatusCode::SERVICE_UNAVAILABLE,
                            ErrorCode::UpstreamUnavailable,
                            &format!("{service}: the request body was already sent"),
                        )
                    }
                },
            };
            let left = deadline.saturating_duration_since(now);
            let per_try = if matches!(payload, Payload::Held(_)) {
                settings.retry.per_try_timeout.min(left)
            } else {
                left
            };
            let _retry = retrying.then(|| InFlight::new(&cluster.retries_active));
            let generation = *self.mesh.generation.borrow();
            let result = self
                .attempt(&cluster, &endpoint, req, per_try, generation)
                .await;
            let (outcome, app_type) = match &result {
                Try::Answered(r) => (
                    Outcome::Status(r.status().as_u16()),
                    r.headers()
                        .get("x-lucid-error-type")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                ),
                Try::Failed { outcome, .. } => (*outcome, None),
            };
            let refused = match &result {
                Try::Failed { refused, .. } => *refused,
                Try::Answered(_) => None,
            };
            // A refusal says nothing about the endpoint's health.
            let failed = refused.is_none()
                && outcome.fails(&settings.circuit_breaker.error_types, app_type.as_deref());
            // Envoy's rq_error: 5xx answers and requests that got no answer.
            if !matches!(outcome, Outcome::Status(s) if s < 500) {
                endpoint.rq_error.fetch_add(1, Ordering::Relaxed);
            }
            permit.record(failed, Instant::now());

            let came_back = matches!(
                &result,
                Try::Failed {
                    unsent: Some(_),
                    ..
                }
            );
            // Refused unprocessed: send it again on a fresh connection (after our rotation
            // when the peer refused our certificate), without spending a retry.
            if let Some(why) = refused {
                if why == Refusal::OurCertificate {
                    self.mesh.rotate_soon(generation);
                }
                if (came_back || matches!(payload, Payload::Held(_)))
                    && refusals < MAX_REFUSALS
                    && Instant::now() < deadline
                {
                    refusals += 1;
                    tried.pop();
                    if why == Refusal::OurCertificate {
                        self.rotated_from(generation, deadline).await;
                    }
                    if let Try::Failed { unsent: u, .. } = result {
                        unsent = u;
                    }
                    continue;
                }
            }

            let may_resend = matches!(payload, Payload::Held(_)) || came_back;
            let budget_ok = cluster.retries_active.load(Ordering::Relaxed)
                < (cluster.active.load(Ordering::Relaxed) * BUDGET_PERCENT / 100).max(BUDGET_MIN);
            // A request the peer never saw is safe to send elsewhere whatever its method.
            let covered = retry_on(&settings.retry, outcome) || came_back;
            let again = may_resend
                && covered
                && budget_ok
                && tried.len() <= settings.retry.attempts as usize
                && Instant::now() < deadline;
            if again {
                cluster.retries.fetch_add(1, Ordering::Relaxed);
                stats::retry(service);
                if let Try::Failed { unsent: u, .. } = result {
                    unsent = u;
                }
                continue;
            }
            return match result {
                Try::Answered(mut r) => {
                    hop::strip(r.headers_mut(), false);
                    r.map(|b| b.boxed())
                }
                Try::Failed {
                    outcome: Outcome::Timeout,
                    ..
                } => refuse(
                    StatusCode::GATEWAY_TIMEOUT,
                    ErrorCode::Timeout,
                    &format!(
                        "{service} did not answer within {:?}",
                        settings.circuit_breaker.timeout.min(per_try)
                    ),
                ),
                Try::Failed { error, .. } => refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::UpstreamUnavailable,
                    &format!("{service} at {}:{}: {error}", endpoint.addr, endpoint.port),
                ),
            };
        }
    }

    /// Wait (until `deadline` at most) for our certificate to be replaced.
    async fn rotated_from(&self, generation: u64, deadline: Instant) {
        let mut rx = self.mesh.generation.subscribe();
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, rx.wait_for(|g| *g != generation)).await;
    }

    async fn attempt(
        &self,
        cluster: &Cluster,
        ep: &Endpoint,
        req: Request<Body>,
        within: Duration,
        generation: u64,
    ) -> Try {
        ep.rq_total.fetch_add(1, Ordering::Relaxed);
        let _active = InFlight::new(&ep.rq_active);
        let dial = Dial {
            addr: &ep.addr,
            port: ep.port,
            service: &cluster.service,
            tls: &cluster.tls,
            generation,
            connect_timeout: CONNECT_TIMEOUT.min(within),
            trust: &self.mesh.trust,
        };
        match tokio::time::timeout(within, ep.pool.send(&dial, req)).await {
            Ok(Ok(resp)) => Try::Answered(resp),
            Ok(Err((e, back))) => Try::Failed {
                outcome: match &e {
                    SendError::Connect(_) => Outcome::Connect,
                    SendError::Failed { unsent: true, .. } | SendError::Refused { .. } => {
                        Outcome::Connect
                    }
                    SendError::Failed { .. } => Outcome::Reset,
                },
                refused: match &e {
                    SendError::Refused { why, .. } => Some(*why),
                    _ => None,
                },
                error: e.to_string(),
                unsent: back,
            },
            Err(_) => Try::Failed {
                outcome: Outcome::Timeout,
                error: format!("no answer within {within:?}"),
                unsent: None,
                refused: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(service_of("web.lucid.internal").as_deref(), Some("web"));
        assert_eq!(
            service_of("web.lucid.internal:8080").as_deref(),
            Some("web")
        );
        assert_eq!(service_of("example.com"), None);
        assert_eq!(service_of("Bad_Name.lucid.internal"), None);
    }

    #[test]
    fn retry_conditions() {
        let r = Retry {
            attempts: 2,
            per_try_timeout: Duration::from_secs(1),
            on: vec!["connect-failure".into(), "gateway-error".into()],
        };
        assert!(retry_on(&r, Outcome::Connect));
        assert!(retry_on(&r, Outcome::Status(503)));
        assert!(!retry_on(&r, Outcome::Status(500)));
        assert!(!retry_on(&r, Outcome::Status(200)));
        assert!(!retry_on(&r, Outcome::Timeout));
        assert!(!retry_on(&r, Outcome::Reset));
    }
}
