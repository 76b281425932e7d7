//! Health checks run by the registry: an HTTP check against a real local server flipping
//! between 200, 429 and 500; TTL expiry; checking carries on after the leader is killed.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use lucid_client::RegistryClient;
use lucid_tests::registry::{cluster_lock, Cluster};
use lucid_tests::wait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kv::single_node;

/// A tiny HTTP server on 127.0.0.1:0 answering every request with the current status.
async fn flipping_server() -> anyhow::Result<(String, Arc<AtomicU16>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let code = Arc::new(AtomicU16::new(200));
    let shared = code.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let code = shared.load(Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let resp =
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok((addr, code))
}

async fn check_status(c: &RegistryClient, id: &str) -> anyhow::Result<String> {
    let v: Value = c
        .call(Method::GET, "/v1/agent/checks", "")
        .await?
        .error_for_status()?
        .json()?;
    Ok(v[id]["Status"].as_str().unwrap_or("").to_owned())
}

async fn wait_status(c: &RegistryClient, id: &str, want: &str) -> anyhow::Result<()> {
    wait::until(
        &format!("{id} to be {want}"),
        Duration::from_secs(15),
        || async { Ok((check_status(c, id).await? == want).then_some(())) },
    )
    .await
}

async fn passing_count(c: &RegistryClient, service: &str) -> anyhow::Result<usize> {
    let v: Value = c
        .call(
            Method::GET,
            &format!("/v1/health/service/{service}?passing"),
            "",
        )
        .await?
        .json()?;
    Ok(v.as_array().map_or(0, Vec::len))
}

#[tokio::test]
async fn http_check_follows_the_app_and_ttl_expires() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let (addr, code) = flipping_server().await?;
    let reg = json!({"name": "app", "id": "app-1", "port": 1,
        "checks": [{"http": format!("http://{addr}/health"), "interval": "1s", "timeout": "1s"}]});
    c.call(Method::PUT, "/v1/agent/service/register", reg.to_string())
        .await?
        .error_for_status()?;
    wait_status(&c, "service:app-1", "passing").await?;
    assert_eq!(passing_count(&c, "app").await?, 1);
    code.store(429, Ordering::Relaxed);
    wait_status(&c, "service:app-1", "warning").await?;
    assert_eq!(passing_count(&c, "app").await?, 0, "warning is not passing");
    code.store(500, Ordering::Relaxed);
    wait_status(&c, "service:app-1", "critical").await?;
    code.store(200, Ordering::Relaxed);
    wait_status(&c, "service:app-1", "passing").await?;
    assert_eq!(passing_count(&c, "app").await?, 1, "back in ?passing");

    // TTL: refreshed it passes; left alone it expires.
    let ttl = json!({"name": "worker", "id": "w-1", "check": {"ttl": "2s"}});
    c.call(Method::PUT, "/v1/agent/service/register", ttl.to_string())
        .await?
        .error_for_status()?;
    c.call(Method::PUT, "/v1/agent/check/pass/service:w-1", "")
        .await?
        .error_for_status()?;
    assert_eq!(check_status(&c, "service:w-1").await?, "passing");
    // Passes repeating the same status and output move no index a watcher sees; the checker
    // must still restart the TTL on each, so twice the TTL of them keeps the check passing.
    let index = c
        .call(Method::GET, "/v1/health/service/worker", "")
        .await?
        .consul_index();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.call(Method::PUT, "/v1/agent/check/pass/service:w-1", "")
            .await?
            .error_for_status()?;
    }
    assert_eq!(
        check_status(&c, "service:w-1").await?,
        "passing",
        "a refreshed TTL expired"
    );
    let after = c
        .call(Method::GET, "/v1/health/service/worker", "")
        .await?
        .consul_index();
    assert_eq!(
        index, after,
        "an unchanged TTL pass moved the service's index"
    );
    wait_status(&c, "service:w-1", "critical").await?;
    let v: Value = c.call(Method::GET, "/v1/agent/checks", "").await?.json()?;
    assert!(v["service:w-1"]["Output"]
        .as_str()
        .unwrap()
        .contains("TTL expired"));

    // A TCP check against the same server.
    let tcp = json!({"name": "tcpapp", "id": "t-1", "check": {"tcp": addr, "interval": "1s"}});
    c.call(Method::PUT, "/v1/agent/service/register", tcp.to_string())
        .await?
        .error_for_status()?;
    wait_status(&c, "service:t-1", "passing").await?;
    Ok(())
}

#[tokio::test]
async fn checks_continue_after_the_leader_is_killed() -> anyhow::Result<()> {
    let _serial = cluster_lock().await;
    let mut cl = Cluster::start(3, &[]).await?;
    let (addr, code) = flipping_server().await?;
    let leader = cl.wait_leader(Duration::from_secs(10)).await?;
    let other = (leader + 1) % 3;
    let c = cl.node(other).client();
    let reg = json!({"name": "app", "id": "app-1", "check": {"http": format!("http://{addr}/"), "interval": "1s"}});
    c.call(Method::PUT, "/v1/agent/service/register", reg.to_string())
        .await?
        .error_for_status()?;
    wait_status(&c, "service:app-1", "passing").await?;
    cl.kill9(leader);
    cl.wait_leader(Duration::from_secs(20)).await?;
    code.store(500, Ordering::Relaxed);
    wait_status(&c, "service:app-1", "critical").await?;
    code.store(200, Ordering::Relaxed);
    wait_status(&c, "service:app-1", "passing").await?;
    Ok(())
}

#[tokio::test]
async fn critical_services_are_reaped_after_deregister_critical_service_after() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    // 1m is Consul's minimum (shorter values are raised to it), so this test takes a minute.
    let reg = json!({"name": "doomed", "id": "d-1", "check": {"ttl": "30s", "DeregisterCriticalServiceAfter": "1m"}});
    c.call(Method::PUT, "/v1/agent/service/register", reg.to_string())
        .await?
        .error_for_status()?;
    let keep = json!({"name": "kept", "id": "k-1", "check": {"ttl": "30s"}});
    c.call(Method::PUT, "/v1/agent/service/register", keep.to_string())
        .await?
        .error_for_status()?;
    let t = std::time::Instant::now();
    wait::until(
        "the critical service to be reaped",
        Duration::from_secs(120),
        || async {
            let v: Value = c
                .call(Method::GET, "/v1/agent/services", "")
                .await?
                .json()?;
            Ok(v.get("d-1").is_none().then_some(()))
        },
    )
    .await?;
    assert!(
        t.elapsed() >= Duration::from_secs(55),
        "reaped too early: {:?}",
        t.elapsed()
    );
    let v: Value = c
        .call(Method::GET, "/v1/agent/services", "")
        .await?
        .json()?;
    assert!(
        v.get("k-1").is_some(),
        "a critical service without the setting stays"
    );
    Ok(())
}

#[tokio::test]
async fn failures_before_critical_and_success_before_passing_damp_flapping() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let (addr, code) = flipping_server().await?;
    let reg = json!({"name": "flap", "id": "f-1", "check": {"http": format!("http://{addr}/"), "interval": "1s",
        "FailuresBeforeCritical": 3, "SuccessBeforePassing": 2}});
    c.call(Method::PUT, "/v1/agent/service/register", reg.to_string())
        .await?
        .error_for_status()?;
    wait_status(&c, "service:f-1", "passing").await?;
    code.store(500, Ordering::Relaxed);
    // Probes run at most once a second, so three failures take more than two seconds.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        check_status(&c, "service:f-1").await?,
        "passing",
        "went critical before 3 failures"
    );
    wait_status(&c, "service:f-1", "critical").await?;
    code.store(200, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        check_status(&c, "service:f-1").await?,
        "critical",
        "passed after a single success"
    );
    wait_status(&c, "service:f-1", "passing").await?;
    Ok(())
}
