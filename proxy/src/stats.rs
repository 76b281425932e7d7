//! What the admin port reports: Prometheus metrics through the `metrics` facade (requests by
//! direction, peer and status; latency histograms; circuit transitions; rate-limited
//! requests; retries; certificate expiry), per-endpoint gauges filled in at scrape time, and
//! the Envoy-style `/stats` and `/clusters` views built from the clusters' own counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lucid_core::config_entry::{CircuitBreaker, LbPolicy, Retry};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::json;

use crate::breaker::State;
use crate::cluster::Endpoint;
use crate::mesh::Mesh;

/// Inbound counters (outbound ones live on the clusters).
#[derive(Debug, Default)]
pub struct Inbound {
    pub rq_total: AtomicU64,
    pub rq_denied: AtomicU64,
    pub rq_rate_limited: AtomicU64,
    pub rq_app_error: AtomicU64,
}

/// The process's inbound counters.
pub fn inbound() -> &'static Inbound {
    static INBOUND: OnceLock<Inbound> = OnceLock::new();
    INBOUND.get_or_init(Inbound::default)
}

/// One request done, in `direction` (`inbound`/`outbound`) with `peer`.
pub fn request(direction: &'static str, peer: &str, status: http::StatusCode, took: Duration) {
    metrics::counter!("lucid_proxy_requests_total", "direction" => direction,
        "peer" => peer.to_owned(), "status" => status.as_str().to_owned())
    .increment(1);
    metrics::histogram!("lucid_proxy_request_duration_seconds", "direction" => direction,
        "peer" => peer.to_owned())
    .record(took.as_secs_f64());
}

pub fn retry(service: &str) {
    metrics::counter!("lucid_proxy_retries_total", "peer" => service.to_owned()).increment(1);
}

pub fn rate_limited() {
    inbound().rq_rate_limited.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("lucid_proxy_rate_limited_total").increment(1);
}

fn cert_expiry_seconds(mesh: &Mesh) -> i64 {
    mesh.cert.load().not_after - lucid_core::unix_now()
}

fn state_code(s: State) -> f64 {
    match s {
        State::Closed => 0.0,
        State::HalfOpen => 1.0,
        State::Open => 2.0,
    }
}

/// `/stats/prometheus`: the recorder's metrics plus gauges read now.
pub fn prometheus(handle: &PrometheusHandle, mesh: Option<&Mesh>) -> String {
    if let Some(mesh) = mesh {
        metrics::gauge!("lucid_proxy_cert_expiry_seconds").set(cert_expiry_seconds(mesh) as f64);
        let now = Instant::now();
        for c in mesh.clusters.all() {
            for e in c.endpoints.load().iter() {
                let labels = [
                    ("cluster", c.service.clone()),
                    ("endpoint", format!("{}:{}", e.addr, e.port)),
                ];
                let state = e.breaker.state(now);
                metrics::gauge!("lucid_proxy_circuit_state", &labels).set(state_code(state));
                // Counted by the breaker as they happen; published here, where it is read.
                for (to, n) in e.breaker.transitions() {
                    if n > 0 {
                        metrics::counter!("lucid_proxy_circuit_transitions_total",
                            "cluster" => c.service.clone(), "endpoint" => format!("{}:{}", e.addr, e.port),
                            "to" => to.as_str())
                        .absolute(n);
                    }
                }
                metrics::gauge!("lucid_proxy_endpoint_rq_active", &labels)
                    .set(e.rq_active.load(Ordering::Relaxed) as f64);
                metrics::gauge!("lucid_proxy_endpoint_cx_active", &labels)
                    .set(e.pool.cx_active.load(Ordering::Relaxed) as f64);
            }
        }
        for u in upstreams(mesh) {
            let svc = || u.service.clone();
            metrics::counter!("lucid_proxy_upstream_connections_opened_total", "upstream" => svc())
                .absolute(u.cx_opened);
            metrics::counter!("lucid_proxy_upstream_connections_failed_total", "upstream" => svc())
                .absolute(u.cx_failed);
            metrics::gauge!("lucid_proxy_upstream_connections_active", "upstream" => svc())
                .set(u.cx_active as f64);
            metrics::counter!("lucid_proxy_upstream_bytes_total", "upstream" => svc(), "direction" => "sent")
                .absolute(u.bytes_sent);
            metrics::counter!("lucid_proxy_upstream_bytes_total", "upstream" => svc(), "direction" => "received")
                .absolute(u.bytes_received);
        }
    }
    handle.render()
}

/// One `--upstream` listener as `/clusters` and `/config_dump` show it.
#[derive(Debug, Serialize)]
pub struct UpstreamView {
    pub service: String,
    pub listen: String,
    pub cx_opened: u64,
    pub cx_active: u64,
    pub cx_failed: u64,
    /// From the app to the destination, and back.
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Every `--upstream` listener, read now.
pub fn upstreams(mesh: &Mesh) -> Vec<UpstreamView> {
    mesh.upstreams
        .iter()
        .map(|u| UpstreamView {
            service: u.service.clone(),
            listen: u.listen.clone(),
            cx_opened: u.cx_opened.load(Ordering::Relaxed),
            cx_active: u.cx_active.load(Ordering::Relaxed),
            cx_failed: u.cx_failed.load(Ordering::Relaxed),
            bytes_sent: u.bytes_sent(),
            bytes_received: u.bytes_received(),
        })
        .collect()
}

/// One endpoint as `/clusters` shows it.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub id: String,
    pub address: String,
    pub health: &'static str,
    pub circuit: &'static str,
    pub rq_total: u64,
    pub rq_error: u64,
    pub rq_active: u64,
    pub cx_active: u64,
}

impl EndpointView {
    fn new(e: &Endpoint, now: Instant) -> Self {
        EndpointView {
            id: e.id.clone(),
            address: format!("{}:{}", e.addr, e.port),
            health: "healthy",
            circuit: e.breaker.state(now).as_str(),
            rq_total: e.rq_total.load(Ordering::Relaxed),
            rq_error: e.rq_error.load(Ordering::Relaxed),
            rq_active: e.rq_active.load(Ordering::Relaxed),
            cx_active: e.pool.cx_active.load(Ordering::Relaxed),
        }
    }

    /// The `(stat, value)` pairs of Envoy's text `/clusters`.
    fn stats(&self) -> [(&'static str, String); 6] {
        [
            ("health", self.health.to_owned()),
            ("circuit", self.circuit.to_owned()),
            ("rq_total", self.rq_total.to_string()),
            ("rq_error", self.rq_error.to_string()),
            ("rq_active", self.rq_active.to_string()),
            ("cx_active", self.cx_active.to_string()),
        ]
    }
}

/// One destination as `/clusters?format=json` and `/config_dump` show it.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub name: String,
    pub load_balancer: LbPolicy,
    pub circuit_breaker: CircuitBreaker,
    pub retry: Retry,
    pub retries: u64,
    pub endpoints: Vec<EndpointView>,
}

/// Every destination, read now: the one source of both `/clusters` formats.
pub fn clusters(mesh: &Mesh) -> Vec<ClusterView> {
    let now = Instant::now();
    mesh.clusters
        .all()
        .iter()
        .map(|c| {
            let s = c.settings.load();
            ClusterView {
                name: c.service.clone(),
                load_balancer: s.load_balancer.policy,
                circuit_breaker: s.circuit_breaker.clone(),
                retry: s.retry.clone(),
                retries: c.retries.load(Ordering::Relaxed),
                endpoints: c
                    .endpoints
                    .load()
                    .iter()
                    .map(|e| EndpointView::new(e, now))
                    .collect(),
            }
        })
        .collect()
}

/// `/clusters?format=json`.
pub fn clusters_json(mesh: &Mesh) -> serde_json::Value {
    json!({ "clusters": clusters(mesh), "upstreams": upstreams(mesh) })
}

/// `/clusters`: Envoy's `cluster::address::stat::value` lines.
pub fn clusters_text(mesh: &Mesh) -> String {
    let mut out = String::new();
    for c in clusters(mesh) {
        for e in &c.endpoints {
            for (k, v) in e.stats() {
                let _ = writeln!(out, "{}::{}::{k}::{v}", c.name, e.address);
            }
        }
    }
    for u in upstreams(mesh) {
        for (k, v) in [
            ("cx_opened", u.cx_opened),
            ("cx_active", u.cx_active),
            ("cx_failed", u.cx_failed),
            ("bytes_sent", u.bytes_sent),
            ("bytes_received", u.bytes_received),
        ] {
            let _ = writeln!(out, "upstream.{}::{}::{k}::{v}", u.service, u.listen);
        }
    }
    out
}

/// `/stats`: Envoy-style `name: value` lines.
pub fn text(mesh: &Mesh) -> String {
    let mut out = String::new();
    let now = Instant::now();
    for c in mesh.clusters.all() {
        let eps = c.endpoints.load();
        let sum = |f: &dyn Fn(&Endpoint) -> u64| eps.iter().map(|e| f(e)).sum::<u64>();
        let n = &c.service;
        let open = eps
            .iter()
            .filter(|e| e.breaker.state(now) != State::Closed)
            .count();
        let lines = [
            ("membership_total", eps.len() as u64),
            (
                "upstream_rq_total",
                sum(&|e| e.rq_total.load(Ordering::Relaxed)),
            ),
            (
                "upstream_rq_error",
                sum(&|e| e.rq_error.load(Ordering::Relaxed)),
            ),
            (
                "upstream_rq_active",
                sum(&|e| e.rq_active.load(Ordering::Relaxed)),
            ),
            (
                "upstream_cx_active",
                sum(&|e| e.pool.cx_active.load(Ordering::Relaxed)),
            ),
            ("upstream_rq_retry", c.retries.load(Ordering::Relaxed)),
            ("circuit_breakers_open", open as u64),
        ];
        for (k, v) in lines {
            let _ = writeln!(out, "cluster.{n}.{k}: {v}");
        }
    }
    let i = inbound();
    for (k, v) in [
        ("rq_total", &i.rq_total),
        ("rq_denied", &i.rq_denied),
        ("rq_rate_limited", &i.rq_rate_limited),
        ("rq_app_error", &i.rq_app_error),
    ] {
        let _ = writeln!(out, "inbound.{k}: {}", v.load(Ordering::Relaxed));
    }
    let _ = writeln!(
        out,
        "server.cert_expiry_seconds: {}",
        cert_expiry_seconds(mesh)
    );
    let _ = writeln!(
        out,
        "server.draining: {}",
        u8::from(mesh.draining.load(Ordering::Relaxed))
    );
    out
}
