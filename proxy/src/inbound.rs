//! Inbound (15001): mTLS with a required client certificate from the mesh root (revoked
//! serials refused at the handshake, the connection closed when the peer's certificate is
//! revoked or expires later). A connection whose ALPN is `lucid-tcp/1` is a raw TCP stream
//! from a caller's `--upstream` (`tcp.rs`: L4 intentions, then the bytes to the app). Every
//! other one carries HTTP, and each request goes down this stack, each stage in its own file
//! and tested there:
//!
//! 1. [`authorize::normalize`]: the path the app will act on (400 `LUCID_ERR_1103`);
//! 2. [`authorize::authorize`]: intentions on the peer's SPIFFE id, method and that path
//!    (403 `LUCID_ERR_1203`);
//! 3. [`limit::admit`]: the service's rate limit (429 `LUCID_ERR_1201`, `Retry-After`);
//! 4. [`forward`]: rewritten for the app (normalised path, `Host`, hop-by-hop headers
//!    dropped both ways, `X-Forwarded-Client-Cert` naming the caller) in the app's HTTP
//!    version (`--app-protocol`; `auto`: the caller's, as its sidecar marked it) and sent over
//!    the pooled app client (502 when the app cannot be reached); an `Upgrade` gets a
//!    connection of its own, spliced once the app switches protocols.
//!
//! A gRPC caller gets the refusals of stages 1-4 as gRPC statuses.

mod authorize;
mod forward;
mod limit;

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use lucid_core::conn_limit::ConnLimits;
use lucid_tls::mtls::{peer_identity, server_config, PeerCert, ALPN_TCP};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AppProtocol;
use crate::mesh::Mesh;
use crate::serve::{EndReason, HEADER_TIMEOUT};
use crate::tunnel::Bounds;
use crate::{grpc, hop, serve, stats, upgrade, Body};

use self::forward::AppClients;

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
    let app = AppClients::new();
    let bounds = Bounds {
        idle: mesh.cfg.tcp_idle_timeout,
        drain: drain.clone(),
        grace,
    };
    serve::accept_loop(listener, drain, grace, "inbound", limits, move |tcp, conn| {
        let (acceptor, mesh, app, bounds) =
            (acceptor.clone(), mesh.clone(), app.clone(), bounds.clone());
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
            if tls.get_ref().1.alpn_protocol() == Some(ALPN_TCP) {
                crate::tcp::inbound(tls, &mesh, &cert, &bounds).await;
                drop(conn);
                return;
            }
            let untrusted = mesh.trust.until_untrusted(&cert);
            let peer = Arc::new(cert);
            let serial = peer.serial.clone();
            let tracker = conn.tracker();
            let svc = hyper::service::service_fn(move |req| {
                let (mesh, app, peer) = (mesh.clone(), app.clone(), peer.clone());
                let on_conn = (bounds.clone(), tracker.clone());
                async move {
                    let start = Instant::now();
                    let is_grpc = grpc::is_grpc(req.headers());
                    let resp = handle(req, &mesh, &app, &peer, on_conn).await;
                    stats::request("inbound", &peer.id.service, resp.status(), start.elapsed());
                    Ok::<_, Infallible>(if is_grpc { grpc::for_caller(resp) } else { resp })
                }
            });
            if let Some(why @ (EndReason::Revoked | EndReason::Expired)) =
                conn.serve(tls, svc, untrusted).await
            {
                metrics::counter!("lucid_proxy_connections_ended_total", "reason" => why.label())
                    .increment(1);
                tracing::info!(peer = %serial, reason = why.label(), "inbound connection closed: peer certificate no longer trusted");
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
    app: &AppClients,
    peer: &PeerCert,
    (bounds, tracker): (Bounds, TaskTracker),
) -> Response<Body> {
    let counters = stats::inbound();
    counters.rq_total.fetch_add(1, Ordering::Relaxed);
    // The caller's sidecar says whether its app spoke HTTP/2; whatever a peer puts there,
    // it never reaches the app.
    let caller_h2 = req
        .headers_mut()
        .remove(hop::ORIG_PROTO)
        .is_some_and(|v| v == "HTTP/2");
    let protocol = mesh.app_protocol();
    if protocol == AppProtocol::Tcp {
        return crate::reply::refuse(
            http::StatusCode::BAD_REQUEST,
            lucid_core::ErrorCode::RoutingInvalid,
            &format!(
                "{} is a tcp service: connect through an --upstream listener, not with HTTP requests",
                mesh.me.service
            ),
        );
    }
    // The intentions decide on the path the app will act on, and the app gets that path.
    let path = match authorize::normalize(req.uri().path()) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let policy = mesh.policy.load();
    if let Err(refused) = authorize::authorize(&policy, &peer.id, &mesh.me, req.method(), &path) {
        counters.rq_denied.fetch_add(1, Ordering::Relaxed);
        return *refused;
    }
    if let Err(refused) = limit::admit(mesh) {
        return *refused;
    }
    let port = mesh.cfg.app_port;
    if let Some(upgrade) = upgrade::requested(&req) {
        if let Err(refused) = forward::rewrite(&mut req, &path, port, &peer.id, false) {
            return *refused;
        }
        let untrusted = mesh.trust.until_untrusted(peer);
        let splice = forward::Splice {
            tracker,
            bounds,
            peer: peer.id.service.clone(),
            end: async move {
                untrusted.await;
            },
        };
        return forward::upgrade_to_app(req, upgrade, port, splice).await;
    }
    // Requests from peer sidecars arrive over HTTP/2 whatever their app spoke: under `auto`,
    // the caller's sidecar's mark decides.
    let h2 = match protocol {
        AppProtocol::Http2 | AppProtocol::Grpc => true,
        AppProtocol::Http1 | AppProtocol::Tcp => false,
        AppProtocol::Auto => caller_h2,
    };
    if let Err(refused) = forward::rewrite(&mut req, &path, port, &peer.id, h2) {
        return *refused;
    }
    forward::to_app(app, req, port).await
}
