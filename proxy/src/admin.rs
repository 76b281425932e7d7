//! Admin (127.0.0.1:15000), Envoy-like: `/ready` (200 once identity, registration, policy,
//! config entries and revocations are in place, 503 while starting or draining), `/live`,
//! `/stats`, `/stats/prometheus`, `/clusters` (`?format=json`), `/config_dump` (no private
//! keys), `/certs`, and `POST /drain` (deregister, stop accepting, finish in flight; the
//! process stays up until SIGTERM). The same router is served on `--admin-socket` when set;
//! [`gate`] decides who may use the write endpoints on each.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lucid_core::conn_limit::ConnLimits;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::mesh::Mesh;
use crate::stats;

pub mod gate;
pub mod socket;

use gate::Gate;

/// What the admin port can see and do.
#[derive(Clone)]
pub struct Admin {
    /// The mesh once started.
    pub mesh: watch::Receiver<Option<Arc<Mesh>>>,
    pub metrics: PrometheusHandle,
    /// Start draining the data-plane listeners.
    pub drain: Arc<dyn Fn() + Send + Sync>,
    pub listeners: serde_json::Value,
    /// `--admin-token`, which writes over TCP need.
    pub token: Option<Arc<str>>,
}

impl Admin {
    fn mesh(&self) -> Option<Arc<Mesh>> {
        self.mesh.borrow().clone()
    }
}

fn starting() -> Response {
    crate::reply::refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        lucid_core::ErrorCode::SidecarConfigFailed,
        "starting: no identity or policy yet",
    )
    .into_response()
}

async fn ready(State(a): State<Admin>) -> Response {
    match a.mesh() {
        Some(m) if m.draining.load(Ordering::Relaxed) => {
            (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
        }
        Some(_) => (StatusCode::OK, "ready\n").into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}

async fn certs(State(a): State<Admin>) -> Response {
    let Some(m) = a.mesh() else { return starting() };
    let c = m.cert.load();
    Json(json!({
        "identity": m.me.to_string(),
        "serial": c.serial,
        "not_before": c.not_before,
        "not_after": c.not_after,
        "expires_in_seconds": c.not_after - lucid_core::unix_now(),
        "rotations": *m.generation.borrow(),
        "cert_pem": c.pem,
        "root_pem": m.root_pem,
    }))
    .into_response()
}

async fn stats_text(State(a): State<Admin>) -> Response {
    match a.mesh() {
        Some(m) => stats::text(&m).into_response(),
        None => starting(),
    }
}

async fn prometheus(State(a): State<Admin>) -> Response {
    let m = a.mesh();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        stats::prometheus(&a.metrics, m.as_deref()),
    )
        .into_response()
}

async fn clusters(State(a): State<Admin>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(m) = a.mesh() else { return starting() };
    if q.get("format").map(String::as_str) == Some("json") {
        Json(stats::clusters_json(&m)).into_response()
    } else {
        stats::clusters_text(&m).into_response()
    }
}

async fn config_dump(State(a): State<Admin>) -> Response {
    let Some(m) = a.mesh() else { return starting() };
    let policy = m.policy.load();
    let entries = m.entries.load();
    let c = m.cert.load();
    Json(json!({
        "service": m.cfg.service,
        "plane": m.cfg.plane,
        "identity": m.me.to_string(),
        "instance_id": m.instance_id,
        "app_port": m.cfg.app_port,
        "health_path": m.cfg.health_path,
        "registry": m.cfg.registry,
        "listeners": a.listeners,
        "drain_grace": lucid_core::duration::format_duration(m.cfg.drain_grace),
        "certificate": {"serial": c.serial, "not_before": c.not_before, "not_after": c.not_after},
        "inbound": {"rate_limit": m.limiter.current()},
        "intentions": policy.intentions,
        "intentions_default": policy.default,
        "planes": policy.planes,
        "app_protocol": m.app_protocol().as_str(),
        "upstreams": stats::upstreams(&m),
        "config_entries": {
            "service_defaults": entries.services.values().collect::<Vec<_>>(),
            "proxy_defaults": entries.global,
        },
        "revoked_serials": m.trust.revoked().len(),
        "clusters": stats::clusters(&m),
        "draining": m.draining.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn drain(State(a): State<Admin>) -> Response {
    (a.drain)();
    (StatusCode::ACCEPTED, Json(json!({"draining": true}))).into_response()
}

/// The admin routes; the write ones behind `gate`.
fn router(admin: Admin, gate: Gate) -> Router {
    let writes = Router::new()
        .route("/drain", post(drain))
        .route_layer(middleware::from_fn_with_state(gate, gate::check));
    Router::new()
        .route("/live", get(|| async { "live\n" }))
        .route("/ready", get(ready))
        .route("/certs", get(certs))
        .route("/stats", get(stats_text))
        .route("/stats/prometheus", get(prometheus))
        .route("/clusters", get(clusters))
        .route("/config_dump", get(config_dump))
        .merge(writes)
        .with_state(admin)
}

/// In-flight admin requests get this long once the sidecar stops.
const ADMIN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Serve the admin router on `listener` and, when given, on the unix `socket` (where writes
/// need no token) until `stop`.
pub async fn run(
    listener: TcpListener,
    socket: Option<UnixListener>,
    admin: Admin,
    stop: CancellationToken,
    limits: ConnLimits,
) -> anyhow::Result<()> {
    let stopped = |stop: CancellationToken| async move {
        stop.cancelled().await;
    };
    let token = admin.token.clone();
    let local = socket.map(|l| {
        let app = router(admin.clone(), Gate::new(token.as_deref(), true));
        tokio::spawn(
            axum::serve(l, app)
                .with_graceful_shutdown(stopped(stop.clone()))
                .into_future(),
        )
    });
    let app = router(admin, Gate::new(token.as_deref(), false));
    // The TCP port gets the same timeouts and connection caps as the data plane.
    crate::serve::accept_loop(
        listener,
        stop,
        ADMIN_GRACE,
        "admin",
        limits,
        move |tcp, conn| {
            let app = app.clone();
            async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        app.clone().oneshot(req.map(axum::body::Body::new))
                    });
                conn.serve(tcp, svc, std::future::pending()).await;
            }
        },
    )
    .await;
    if let Some(l) = local {
        l.await??;
    }
    Ok(())
}
