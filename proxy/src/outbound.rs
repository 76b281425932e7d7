//! Outbound (127.0.0.1:15002): plain HTTP from the app; the destination service from an
//! absolute-form URI (`HTTP_PROXY`) or the Host header `<service>.lucid.internal[:port]`;
//! endpoints are the service's passing instances with a `mesh_port`, taken round-robin; each
//! request goes over mTLS to the peer's sidecar, which must prove it is that service.
//! (This first slice opens one connection per request: no pooling, breakers or retries yet.)

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lucid_tls::mtls::client_config;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::inbound::{refuse, Body};
use crate::mesh::Mesh;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Outbound {
    mesh: Arc<Mesh>,
    next: AtomicUsize,
    tls: Mutex<HashMap<String, TlsConnector>>,
}

/// Serve the app's outbound requests until `stop`.
pub async fn run(
    listener: TcpListener,
    mesh: Arc<Mesh>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let out = Arc::new(Outbound {
        mesh,
        next: AtomicUsize::new(0),
        tls: Mutex::default(),
    });
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(e) => { tracing::warn!(error = %e, "accept"); continue } },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let out = out.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let out = out.clone();
                async move { Ok::<_, Infallible>(out.handle(req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(tcp), svc).await {
                tracing::debug!(error = %e, "outbound connection ended");
            }
        });
    }
}

/// `<service>` from `web.lucid.internal[:port]`.
fn service_of(host: &str) -> Option<String> {
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host.strip_suffix(".lucid.internal")
        .map(str::to_owned)
        .filter(|s| lucid_core::catalog::valid_service_name(s))
}

impl Outbound {
    fn connector(&self, service: &str) -> anyhow::Result<TlsConnector> {
        let mut map = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get(service) {
            return Ok(c.clone());
        }
        let m = &self.mesh;
        let c = TlsConnector::from(client_config(
            m.identity.clone(),
            &m.root_pem,
            service,
            m.revoked.clone(),
        )?);
        map.insert(service.to_owned(), c.clone());
        Ok(c)
    }

    async fn endpoints(&self, service: &str) -> anyhow::Result<Vec<(String, u16)>> {
        let r = self
            .mesh
            .registry
            .call(
                http::Method::GET,
                &format!("/v1/health/service/{service}?passing&stale"),
                "",
            )
            .await?;
        let list: Vec<Value> = r.json()?;
        Ok(list
            .iter()
            .filter_map(|e| {
                let s = &e["Service"];
                let port = u16::try_from(s["MeshPort"].as_u64()?).ok()?;
                Some((s["Address"].as_str()?.to_owned(), port))
            })
            .collect())
    }

    async fn handle(&self, mut req: Request<Incoming>) -> Response<Body> {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        let Some(service) = host.as_deref().and_then(service_of) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "LUCID_ERR_1103",
                "the destination must be <service>.lucid.internal",
            );
        };
        let eps = match self.endpoints(&service).await {
            Ok(e) if !e.is_empty() => e,
            Ok(_) => {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "LUCID_ERR_1104",
                    &format!("no healthy endpoint of {service}"),
                )
            }
            Err(e) => {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "LUCID_ERR_1104",
                    &format!("discovery of {service}: {e}"),
                )
            }
        };
        let (addr, port) = eps[self.next.fetch_add(1, Ordering::Relaxed) % eps.len()].clone();
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        if let Ok(uri) = path.parse() {
            *req.uri_mut() = uri;
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, self.send(&service, &addr, port, req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "LUCID_ERR_1104",
                &format!("{service} at {addr}:{port}: {e:#}"),
            ),
            Err(_) => refuse(
                StatusCode::GATEWAY_TIMEOUT,
                "LUCID_ERR_1305",
                &format!("{service} did not answer within {REQUEST_TIMEOUT:?}"),
            ),
        }
    }

    async fn send(
        &self,
        service: &str,
        addr: &str,
        port: u16,
        req: Request<Incoming>,
    ) -> anyhow::Result<Response<Body>> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((addr, port))).await??;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(format!("{service}.lucid.internal"))?;
        let tls = self.connector(service)?.connect(name, tcp).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        let resp = if h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            let mut req = req;
            *req.version_mut() = http::Version::HTTP_2;
            // HTTP/2 carries the target as :scheme and :authority: it needs an absolute URI.
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            *req.uri_mut() = format!("https://{service}.lucid.internal{path}").parse()?;
            req.headers_mut().remove(http::header::HOST);
            send.send_request(req).await?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            send.send_request(req).await?
        };
        Ok(resp.map(|b| b.boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(service_of("web.lucid.internal").as_deref(), Some("web"));
        assert_eq!(
            service_of("web.lucid.internal:8080").as_deref(),
            Some("web")
        );
        assert_eq!(service_of("example.com"), None);
        assert_eq!(service_of("Bad_Name.lucid.internal"), None);
    }
}
