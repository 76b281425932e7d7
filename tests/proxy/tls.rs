//! What the sidecars refuse at the TLS layer: inbound without a client certificate, with one
//! from another CA, with a revoked one; outbound to a peer that is not the service meant.
//! The client side is OpenSSL's `s_client`, an independent TLS implementation.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::Method;
use lucid_tests::openssl::make_csr;
use lucid_tests::wait;
use lucid_tls::{CaMaterial, Signer, SpiffeId};
use serde_json::{json, Value};

use crate::{pair, registry, via, App, Pair, Sidecar};

/// One HTTP/1.1 request over `openssl s_client` to `addr`; the raw output.
fn s_client(addr: &str, root: &Path, cert: Option<(&Path, &Path)>) -> anyhow::Result<String> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", addr, "-quiet", "-ign_eof"])
        .args(["-alpn", "http/1.1", "-verify_return_error", "-CAfile"])
        .arg(root);
    if let Some((c, k)) = cert {
        cmd.arg("-cert").arg(c).arg("-key").arg(k);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin
            .write_all(b"GET /tls HTTP/1.1\r\nHost: b.lucid.internal\r\nConnection: close\r\n\r\n");
    }
    let out = child.wait_with_output()?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

async fn s_client_async(
    addr: String,
    root: std::path::PathBuf,
    cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        s_client(
            &addr,
            &root,
            cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
    })
    .await?
}

fn answered(out: &str) -> bool {
    out.contains("HTTP/1.1 200 OK")
}

#[tokio::test]
async fn inbound_refuses_missing_foreign_and_revoked_certificates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let reg = registry(d, &[]).await?;
    let c = reg.client();
    let app = App::spawn("b")?;
    let b = Sidecar::spawn(&reg.http, "ledger", "default", app.port, &[]).await?;
    let roots: Value = c
        .call(Method::GET, "/v1/connect/ca/roots", "")
        .await?
        .json()?;
    let root = d.join("root.pem");
    std::fs::write(&root, roots["Roots"][0]["RootCert"].as_str().unwrap())?;

    // Two good certificates for "web" from the mesh CA (keys made by OpenSSL).
    let mut good = Vec::new();
    for name in ["web1", "web2"] {
        let csr = make_csr(d, name)?;
        let v: Value = c
            .call(
                Method::POST,
                "/v1/connect/ca/sign",
                json!({"csr": csr, "service": "web", "plane": "default"}).to_string(),
            )
            .await?
            .error_for_status()?
            .json()?;
        let cert = d.join(format!("{name}.pem"));
        std::fs::write(&cert, v["cert_pem"].as_str().unwrap())?;
        good.push((
            cert,
            d.join(format!("{name}.key")),
            v["serial"].as_str().unwrap().to_owned(),
        ));
    }
    let with = |i: usize| Some((good[i].0.clone(), good[i].1.clone()));
    let out = s_client_async(b.inbound.clone(), root.clone(), with(0)).await?;
    assert!(answered(&out), "a mesh certificate is served:\n{out}");
    assert!(
        out.contains("URI=spiffe://lucid.internal/plane/default/svc/web"),
        "{out}"
    );

    // No client certificate.
    let out = s_client_async(b.inbound.clone(), root.clone(), None).await?;
    assert!(
        !answered(&out),
        "no client certificate must be refused:\n{out}"
    );
    assert!(out.to_lowercase().contains("alert"), "{out}");

    // A certificate for the same identity from another CA.
    let rogue = CaMaterial::generate(lucid_tests::unix_now())?;
    let leaf = Signer::new(&rogue)?.issue(
        &SpiffeId::new("default", "web").unwrap(),
        time::Duration::hours(1),
        lucid_tests::unix_now(),
    )?;
    let (rc, rk) = (d.join("rogue.pem"), d.join("rogue.key"));
    std::fs::write(&rc, &leaf.cert_pem)?;
    std::fs::write(&rk, leaf.key_pem.as_deref().unwrap())?;
    let out = s_client_async(b.inbound.clone(), root.clone(), Some((rc, rk))).await?;
    assert!(
        !answered(&out),
        "another CA's certificate must be refused:\n{out}"
    );
    assert_eq!(
        app.requests().await?,
        1,
        "refused handshakes never reach the app"
    );

    // Revoked: refused once the sidecar has followed the list; the other one still works.
    c.call(
        Method::DELETE,
        &format!("/v1/connect/ca/certs/{}", good[0].2),
        "",
    )
    .await?
    .error_for_status()?;
    wait::until(
        "the revoked certificate refused",
        Duration::from_secs(10),
        || async {
            let out = s_client_async(b.inbound.clone(), root.clone(), with(0)).await?;
            Ok((!answered(&out)).then_some(()))
        },
    )
    .await?;
    let out = s_client_async(b.inbound.clone(), root.clone(), with(1)).await?;
    assert!(
        answered(&out),
        "an unrevoked certificate still works:\n{out}"
    );
    Ok(())
}

#[tokio::test]
async fn outbound_refuses_a_peer_that_is_not_the_service_meant() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let c = reg.client();
    let Pair {
        app_a: _app_a,
        app_b,
        a,
        b,
    } = pair(&reg.http).await?;
    // "payments" registered at ledger's sidecar: the TLS peer proves it is ledger.
    let port: u16 = b.inbound.rsplit_once(':').unwrap().1.parse()?;
    c.call(
        Method::PUT,
        "/v1/agent/service/register",
        json!({"Name": "payments", "ID": "payments-1", "Address": "127.0.0.1", "Port": 1,
            "MeshPort": port})
        .to_string(),
    )
    .await?
    .error_for_status()?;
    let r = via(&a, Method::GET, "payments", "/steal").await?;
    assert_eq!(
        r.status,
        http::StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        r.body
    );
    assert_eq!(r.code(), Some("LUCID_ERR_1104"));
    assert_eq!(
        app_b.requests().await?,
        0,
        "nothing reached the impostor's app"
    );
    // The real name through the same sidecar works.
    assert_eq!(
        via(&a, Method::GET, "ledger", "/").await?.status,
        http::StatusCode::OK
    );
    Ok(())
}

/// The mesh root certificate (PEM) the registry's CA signs with.
pub(crate) async fn mesh_root(c: &lucid_client::RegistryClient) -> anyhow::Result<String> {
    let roots: Value = c
        .call(Method::GET, "/v1/connect/ca/roots", "")
        .await?
        .json()?;
    Ok(roots["Roots"][0]["RootCert"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// A leaf for `service` signed by the registry from an OpenSSL key; (cert PEM, key PEM, serial,
/// not_after unix seconds).
pub(crate) async fn signed_leaf(
    c: &lucid_client::RegistryClient,
    d: &Path,
    name: &str,
    service: &str,
) -> anyhow::Result<(String, String, String, i64)> {
    let csr = make_csr(d, name)?;
    let v: Value = c
        .call(
            Method::POST,
            "/v1/connect/ca/sign",
            json!({"csr": csr, "service": service, "plane": "default"}).to_string(),
        )
        .await?
        .error_for_status()?
        .json()?;
    let cert = v["cert_pem"].as_str().unwrap_or_default().to_owned();
    let info = lucid_tls::inspect_pem(&cert)?;
    let key = std::fs::read_to_string(d.join(format!("{name}.key")))?;
    Ok((cert, key, info.serial, info.not_after))
}

/// An HTTP/2 connection to a sidecar's inbound presenting `cert`; the request handle and a
/// task that ends when the connection closes.
async fn h2_to(
    inbound: &str,
    root: &str,
    cert: &str,
    key: &str,
    service: &str,
) -> anyhow::Result<(
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
)> {
    let id = std::sync::Arc::new(lucid_tls::mtls::Identity::from_pem(cert, key)?);
    let cfg = lucid_tls::mtls::client_config(id, root, service, Default::default())?;
    let tcp = tokio::net::TcpStream::connect(inbound).await?;
    let name = rustls::pki_types::ServerName::try_from(format!("{service}.lucid.internal"))?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await?;
    anyhow::ensure!(tls.get_ref().1.alpn_protocol() == Some(b"h2"), "no h2");
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await?;
    Ok((
        send,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    ))
}

async fn h2_get(
    send: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
) -> anyhow::Result<http::StatusCode> {
    let req = http::Request::get("https://ledger.lucid.internal/tls")
        .body(http_body_util::Empty::new())?;
    Ok(send.send_request(req).await?.status())
}

#[tokio::test]
async fn open_connections_end_when_the_peer_certificate_is_revoked_or_expires() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // Leaves live one minute, the shortest the registry allows, so expiry comes in the test.
    let reg = registry(d, &["--leaf-ttl", "1m"]).await?;
    let c = reg.client();
    let app = App::spawn("b")?;
    let b = Sidecar::spawn(&reg.http, "ledger", "default", app.port, &[]).await?;
    let root = mesh_root(&c).await?;
    let (c1, k1, s1, _) = signed_leaf(&c, d, "rev", "web").await?;
    let (c2, k2, _, exp2) = signed_leaf(&c, d, "exp", "web").await?;
    let (mut revoked, revoked_conn) = h2_to(&b.inbound, &root, &c1, &k1, "ledger").await?;
    let (mut kept, kept_conn) = h2_to(&b.inbound, &root, &c2, &k2, "ledger").await?;
    // Both connections are open and served before anything happens to them.
    assert_eq!(h2_get(&mut revoked).await?, http::StatusCode::OK);
    assert_eq!(h2_get(&mut kept).await?, http::StatusCode::OK);

    c.call(Method::DELETE, &format!("/v1/connect/ca/certs/{s1}"), "")
        .await?
        .error_for_status()?;
    // When the revocation reached the sidecar, then how long its connection lived on.
    wait::until(
        "the sidecar has the revocation",
        Duration::from_secs(10),
        || async {
            let (_, text) = b.admin(Method::GET, "/config_dump").await?;
            let v: Value = serde_json::from_str(&text)?;
            Ok((v["revoked_serials"].as_u64() >= Some(1)).then_some(()))
        },
    )
    .await?;
    let reached = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(2), revoked_conn)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the revoked peer's connection is still open 2 s later\n{}",
                b.log()
            )
        })??;
    assert!(revoked.is_closed());
    assert!(reached.elapsed() < Duration::from_secs(2));

    // The other peer's connection is untouched until its certificate expires...
    let left = exp2 - lucid_tests::unix_now();
    assert!(left > 5, "the certificate expires in {left} s");
    let mut served = 0;
    while lucid_tests::unix_now() < exp2 - 3 {
        assert_eq!(
            h2_get(&mut kept).await?,
            http::StatusCode::OK,
            "an unrevoked, unexpired peer keeps its connection"
        );
        served += 1;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert!(
        served > 3,
        "the connection was used while its certificate was good"
    );
    // ...and closed at expiry (a second for the clock's granularity, one for the grace).
    tokio::time::timeout(Duration::from_secs(6), kept_conn)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the connection outlived its peer's certificate\n{}",
                b.log()
            )
        })??;
    assert!(
        lucid_tests::unix_now() >= exp2 - 1,
        "closed before the certificate expired"
    );
    Ok(())
}
