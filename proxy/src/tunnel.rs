//! Two byte streams spliced together: a raw TCP connection from an `--upstream` listener and
//! its mTLS stream to the peer sidecar, the peer's stream and its app, or the two halves of an
//! upgraded (WebSocket) connection. Bytes flow both ways until both sides have closed; one
//! side's end of stream is passed on as a half-close (a shutdown of the other side's write
//! half), so request/response protocols that close their sending side first still get their
//! answer. The splice ends early when no byte moved either way for the idle timeout, or when
//! the sidecar drains: then the connection gets the drain's grace period, not less.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a splice may end besides both sides closing.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// No byte either way for this long closes both sides.
    pub idle: Duration,
    /// The sidecar's drain...
    pub drain: CancellationToken,
    /// ...after which the connection has this long.
    pub grace: Duration,
}

/// Why a splice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed (or one failed).
    Closed,
    Idle,
    Drain,
    /// The peer's certificate was revoked or expired.
    Untrusted,
}

impl Ended {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Ended::Closed => "closed",
            Ended::Idle => "idle",
            Ended::Drain => "drain",
            Ended::Untrusted => "untrusted",
        }
    }
}

/// When the last byte moved, in ms after the splice began.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that notes when it read, and counts what it read.
struct Tracked<'c, S> {
    inner: S,
    activity: Arc<Activity>,
    read: Option<&'c AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.touch();
            if let Some(c) = self.read {
                c.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bytes moved by splices that share these counters: what was read from their `a` sides,
/// and from their `b` sides.
#[derive(Debug, Default)]
pub struct Counters {
    pub from_a: AtomicU64,
    pub from_b: AtomicU64,
}

/// Splice `a` and `b` until both close, the connection idles out, the drain's grace ends, or
/// `end` resolves (the peer's certificate was revoked or expires: [`Ended::Untrusted`]).
pub async fn splice<A, B>(
    a: A,
    b: B,
    bounds: &Bounds,
    counters: Option<&Counters>,
    end: impl std::future::Future<Output = ()>,
) -> Ended
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    let mut a = Tracked {
        inner: a,
        activity: activity.clone(),
        read: counters.map(|c| &c.from_a),
    };
    let mut b = Tracked {
        inner: b,
        activity: activity.clone(),
        read: counters.map(|c| &c.from_b),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    tokio::pin!(end);
    let mut drain_ends: Option<Instant> = None;
    let mut idle_check = activity.last() + bounds.idle;
    loop {
        tokio::select! {
            r = &mut copy => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "spliced connection ended");
                }
                return Ended::Closed;
            }
            () = tokio::time::sleep_until(idle_check) => {
                let due = activity.last() + bounds.idle;
                if due <= Instant::now() {
                    return Ended::Idle;
                }
                idle_check = due;
            }
            () = bounds.drain.cancelled(), if drain_ends.is_none() => {
                drain_ends = Some(Instant::now() + bounds.grace);
            }
            () = sleep_until_opt(drain_ends) => return Ended::Drain,
            () = &mut end => return Ended::Untrusted,
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn bounds(idle: Duration, grace: Duration) -> Bounds {
        Bounds {
            idle,
            drain: CancellationToken::new(),
            grace,
        }
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_a_half_close_is_passed_on() {
        let (mut client, a) = tokio::io::duplex(64);
        let (b, mut server) = tokio::io::duplex(64);
        let bounds = bounds(Duration::from_secs(60), Duration::from_secs(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task =
            tokio::spawn(
                async move { splice(a, b, &bounds, Some(&c), std::future::pending()).await },
            );
        client.write_all(b"ping").await.unwrap();
        // The client is done sending; the server still answers after seeing the end.
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        server.write_all(b"pong").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong");
        assert_eq!(task.await.unwrap(), Ended::Closed);
        assert_eq!(counters.from_a.load(Ordering::Relaxed), 4);
        assert_eq!(counters.from_b.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
        let (mut client, a) = tokio::io::duplex(64);
        let (b, mut server) = tokio::io::duplex(64);
        let bounds = bounds(Duration::from_secs(10), Duration::from_secs(1));
        let task =
            tokio::spawn(async move { splice(a, b, &bounds, None, std::future::pending()).await });
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            server.read_exact(&mut one).await.unwrap();
        }
        assert!(!task.is_finished(), "30 s of traffic every 6 s is not idle");
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(task.await.unwrap(), Ended::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_gives_the_connection_its_grace_period() {
        let (_client, a) = tokio::io::duplex(64);
        let (b, _server) = tokio::io::duplex(64);
        let bounds = bounds(Duration::from_secs(3600), Duration::from_secs(5));
        let drain = bounds.drain.clone();
        let task =
            tokio::spawn(async move { splice(a, b, &bounds, None, std::future::pending()).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drain.cancel();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!task.is_finished(), "closed before the grace period ended");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(task.await.unwrap(), Ended::Drain);
    }
}
