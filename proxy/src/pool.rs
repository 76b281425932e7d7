//! Connections to one peer sidecar: a single multiplexed HTTP/2 connection (ALPN `h2`),
//! dialled once and shared by every request to that endpoint, replaced when it closes or when
//! our certificate has rotated since it was made. A peer that does not offer `h2` gets one
//! HTTP/1.1 connection per request.
//! A failure the peer certainly did not process comes back as [`SendError::Refused`]
//! (see `refusal.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lucid_tls::mtls::{peer_identity, PeerCert};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub use crate::refusal::Refusal;
use crate::refusal::{graceful_goaway, Watch, Watched};
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
    /// The peer did not process the request (the request itself is gone: the body went
    /// into the connection).
    Refused { error: hyper::Error, why: Refusal },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e:#}"),
            SendError::Failed { error, .. } => write!(f, "{error}"),
            SendError::Refused { error, why } => write!(f, "refused ({why:?}): {error}"),
        }
    }
}

/// One endpoint's connections.
#[derive(Debug, Default)]
pub struct Pool {
    /// The shared HTTP/2 connection.
    h2: Mutex<Option<Pooled>>,
    dialing: tokio::sync::Mutex<()>,
    /// Open connections to this endpoint.
    pub cx_active: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Pooled {
    /// Our identity's generation when it was made.
    generation: u64,
    /// The peer certificate's expiry (unix seconds).
    not_after: i64,
    watch: Arc<Watch>,
    send: http2::SendRequest<Body>,
}

enum Conn {
    H2(http2::SendRequest<Body>),
    H1(http1::SendRequest<Body>),
}

impl Pool {
    fn cached(&self, generation: u64) -> Option<(http2::SendRequest<Body>, Arc<Watch>)> {
        let g = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        g.as_ref()
            // A connection whose peer certificate is about to expire takes no new requests:
            // they go to a fresh one, and the old one ends idle at expiry.
            .filter(|p| {
                p.generation == generation
                    && !p.send.is_closed()
                    && !p.watch.going_away.load(Ordering::Relaxed)
                    && p.not_after - lucid_core::unix_now() > RETIRE_BEFORE_EXPIRY
            })
            .map(|p| (p.send.clone(), p.watch.clone()))
    }

    async fn conn(&self, d: &Dial<'_>) -> Result<(Conn, Arc<Watch>), anyhow::Error> {
        if let Some((s, w)) = self.cached(d.generation) {
            return Ok((Conn::H2(s), w));
        }
        // One dial at a time: a burst of requests to a new peer shares the first connection.
        let _dialing = self.dialing.lock().await;
        if let Some((s, w)) = self.cached(d.generation) {
            return Ok((Conn::H2(s), w));
        }
        let (tls, peer) = dial(d, d.tls).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let untrusted = d.trust.until_untrusted(&peer);
        let watch = Arc::new(Watch::default());
        let io = TokioIo::new(Watched::new(tls, watch.clone()));
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
            *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(Pooled {
                generation: d.generation,
                not_after: peer.not_after,
                watch: watch.clone(),
                send: send.clone(),
            });
            Ok((Conn::H2(send), watch))
        } else {
            let (send, conn) = http1::handshake(io).await?;
            cx.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(drive(conn, untrusted, cx));
            Ok((Conn::H1(send), watch))
        }
    }

    /// Send `req` to the peer. On failure the request comes back when it was never sent, so
    /// the caller may try it elsewhere whatever its method.
    pub async fn send(
        &self,
        d: &Dial<'_>,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, (SendError, Option<Request<Body>>)> {
        let (conn, watch) = match self.conn(d).await {
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
            let error = e.into_error();
            let why = if watch.our_cert_refused.load(Ordering::Relaxed) {
                Some(Refusal::OurCertificate)
            } else if graceful_goaway(&error) {
                // No new streams go to it: the next request dials.
                watch.going_away.store(true, Ordering::Relaxed);
                Some(Refusal::GoAway)
            } else if back.is_some() && watch.heard.load(Ordering::Relaxed) {
                Some(Refusal::Closed)
            } else {
                // Includes a connection the peer never spoke on: as good as a failed connect.
                None
            };
            tracing::debug!(error = ?error, unsent = back.is_some(), refused = ?why, "send failed");
            let e = match why {
                Some(why) => SendError::Refused { error, why },
                None => SendError::Failed {
                    error,
                    unsent: back.is_some(),
                },
            };
            (e, back)
        })
    }
}

/// A new mTLS connection to the peer through `tls` (whose ALPN says what it will carry),
/// within the dial's connect timeout; the peer's verified certificate with it.
pub async fn dial(
    d: &Dial<'_>,
    tls: &TlsConnector,
) -> anyhow::Result<(TlsStream<TcpStream>, PeerCert)> {
    let tcp = tokio::time::timeout(d.connect_timeout, TcpStream::connect((d.addr, d.port)))
        .await
        .map_err(|_| anyhow::anyhow!("no connection within {:?}", d.connect_timeout))??;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(format!("{}.lucid.internal", d.service))?;
    let tls = tokio::time::timeout(d.connect_timeout, tls.connect(name, tcp))
        .await
        .map_err(|_| anyhow::anyhow!("no TLS handshake within {:?}", d.connect_timeout))??;
    // The verifier has already refused a certificate without a mesh identity.
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(peer_identity)
        .ok_or_else(|| anyhow::anyhow!("peer presented no mesh identity"))?;
    Ok((tls, peer))
}

/// Run a client connection until it ends or its peer's certificate stops being trusted (then
/// it is dropped, failing what is in flight on it).
pub(crate) async fn drive<C>(
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
