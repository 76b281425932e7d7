//! Requests across the mesh: HTTP/1.1 and HTTP/2 from the app, the caller's identity at the
//! far side, the admin views, and the platform's policy file enforced by the sidecars.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lucid_tests::wait;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{registry, via, App, Sidecar};

#[tokio::test]
async fn requests_cross_the_mesh_over_http1_and_http2_with_the_callers_identity(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let (app_a, app_b) = (App::spawn("a")?, App::spawn("b")?);
    let a = Sidecar::spawn(&reg.http, "web", "ops", app_a.port, &[]).await?;
    let _b = Sidecar::spawn(&reg.http, "ledger", "chain", app_b.port, &[]).await?;

    // HTTP/1.1 with a Host header.
    let r = via(&a, Method::GET, "ledger", "/blocks/7?x=1").await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["app"], "b");
    assert_eq!(r.body["path"], "/blocks/7");
    assert_eq!(
        r.body["xfcc"],
        "URI=spiffe://lucid.internal/plane/ops/svc/web"
    );
    assert_eq!(r.body["host"], "ledger.lucid.internal");
    // `--app-protocol auto`: the app is spoken to in the caller's HTTP version.
    assert_eq!(r.body["version"], "HTTP/1.1");

    // HTTP/1.1 in absolute form, as an app with HTTP_PROXY sends it.
    let mut tcp = tokio::net::TcpStream::connect(&a.outbound).await?;
    tcp.write_all(b"GET http://ledger.lucid.internal/abs HTTP/1.1\r\nHost: ledger.lucid.internal\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await?;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("\"path\":\"/abs\""), "{raw}");

    // HTTP/2 (h2c prior knowledge) from the app; the peer's sidecar hands the app HTTP/2 too
    // (`--app-protocol auto`, the default), as linkerd preserves the caller's protocol.
    let tcp = tokio::net::TcpStream::connect(&a.outbound).await?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    for i in 0..3 {
        let req = Request::get(format!("http://ledger.lucid.internal/h2/{i}"))
            .body(Empty::<Bytes>::new())?;
        let resp = send.send_request(req).await?;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body: Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
        assert_eq!(body["path"], format!("/h2/{i}"));
        assert_eq!(body["version"], "HTTP/2.0");
        assert_eq!(
            body["xfcc"],
            "URI=spiffe://lucid.internal/plane/ops/svc/web"
        );
    }

    // Between the sidecars: one pooled connection, every request counted.
    let eps = a.endpoints("ledger").await?;
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(
        eps[0]["cx_active"], 1,
        "one multiplexed connection: {eps:?}"
    );
    assert_eq!(eps[0]["rq_total"], 5);
    assert_eq!(eps[0]["rq_error"], 0);
    assert_eq!(eps[0]["circuit"], "closed");
    assert_eq!(eps[0]["health"], "healthy");

    // Admin views.
    let (st, text) = a.admin(Method::GET, "/clusters").await?;
    assert_eq!(st, StatusCode::OK);
    assert!(text.contains("ledger::127.0.0.1:"), "{text}");
    assert!(text.contains("::rq_total::5"), "{text}");
    let (_, stats) = a.admin(Method::GET, "/stats").await?;
    assert!(
        stats.contains("cluster.ledger.upstream_rq_total: 5"),
        "{stats}"
    );
    let (_, prom) = a.admin(Method::GET, "/stats/prometheus").await?;
    for needle in [
        "lucid_proxy_requests_total{direction=\"outbound\",peer=\"ledger\",status=\"200\"} 5",
        "lucid_proxy_request_duration_seconds_bucket{direction=\"outbound\",peer=\"ledger\"",
        "lucid_proxy_cert_expiry_seconds ",
        "lucid_proxy_circuit_state{cluster=\"ledger\"",
    ] {
        assert!(prom.contains(needle), "{needle} missing from:\n{prom}");
    }
    let (_, dump) = a.admin(Method::GET, "/config_dump").await?;
    let v: Value = serde_json::from_str(&dump)?;
    assert_eq!(v["identity"], "spiffe://lucid.internal/plane/ops/svc/web");
    assert_eq!(v["clusters"][0]["name"], "ledger");
    assert!(!dump.contains("PRIVATE KEY"), "no private key in {dump}");
    let (_, certs) = a.admin(Method::GET, "/certs").await?;
    assert!(!certs.contains("PRIVATE KEY"));

    // The caller's own errors: not a mesh name (400), no such service (503 at once).
    let r = crate::via(&a, Method::GET, "nobody", "/").await?;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("LUCID_ERR_1104"))
    );
    let r = lucid_client::HttpClient::new(Duration::from_secs(5))
        .send(
            Method::GET,
            &format!("http://{}/", a.outbound),
            &[("host", "example.com")],
            "",
        )
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.header("x-lucid-error"), Some("LUCID_ERR_1103"));
    Ok(())
}

#[tokio::test]
async fn the_platform_policy_file_is_enforced_by_the_sidecars() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/service-mesh-config.yaml"
    );
    let out = std::process::Command::new(lucid_tests::bins::bin("lucidctl"))
        .args(["--registry", &reg.http, "policy", "apply", "-f", file])
        .output()?;
    assert!(out.status.success(), "{out:?}");
    let apps = [
        App::spawn("gateway")?,
        App::spawn("admin")?,
        App::spawn("chain")?,
        App::spawn("payments")?,
    ];
    let gw = Sidecar::spawn(&reg.http, "api-gateway", "ops", apps[0].port, &[]).await?;
    let admin = Sidecar::spawn(&reg.http, "admin-interface", "ops", apps[1].port, &[]).await?;
    let _chain = Sidecar::spawn(&reg.http, "blockchain-core", "chain", apps[2].port, &[]).await?;
    let _pay = Sidecar::spawn(&reg.http, "tron-payment", "wallet", apps[3].port, &[]).await?;

    // ops -> chain is read-only.
    let r = via(&gw, Method::GET, "blockchain-core", "/blocks/7").await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = via(&gw, Method::POST, "blockchain-core", "/blocks").await?;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, Some("LUCID_ERR_1203"))
    );
    // The wallet is closed to everyone except api-gateway's POSTs to the payments API.
    let r = via(&gw, Method::POST, "tron-payment", "/api/v1/payments/42").await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["app"], "payments");
    let r = via(&gw, Method::GET, "tron-payment", "/api/v1/payments/42").await?;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, Some("LUCID_ERR_1203"))
    );
    let r = via(&gw, Method::POST, "tron-payment", "/api/v1/other").await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = via(&admin, Method::POST, "tron-payment", "/api/v1/payments/42").await?;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, Some("LUCID_ERR_1203"))
    );
    // Refusals are the far sidecar's: the payments app saw exactly the one allowed request.
    assert_eq!(apps[3].requests().await?, 1);

    // A change of policy reaches the sidecars without a restart.
    let c = reg.client();
    c.call(
        Method::POST,
        "/v1/connect/intentions",
        serde_json::json!({"SourceName": "admin-interface", "DestinationName": "tron-payment",
            "Action": "allow"})
        .to_string(),
    )
    .await?
    .error_for_status()?;
    wait::until(
        "admin-interface allowed",
        Duration::from_secs(10),
        || async {
            let r = via(&admin, Method::POST, "tron-payment", "/api/v1/payments/42").await?;
            Ok((r.status == StatusCode::OK).then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// GETs of `route` the registry has answered with 200, from its own request counter.
async fn answered(c: &lucid_client::RegistryClient, route: &str) -> anyhow::Result<u64> {
    let text = c
        .call(Method::GET, "/metrics", "")
        .await?
        .error_for_status()?;
    let text = String::from_utf8_lossy(&text.body).into_owned();
    Ok(text
        .lines()
        .filter(|l| l.starts_with("lucid_http_requests_total{"))
        .filter(|l| l.contains("method=\"GET\"") && l.contains("status=\"200\""))
        .filter(|l| l.contains(&format!("route=\"{route}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

#[tokio::test]
async fn a_bulk_intention_write_is_fetched_by_sidecars_a_few_times_a_second() -> anyhow::Result<()>
{
    // The audit: 20,000 intentions took 873 s with two sidecars following, because every
    // change re-sent the whole list to each. Now each sidecar fetches at most once per 250 ms
    // however fast the writes come, so the fetches are bounded by the elapsed time alone.
    const N: usize = 1500;
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let app = App::spawn("a")?;
    let mut sidecars = Vec::new();
    for s in ["web0", "web1"] {
        sidecars.push(Sidecar::spawn(&reg.http, s, "default", app.port, &[]).await?);
    }
    let c = reg.client();
    let route = "/v1/connect/intentions";
    let before = answered(&c, route).await?;
    let started = std::time::Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..16 {
        let c = c.clone();
        writers.spawn(async move {
            for i in (w..N).step_by(16) {
                let path = format!("/v1/connect/intentions/exact?source=s{i}&destination=ledger");
                c.call(Method::PUT, &path, r#"{"Action":"allow"}"#)
                    .await?
                    .error_for_status()?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = writers.join_next().await {
        r??;
    }
    for sc in &sidecars {
        wait::until(
            "the sidecar to hold every intention",
            Duration::from_secs(60),
            || async {
                let (_, body) = sc.admin(Method::GET, "/config_dump").await?;
                let v: Value = serde_json::from_str(&body)?;
                Ok((v["intentions"].as_array().map_or(0, Vec::len) == N).then_some(()))
            },
        )
        .await?;
    }
    let elapsed = started.elapsed();
    let fetches = answered(&c, route).await? - before;
    // Per sidecar: one fetch per 250 ms window, plus the one in flight at each end.
    let bound = 2 * (elapsed.as_millis() as u64 / 250 + 3);
    eprintln!(
        "{N} intentions in {elapsed:?}: {fetches} list fetches by two sidecars (bound {bound})"
    );
    assert!(
        (N as u64) > 2 * bound,
        "the writes were too slow for the bound to mean anything: {elapsed:?}"
    );
    assert!(fetches >= 2, "the sidecars did follow the list");
    assert!(
        fetches <= bound,
        "{fetches} fetches for {N} writes in {elapsed:?}"
    );
    Ok(())
}
