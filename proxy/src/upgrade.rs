//! HTTP/1.1 `Upgrade` (WebSocket above all) across the mesh. The app's upgrade request goes
//! to the peer sidecar over an HTTP/1.1 mTLS connection of its own (ALPN `http/1.1`), and on
//! to the destination app; when the app answers `101 Switching Protocols`, that answer goes
//! back the same way, and each sidecar splices the two upgraded connections it holds
//! (`tunnel.rs`) until either side closes. Intentions, the rate limit and the breaker see the
//! upgrade request as any other request.

use std::future::Future;

use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;

use crate::tunnel::{self, Bounds};
use crate::Body;

/// The one protocol the mesh switches to. Any other `Upgrade` (`h2c` above all: an HTTP/2
/// connection tunnelled past the sidecar would carry requests no intention ever saw) is
/// dropped with the other hop-by-hop headers, and the request goes on as a plain one, as
/// Envoy does for upgrades it is not configured for.
const WEBSOCKET: &[u8] = b"websocket";

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade` and
/// `Upgrade: websocket`).
pub fn requested<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let names_upgrade = req.headers().get_all(CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    let upgrade = req.headers().get(UPGRADE)?;
    (names_upgrade
        && upgrade
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(WEBSOCKET))
    .then(|| upgrade.clone())
}

/// Did the answer switch to the protocol asked for (101 and the same `Upgrade`)?
pub fn switched<B>(resp: &Response<B>, protocol: &HeaderValue) -> bool {
    resp.status() == http::StatusCode::SWITCHING_PROTOCOLS
        && resp.headers().get(UPGRADE).is_some_and(|v| {
            v.as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(protocol.as_bytes().trim_ascii())
        })
}

/// After the hop-by-hop headers went (`hop::strip`): ask the next hop for the same upgrade.
pub fn restore(h: &mut HeaderMap, protocol: HeaderValue) {
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, protocol);
}

/// Send `req` over a new HTTP/1.1 connection on `io` that may be upgraded; the answer.
pub async fn send<I>(io: I, req: Request<Body>) -> Result<Response<Incoming>, hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade connection ended");
        }
    });
    send.send_request(req).await
}

/// Once both sides have switched protocols, splice them, in a task on the connection's
/// tracker (`serve::Conn::tracker`): the HTTP connection that carried the upgrade is done, but
/// its slot under the connection caps is held, and a drain waits for the splice, until it
/// ends. `direction` and `peer` label the metrics.
pub fn splice(
    tracker: &TaskTracker,
    ours: OnUpgrade,
    theirs: OnUpgrade,
    bounds: Bounds,
    (direction, peer): (&'static str, String),
    end: impl Future<Output = ()> + Send + 'static,
) {
    tracker.spawn(async move {
        match tokio::try_join!(ours, theirs) {
            Ok((a, b)) => {
                let labels = [("direction", direction.to_owned()), ("peer", peer)];
                metrics::counter!("lucid_proxy_upgrades_total", &labels).increment(1);
                let active = metrics::gauge!("lucid_proxy_upgrades_active", &labels);
                active.increment(1.0);
                let why =
                    tunnel::splice(TokioIo::new(a), TokioIo::new(b), &bounds, None, end).await;
                active.decrement(1.0);
                tracing::debug!(reason = why.label(), "upgraded connection ended");
            }
            Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_needs_connection_upgrade_and_http1() {
        let req = Request::get("/ws")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert_eq!(requested(&req).unwrap(), "websocket");
        let req = Request::get("/ws")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(requested(&req).is_none(), "Connection does not name it");
        let req = Request::get("/")
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", "h2c")
            .body(())
            .unwrap();
        assert!(requested(&req).is_none(), "h2c is never switched to");
        let req = Request::get("/ws")
            .version(Version::HTTP_2)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(requested(&req).is_none());
        let ws = HeaderValue::from_static("websocket");
        let answer = |status: u16, upgrade: &'static str| {
            Response::builder()
                .status(status)
                .header("upgrade", upgrade)
                .body(())
                .unwrap()
        };
        assert!(switched(&answer(101, "WebSocket"), &ws));
        assert!(!switched(&answer(101, "h2c"), &ws), "not what was asked");
        assert!(!switched(&answer(200, "websocket"), &ws));
        let mut h = HeaderMap::new();
        restore(&mut h, HeaderValue::from_static("websocket"));
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }
}
