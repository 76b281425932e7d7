//! Issue "Trust II" 6: limits on the registry's listeners, tested the attacker's way with raw
//! sockets on loopback. A slowloris request and an idle connection are closed after the
//! header timeout (10 s); hundreds of idle sockets from one address are shed while another
//! address still gets `/health` answered.

use std::time::Duration;

use lucid_tests::sock::{closed_within, get_ok_from, hold};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::kv::single_node;

#[tokio::test]
async fn slowloris_and_idle_connections_are_closed_after_the_header_timeout() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    // Half a request, then silence.
    let mut slow = TcpStream::connect(&node.http).await?;
    slow.write_all(b"GET /v1/kv/x HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await?;
    // A finished request, then an idle keep-alive connection: it was served (in flight),
    // then must not be held forever.
    let mut idle = TcpStream::connect(&node.http).await?;
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await?;
    assert_eq!(
        &first, b"HTTP/1.1 200",
        "the idle connection's first request was served"
    );
    let (a, b) = tokio::join!(
        closed_within(&mut slow, Duration::from_secs(16)),
        closed_within(&mut idle, Duration::from_secs(16))
    );
    let slow_t =
        a.ok_or_else(|| anyhow::anyhow!("the slowloris connection is still open after 16 s"))?;
    let idle_t =
        b.ok_or_else(|| anyhow::anyhow!("the idle connection is still open after 16 s"))?;
    assert!(
        slow_t >= Duration::from_secs(8),
        "closed too early: {slow_t:?}"
    );
    assert!(
        idle_t >= Duration::from_secs(8),
        "closed too early: {idle_t:?}"
    );
    Ok(())
}

#[tokio::test]
async fn idle_sockets_from_one_address_cannot_starve_others() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    // 300 idle connections from 127.0.0.1, more than one address may hold: those past the
    // per-address cap are shed at once.
    let (held, shed) = hold(&node.http, 300, 60).await?;
    assert!(
        shed >= 40,
        "only {shed} of the last 60 connections past the cap were shed"
    );
    // Another address is still answered while those sockets are held.
    assert!(
        get_ok_from([127, 0, 0, 2], &node.http, "/health").await?,
        "/health from 127.0.0.2 failed while 127.0.0.1 held 300 sockets"
    );
    drop(held);
    Ok(())
}

#[tokio::test]
async fn a_descriptor_flood_under_a_1024_fd_limit_leaves_health_answering() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    // The limit the audit ran with, applied to the running process.
    let (ok, out) = lucid_tests::bins::output(
        std::process::Command::new("prlimit")
            .arg(format!("--pid={}", node.pid()))
            .arg("--nofile=1024:1024"),
    )?;
    anyhow::ensure!(ok, "prlimit: {out}");
    // More idle sockets than the registry has descriptors; this process needs room for them.
    rlimit::increase_nofile_limit(u64::MAX)?;
    let (held, shed) = hold(&node.http, 1100, 200).await?;
    assert!(
        shed >= 150,
        "only {shed} of the last 200 connections were shed"
    );
    assert!(
        get_ok_from([127, 0, 0, 2], &node.http, "/health").await?,
        "/health from another address failed while 1,100 sockets were held"
    );
    // The held sockets are idle: once they time out, their own address is served again.
    drop(held);
    lucid_tests::wait::until(
        "/health from the flooding address",
        Duration::from_secs(20),
        || async {
            Ok(get_ok_from([127, 0, 0, 1], &node.http, "/health")
                .await?
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn signing_is_rate_limited_per_caller() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = crate::kv::single_node_with(
        &dir.path().join("n1"),
        &["--ca-sign-rate", "1", "--ca-sign-burst", "3"],
    )
    .await?;
    lucid_tests::registry::wait_ca_root(&node.client()).await?;
    // Without ACLs the limit counts per client address.
    let leaf = |src: [u8; 4]| {
        let http = node.http.clone();
        async move {
            let mut s = lucid_tests::sock::connect_from(src, &http).await?;
            s.write_all(b"GET /v1/agent/connect/ca/leaf/web HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await?;
            let mut out = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await??;
            anyhow::Ok(String::from_utf8_lossy(&out).into_owned())
        }
    };
    let mut codes = Vec::new();
    for _ in 0..8 {
        let r = leaf([127, 0, 0, 1]).await?;
        codes.push(r.get(9..12).unwrap_or("").to_owned());
        if r.starts_with("HTTP/1.1 429") {
            assert!(r.contains("LUCID_ERR_1201"), "{r}");
            assert!(r.to_ascii_lowercase().contains("retry-after: "), "{r}");
        }
    }
    let signed = codes.iter().filter(|c| *c == "200").count();
    assert!((3..=5).contains(&signed), "burst 3 at 1/s: {codes:?}");
    assert!(codes.iter().any(|c| c == "429"), "{codes:?}");
    let other = leaf([127, 0, 0, 2]).await?;
    assert!(
        other.starts_with("HTTP/1.1 200"),
        "another caller has its own budget: {other}"
    );
    Ok(())
}
