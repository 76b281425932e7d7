//! The accept loop both data-plane listeners share: serve each connection (HTTP/1.1 or
//! HTTP/2) until `stop`, then stop accepting, ask every open connection to finish (GOAWAY for
//! HTTP/2, close after the current response for HTTP/1.1) and wait for them up to the grace
//! period.

use std::future::Future;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Body;

/// Serve one accepted connection, watched for graceful shutdown.
pub async fn connection<I, S>(io: I, svc: S, watcher: Watcher, what: &'static str)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "{what} connection ended");
    }
}

/// Resolves once `rx` is true (the guard is dropped inside, so callers stay `Send`).
pub async fn fired(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Accept until `stop`; each connection goes to `on_conn` with its shutdown watcher. Then
/// drain: no new connections, open ones finish within `grace`.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    what: &'static str,
    on_conn: F,
) where
    F: Fn(TcpStream, Watcher) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        let tcp = tokio::select! {
            a = listener.accept() => match a {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "{what} accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = fired(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(on_conn(tcp, graceful.watcher()));
    }
    drop(listener);
    let open = graceful.count();
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("{what}: connections still open after the {grace:?} grace period");
    } else if open > 0 {
        tracing::info!("{what}: {open} connection(s) drained");
    }
}
