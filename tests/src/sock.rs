//! Raw sockets the way an attacker holds them: from a chosen loopback source address, half
//! a request and silence, and how long until the server closes.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Read until the server closes; how long that took (None: still open after `within`).
pub async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> Option<Duration> {
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

/// A TCP connection to `addr` from the loopback address `src`.
pub async fn connect_from(src: [u8; 4], addr: &str) -> anyhow::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind((src, 0).into())?;
    Ok(sock.connect(addr.parse()?).await?)
}

/// `GET path` over a fresh connection from `src`; whether it answered 200.
pub async fn get_ok_from(src: [u8; 4], addr: &str, path: &str) -> anyhow::Result<bool> {
    let mut s = connect_from(src, addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    Ok(out.starts_with(b"HTTP/1.1 200"))
}

/// Open `n` connections to `addr` and hold them; how many of the last `last` the server shed
/// at once (closed within 200 ms).
pub async fn hold(addr: &str, n: usize, last: usize) -> anyhow::Result<(Vec<TcpStream>, usize)> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(TcpStream::connect(addr).await?);
    }
    let mut shed = 0;
    for s in held.iter_mut().rev().take(last) {
        if closed_within(s, Duration::from_millis(200)).await.is_some() {
            shed += 1;
        }
    }
    Ok((held, shed))
}
