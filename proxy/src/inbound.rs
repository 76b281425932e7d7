//! Inbound (15001): mTLS with a required client certificate from the mesh root (revoked
//! serials refused at the handshake, the connection closed when the peer's certificate is
//! revoked or expires later), then per request this stack, each stage in its own file and
//! tested there:
//!
//! 1. [`authorize::normalize`]: the path the app will act on (400 `LUCID_ERR_1103`);
//! 2. [`authorize::authorize`]: intentions on the peer's SPIFFE id, method and that path
//!    (403 `LUCID_ERR_1203`);
//! 3. [`limit::admit`]: the service's rate limit (429 `LUCID_ERR_1201`, `Retry-After`);
//! 4. [`forward`]: rewritten for the app (normalised path, `Host`, hop-by-hop headers
//!    dropped both ways, `X-Forwarded-Client-Cert` naming the caller) and sent over the
//!    pooled app client (502 when the app cannot be reached).

mod authorize;
mod forward;
mod limit;

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lucid_core::conn_limit::ConnLimits;
use lucid_tls::mtls::{peer_identity, server_config};
use lucid_tls::SpiffeId;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::mesh::Mesh;
use crate::serve::{EndReason, HEADER_TIMEOUT};
use crate::{serve, stats, Body};

use self::forward::AppClient;

/// A stage's refusal: the answer the peer gets instead (boxed: the cold path stays small).
type Refused = Box<Response<Body>>;

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

/// One request from a peer sidecar, down the inbound stack.
async fn handle(
    mut req: Request<Incoming>,
    mesh: &Mesh,
    app: &AppClient,
    peer: &SpiffeId,
) -> Response<Body> {
    let counters = stats::inbound();
    counters.rq_total.fetch_add(1, Ordering::Relaxed);
    // The intentions decide on the path the app will act on, and the app gets that path.
    let path = match authorize::normalize(req.uri().path()) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let policy = mesh.policy.load();
    if let Err(refused) = authorize::authorize(&policy, peer, &mesh.me, req.method(), &path) {
        counters.rq_denied.fetch_add(1, Ordering::Relaxed);
        return *refused;
    }
    if let Err(refused) = limit::admit(mesh) {
        return *refused;
    }
    if let Err(refused) = forward::rewrite(&mut req, &path, mesh.cfg.app_port, peer) {
        return *refused;
    }
    forward::to_app(app, req, mesh.cfg.app_port).await
}
