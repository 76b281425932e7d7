//! The admin port's write endpoint (security issue "Trust I", sidecar local surfaces):
//! `POST /drain` needs `--admin-token` (as `Authorization: Bearer` or `X-Lucid-Admin-Token`)
//! or the `--admin-socket` unix socket, and is refused to anything a browser sends.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use lucid_tests::wait;

use crate::{registry, App, Sidecar};

const TOKEN: &str = "drain-me-7f3a9c";

/// One HTTP/1.1 request over the admin unix socket; the status.
async fn over_socket(
    path: &Path,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<StatusCode> {
    let io = tokio::net::UnixStream::connect(path).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Ok(send
        .send_request(req.body(Empty::<Bytes>::new())?)
        .await?
        .status())
}

async fn wait_draining(sc: &Sidecar) -> anyhow::Result<()> {
    wait::until("draining", Duration::from_secs(10), || async {
        let (st, _) = sc.admin(Method::GET, "/ready").await?;
        Ok((st == StatusCode::SERVICE_UNAVAILABLE).then_some(()))
    })
    .await
}

#[tokio::test]
async fn drain_needs_a_token_or_the_admin_socket_and_never_a_browser() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let app = App::spawn("b")?;

    // Neither configured: refused over TCP; the sidecar keeps serving.
    let plain = Sidecar::spawn(&reg.http, "ledger", "default", app.port, &[]).await?;
    let (st, body) = plain.admin(Method::POST, "/drain").await?;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("LUCID_ERR_1203"), "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(plain.admin(Method::GET, "/ready").await?.0, StatusCode::OK);
    assert_eq!(plain.admin(Method::GET, "/stats").await?.0, StatusCode::OK);

    // A token: the wrong one, or the right one from a browser page, is refused.
    let guarded = Sidecar::spawn(
        &reg.http,
        "ledger",
        "default",
        app.port,
        &["--admin-token", TOKEN],
    )
    .await?;
    let bearer = format!("Bearer {TOKEN}");
    for headers in [
        vec![("authorization", "Bearer not-the-token")],
        vec![("x-lucid-admin-token", "drain-me-7f3a9")],
        vec![("authorization", TOKEN)],
        vec![
            ("authorization", bearer.as_str()),
            ("origin", "http://evil.example"),
        ],
        vec![("x-lucid-admin-token", TOKEN), ("origin", "null")],
        vec![
            ("authorization", bearer.as_str()),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![
            ("authorization", bearer.as_str()),
            ("sec-fetch-mode", "no-cors"),
        ],
        vec![
            ("authorization", bearer.as_str()),
            ("sec-fetch-mode", "navigate"),
        ],
    ] {
        let (st, body) = guarded.admin_with(Method::POST, "/drain", &headers).await?;
        assert_eq!(st, StatusCode::FORBIDDEN, "{headers:?}: {body}");
    }
    assert_eq!(
        guarded.admin(Method::GET, "/ready").await?.0,
        StatusCode::OK
    );
    // A user typing the URL (Sec-Fetch-Site: none) with the token is not a cross-site page.
    let (st, body) = guarded
        .admin_with(
            Method::POST,
            "/drain",
            &[
                ("authorization", bearer.as_str()),
                ("sec-fetch-site", "none"),
            ],
        )
        .await?;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    wait_draining(&guarded).await?;

    // The other header form.
    let by_header = Sidecar::spawn(
        &reg.http,
        "ledger",
        "default",
        app.port,
        &["--admin-token", TOKEN],
    )
    .await?;
    let (st, body) = by_header
        .admin_with(Method::POST, "/drain", &[("x-lucid-admin-token", TOKEN)])
        .await?;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    wait_draining(&by_header).await?;

    // The unix socket: owner-only, the same router, writes without a token.
    let sock = dir.path().join("admin.sock");
    let sock_arg = sock.to_str().unwrap_or_default();
    let local = Sidecar::spawn(
        &reg.http,
        "ledger",
        "default",
        app.port,
        &["--admin-socket", sock_arg],
    )
    .await?;
    let mode = std::fs::metadata(&sock)?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    assert_eq!(
        over_socket(&sock, Method::GET, "/ready", &[]).await?,
        StatusCode::OK
    );
    assert_eq!(
        local.admin(Method::POST, "/drain").await?.0,
        StatusCode::FORBIDDEN,
        "a socket does not open the TCP port's writes"
    );
    assert_eq!(
        over_socket(
            &sock,
            Method::POST,
            "/drain",
            &[("origin", "http://evil.example")]
        )
        .await?,
        StatusCode::FORBIDDEN
    );
    assert_eq!(local.admin(Method::GET, "/ready").await?.0, StatusCode::OK);
    assert_eq!(
        over_socket(&sock, Method::POST, "/drain", &[]).await?,
        StatusCode::ACCEPTED
    );
    wait_draining(&local).await?;
    Ok(())
}
