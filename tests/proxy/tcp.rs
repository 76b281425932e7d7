//! Raw TCP across two sidecars (issue 15): Debian's `redis-server` behind sidecars of a `tcp`
//! service, `redis-cli` through the caller's `--upstream` listener; L4 intentions per
//! connection; an instance going away; half-close and the idle timeout with a plain socket
//! app; the upstream's counters on the admin port.

use std::time::{Duration, Instant};

use anyhow::Context;
use http::{Method, StatusCode};
use lucid_tests::wait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::py::{self, redis_cli, redis_cli_with, Server};
use crate::{registry, service_defaults, Sidecar};

/// An app that reads until its caller is done sending, then answers the bytes reversed and
/// closes: it only works if a half-close crosses the mesh.
async fn reverse_app() -> anyhow::Result<u16> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                if s.read_to_end(&mut got).await.is_ok() {
                    got.reverse();
                    let _ = s.write_all(&got).await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    Ok(port)
}

fn port_of(addr: &str) -> anyhow::Result<u16> {
    Ok(addr
        .rsplit_once(':')
        .map(|(_, p)| p)
        .unwrap_or("")
        .parse()?)
}

#[tokio::test]
async fn redis_crosses_the_mesh_through_an_upstream_with_l4_intentions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let c = reg.client();
    // The protocol comes from service-defaults here (no --app-protocol on these sidecars).
    service_defaults(&c, json!({"Name": "cache", "Protocol": "tcp"})).await?;
    // L7 permissions mean nothing to a tcp service: refused at write time.
    let r = c
        .call(
            Method::PUT,
            "/v1/connect/intentions/exact?source=web&destination=cache",
            json!({"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}).to_string(),
        )
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&r.body).contains("LUCID_ERR_1102"));

    let (r1, r2) = (Server::redis()?, Server::redis()?);
    let tcp_health = ["--health-check", "tcp"];
    let cache1 = Sidecar::spawn(&reg.http, "cache", "default", r1.port, &tcp_health).await?;
    let _cache2 = Sidecar::spawn(&reg.http, "cache", "default", r2.port, &tcp_health).await?;
    let rev = reverse_app().await?;
    let _rev = Sidecar::spawn(
        &reg.http,
        "rev",
        "default",
        rev,
        &["--health-check", "tcp", "--app-protocol", "tcp"],
    )
    .await?;
    let a = Sidecar::start_with(
        &reg.http,
        "web",
        "default",
        py::free_port()?,
        &[
            "--health-check",
            "none",
            "--upstream",
            "cache=127.0.0.1:0",
            "--upstream",
            "rev=127.0.0.1:0",
            "--tcp-idle-timeout",
            "2s",
        ],
        &["upstream:cache", "upstream:rev"],
    )?;
    a.wait_ready(Duration::from_secs(30)).await?;
    let up = port_of(&a.listeners["upstream:cache"])?;
    wait::until(
        "both cache instances in use",
        Duration::from_secs(30),
        || async {
            let eps = a.endpoints("cache").await?;
            Ok((eps.len() == 2).then_some(()))
        },
    )
    .await?;

    // Round trips, a new connection each; round robin spreads them over both instances.
    for i in 0..10 {
        let (ok, out) = redis_cli(up, &["SET", &format!("k{i}"), "v"]).await?;
        assert!(ok && out.trim() == "OK", "{out}");
    }
    let (ok, out) = redis_cli(up, &["GET", "k0"]).await?;
    assert!(ok, "{out}");
    let mut sizes = Vec::new();
    for r in [&r1, &r2] {
        let (_, n) = redis_cli(r.port, &["DBSIZE"]).await?;
        sizes.push(n.trim().parse::<u64>()?);
    }
    assert!(
        sizes.iter().all(|n| *n > 0),
        "each instance took some: {sizes:?} {:?}",
        a.endpoints("cache").await?
    );
    // A 1 MiB value each way, on one connection (so on one instance).
    let big: String = (0..1 << 20)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let script = format!("SET big {big}\nSTRLEN big\nGET big\n");
    let (ok, out) = redis_cli_with(up, &[], script.into_bytes()).await?;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        ok && lines.len() == 3,
        "{} bytes: {:?}",
        out.len(),
        out.get(..200)
    );
    assert_eq!(lines[..2], ["OK", "1048576"]);
    assert!(lines[2] == big, "the 1 MiB value came back changed");

    // A tcp service takes connections, not HTTP requests.
    let r = crate::via(&a, Method::GET, "cache", "/").await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), Some("LUCID_ERR_1103"), "{}", r.body);

    // Half-close crosses both sidecars; a silent connection ends after the idle timeout.
    let rev_up = &a.listeners["upstream:rev"];
    let mut s = tokio::net::TcpStream::connect(rev_up).await?;
    s.write_all(b"hello mesh").await?;
    s.shutdown().await?;
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut back)).await??;
    assert_eq!(back, b"hsem olleh");
    let mut idle = tokio::net::TcpStream::connect(rev_up).await?;
    let closed = lucid_tests::sock::closed_within(&mut idle, Duration::from_secs(15)).await;
    assert!(
        closed.is_some_and(|d| d >= Duration::from_millis(1500)),
        "closed after {closed:?}, with --tcp-idle-timeout 2s"
    );

    // The upstream's counters.
    let (_, prom) = a.admin(Method::GET, "/stats/prometheus").await?;
    for m in [
        "lucid_proxy_upstream_connections_opened_total{upstream=\"cache\"}",
        "lucid_proxy_upstream_bytes_total{upstream=\"cache\",direction=\"sent\"}",
        "lucid_proxy_upstream_bytes_total{upstream=\"cache\",direction=\"received\"}",
    ] {
        let v: f64 = prom
            .lines()
            .find_map(|l| l.strip_prefix(m))
            .with_context(|| format!("{m} missing"))?
            .trim()
            .parse()?;
        assert!(v > 0.0, "{m} {v}");
    }
    let (_, text) = a.admin(Method::GET, "/clusters").await?;
    assert!(text.contains("upstream.cache::127.0.0.1:"), "{text}");
    let (_, dump) = a.admin(Method::GET, "/config_dump").await?;
    let dump: Value = serde_json::from_str(&dump)?;
    let services: Vec<&str> = dump["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["service"].as_str())
        .collect();
    assert_eq!(services, ["cache", "rev"], "{dump}");

    // A deny added now refuses new connections within a second, and no command reaches redis.
    c.call(
        Method::PUT,
        "/v1/connect/intentions/exact?source=web&destination=cache",
        json!({"Action": "deny"}).to_string(),
    )
    .await?
    .error_for_status()?;
    let written = Instant::now();
    let took = wait::until(
        "new connections refused",
        Duration::from_secs(10),
        || async {
            let (ok, _) = redis_cli(up, &["SET", "denied-marker", "1"]).await?;
            Ok((!ok).then(|| written.elapsed()))
        },
    )
    .await?;
    eprintln!("the deny refused new connections {took:?} after it was written");
    assert!(
        took <= Duration::from_secs(1),
        "refused only after {took:?}"
    );
    // A SET sent before the deny arrived may have landed: clear it, then none may.
    for r in [&r1, &r2] {
        redis_cli(r.port, &["DEL", "denied-marker"]).await?;
    }
    for _ in 0..3 {
        let (ok, out) = redis_cli(up, &["SET", "denied-marker", "1"]).await?;
        assert!(!ok, "{out}");
    }
    for r in [&r1, &r2] {
        let (_, n) = redis_cli(r.port, &["EXISTS", "denied-marker"]).await?;
        assert_eq!(n.trim(), "0", "a denied connection's command reached redis");
    }
    c.call(
        Method::DELETE,
        "/v1/connect/intentions/exact?source=web&destination=cache",
        "",
    )
    .await?
    .error_for_status()?;
    wait::until("allowed again", Duration::from_secs(10), || async {
        let (ok, _) = redis_cli(up, &["PING"]).await?;
        Ok(ok.then_some(()))
    })
    .await?;

    // One instance goes away mid-run: every new connection lands on the other.
    let mut cache1 = Some(cache1);
    for i in 0..20 {
        if i == 5 {
            drop(cache1.take());
        }
        let (ok, out) = redis_cli(up, &["INCR", "counter"]).await?;
        assert!(ok, "connection {i}: {out}");
    }
    let mut total = 0;
    for r in [&r1, &r2] {
        let (_, n) = redis_cli(r.port, &["GET", "counter"]).await?;
        total += n.trim().parse::<u64>().unwrap_or(0);
    }
    assert_eq!(total, 20);
    Ok(())
}
