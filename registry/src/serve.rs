//! Serving a router on a bound listener, plain or TLS, until the stop signal, with limits on
//! what one client can hold:
//!
//! - a connection's request headers must arrive within [`HEADER_TIMEOUT`], and an idle
//!   keep-alive connection is closed after the same time (hyper's header-read timer runs from
//!   the end of the previous response), so slowloris and idle sockets cannot pile up;
//! - at most [`MAX_CONNECTIONS`] connections at once, and [`MAX_PER_IP`] from one address:
//!   past that a connection is accepted and closed at once, so the process keeps file
//!   descriptors for everyone else and `/health` stays answerable;
//! - TLS handshakes run in their own tasks within the same timeout, so a client that never
//!   finishes one holds up nobody; on the Raft listener only clients whose certificate chains
//!   to the cluster CA get past the handshake.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Headers (and a TLS handshake) must arrive within this; idle connections close after it.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once on one listener.
pub(crate) const MAX_CONNECTIONS: usize = 768;
/// ... of which from one IP address.
pub(crate) const MAX_PER_IP: usize = 256;

/// Open connections, in total and per address.
#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A slot in [`Counts`], given back when the connection ends.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Slot {
    fn take(counts: &Arc<Mutex<Counts>>, ip: IpAddr) -> Option<Slot> {
        let mut c = counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.total >= MAX_CONNECTIONS || mine >= MAX_PER_IP {
            return None;
        }
        c.total += 1;
        c.per_ip.insert(ip, mine + 1);
        Some(Slot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Serve `router` on `listener` (TLS when `tls` is given) until `stop` turns true; then
/// in-flight requests finish (the caller bounds how long it waits).
pub(crate) fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(accept_loop(
        listener,
        tls.map(TlsAcceptor::from),
        router,
        stop,
    ))
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
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
        let Some(slot) = Slot::take(&counts, peer.ip()) else {
            metrics::counter!("lucid_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        // Small request/response exchanges: never let Nagle hold a reply back.
        let _ = stream.set_nodelay(true);
        let (router, stop, tls) = (router.clone(), stop.clone(), tls.clone());
        conns.spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_conn(stream, router, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_conn(s, router, stop).await,
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
async fn serve_conn<I>(io: I, router: axum::Router, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        router.clone().oneshot(req.map(axum::body::Body::new))
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
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_per_ip_and_are_given_back() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let held: Vec<Slot> = (0..MAX_PER_IP)
            .map(|_| Slot::take(&counts, a).unwrap())
            .collect();
        assert!(Slot::take(&counts, a).is_none(), "one address is capped");
        let other = Slot::take(&counts, b);
        assert!(other.is_some(), "another address still gets in");
        drop(held);
        assert!(Slot::take(&counts, a).is_some(), "slots come back");
        drop(other);
        let c = counts.lock().unwrap();
        assert_eq!(c.total, 0);
        assert!(c.per_ip.is_empty());
    }
}
