//! The accept loop every sidecar TCP listener shares, and what one client may hold there:
//!
//! - at most [`ConnLimits::from_fd_limit`] connections per listener (or what
//!   `--max-connections` and `--max-connections-per-ip` say), in total and per peer address;
//!   past a cap the connection is closed at once, counted
//!   (`lucid_proxy_connections_refused_total{listener}`) and logged (once a second at most);
//! - the first request's headers must arrive within [`HEADER_TIMEOUT`] of the connection
//!   (of the TLS handshake on inbound), and an HTTP/1.1 connection idle between requests
//!   closes after the same time;
//! - a connection with no request in flight for [`IDLE_TIMEOUT`] is asked to close (GOAWAY on
//!   HTTP/2). A request is in flight until its response body has been sent, so a long poll
//!   or a stream is never idle;
//! - a connection can be told to end early ([`Conn::serve`]'s `end`: the peer's certificate
//!   was revoked or expires): it gets GOAWAY (or closes after the current response) and is
//!   dropped after a short grace.
//!
//! On `stop` (drain) the loop stops accepting, every connection is asked to finish, and those
//! still open after the grace period are dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lucid_core::conn_limit::{ConnLimits, Refusals, Slot, Slots};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use lucid_core::conn_limit::HEADER_TIMEOUT;

/// A connection with nothing in flight this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection told to end early (revoked, expiring, idle) may finish what it has.
pub const END_GRACE: Duration = Duration::from_secs(1);

/// Why a connection ended before its peer closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Drain,
    Idle,
    NoRequest,
    Revoked,
    Expired,
}

impl EndReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Drain => "drain",
            EndReason::Idle => "idle",
            EndReason::NoRequest => "no_request",
            EndReason::Revoked => "revoked",
            EndReason::Expired => "expired",
        }
    }
}

/// An accepted connection's place in its listener: its slot, the drain signal and grace, and
/// the tasks that outlive its HTTP exchange (an upgraded connection's splice), which keep the
/// slot until they end.
pub struct Conn {
    _slot: Slot,
    drain: CancellationToken,
    grace: Duration,
    what: &'static str,
    tracker: TaskTracker,
}

/// Accept until `stop`; each connection that gets a slot goes to `on_conn`. Then drain: no
/// new connections, open ones finish within `grace` and are dropped after it.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    stop: CancellationToken,
    grace: Duration,
    what: &'static str,
    limits: ConnLimits,
    on_conn: F,
) where
    F: Fn(TcpStream, Conn) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Slots::new(limits);
    let mut conns = tokio::task::JoinSet::new();
    let mut refusals = Refusals::default();
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "{what} accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let Some(slot) = slots.take(peer.ip()) else {
            metrics::counter!("lucid_proxy_connections_refused_total", "listener" => what)
                .increment(1);
            if let Some(refused) = refusals.refused() {
                tracing::warn!(%peer, refused, "{what}: connection cap reached; refusing");
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = Conn {
            _slot: slot,
            drain: stop.clone(),
            grace,
            what,
            tracker: TaskTracker::new(),
        };
        conns.spawn(on_conn(tcp, conn));
        // Reap finished connections so the set does not grow with every one ever served.
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let open = slots.open();
    // Each connection bounds its own drain by `grace`; this is the backstop.
    let all = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(grace + END_GRACE, all).await.is_err() {
        tracing::warn!("{what}: connections still open after the {grace:?} grace period");
        conns.abort_all();
    } else if open > 0 {
        tracing::info!("{what}: {open} connection(s) drained");
    }
}

impl Conn {
    /// Where to spawn what must outlive the connection's HTTP exchange but not the connection:
    /// [`serve`](Conn::serve) returns (and the slot goes) only once these tasks are done.
    pub fn tracker(&self) -> TaskTracker {
        self.tracker.clone()
    }

    /// Serve HTTP/1.1 or HTTP/2 on `io` until the peer is done, the connection idles out, the
    /// listener drains, or `end` resolves; then wait for the tasks on its
    /// [`tracker`](Conn::tracker) (they bound themselves: idle timeout, drain grace).
    pub async fn serve<I, S, B>(
        self,
        io: I,
        svc: S,
        end: impl Future<Output = EndReason> + Send,
    ) -> Option<EndReason>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: Service<http::Request<Incoming>, Response = http::Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tracker = self.tracker.clone();
        let why = self.serve_http(io, svc, end).await;
        tracker.close();
        tracker.wait().await;
        why
    }

    async fn serve_http<I, S, B>(
        self,
        io: I,
        svc: S,
        end: impl Future<Output = EndReason> + Send,
    ) -> Option<EndReason>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: Service<http::Request<Incoming>, Response = http::Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let activity = Arc::new(Activity::default());
        let started = Instant::now();
        let svc = Counted {
            inner: svc,
            activity: activity.clone(),
            started,
        };
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        builder.http2().timer(TokioTimer::new());
        // With upgrades: an `Upgrade` request's connection is handed to the splice once the
        // answer is 101 (`upgrade.rs`).
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(conn);
        tokio::pin!(end);
        let mut check = started + HEADER_TIMEOUT;
        let why = loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "{} connection ended", self.what);
                    }
                    return None;
                }
                () = self.drain.cancelled() => break EndReason::Drain,
                why = &mut end => break why,
                () = tokio::time::sleep_until(check) => {
                    match activity.idle_until(started) {
                        // Busy: look again a whole idle period later.
                        None => check = Instant::now() + IDLE_TIMEOUT,
                        Some((since, first)) => {
                            let limit = if first { HEADER_TIMEOUT } else { IDLE_TIMEOUT };
                            if since + limit <= Instant::now() {
                                // Nothing ever came: there is nothing to finish either.
                                if first {
                                    return Some(EndReason::NoRequest);
                                }
                                break EndReason::Idle;
                            }
                            check = since + limit;
                        }
                    }
                }
            }
        };
        tracing::debug!(reason = ?why, "{}: closing connection", self.what);
        conn.as_mut().graceful_shutdown();
        let grace = if why == EndReason::Drain {
            self.grace
        } else {
            END_GRACE
        };
        let _ = tokio::time::timeout(grace, conn).await;
        Some(why)
    }
}

/// Requests in flight on one connection, and when the last one finished.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Requests seen so far.
    requests: AtomicU64,
    /// When the connection last had nothing in flight, in ms after it started.
    idle_since_ms: AtomicU64,
}

impl Activity {
    /// `None` while a request is in flight, else since when it has been idle and whether no
    /// request has come at all.
    fn idle_until(&self, started: Instant) -> Option<(Instant, bool)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = started + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some((since, self.requests.load(Ordering::Acquire) == 0))
    }
}

/// Held by a response body until it has been sent (or dropped).
struct InFlight {
    activity: Arc<Activity>,
    started: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.idle_since_ms.store(ms, Ordering::Release);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The service, counting requests in flight until their response bodies end.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
    started: Instant,
}

impl<S, B> Service<http::Request<Incoming>> for Counted<S>
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: HttpBody + Unpin,
{
    type Response = http::Response<CountedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        self.activity.requests.fetch_add(1, Ordering::AcqRel);
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight {
            activity: self.activity.clone(),
            started: self.started,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|inner| CountedBody {
                inner,
                _guard: guard,
            }))
        })
    }
}

/// A response body that keeps its request counted as in flight.
struct CountedBody<B> {
    inner: B,
    _guard: InFlight,
}

impl<B: HttpBody + Unpin> HttpBody for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
