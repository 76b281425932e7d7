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
