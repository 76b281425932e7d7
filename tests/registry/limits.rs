//! Issue "Trust II" 6: limits on the registry's listeners, tested the attacker's way with raw
//! sockets on loopback. A slowloris request and an idle connection are closed after the
//! header timeout (10 s); hundreds of idle sockets from one address are shed while another
//! address still gets `/health` answered.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::kv::single_node;

/// Read until the server closes; how long that took (None: still open after `within`).
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + within).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn health_from(src: [u8; 4], http: &str) -> anyhow::Result<bool> {
    let sock = TcpSocket::new_v4()?;
    sock.bind((src, 0).into())?;
    let mut s = sock.connect(http.parse()?).await?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    Ok(out.starts_with(b"HTTP/1.1 200"))
}

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
    // 300 idle connections from 127.0.0.1, more than one address may hold.
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(TcpStream::connect(&node.http).await?);
    }
    // Those past the per-address cap were shed: some of the held sockets see EOF at once.
    let mut shed = 0;
    for s in held.iter_mut().rev().take(60) {
        if closed_within(s, Duration::from_millis(200)).await.is_some() {
            shed += 1;
        }
    }
    assert!(
        shed >= 40,
        "only {shed} of the last 60 connections past the cap were shed"
    );
    // Another address is still answered while those sockets are held.
    assert!(
        health_from([127, 0, 0, 2], &node.http).await?,
        "/health from 127.0.0.2 failed while 127.0.0.1 held 300 sockets"
    );
    drop(held);
    Ok(())
}
