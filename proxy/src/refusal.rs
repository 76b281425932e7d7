//! Refusals: failures after which the peer has certainly not processed the request, so it
//! may be sent again whatever its method. There are three: a graceful GOAWAY (the stream was
//! above the peer's last-stream-id, or opened after it); a working connection that the peer
//! closed before the request went out; and a `certificate_revoked`/`certificate_expired`
//! alert (in TLS 1.3 a client sends its first request before it learns the server refused its
//! certificate; the server never decrypted it). None of them says the endpoint is unhealthy.
//! [`Watched`] wraps a client TLS stream to notice the last two.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::AlertDescription;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Why a peer refused a request without processing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// GOAWAY: the connection takes no new streams. Another connection will.
    GoAway,
    /// The peer closed a connection that had worked before the request went out on it.
    Closed,
    /// The peer refused our certificate as revoked or expired: rotate, then send again.
    OurCertificate,
}

/// A stream the peer refused with a graceful (NO_ERROR) GOAWAY: above its last-stream-id, or
/// opened after it. RFC 9113 6.8: such streams were not processed. (A GOAWAY with an error
/// code fails every stream, processed or not, with the same error, so it does not count.)
pub(crate) fn graceful_goaway(e: &hyper::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(h) = s.downcast_ref::<h2::Error>() {
            return h.is_go_away() && h.is_remote() && h.reason() == Some(h2::Reason::NO_ERROR);
        }
        src = s.source();
    }
    false
}

/// What one connection has learnt about the peer refusing it.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// A fatal alert said our certificate is revoked or expired.
    pub(crate) our_cert_refused: AtomicBool,
    /// A request on it was refused by GOAWAY.
    pub(crate) going_away: AtomicBool,
    /// The peer has sent application data: it accepted our certificate.
    pub(crate) heard: AtomicBool,
}

/// The TLS stream, noting the alert a peer sends when it refuses our certificate.
pub(crate) struct Watched<T> {
    io: T,
    watch: Arc<Watch>,
    /// A write error held back until the read side shows why (see `after_write`).
    held: Option<io::Error>,
}

/// tokio-rustls reports a received alert as an `io::Error` wrapping the `rustls::Error`.
fn refuses_our_cert(e: &io::Error) -> bool {
    matches!(
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRevoked | AlertDescription::CertificateExpired
        ))
    )
}

impl<T: AsyncRead + Unpin> Watched<T> {
    pub(crate) fn new(io: T, watch: Arc<Watch>) -> Self {
        Watched {
            io,
            watch,
            held: None,
        }
    }

    fn note_read(&self, r: &Poll<io::Result<()>>, grew: bool) {
        match r {
            Poll::Ready(Ok(())) if grew => self.watch.heard.store(true, Ordering::Relaxed),
            Poll::Ready(Err(e)) if refuses_our_cert(e) => {
                self.watch.our_cert_refused.store(true, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// A write failed on a connection the peer never spoke on. A peer that refused our
    /// certificate sent its alert before it closed, but the write error (broken pipe) can
    /// come first, before the reactor has seen the socket turn readable. Hold the error until
    /// the read side settles, or the refusal goes unrecognised.
    fn after_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) && !self.watch.heard.load(Ordering::Relaxed) =>
            {
                self.settle(cx, e)
            }
            r => r,
        }
    }

    fn settle<R>(&mut self, cx: &mut Context<'_>, e: io::Error) -> Poll<io::Result<R>> {
        let mut scratch = [0u8; 256];
        let mut buf = ReadBuf::new(&mut scratch);
        let read = Pin::new(&mut self.io).poll_read(cx, &mut buf);
        if read.is_pending() {
            // The socket is closed, so the read side wakes us soon.
            self.held = Some(e);
            return Poll::Pending;
        }
        let grew = !buf.filled().is_empty();
        self.note_read(&read, grew);
        Poll::Ready(Err(e))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        this.note_read(&r, buf.filled().len() > before);
        r
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.held.take() {
            return this.settle(cx, e);
        }
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.held.take() {
            return this.settle(cx, e);
        }
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.held.take() {
            return this.settle(cx, e);
        }
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.after_write(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_or_expired_alert_refuses_our_certificate_and_nothing_else_does() {
        // The shape tokio-rustls gives a received alert.
        let alert = |a| io::Error::new(io::ErrorKind::InvalidData, rustls::Error::AlertReceived(a));
        assert!(refuses_our_cert(&alert(
            AlertDescription::CertificateRevoked
        )));
        assert!(refuses_our_cert(&alert(
            AlertDescription::CertificateExpired
        )));
        assert!(!refuses_our_cert(&alert(AlertDescription::BadCertificate)));
        assert!(!refuses_our_cert(&io::Error::from(
            io::ErrorKind::BrokenPipe
        )));
    }
}
