//! Inbound (15001): mTLS with a required client certificate from the mesh root, the peer's
//! SPIFFE id authorised against intentions per request (L7 included), then forwarded to the
//! local app with `X-Forwarded-Client-Cert` naming the caller.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lucid_core::intention::{allowed, Caller};
use lucid_tls::mtls::{peer_identity, server_config};
use lucid_tls::SpiffeId;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::mesh::Mesh;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// A JSON error answer with a `LUCID_ERR_` code (the proxy's own refusals).
pub fn refuse(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = http::HeaderValue::from_str(code) {
        r.headers_mut().insert("x-lucid-error", v);
    }
    r
}

/// Serve inbound connections until `stop`.
pub async fn run(
    listener: TcpListener,
    mesh: Arc<Mesh>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let cfg = server_config(mesh.identity.clone(), &mesh.root_pem, mesh.revoked.clone())?;
    let acceptor = TlsAcceptor::from(cfg);
    let app: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(e) => { tracing::warn!(error = %e, "accept"); continue } },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let (acceptor, mesh, app) = (acceptor.clone(), mesh.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(error = %e, "inbound handshake refused");
                    return;
                }
            };
            let Some((peer, _)) = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(peer_identity)
            else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let (mesh, app, peer) = (mesh.clone(), app.clone(), peer.clone());
                async move { Ok::<_, Infallible>(handle(req, &mesh, &app, &peer).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
                tracing::debug!(error = %e, "inbound connection ended");
            }
        });
    }
}

async fn handle(
    mut req: Request<Incoming>,
    mesh: &Mesh,
    app: &Client<HttpConnector, Incoming>,
    peer: &SpiffeId,
) -> Response<Body> {
    let policy = mesh.policy.load();
    let (ok, _) = allowed(
        &policy.intentions,
        Caller {
            service: &peer.service,
            plane: Some(&peer.plane),
        },
        Caller {
            service: &mesh.me.service,
            plane: Some(&mesh.me.plane),
        },
        Some((req.method().as_str(), req.uri().path())),
        policy.default,
    );
    if !ok {
        return refuse(
            StatusCode::FORBIDDEN,
            "LUCID_ERR_1203",
            &format!("{peer} may not {} {}", req.method(), req.uri().path()),
        );
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(uri) = format!("http://127.0.0.1:{}{path}", mesh.cfg.app_port).parse::<http::Uri>()
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "LUCID_ERR_1103",
            "bad request target",
        );
    };
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    if let Ok(v) = http::HeaderValue::from_str(&format!("URI={peer}")) {
        req.headers_mut().insert("x-forwarded-client-cert", v);
    }
    match app.request(req).await {
        Ok(resp) => resp.map(|b| b.boxed()),
        Err(e) => refuse(
            StatusCode::BAD_GATEWAY,
            "LUCID_ERR_1104",
            &format!("local app: {e}"),
        ),
    }
}
