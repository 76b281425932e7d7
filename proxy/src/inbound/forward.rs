//! Stage 4, forward: the request as the local app gets it (the normalised path, HTTP/1.1,
//! `Host` from the peer's `:authority`, hop-by-hop headers dropped, `X-Forwarded-Client-Cert`
//! naming the caller), sent over the pooled app client; the answer's hop-by-hop headers go.

use std::sync::atomic::Ordering;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use lucid_core::ErrorCode;
use lucid_tls::SpiffeId;

use super::Refused;
use crate::reply::refuse;
use crate::{hop, stats, Body};

pub(super) type AppClient = Client<HttpConnector, Incoming>;

/// Turn the peer's request into the app's: 400 when the target cannot be rebuilt.
pub(super) fn rewrite<B>(
    req: &mut Request<B>,
    path: &str,
    app_port: u16,
    peer: &SpiffeId,
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
    hop::strip(req.headers_mut(), false);
    // HTTP/2 from the peer sidecar carries the authority as :authority; the app gets Host.
    if let Some(a) = req.uri().authority().cloned() {
        if let Ok(v) = http::HeaderValue::from_str(a.as_str()) {
            req.headers_mut().entry(http::header::HOST).or_insert(v);
        }
    }
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    if let Ok(v) = http::HeaderValue::from_str(&format!("URI={peer}")) {
        req.headers_mut().insert("x-forwarded-client-cert", v);
    }
    Ok(())
}

/// Send the rewritten request to the app; 502 when it cannot be reached.
pub(super) async fn to_app(
    app: &AppClient,
    req: Request<Incoming>,
    app_port: u16,
) -> Response<Body> {
    match app.request(req).await {
        Ok(mut resp) => {
            hop::strip(resp.headers_mut(), false);
            resp.map(|b| b.boxed())
        }
        Err(e) => {
            stats::inbound()
                .rq_app_error
                .fetch_add(1, Ordering::Relaxed);
            refuse(
                StatusCode::BAD_GATEWAY,
                ErrorCode::UpstreamUnavailable,
                &format!("local app on port {app_port}: {e}"),
            )
        }
    }
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
        rewrite(&mut req, "/a/b", 8080, &peer).unwrap();
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
}
