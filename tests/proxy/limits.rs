//! Issue "Trust II" 6: limits on every sidecar listener, tested the attacker's way with raw
//! sockets on loopback. Half a request is closed after the header timeout on outbound,
//! admin and inbound (after a good mTLS handshake); a TCP connection that never starts the
//! handshake, and an HTTP/2 connection that never sends a request, are closed too; a flood
//! of sockets from one address is shed while another address is still served.

use std::time::Duration;

use http::Method;
use lucid_tests::sock::{closed_within, get_ok_from, hold};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::{mesh_root, signed_leaf};
use crate::{registry, App, Sidecar};

/// Closed between 8 s and 16 s after `start` (the header timeout is 10 s).
fn in_header_window(what: &str, t: Option<Duration>) {
    let t = t.unwrap_or_else(|| panic!("{what}: still open after 16 s"));
    assert!(
        t >= Duration::from_secs(8),
        "{what}: closed too early ({t:?})"
    );
}

#[tokio::test]
async fn slow_and_silent_connections_are_closed_on_every_listener() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let reg = registry(d, &[]).await?;
    let c = reg.client();
    let app = App::spawn("b")?;
    let b = Sidecar::spawn(&reg.http, "ledger", "default", app.port, &[]).await?;

    // A mesh client certificate, to get past inbound's handshake the honest way.
    let (cert, key, _, _) = signed_leaf(&c, d, "web", "web").await?;
    let root = mesh_root(&c).await?;
    let root = root.as_str();
    let id = std::sync::Arc::new(lucid_tls::mtls::Identity::from_pem(&cert, &key)?);
    let mesh = lucid_tls::mtls::client_config(id, root, "ledger", Default::default())?;
    let tls_to = |alpn: &'static [u8]| {
        let mut cfg = (*mesh).clone();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let inbound = b.inbound.clone();
        async move {
            let tcp = TcpStream::connect(&inbound).await?;
            let name = rustls::pki_types::ServerName::try_from("ledger.lucid.internal")?;
            let s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
                .connect(name, tcp)
                .await?;
            anyhow::Ok(s)
        }
    };

    let half = b"GET / HTTP/1.1\r\nHost: ledger.lucid.internal\r\nX-Slow: ";
    let mut out_slow = TcpStream::connect(&b.outbound).await?;
    out_slow.write_all(half).await?;
    let mut admin_slow = TcpStream::connect(&b.admin).await?;
    admin_slow
        .write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await?;
    let mut in_slow = tls_to(b"http/1.1").await?;
    in_slow.write_all(half).await?;
    in_slow.flush().await?;
    // No handshake at all.
    let mut in_mute = TcpStream::connect(&b.inbound).await?;
    // A finished handshake and HTTP/2 preface, then never a request.
    let h2 = tls_to(b"h2").await?;
    let (_send, h2_conn) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(h2),
        )
        .await?;
    let h2_closed = tokio::spawn(async move {
        let start = std::time::Instant::now();
        let _ = tokio::time::timeout(Duration::from_secs(16), h2_conn)
            .await
            .ok()?;
        Some(start.elapsed())
    });

    let w = Duration::from_secs(16);
    let (a, ad, i, m) = tokio::join!(
        closed_within(&mut out_slow, w),
        closed_within(&mut admin_slow, w),
        closed_within(&mut in_slow, w),
        closed_within(&mut in_mute, w),
    );
    in_header_window("outbound slowloris", a);
    in_header_window("admin slowloris", ad);
    in_header_window("inbound slowloris after the handshake", i);
    in_header_window("inbound without a handshake", m);
    in_header_window("inbound HTTP/2 without a request", h2_closed.await?);
    assert_eq!(app.requests().await?, 0, "nothing reached the app");
    Ok(())
}

#[tokio::test]
async fn a_flood_from_one_address_is_shed_and_others_are_served() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let app = App::spawn("a")?;
    let a = Sidecar::spawn(&reg.http, "web", "default", app.port, &[]).await?;
    for (what, addr) in [("outbound", &a.outbound), ("admin", &a.admin)] {
        let (held, shed) = hold(addr, 300, 40).await?;
        assert!(
            shed >= 30,
            "{what}: only {shed} of the last 40 connections were shed"
        );
        if what == "admin" {
            assert!(
                get_ok_from([127, 0, 0, 2], addr, "/ready").await?,
                "admin /ready from another address failed during the flood"
            );
        } else {
            // Outbound answers anything; a reply of any kind proves the listener took it.
            let mut s = lucid_tests::sock::connect_from([127, 0, 0, 2], addr).await?;
            s.write_all(
                b"GET / HTTP/1.1\r\nHost: nowhere.lucid.internal\r\nConnection: close\r\n\r\n",
            )
            .await?;
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
            assert!(
                buf.starts_with(b"HTTP/1.1 "),
                "outbound from another address got no answer"
            );
        }
        drop(held);
    }
    let (_, text) = a.admin(Method::GET, "/stats/prometheus").await?;
    assert!(
        text.lines()
            .any(|l| l.starts_with("lucid_proxy_connections_refused_total")
                && l.contains("listener=\"outbound\"")),
        "refusals are counted:\n{text}"
    );
    Ok(())
}

#[tokio::test]
async fn the_connection_caps_are_the_operators_to_set() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let app = App::spawn("a")?;
    let a = Sidecar::spawn(
        &reg.http,
        "web",
        "default",
        app.port,
        &["--max-connections-per-ip", "10"],
    )
    .await?;
    // 30 from one address: under the default cap (256) all would be held; with 10, the 20
    // past it are shed.
    let (held, shed) = hold(&a.outbound, 30, 15).await?;
    assert_eq!(shed, 15, "the last 15 of 30 connections past a cap of 10");
    assert!(
        get_ok_from([127, 0, 0, 2], &a.admin, "/ready").await?,
        "another address is still served"
    );
    drop(held);
    Ok(())
}
