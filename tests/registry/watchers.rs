//! Issue "Trust II" 7: blocking queries are capped per client address and per token (429
//! `LUCID_ERR_1201` past either), KV watchers wake only for their own prefix, and 5,000
//! waiting queries cost the registry a bounded amount of memory each.

use std::time::Duration;

use http::Method;
use lucid_tests::registry::{until_blocking, RegistryProc};
use lucid_tests::sock::connect_from;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::kv::{single_node, single_node_with};

/// Send a blocking GET and leave it waiting; the connection to read its answer from.
async fn park(
    src: [u8; 4],
    http: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<TcpStream> {
    let mut s = connect_from(src, http).await?;
    let tok = token
        .map(|t| format!("X-Consul-Token: {t}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{tok}\r\n").as_bytes())
        .await?;
    Ok(s)
}

/// The status line's code and the rest, once the answer has come (within `within`).
async fn answer(s: &mut TcpStream, within: Duration) -> anyhow::Result<Option<(u16, String)>> {
    let mut buf = vec![0u8; 4096];
    let n = match tokio::time::timeout(within, s.read(&mut buf)).await {
        Err(_) => return Ok(None),
        Ok(r) => r?,
    };
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok(Some((code, text)))
}

async fn kv_index(node: &RegistryProc, key: &str) -> anyhow::Result<u64> {
    let c = node.client();
    c.call(Method::PUT, &format!("/v1/kv/{key}"), "v")
        .await?
        .error_for_status()?;
    let r = c.call(Method::GET, &format!("/v1/kv/{key}"), "").await?;
    Ok(r.consul_index().unwrap_or(1))
}

#[tokio::test]
async fn blocking_queries_are_capped_per_address_and_woken_per_prefix() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let index = kv_index(&node, "watched/k").await?;
    let path = format!("/v1/kv/watched/k?index={index}&wait=60s");
    let mut parked = Vec::new();
    for _ in 0..128 {
        parked.push(park([127, 0, 0, 1], &node.http, &path, None).await?);
    }
    until_blocking(&node.client(), 128).await?;
    // One more from the same address is refused at once...
    let mut over = park([127, 0, 0, 1], &node.http, &path, None).await?;
    let (code, text) = answer(&mut over, Duration::from_secs(10))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the 129th blocking query was not answered"))?;
    assert_eq!(code, 429, "{text}");
    assert!(text.contains("LUCID_ERR_1201"), "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after"), "{text}");
    // ...while another address still gets a place.
    let mut other = park([127, 0, 0, 2], &node.http, &path, None).await?;
    // A write to another prefix wakes none of them: they were in flight and still are.
    kv_index(&node, "elsewhere/k").await?;
    for s in parked.iter_mut().take(8) {
        assert!(
            answer(s, Duration::from_millis(300)).await?.is_none(),
            "a watcher of watched/k woke for elsewhere/k"
        );
    }
    // A write to the key wakes every one of them with the new value.
    kv_index(&node, "watched/k").await?;
    for s in parked.iter_mut().chain([&mut other]) {
        let (code, text) = answer(s, Duration::from_secs(10))
            .await?
            .ok_or_else(|| anyhow::anyhow!("a watcher was not woken by its key's write"))?;
        assert_eq!(code, 200, "{text}");
    }
    // The places came back.
    drop(parked);
    let mut again = park(
        [127, 0, 0, 1],
        &node.http,
        &format!("/v1/kv/watched/k?index={}&wait=1s", index + 100),
        None,
    )
    .await?;
    let (code, _) = answer(&mut again, Duration::from_secs(10))
        .await?
        .unwrap_or_default();
    assert_eq!(
        code, 200,
        "a place is free again once the watchers answered"
    );
    Ok(())
}

#[tokio::test]
async fn one_token_cannot_hold_more_than_its_share_from_many_addresses() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let boot = "b00710ad-0000-4000-8000-000000000001";
    let node = single_node_with(
        &dir.path().join("n1"),
        &["--acl-enabled", "--acl-bootstrap-token", boot],
    )
    .await?;
    let c = node.client().with_token(boot);
    let t: Value = c
        .call(
            Method::PUT,
            "/v1/acl/token",
            json!({"Policies": [{"Name": "read-only"}]}).to_string(),
        )
        .await?
        .error_for_status()?
        .json()?;
    let reader = t["SecretID"].as_str().unwrap_or_default().to_owned();
    c.call(Method::PUT, "/v1/kv/k", "v")
        .await?
        .error_for_status()?;
    let index = c
        .call(Method::GET, "/v1/kv/k", "")
        .await?
        .consul_index()
        .unwrap_or(1);
    let path = format!("/v1/kv/k?index={index}&wait=60s");
    let mut parked = Vec::new();
    for i in 0..256u16 {
        let src = [127, 0, 1, 1 + u8::try_from(i / 100)?];
        parked.push(park(src, &node.http, &path, Some(&reader)).await?);
    }
    until_blocking(&c, 256).await?;
    let mut over = park([127, 0, 1, 9], &node.http, &path, Some(&reader)).await?;
    let (code, text) = answer(&mut over, Duration::from_secs(10))
        .await?
        .unwrap_or_default();
    assert_eq!(code, 429, "the token's 257th blocking query: {text}");
    assert!(text.contains("this token"), "{text}");
    // The waiting ones were in flight all along: a write answers them.
    c.call(Method::PUT, "/v1/kv/k", "w")
        .await?
        .error_for_status()?;
    for s in parked.iter_mut().take(16) {
        let (code, _) = answer(s, Duration::from_secs(10))
            .await?
            .unwrap_or_default();
        assert_eq!(code, 200);
    }
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))
}

/// The bound stated in docs/BENCHMARKS.md: 27.6 KiB measured per waiting query (release and
/// debug alike, most of it hyper's per-connection read and write buffers); this guards
/// against it growing back towards the 80 KiB the audit saw. The 8 KiB aim is not met.
const KIB_PER_WATCHER: u64 = 40;

#[tokio::test]
async fn five_thousand_watchers_stay_under_the_memory_bound() -> anyhow::Result<()> {
    let _one = lucid_tests::registry::cluster_lock().await;
    rlimit::increase_nofile_limit(u64::MAX)?;
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let index = kv_index(&node, "w/0").await?;
    // Warm the paths a watcher uses, then measure from there.
    for i in 0..50 {
        let mut s = park(
            [127, 0, 2, 1],
            &node.http,
            &format!("/v1/kv/w/{i}?index={index}&wait=1s"),
            None,
        )
        .await?;
        answer(&mut s, Duration::from_secs(10)).await?;
    }
    let before = rss_kib(node.pid())?;
    let mut parked = Vec::with_capacity(5000);
    for i in 0..5000u32 {
        let src = [
            127,
            0,
            3 + (i / 100 / 250) as u8,
            1 + ((i / 100) % 250) as u8,
        ];
        parked.push(
            park(
                src,
                &node.http,
                &format!("/v1/kv/w/{}?index={index}&wait=120s", i % 500),
                None,
            )
            .await?,
        );
    }
    // Every watcher has reached the registry and is waiting.
    until_blocking(&node.client(), 5000).await?;
    for s in parked.iter_mut().step_by(500) {
        assert!(
            answer(s, Duration::from_millis(100)).await?.is_none(),
            "a watcher answered early"
        );
    }
    let after = rss_kib(node.pid())?;
    let per = after.saturating_sub(before) * 1024 / 5000;
    println!("registry RSS {before} KiB -> {after} KiB with 5,000 watchers: {per} bytes each");
    assert!(
        per < KIB_PER_WATCHER * 1024,
        "{per} bytes per waiting query (bound {KIB_PER_WATCHER} KiB)"
    );
    Ok(())
}

#[tokio::test]
async fn the_blocking_and_connection_caps_are_the_operators_to_set() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node_with(
        &dir.path().join("n1"),
        &[
            "--max-blocking-per-ip",
            "3",
            "--max-connections-per-ip",
            "12",
        ],
    )
    .await?;
    let index = kv_index(&node, "k").await?;
    let path = format!("/v1/kv/k?index={index}&wait=60s");
    let mut parked = Vec::new();
    for _ in 0..3 {
        parked.push(park([127, 0, 0, 3], &node.http, &path, None).await?);
    }
    until_blocking(&node.client(), 3).await?;
    let mut over = park([127, 0, 0, 3], &node.http, &path, None).await?;
    let (code, text) = answer(&mut over, Duration::from_secs(10))
        .await?
        .unwrap_or_default();
    assert_eq!(code, 429, "the address's 4th blocking query: {text}");
    assert!(text.contains("3 blocking queries"), "{text}");
    // 4 connections of 12 are taken from 127.0.0.3; of 20 more, the 12 past the cap are shed.
    let mut more = Vec::new();
    for _ in 0..20 {
        more.push(connect_from([127, 0, 0, 3], &node.http).await?);
    }
    let mut shed = 0;
    for s in more.iter_mut().rev().take(12) {
        if lucid_tests::sock::closed_within(s, Duration::from_millis(200))
            .await
            .is_some()
        {
            shed += 1;
        }
    }
    assert_eq!(shed, 12, "connections past a per-address cap of 12");
    assert!(
        lucid_tests::sock::get_ok_from([127, 0, 0, 4], &node.http, "/health").await?,
        "another address is still served"
    );
    Ok(())
}
