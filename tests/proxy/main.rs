//! Integration suite for lucid-proxy: a real registry, real sidecars, real apps
//! (`lucid-test-app`), all on ephemeral loopback ports.

mod admin;
mod grpc;
mod lifecycle;
mod limits;
mod mesh;
mod py;
mod requests;
mod resilience;
mod tcp;
mod tls;
mod websocket;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http::{Method, StatusCode};
use lucid_client::{HttpClient, RegistryClient};
use lucid_tests::bins::bin;
use lucid_tests::procs::{self, listeners, Log};
use lucid_tests::registry::{NodeSpec, RegistryProc};
use lucid_tests::wait;
use serde_json::{json, Value};

/// A `lucid-test-app` child; killed on Drop.
pub struct App {
    child: Child,
    pub port: u16,
    http: HttpClient,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl App {
    pub fn spawn(name: &str) -> anyhow::Result<App> {
        let mut child = Command::new(bin("lucid-test-app"))
            .args(["--name", name, "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning lucid-test-app")?;
        let (addrs, _) = listeners(&mut child, &["http"], name)?;
        let port = addrs["http"]
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .context("app address")?;
        Ok(App {
            child,
            port,
            http: HttpClient::new(Duration::from_secs(5)),
        })
    }

    /// Set the app's mode for later requests (`{"status", "delay_ms", "fail", "healthy"}`).
    pub async fn control(&self, mode: Value) -> anyhow::Result<()> {
        self.http
            .send(
                Method::POST,
                &format!("http://127.0.0.1:{}/control", self.port),
                &[],
                mode.to_string(),
            )
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Requests that reached the app (not counting /control and /health).
    pub async fn requests(&self) -> anyhow::Result<u64> {
        let v: Value = self
            .http
            .send(
                Method::GET,
                &format!("http://127.0.0.1:{}/control", self.port),
                &[],
                "",
            )
            .await?
            .json()?;
        v["requests"].as_u64().context("requests")
    }
}

/// A running `lucid-proxy`; killed on Drop.
pub struct Sidecar {
    child: Child,
    pub inbound: String,
    pub outbound: String,
    pub admin: String,
    /// Every listener it reported (`upstream:<svc>` ones too).
    pub listeners: std::collections::HashMap<&'static str, String>,
    pub log: Log,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    /// Start a sidecar for `service` in `plane` in front of `app_port`; waits for `/ready`.
    pub async fn spawn(
        registry: &str,
        service: &str,
        plane: &str,
        app_port: u16,
        extra: &[&str],
    ) -> anyhow::Result<Sidecar> {
        let sc = Self::start(registry, service, plane, app_port, extra)?;
        sc.wait_ready(Duration::from_secs(30)).await?;
        Ok(sc)
    }

    /// Start without waiting for `/ready`.
    pub fn start(
        registry: &str,
        service: &str,
        plane: &str,
        app_port: u16,
        extra: &[&str],
    ) -> anyhow::Result<Sidecar> {
        Self::start_with(registry, service, plane, app_port, extra, &[])
    }

    /// Start, also waiting for the listeners `more` (`upstream:<svc>` for an `--upstream`).
    pub fn start_with(
        registry: &str,
        service: &str,
        plane: &str,
        app_port: u16,
        extra: &[&str],
        more: &[&'static str],
    ) -> anyhow::Result<Sidecar> {
        let mut child = Command::new(bin("lucid-proxy"))
            .args(["--service", service, "--plane", plane])
            .args(["--app-port", &app_port.to_string(), "--registry", registry])
            .args(["--inbound-addr", "127.0.0.1:0"])
            .args(["--outbound-addr", "127.0.0.1:0"])
            .args(["--admin-addr", "127.0.0.1:0"])
            .args(extra)
            // `LUCID_TEST_PROXY_LOG=lucid_proxy=debug` to see each failed send.
            .env(
                "RUST_LOG",
                std::env::var("LUCID_TEST_PROXY_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning lucid-proxy")?;
        let kinds: Vec<&'static str> = ["inbound", "outbound", "admin"]
            .into_iter()
            .chain(more.iter().copied())
            .collect();
        let (addrs, log) = listeners(&mut child, &kinds, service)?;
        Ok(Sidecar {
            child,
            inbound: addrs["inbound"].clone(),
            outbound: addrs["outbound"].clone(),
            admin: addrs["admin"].clone(),
            listeners: addrs,
            log,
        })
    }

    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let http = HttpClient::new(Duration::from_secs(2));
        let url = format!("http://{}/ready", self.admin);
        wait::until("sidecar ready", within, || async {
            Ok(http
                .send(Method::GET, &url, &[], "")
                .await
                .ok()
                .filter(|r| r.status == StatusCode::OK)
                .map(|_| ()))
        })
        .await
        .with_context(|| self.log())
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// GET an admin path; status and body text.
    pub async fn admin(&self, method: Method, path: &str) -> anyhow::Result<(StatusCode, String)> {
        self.admin_with(method, path, &[]).await
    }

    /// An admin request with headers (a token, a browser's `Origin`); status and body text.
    pub async fn admin_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(StatusCode, String)> {
        let r = HttpClient::new(Duration::from_secs(5))
            .send(method, &format!("http://{}{path}", self.admin), headers, "")
            .await?;
        Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
    }

    /// `/clusters?format=json`: the endpoints of `service`.
    pub async fn endpoints(&self, service: &str) -> anyhow::Result<Vec<Value>> {
        let (_, text) = self.admin(Method::GET, "/clusters?format=json").await?;
        let v: Value = serde_json::from_str(&text)?;
        Ok(v["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["name"] == service)
            .flat_map(|c| c["endpoints"].as_array().cloned().unwrap_or_default())
            .collect())
    }

    /// The certificate serial and rotation count from `/certs`.
    pub async fn cert(&self) -> anyhow::Result<(String, u64)> {
        let (_, text) = self.admin(Method::GET, "/certs").await?;
        let v: Value = serde_json::from_str(&text)?;
        Ok((
            v["serial"].as_str().unwrap_or_default().to_owned(),
            v["rotations"].as_u64().unwrap_or(0),
        ))
    }

    pub fn sigterm(&self) -> anyhow::Result<()> {
        procs::signal(&self.child, "TERM")
    }

    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "sidecar still running after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The usual pair: app "a" behind the `web` sidecar (the caller) and app "b" behind the
/// `ledger` sidecar, both in plane `default`.
pub struct Pair {
    pub app_a: App,
    pub app_b: App,
    pub a: Sidecar,
    pub b: Sidecar,
}

pub async fn pair(registry: &str) -> anyhow::Result<Pair> {
    let (app_a, app_b) = (App::spawn("a")?, App::spawn("b")?);
    let a = Sidecar::spawn(registry, "web", "default", app_a.port, &[]).await?;
    let b = Sidecar::spawn(registry, "ledger", "default", app_b.port, &[]).await?;
    Ok(Pair { app_a, app_b, a, b })
}

/// A bootstrapped registry whose CA root exists.
pub async fn registry(dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<RegistryProc> {
    let reg = RegistryProc::spawn(NodeSpec {
        node_id: 1,
        data_dir: dir.join("n1"),
        bootstrap: true,
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })?;
    wait_root(&reg.client()).await?;
    Ok(reg)
}

pub async fn wait_root(c: &RegistryClient) -> anyhow::Result<()> {
    wait::until("the mesh root", Duration::from_secs(20), || async {
        let v: Value = match c.call(Method::GET, "/v1/connect/ca/roots", "").await {
            Ok(r) => r.json()?,
            Err(_) => return Ok(None),
        };
        Ok(v["Roots"][0]["RootCert"].as_str().map(|_| ()))
    })
    .await
}

/// `PUT /v1/config` with a service-defaults entry.
pub async fn service_defaults(c: &RegistryClient, entry: Value) -> anyhow::Result<()> {
    let mut e = entry;
    e["Kind"] = json!("service-defaults");
    c.call(Method::PUT, "/v1/config", e.to_string())
        .await?
        .error_for_status()?;
    Ok(())
}

/// What an app saw or what the proxy refused with.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The proxy's own `LUCID_ERR_` code, if it answered itself.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// `method http://<service>.lucid.internal<path>` through a sidecar's outbound listener
/// (HTTP/1.1, Host header).
pub async fn via(
    sc: &Sidecar,
    method: Method,
    service: &str,
    path: &str,
) -> anyhow::Result<Answer> {
    via_addr(&sc.outbound, method, service, path).await
}

pub async fn via_addr(
    outbound: &str,
    method: Method,
    service: &str,
    path: &str,
) -> anyhow::Result<Answer> {
    let r = HttpClient::new(Duration::from_secs(20))
        .send(
            method,
            &format!("http://{outbound}{path}"),
            &[("host", &format!("{service}.lucid.internal"))],
            "",
        )
        .await?;
    Ok(Answer {
        status: r.status,
        body: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    })
}

/// Write `request` as is on a new connection to `addr` (no client in between to tidy the
/// target or the headers) and read until the peer closes: the status and the raw answer. The
/// request should say `Connection: close`.
pub async fn raw(addr: &str, request: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut out)).await??;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    Ok((status, text))
}

/// Closed-loop load: `workers` tasks each sending GETs through `outbound` to `service`, with
/// `pause` between a worker's requests, until finished.
pub struct Load {
    pub ok: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    pub first_failure: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(
        outbound: &str,
        service: &str,
        path: &str,
        workers: usize,
        pause: Duration,
    ) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let first_failure = Arc::new(std::sync::Mutex::new(None));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|_| {
                let (ok, failed, first, stop) = (
                    ok.clone(),
                    failed.clone(),
                    first_failure.clone(),
                    stop.clone(),
                );
                let (outbound, service, path) =
                    (outbound.to_owned(), service.to_owned(), path.to_owned());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match via_addr(&outbound, Method::GET, &service, &path).await {
                            Ok(a) if a.status == StatusCode::OK => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                let what = match other {
                                    Ok(a) => format!("{} {}", a.status, a.body),
                                    Err(e) => format!("{e:#}"),
                                };
                                first.lock().unwrap().get_or_insert(what);
                            }
                        }
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Load {
            ok,
            failed,
            first_failure,
            stop,
            tasks,
        }
    }

    /// Stop and return (ok, failed, first failure).
    pub async fn finish(self) -> (u64, u64, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let first = self.first_failure.lock().unwrap().clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            first,
        )
    }
}
