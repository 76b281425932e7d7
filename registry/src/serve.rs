//! Serving a router on a bound listener, plain or TLS, until the stop signal, with limits on
//! what one client can hold:
//!
//! - a connection's request headers must arrive within [`HEADER_TIMEOUT`], and an idle
//!   keep-alive connection is closed after the same time (hyper's header-read timer runs from
//!   the end of the previous response), so slowloris and idle sockets cannot pile up;
//! - at most [`ConnLimits::from_fd_limit`] connections at once (or `--max-connections` and
//!   `--max-connections-per-ip`), in total and from one address:
//!   past that a connection is accepted and closed at once, so the process keeps file
//!   descriptors for everyone else and `/health` stays answerable;
//! - TLS handshakes run in their own tasks within the same timeout, so a client that never
//!   finishes one holds up nobody; on the Raft listener only clients whose certificate chains
//!   to the cluster CA get past the handshake.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use lucid_core::conn_limit::{ConnLimits, Refusals, Slots, HEADER_TIMEOUT};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Serve `router` on `listener` (TLS when `tls` is given) until `stop` turns true; then
/// in-flight requests finish (the caller bounds how long it waits).
pub(crate) fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    limits: ConnLimits,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(accept_loop(
        listener,
        tls.map(TlsAcceptor::from),
        router,
        limits,
        stop,
    ))
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    limits: ConnLimits,
    stop: CancellationToken,
) {
    let slots = Slots::new(limits);
    let mut refusals = Refusals::default();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = slots.take(peer.ip()) else {
            metrics::counter!("lucid_http_connections_refused_total").increment(1);
            if let Some(refused) = refusals.refused() {
                tracing::warn!(%peer, refused, "connection cap reached; refusing connections");
            }
            drop(stream);
            continue;
        };
        // Small request/response exchanges: never let Nagle hold a reply back.
        let _ = stream.set_nodelay(true);
        let (router, stop, tls) = (router.clone(), stop.clone(), tls.clone());
        conns.spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_conn(stream, peer, router, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_conn(s, peer, router, stop).await,
                        Ok(Err(e)) => {
                            metrics::counter!("lucid_tls_handshake_failures_total").increment(1);
                            tracing::debug!(%peer, error = %e, "TLS handshake refused");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
        // Reap finished connections so the set does not grow with every one ever served.
        while conns.try_join_next().is_some() {}
    }
    drop(tcp);
    while conns.join_next().await.is_some() {}
}

/// One HTTP/1.1 connection; on stop, finish the request in flight and close.
async fn serve_conn<I>(
    io: I,
    peer: std::net::SocketAddr,
    router: axum::Router,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        // Per-address limits (blocking queries) read who is calling from here.
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        // The watch guard must not live across the await below (it is not Send).
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
