//! Stage 4, forward: the request as the local app gets it (the normalised path, `Host` from
//! the peer's `:authority`, hop-by-hop headers dropped, `X-Forwarded-Client-Cert` naming the
//! caller) in the HTTP version the app is spoken to in (`--app-protocol`: h2c or HTTP/1.1),
//! sent over the pooled app client; the answer's hop-by-hop headers go. An upgrade request
//! gets a connection to the app of its own, spliced to the peer's once the app switches.

use std::sync::atomic::Ordering;

use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lucid_core::ErrorCode;
use lucid_tls::SpiffeId;
use tokio_util::task::TaskTracker;

use super::Refused;
use crate::reply::refuse;
use crate::tunnel::Bounds;
use crate::{hop, stats, upgrade, Body};

type AppClient = Client<HttpConnector, Incoming>;

/// Pooled clients to the app: HTTP/1.1, and h2c (prior knowledge) for HTTP/2 and gRPC apps.
#[derive(Clone)]
pub(super) struct AppClients {
    h1: AppClient,
    h2: AppClient,
}

impl AppClients {
    pub(super) fn new() -> AppClients {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            // Below common app keep-alive timeouts (Node's 5 s) so we never reuse a closing one.
            b.pool_timer(TokioTimer::new())
                .pool_idle_timeout(std::time::Duration::from_secs(4))
                .pool_max_idle_per_host(256);
            b
        };
        AppClients {
            h1: builder().build(connector.clone()),
            h2: builder()
                .http2_only(true)
                .timer(TokioTimer::new())
                .build(connector),
        }
    }
}

/// Turn the peer's request into the app's, in HTTP/2 (`h2`) or HTTP/1.1: 400 when the target
/// cannot be rebuilt.
pub(super) fn rewrite<B>(
    req: &mut Request<B>,
    path: &str,
    app_port: u16,
    peer: &SpiffeId,
    h2: bool,
) -> Result<(), Refused> {
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let Ok(uri) = format!("http://127.0.0.1:{app_port}{path}{query}").parse::<http::Uri>() else {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::RoutingInvalid,
            "bad request target",
        )));
    };
    // Before setting our own headers: a caller's `Connection` must not name them away.
    // Towards an h2c app, gRPC's `TE: trailers` stays.
    hop::strip(req.headers_mut(), h2);
    // HTTP/2 from the peer sidecar carries the authority as :authority; the app gets Host.
    if let Some(a) = req.uri().authority().cloned() {
        if let Ok(v) = http::HeaderValue::from_str(a.as_str()) {
            req.headers_mut().entry(http::header::HOST).or_insert(v);
        }
    }
    *req.uri_mut() = uri;
    *req.version_mut() = if h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    if let Ok(v) = http::HeaderValue::from_str(&format!("URI={peer}")) {
        req.headers_mut().insert("x-forwarded-client-cert", v);
    }
    Ok(())
}

fn app_unreachable(app_port: u16, e: impl std::fmt::Display) -> Response<Body> {
    stats::inbound()
        .rq_app_error
        .fetch_add(1, Ordering::Relaxed);
    refuse(
        StatusCode::BAD_GATEWAY,
        ErrorCode::UpstreamUnavailable,
        &format!("local app on port {app_port}: {e}"),
    )
}

/// Send the rewritten request to the app; 502 when it cannot be reached.
pub(super) async fn to_app(
    app: &AppClients,
    req: Request<Incoming>,
    app_port: u16,
) -> Response<Body> {
    let client = if req.version() == Version::HTTP_2 {
        &app.h2
    } else {
        &app.h1
    };
    match client.request(req).await {
        Ok(mut resp) => {
            hop::strip(resp.headers_mut(), false);
            resp.map(|b| b.boxed())
        }
        Err(e) => app_unreachable(app_port, e),
    }
}

/// How long the app has to answer an upgrade request.
const UPGRADE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where an upgraded connection's splice runs and what bounds it.
pub(super) struct Splice<E> {
    pub tracker: TaskTracker,
    pub bounds: Bounds,
    /// The caller's service, for the metrics.
    pub peer: String,
    /// The peer's certificate stops being trusted.
    pub end: E,
}

/// An upgrade request (already rewritten for HTTP/1.1): to the app over a connection of its
/// own; when the app switches to the protocol asked for, the peer's connection and the app's
/// are spliced.
pub(super) async fn upgrade_to_app<E>(
    mut req: Request<Incoming>,
    protocol: http::HeaderValue,
    app_port: u16,
    splice: Splice<E>,
) -> Response<Body>
where
    E: std::future::Future<Output = ()> + Send + 'static,
{
    let theirs = hyper::upgrade::on(&mut req);
    upgrade::restore(req.headers_mut(), protocol.clone());
    if let Some(pq) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = pq.into();
    }
    let asked = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app_port)).await?;
        let _ = tcp.set_nodelay(true);
        anyhow::Ok(upgrade::send(tcp, req.map(|b| b.boxed())).await?)
    };
    let mut resp = match tokio::time::timeout(UPGRADE_TIMEOUT, asked).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return app_unreachable(app_port, format!("{e:#}")),
        Err(_) => return app_unreachable(app_port, "no answer to the upgrade request"),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        hop::strip(resp.headers_mut(), false);
        return resp.map(|b| b.boxed());
    }
    if !upgrade::switched(&resp, &protocol) {
        return app_unreachable(
            app_port,
            "switched to another protocol than the one asked for",
        );
    }
    let ours = hyper::upgrade::on(&mut resp);
    let labels = ("inbound", splice.peer);
    upgrade::splice(
        &splice.tracker,
        theirs,
        ours,
        splice.bounds,
        labels,
        splice.end,
    );
    resp.map(|_| crate::reply::full(bytes::Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_gets_the_normalised_path_host_and_our_word_on_the_caller() {
        let peer = SpiffeId {
            plane: "default".into(),
            service: "web".into(),
        };
        let mut req = Request::get("https://api.lucid.internal/a//b?x=1")
            .version(http::Version::HTTP_2)
            .header("connection", "x-forwarded-client-cert, keep-alive")
            .header("x-forwarded-client-cert", "URI=spiffe://forged")
            .header("keep-alive", "timeout=5")
            .body(())
            .unwrap();
        rewrite(&mut req, "/a/b", 8080, &peer, false).unwrap();
        assert_eq!(req.uri(), "http://127.0.0.1:8080/a/b?x=1");
        assert_eq!(req.version(), http::Version::HTTP_11);
        assert_eq!(req.headers()["host"], "api.lucid.internal");
        assert_eq!(
            req.headers()
                .get_all("x-forwarded-client-cert")
                .iter()
                .count(),
            1
        );
        assert_eq!(
            req.headers()["x-forwarded-client-cert"],
            format!("URI={peer}").as_str()
        );
        assert!(req.headers().get("keep-alive").is_none());
        assert!(req.headers().get("connection").is_none());
    }

    #[test]
    fn an_h2c_app_gets_http2_and_keeps_te_trailers() {
        let peer = SpiffeId {
            plane: "default".into(),
            service: "web".into(),
        };
        let mut req = Request::post("https://ledger.lucid.internal/pkg.Svc/Call")
            .version(http::Version::HTTP_2)
            .header("te", "trailers")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        rewrite(&mut req, "/pkg.Svc/Call", 9000, &peer, true).unwrap();
        assert_eq!(req.version(), http::Version::HTTP_2);
        assert_eq!(req.uri(), "http://127.0.0.1:9000/pkg.Svc/Call");
        assert_eq!(req.headers()["te"], "trailers");
    }
}
