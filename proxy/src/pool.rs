//! Connections to one peer sidecar: a single multiplexed HTTP/2 connection (ALPN `h2`),
//! dialled once and shared by every request to that endpoint, replaced when it closes or when
//! our certificate has rotated since it was made. A peer that does not offer `h2` gets one
//! HTTP/1.1 connection per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lucid_tls::mtls::peer_identity;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::trust::Trust;
use crate::Body;

/// Seconds before the peer certificate's expiry at which a connection stops taking requests.
const RETIRE_BEFORE_EXPIRY: i64 = 10;

/// How to reach the peer.
pub struct Dial<'a> {
    pub addr: &'a str,
    pub port: u16,
    /// The service the peer must prove it is (checked by the connector's verifier).
    pub service: &'a str,
    pub tls: &'a TlsConnector,
    /// Our identity's rotation generation: a connection made with an older one is replaced.
    pub generation: u64,
    pub connect_timeout: Duration,
    /// The connection is dropped when the peer's certificate is revoked or expires.
    pub trust: &'a Trust,
}

/// Why a request did not get a response.
#[derive(Debug)]
pub enum SendError {
    /// Could not connect or complete the handshake; the request was not sent.
    Connect(anyhow::Error),
    /// The connection failed; `unsent` says the peer never saw the request.
    Failed { error: hyper::Error, unsent: bool },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e:#}"),
            SendError::Failed { error, .. } => write!(f, "{error}"),
        }
    }
}

/// One endpoint's connections.
#[derive(Debug, Default)]
pub struct Pool {
    /// (our generation, the peer certificate's expiry, the connection).
    h2: Mutex<Option<(u64, i64, http2::SendRequest<Body>)>>,
    dialing: tokio::sync::Mutex<()>,
    /// Open connections to this endpoint.
    pub cx_active: Arc<AtomicU64>,
}

enum Conn {
    H2(http2::SendRequest<Body>),
    H1(http1::SendRequest<Body>),
}

impl Pool {
    fn cached(&self, generation: u64) -> Option<http2::SendRequest<Body>> {
        let g = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        g.as_ref()
            // A connection whose peer certificate is about to expire takes no new requests:
            // they go to a fresh one, and the old one ends idle at expiry.
            .filter(|(gen, not_after, s)| {
                *gen == generation
                    && !s.is_closed()
                    && *not_after - lucid_core::unix_now() > RETIRE_BEFORE_EXPIRY
            })
            .map(|(_, _, s)| s.clone())
    }

    async fn conn(&self, d: &Dial<'_>) -> Result<Conn, anyhow::Error> {
        if let Some(s) = self.cached(d.generation) {
            return Ok(Conn::H2(s));
        }
        // One dial at a time: a burst of requests to a new peer shares the first connection.
        let _dialing = self.dialing.lock().await;
        if let Some(s) = self.cached(d.generation) {
            return Ok(Conn::H2(s));
        }
        let tcp = tokio::time::timeout(d.connect_timeout, TcpStream::connect((d.addr, d.port)))
            .await
            .map_err(|_| anyhow::anyhow!("no connection within {:?}", d.connect_timeout))??;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(format!("{}.lucid.internal", d.service))?;
        let tls = tokio::time::timeout(d.connect_timeout, d.tls.connect(name, tcp))
            .await
            .map_err(|_| anyhow::anyhow!("no TLS handshake within {:?}", d.connect_timeout))??;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        // The verifier has already refused a certificate without a mesh identity.
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(peer_identity)
            .ok_or_else(|| anyhow::anyhow!("peer presented no mesh identity"))?;
        let untrusted = d.trust.until_untrusted(&peer);
        let io = TokioIo::new(tls);
        let cx = self.cx_active.clone();
        if h2 {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                // Find a dead peer (pulled cable, frozen host) instead of waiting on TCP.
                .keep_alive_interval(Duration::from_secs(20))
                .keep_alive_timeout(Duration::from_secs(10))
                .handshake(io)
                .await?;
            cx.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(drive(conn, untrusted, cx));
            *self.h2.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((d.generation, peer.not_after, send.clone()));
            Ok(Conn::H2(send))
        } else {
            let (send, conn) = http1::handshake(io).await?;
            cx.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(drive(conn, untrusted, cx));
            Ok(Conn::H1(send))
        }
    }

    /// Send `req` to the peer. On failure the request comes back when it was never sent, so
    /// the caller may try it elsewhere whatever its method.
    pub async fn send(
        &self,
        d: &Dial<'_>,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, (SendError, Option<Request<Body>>)> {
        let conn = match self.conn(d).await {
            Ok(c) => c,
            Err(e) => return Err((SendError::Connect(e), Some(req))),
        };
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let sent = match conn {
            Conn::H2(mut send) => {
                // HTTP/2 carries the target as :scheme and :authority: it needs an absolute URI.
                match format!("https://{}.lucid.internal{path}", d.service).parse() {
                    Ok(uri) => *req.uri_mut() = uri,
                    Err(e) => return Err((SendError::Connect(anyhow::anyhow!("{e}")), Some(req))),
                }
                *req.version_mut() = http::Version::HTTP_2;
                req.headers_mut().remove(http::header::HOST);
                send.try_send_request(req).await
            }
            Conn::H1(mut send) => {
                if let Ok(uri) = path.parse() {
                    *req.uri_mut() = uri;
                }
                *req.version_mut() = http::Version::HTTP_11;
                send.try_send_request(req).await
            }
        };
        sent.map_err(|mut e| {
            let back = e.take_message();
            let unsent = back.is_some();
            (
                SendError::Failed {
                    error: e.into_error(),
                    unsent,
                },
                back,
            )
        })
    }
}

/// Run a client connection until it ends or its peer's certificate stops being trusted (then
/// it is dropped, failing what is in flight on it).
async fn drive<C>(
    conn: C,
    untrusted: impl std::future::Future<Output = crate::serve::EndReason>,
    cx: Arc<AtomicU64>,
) where
    C: std::future::Future,
{
    tokio::select! {
        _ = conn => {}
        why = untrusted => {
            tracing::info!(reason = why.label(), "outbound connection dropped: peer certificate no longer trusted");
        }
    }
    cx.fetch_sub(1, Ordering::Relaxed);
}
