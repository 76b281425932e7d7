//! `lucid-test-app`: the HTTP application the proxy tests and benchmark put behind sidecars.
//! HTTP/1.1 and h2c on one port. Every answer says who answered and what arrived (method,
//! path, `Host`, `X-Forwarded-Client-Cert`), unless told otherwise:
//! - per request, by query: `status=N`, `delay_ms=N`, `size=N` (a body of N bytes instead),
//!   `fail=reset` (drop the connection without answering), `error_type=T` (answer with
//!   `x-lucid-error-type: T`, how an app flags its own error kinds to circuit breakers);
//! - for every later request, `POST /control` with `{"status", "delay_ms", "fail", "healthy"}`
//!   (`GET /control` returns the mode and how many requests arrived);
//! - `GET /health` answers 200, or 503 once `healthy` is false;
//! - `GET /headers` answers `{"app", "headers": {name: [values]}}`, every request header as
//!   received, and with `hop=1` also sends hop-by-hop response headers (`Connection` naming
//!   `X-App-Hop`, `X-App-Hop`, `Keep-Alive`, `Proxy-Authenticate`, `Trailer`), so tests can
//!   check what a proxy lets through in each direction.
//!
//! - a gRPC call (`content-type: application/grpc*`, any method path) is answered with its
//!   request messages echoed and `grpc-status: 0` in the trailers: a fast unary gRPC peer for
//!   the benchmarks, the same behind every path measured.
//!
//! `--port 0` binds a free port; the bound address is printed as `listening http ADDR`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

#[derive(Debug, Default, Clone)]
struct Mode {
    status: Option<u16>,
    delay_ms: u64,
    fail: Option<String>,
    unhealthy: bool,
}

struct App {
    name: String,
    mode: Mutex<Mode>,
    requests: AtomicU64,
}

#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset on request")
    }
}

impl std::error::Error for Reset {}

fn reply(status: StatusCode, body: impl Into<Bytes>, json_type: bool) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let ct = if json_type {
        "application/json"
    } else {
        "application/octet-stream"
    };
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ct),
    );
    r
}

/// The whole request body; a broken one drops the connection.
async fn body(req: Request<Incoming>) -> Result<Bytes, Reset> {
    Ok(req
        .into_body()
        .collect()
        .await
        .map_err(|_| Reset)?
        .to_bytes())
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Everything the app answers with.
type AppBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn is_grpc(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl App {
    /// A gRPC call: the request's messages back, then `grpc-status: 0` in the trailers.
    async fn grpc(&self, req: Request<Incoming>) -> Result<Response<AppBody>, Reset> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let echo = body(req).await?;
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let body = Full::new(echo)
            .with_trailers(async move { Some(Ok(trailers)) })
            .boxed();
        let mut r = Response::new(body);
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        Ok(r)
    }

    fn mode(&self) -> Mode {
        self.mode.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// `GET /headers`: the request headers as received; `hop=1` adds hop-by-hop answers.
    fn headers(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let mut seen = serde_json::Map::new();
        for (name, value) in req.headers() {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if let Value::Array(list) = seen
                .entry(name.as_str())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                list.push(Value::String(v));
            }
        }
        let v = json!({"app": self.name, "headers": seen});
        let mut r = reply(StatusCode::OK, v.to_string(), true);
        if query(req, "hop").as_deref() == Some("1") {
            for (k, v) in [
                ("connection", "x-app-hop"),
                ("x-app-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("proxy-authenticate", "Basic realm=\"app\""),
                ("trailer", "x-app-trailer"),
            ] {
                r.headers_mut().insert(k, http::HeaderValue::from_static(v));
            }
        }
        r
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Reset> {
        let path = req.uri().path().to_owned();
        let version = format!("{:?}", req.version());
        match (req.method().as_str(), path.as_str()) {
            ("GET", "/health") => {
                return Ok(if self.mode().unhealthy {
                    reply(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", false)
                } else {
                    reply(StatusCode::OK, "ok", false)
                })
            }
            ("GET", "/control") => {
                let m = self.mode();
                let v = json!({"requests": self.requests.load(Ordering::Relaxed),
                    "status": m.status, "delay_ms": m.delay_ms, "fail": m.fail, "healthy": !m.unhealthy});
                return Ok(reply(StatusCode::OK, v.to_string(), true));
            }
            ("POST", "/control") => {
                let body = body(req).await?;
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let m = Mode {
                    status: v["status"].as_u64().and_then(|s| u16::try_from(s).ok()),
                    delay_ms: v["delay_ms"].as_u64().unwrap_or(0),
                    fail: v["fail"].as_str().map(str::to_owned),
                    unhealthy: v["healthy"].as_bool() == Some(false),
                };
                if let Ok(mut g) = self.mode.lock() {
                    *g = m;
                }
                return Ok(reply(StatusCode::OK, "{}", true));
            }
            _ => {}
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        if path == "/headers" {
            return Ok(self.headers(&req));
        }
        let global = self.mode();
        let delay = query(&req, "delay_ms")
            .and_then(|d| d.parse().ok())
            .unwrap_or(global.delay_ms);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if query(&req, "fail").or(global.fail).as_deref() == Some("reset") {
            return Err(Reset);
        }
        let status = query(&req, "status")
            .and_then(|s| s.parse().ok())
            .or(global.status)
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        let error_type =
            query(&req, "error_type").and_then(|t| http::HeaderValue::from_str(&t).ok());
        let flag = |mut r: Response<Full<Bytes>>| {
            if let Some(t) = error_type.clone() {
                r.headers_mut().insert("x-lucid-error-type", t);
            }
            r
        };
        if let Some(n) = query(&req, "size").and_then(|s| s.parse::<usize>().ok()) {
            return Ok(flag(reply(status, vec![b'x'; n.min(16 << 20)], false)));
        }
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (xfcc, host) = (header("x-forwarded-client-cert"), header("host"));
        let body = body(req).await?;
        let v = json!({
            "app": self.name,
            "path": path,
            "version": version,
            "xfcc": xfcc,
            "host": host,
            "body_len": body.len(),
        });
        Ok(flag(reply(status, v.to_string(), true)))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut name, mut port) = ("app".to_owned(), 0u16);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--name" => name = args.next().context("--name NAME")?,
            "--port" => port = args.next().context("--port PORT")?.parse()?,
            "--help" | "-h" => {
                println!("lucid-test-app [--name NAME] [--port PORT]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("listening http {}", listener.local_addr()?);
    let app = Arc::new(App {
        name,
        mode: Mutex::default(),
        requests: AtomicU64::new(0),
    });
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move {
                    if is_grpc(&req) {
                        return app.grpc(req).await;
                    }
                    Ok(app.handle(req).await?.map(BodyExt::boxed))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
