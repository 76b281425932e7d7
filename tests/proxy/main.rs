//! Integration suite for lucid-proxy: a real registry, two real sidecars, two real apps.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use http::{Method, StatusCode};
use lucid_tests::bins::bin;
use lucid_tests::registry::{NodeSpec, RegistryProc};
use lucid_tests::wait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tiny app on 127.0.0.1:0 that answers every request with what it saw.
async fn echo_app(name: &'static str) -> anyhow::Result<u16> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let Ok(n) = s.read(&mut buf).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let line = text.lines().next().unwrap_or("").to_owned();
                let xfcc = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("x-forwarded-client-cert:")
                            .then(|| l[24..].trim().to_owned())
                    })
                    .unwrap_or_default();
                let body = json!({"app": name, "line": line, "xfcc": xfcc}).to_string();
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

/// A bootstrapped registry whose CA root exists.
async fn registry(dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<RegistryProc> {
    let reg = RegistryProc::spawn(NodeSpec {
        node_id: 1,
        data_dir: dir.join("n1"),
        bootstrap: true,
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })?;
    let c = reg.client();
    wait::until("the mesh root", Duration::from_secs(20), || async {
        let v: Value = c
            .call(Method::GET, "/v1/connect/ca/roots", "")
            .await?
            .json()?;
        Ok(v["Roots"][0]["RootCert"].as_str().map(|_| ()))
    })
    .await?;
    Ok(reg)
}

/// A running sidecar; killed on Drop.
struct Sidecar {
    child: Child,
    outbound: String,
    admin: String,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn sidecar(
    registry: &str,
    service: &str,
    plane: &str,
    app_port: u16,
) -> anyhow::Result<Sidecar> {
    let (i, o, a) = (free_port()?, free_port()?, free_port()?);
    let child = Command::new(bin("lucid-proxy"))
        .args([
            "--service",
            service,
            "--plane",
            plane,
            "--app-port",
            &app_port.to_string(),
        ])
        .args(["--registry", registry])
        .args([
            "--inbound-addr",
            &format!("127.0.0.1:{i}"),
            "--outbound-addr",
            &format!("127.0.0.1:{o}"),
            "--admin-addr",
            &format!("127.0.0.1:{a}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("LUCID_TEST_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .context("spawning lucid-proxy")?;
    let sc = Sidecar {
        child,
        outbound: format!("127.0.0.1:{o}"),
        admin: format!("127.0.0.1:{a}"),
    };
    let http = lucid_client::HttpClient::new(Duration::from_secs(2));
    let url = format!("http://{}/ready", sc.admin);
    wait::until(
        &format!("{service} sidecar ready"),
        Duration::from_secs(20),
        || async {
            Ok(http
                .send(Method::GET, &url, &[], "")
                .await
                .ok()
                .filter(|r| r.status == StatusCode::OK)
                .map(|_| ()))
        },
    )
    .await?;
    Ok(sc)
}

/// GET http://<service>.lucid.internal<path> through a sidecar's outbound listener.
async fn via(
    sc: &Sidecar,
    method: Method,
    service: &str,
    path: &str,
) -> anyhow::Result<(StatusCode, Value)> {
    let http = lucid_client::HttpClient::new(Duration::from_secs(10));
    let r = http
        .send(
            method,
            &format!("http://{}{path}", sc.outbound),
            &[("host", &format!("{service}.lucid.internal"))],
            "",
        )
        .await?;
    Ok((
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    ))
}

#[tokio::test]
async fn a_request_crosses_the_mesh_with_the_callers_identity_and_intentions_apply(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let c = reg.client();
    let (a_port, b_port) = (echo_app("a").await?, echo_app("b").await?);
    let a = sidecar(&reg.http, "api-gateway", "ops", a_port).await?;
    let _b = sidecar(&reg.http, "blockchain-core", "chain", b_port).await?;

    let (st, v) = via(&a, Method::GET, "blockchain-core", "/blocks/7").await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["app"], "b");
    assert_eq!(v["line"], "GET /blocks/7 HTTP/1.1");
    assert_eq!(
        v["xfcc"],
        "URI=spiffe://lucid.internal/plane/ops/svc/api-gateway"
    );

    // The platform's read-only policy: GET allowed, POST denied by B's sidecar.
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/service-mesh-config.yaml"
    ))?;
    let _ = policy; // applied through the API in JSON form below
    let doc = json!({"planeIsolation": {"planes": {"ops": {"allowedClusters": ["api-gateway"]}, "chain": {"allowedClusters": ["blockchain-core"]}},
        "policies": [{"name": "ops-to-chain-readonly", "source": "ops", "destination": "chain", "rules": [{"action": "allow", "methods": ["GET"]}]}]}});
    c.call(Method::PUT, "/v1/connect/policy", doc.to_string())
        .await?
        .error_for_status()?;
    wait::until("POST denied", Duration::from_secs(10), || async {
        let (st, v) = via(&a, Method::POST, "blockchain-core", "/blocks").await?;
        Ok((st == StatusCode::FORBIDDEN && v["error"]["code"] == "LUCID_ERR_1203").then_some(()))
    })
    .await?;
    let (st, _) = via(&a, Method::GET, "blockchain-core", "/blocks/8").await?;
    assert_eq!(st, StatusCode::OK);

    // Unknown destination: 503 LUCID_ERR_1104, at once.
    let (st, v) = via(&a, Method::GET, "nobody", "/").await?;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("LUCID_ERR_1104"))
    );
    Ok(())
}

#[tokio::test]
async fn sidecars_apply_the_registrys_default_action() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &["--intentions-default", "deny"]).await?;
    let (a_port, b_port) = (echo_app("a").await?, echo_app("b").await?);
    let a = sidecar(&reg.http, "web", "ops", a_port).await?;
    let _b = sidecar(&reg.http, "db", "chain", b_port).await?;
    // No intention: the registry's default (deny) decides in B's sidecar.
    let (st, v) = via(&a, Method::GET, "db", "/").await?;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("LUCID_ERR_1203")),
        "{v}"
    );
    reg.client()
        .call(
            Method::POST,
            "/v1/connect/intentions",
            json!({"SourceName": "web", "DestinationName": "db", "Action": "allow"}).to_string(),
        )
        .await?
        .error_for_status()?;
    wait::until("web -> db allowed", Duration::from_secs(10), || async {
        Ok((via(&a, Method::GET, "db", "/").await?.0 == StatusCode::OK).then_some(()))
    })
    .await?;
    Ok(())
}
