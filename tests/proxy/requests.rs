//! What a request may carry past the sidecars (security issue "Trust I", items 7 and 11): L7
//! intentions decide on the normalised path, which is also the path the app gets, and
//! hop-by-hop headers are dropped in both directions, at the caller's sidecar and at the
//! callee's. Requests are written by hand so no client tidies them first.

use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use lucid_tests::openssl::make_csr;
use lucid_tests::wait;
use serde_json::{json, Value};

use crate::{pair, raw, registry, via};

/// A GET through a sidecar's outbound to `ledger`, target as given.
fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: ledger.lucid.internal\r\nConnection: close\r\n\r\n")
}

/// The JSON object in a raw answer (the test app sends one, in one chunk when chunked).
fn json_of(raw: &str) -> Value {
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => serde_json::from_str(&body[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

#[tokio::test]
async fn l7_intentions_decide_on_the_normalised_path_and_the_app_gets_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let p = pair(&reg.http).await?;
    // web -> ledger: everything but /admin.
    reg.client()
        .call(
            Method::POST,
            "/v1/connect/intentions",
            json!({"SourceName": "web", "DestinationName": "ledger", "Permissions": [
                {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
                {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]})
            .to_string(),
        )
        .await?
        .error_for_status()?;
    wait::until("the deny in force", Duration::from_secs(10), || async {
        let r = via(&p.a, Method::GET, "ledger", "/admin/x").await?;
        Ok((r.status == StatusCode::FORBIDDEN).then_some(()))
    })
    .await?;
    let before = p.app_b.requests().await?;

    // Spellings of /admin/x that a prefix match on the raw path lets through.
    for trick in [
        "//admin/x",
        "/./admin/x",
        "/%61dmin/x",
        "/public/../admin/x",
        "/public/%2e%2E/admin/x",
        "/admin/../../admin/x",
    ] {
        let (status, text) = raw(&p.a.outbound, &get(trick)).await?;
        assert_eq!(status, 403, "{trick} must be denied:\n{text}");
        assert!(text.contains("LUCID_ERR_1203"), "{trick}:\n{text}");
    }
    assert_eq!(
        p.app_b.requests().await?,
        before,
        "no spelling of /admin reached the app"
    );

    // Allowed paths pass, and the app gets them in the form the intention was matched on.
    for (target, seen) in [
        ("/public/x", "/public/x"),
        ("/public//./y/../x?q=%2F", "/public/x"),
        ("/%70ublic/%7e%41-%3a", "/public/~A-%3A"),
    ] {
        let (status, text) = raw(&p.a.outbound, &get(target)).await?;
        assert_eq!(status, 200, "{target}:\n{text}");
        assert_eq!(json_of(&text)["path"], seen, "{target}:\n{text}");
    }

    // Encodings with no one safe meaning are refused before the intentions are asked.
    for bad in [
        "/public/a%2Fb",
        "/public/a%2fb",
        "/public/a%5Cb",
        "/public/a%00",
        "/public/a%zz",
        "/public/a%4",
    ] {
        let (status, text) = raw(&p.a.outbound, &get(bad)).await?;
        assert_eq!(status, 400, "{bad} must be refused:\n{text}");
        assert!(text.contains("LUCID_ERR_1103"), "{bad}:\n{text}");
    }
    assert_eq!(p.app_b.requests().await?, before + 3);
    Ok(())
}

/// A request full of connection-specific headers, to `/headers?hop=1` on `ledger`.
const HOP_REQUEST: &str = "GET /headers?hop=1 HTTP/1.1\r\n\
    Host: ledger.lucid.internal\r\n\
    Connection: close, X-Forwarded-Client-Cert, X-Hop-Secret\r\n\
    X-Hop-Secret: 1\r\n\
    X-Forwarded-Client-Cert: URI=spiffe://lucid.internal/plane/default/svc/forged\r\n\
    Upgrade: websocket\r\n\
    Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
    Proxy-Connection: keep-alive\r\n\
    TE: trailers\r\n\
    Keep-Alive: timeout=5\r\n\
    Trailer: X-Trail\r\n\
    Transfer-Encoding: chunked\r\n\
    X-Kept: yes\r\n\
    \r\n\
    0\r\n\r\n";

/// What the app saw and what came back must be free of hop-by-hop headers.
fn assert_no_hop_by_hop(via: &str, text: &str) {
    let v = json_of(text);
    let seen = v["headers"]
        .as_object()
        .unwrap_or_else(|| panic!("{via}: no headers echoed:\n{text}"));
    for name in [
        "connection",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "keep-alive",
        "transfer-encoding",
        "trailer",
        "x-hop-secret",
    ] {
        assert!(!seen.contains_key(name), "{via}: the app got {name}: {v}");
    }
    assert_eq!(
        seen["x-forwarded-client-cert"],
        json!(["URI=spiffe://lucid.internal/plane/default/svc/web"]),
        "{via}: the sidecar's XFCC, not the forged one: {v}"
    );
    assert_eq!(seen["x-kept"], json!(["yes"]), "{via}: {v}");
    let head = text
        .split_once("\r\n\r\n")
        .map_or(text, |(h, _)| h)
        .to_ascii_lowercase();
    for name in [
        "x-app-hop:",
        "keep-alive:",
        "proxy-authenticate:",
        "trailer:",
    ] {
        assert!(
            !head.contains(name),
            "{via}: the caller got the app's {name}\n{text}"
        );
    }
}

#[tokio::test]
async fn hop_by_hop_headers_stop_at_each_sidecar_in_both_directions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let reg = registry(d, &[]).await?;
    let p = pair(&reg.http).await?;

    // From the app through both sidecars (HTTP/1.1, then HTTP/2 between them).
    let (status, text) = raw(&p.a.outbound, HOP_REQUEST).await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json_of(&text)["app"], "b", "{text}");
    assert_no_hop_by_hop("through the caller's outbound", &text);

    // Straight to the callee's inbound over HTTP/1.1 with a mesh certificate for web, as any
    // workload holding one can.
    let c = reg.client();
    let roots: Value = c
        .call(Method::GET, "/v1/connect/ca/roots", "")
        .await?
        .json()?;
    let root = d.join("root.pem");
    std::fs::write(&root, roots["Roots"][0]["RootCert"].as_str().unwrap_or(""))?;
    let csr = make_csr(d, "web")?;
    let v: Value = c
        .call(
            Method::POST,
            "/v1/connect/ca/sign",
            json!({"csr": csr, "service": "web", "plane": "default"}).to_string(),
        )
        .await?
        .error_for_status()?
        .json()?;
    let cert = d.join("web.pem");
    std::fs::write(&cert, v["cert_pem"].as_str().unwrap_or(""))?;
    let (inbound, key) = (p.b.inbound.clone(), d.join("web.key"));
    let text = tokio::task::spawn_blocking(move || {
        s_client(&inbound, &root, &cert, &key, HOP_REQUEST.as_bytes())
    })
    .await??;
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    assert_no_hop_by_hop("straight to the inbound", &text);
    Ok(())
}

/// `request` over `openssl s_client` (HTTP/1.1 by ALPN, client certificate `cert`/`key`);
/// the raw answer.
fn s_client(
    addr: &str,
    root: &Path,
    cert: &Path,
    key: &Path,
    request: &[u8],
) -> anyhow::Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-quiet", "-ign_eof"])
        .args(["-alpn", "http/1.1", "-verify_return_error", "-CAfile"])
        .arg(root)
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(request)?;
    }
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
