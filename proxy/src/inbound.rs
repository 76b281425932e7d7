//! Inbound (15001): mTLS with a required client certificate from the mesh root (revoked
//! serials refused at the handshake), the path normalised (400 `LUCID_ERR_1103` when it
//! cannot be safely), the peer's SPIFFE id authorised against intentions per request (L7 on
//! the normalised path, 403 `LUCID_ERR_1203`), the service's rate limit (429
//! `LUCID_ERR_1201`), then forwarded to the local app over a connection pool with the
//! normalised path, hop-by-hop headers dropped both ways, and `X-Forwarded-Client-Cert`
//! naming the caller.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lucid_core::conn_limit::ConnLimits;
use lucid_core::intention::{allowed, Caller};
use lucid_core::ErrorCode;
use lucid_tls::mtls::{peer_identity, server_config};
use lucid_tls::SpiffeId;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::mesh::Mesh;
use crate::reply::refuse;
use crate::serve::{EndReason, HEADER_TIMEOUT};
use crate::{hop, serve, stats, Body};

type AppClient = Client<HttpConnector, Incoming>;

/// Serve inbound connections until `drain`, then finish within `grace`.
pub async fn run(
    listener: TcpListener,
    mesh: Arc<Mesh>,
    drain: CancellationToken,
    grace: Duration,
    limits: ConnLimits,
) -> anyhow::Result<()> {
    let cfg = server_config(
        mesh.identity.clone(),
        &mesh.root_pem,
        mesh.trust.revoked().clone(),
    )?;
    let acceptor = TlsAcceptor::from(cfg);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let app: AppClient = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        // Below common app keep-alive timeouts (Node's 5 s) so we never reuse a closing one.
        .pool_idle_timeout(Duration::from_secs(4))
        .pool_max_idle_per_host(256)
        .build(connector);
    serve::accept_loop(listener, drain, grace, "inbound", limits, move |tcp, conn| {
        let (acceptor, mesh, app) = (acceptor.clone(), mesh.clone(), app.clone());
        async move {
            let tls = match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "inbound handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let Some(cert) = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(peer_identity)
            else {
                return;
            };
            let untrusted = mesh.trust.until_untrusted(&cert);
            let peer = Arc::new(cert.id);
            let svc = hyper::service::service_fn(move |req| {
                let (mesh, app, peer) = (mesh.clone(), app.clone(), peer.clone());
                async move {
                    let start = Instant::now();
                    let resp = handle(req, &mesh, &app, &peer).await;
                    stats::request("inbound", &peer.service, resp.status(), start.elapsed());
                    Ok::<_, Infallible>(resp)
                }
            });
            if let Some(why @ (EndReason::Revoked | EndReason::Expired)) =
                conn.serve(tls, svc, untrusted).await
            {
                metrics::counter!("lucid_proxy_connections_ended_total", "reason" => why.label())
                    .increment(1);
                tracing::info!(peer = %cert.serial, reason = why.label(), "inbound connection closed: peer certificate no longer trusted");
            }
        }
    })
    .await;
    Ok(())
}

async fn handle(
    mut req: Request<Incoming>,
    mesh: &Mesh,
    app: &AppClient,
    peer: &SpiffeId,
) -> Response<Body> {
    let counters = stats::inbound();
    counters.rq_total.fetch_add(1, Ordering::Relaxed);
    // The intentions decide on the path the app will act on, and the app gets that path.
    let path = match crate::path::normalize(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::RoutingInvalid,
                &format!("{e}: {}", req.uri().path()),
            )
        }
    };
    let policy = mesh.policy.load();
    let (ok, _) = allowed(
        &policy.intentions,
        Caller {
            service: &peer.service,
            plane: Some(&peer.plane),
        },
        Caller {
            service: &mesh.me.service,
            plane: Some(&mesh.me.plane),
        },
        Some((req.method().as_str(), &path)),
        policy.default,
    );
    if !ok {
        counters.rq_denied.fetch_add(1, Ordering::Relaxed);
        return refuse(
            StatusCode::FORBIDDEN,
            ErrorCode::SecurityPolicyViolation,
            &format!("{peer} may not {} {path}", req.method()),
        );
    }
    if let Err(wait) = mesh.limiter.check() {
        stats::rate_limited();
        let limit = mesh
            .limiter
            .current()
            .map(|l| {
                format!(
                    " to {} requests/s (burst {})",
                    l.requests_per_second, l.burst
                )
            })
            .unwrap_or_default();
        let mut r = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TrafficPolicyFailed,
            &format!("{} is rate limited{limit}", mesh.me.service),
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        return r;
    }
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let Ok(uri) =
        format!("http://127.0.0.1:{}{path}{query}", mesh.cfg.app_port).parse::<http::Uri>()
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::RoutingInvalid,
            "bad request target",
        );
    };
    // Before setting our own headers: a caller's `Connection` must not name them away.
    hop::strip(req.headers_mut(), false);
    // HTTP/2 from the peer sidecar carries the authority as :authority; the app gets Host.
    if let Some(a) = req.uri().authority().cloned() {
        if let Ok(v) = http::HeaderValue::from_str(a.as_str()) {
            req.headers_mut().entry(http::header::HOST).or_insert(v);
        }
    }
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    if let Ok(v) = http::HeaderValue::from_str(&format!("URI={peer}")) {
        req.headers_mut().insert("x-forwarded-client-cert", v);
    }
    match app.request(req).await {
        Ok(mut resp) => {
            hop::strip(resp.headers_mut(), false);
            resp.map(|b| b.boxed())
        }
        Err(e) => {
            counters.rq_app_error.fetch_add(1, Ordering::Relaxed);
            refuse(
                StatusCode::BAD_GATEWAY,
                ErrorCode::UpstreamUnavailable,
                &format!("local app on port {}: {e}", mesh.cfg.app_port),
            )
        }
    }
}
