//! `lucidctl` against a live registry: the platform's policy and circuit-breaker files applied
//! as they are, the decisions they give, certificates, services, KV, cluster status and a
//! snapshot round trip; errors exit non-zero with the server's reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use http::Method;
use lucid_tests::bins::bin;
use lucid_tests::registry::RegistryProc;
use serde_json::{json, Value};

use crate::kv::single_node;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Run lucidctl; (success, stdout, stderr).
fn ctl(node: &RegistryProc, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = Command::new(bin("lucidctl"))
        .arg("--registry")
        .arg(format!("http://{}", node.http))
        .args(args)
        .env_remove("LUCID_REGISTRY")
        .env_remove("CONSUL_HTTP_ADDR")
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

async fn allowed(
    node: &RegistryProc,
    src: &str,
    dst: &str,
    method: &str,
    path: &str,
) -> anyhow::Result<bool> {
    let v: Value = node
        .client()
        .call(Method::GET, &format!("/v1/connect/intentions/check?source={src}&destination={dst}&method={method}&path={path}"), "")
        .await?
        .error_for_status()?
        .json()?;
    Ok(v["Allowed"] == true)
}

#[tokio::test]
async fn the_platform_policy_file_gives_the_platform_decisions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let file = fixture("service-mesh-config.yaml");
    let (ok, out, err) = ctl(&node, &["policy", "apply", "-f", file.to_str().unwrap()])?;
    assert!(ok, "{out}{err}");
    assert!(out.contains("3 planes, 3 intentions"), "{out}");
    // ops -> chain: GET allowed, POST denied.
    assert!(allowed(&node, "api-gateway", "blockchain-core", "GET", "/blocks/7").await?);
    assert!(allowed(&node, "admin-interface", "storage-database", "GET", "/").await?);
    assert!(!allowed(&node, "api-gateway", "blockchain-core", "POST", "/blocks").await?);
    // anyone -> tron-payment denied, except api-gateway POST /api/v1/payments/...
    assert!(
        allowed(
            &node,
            "api-gateway",
            "tron-payment",
            "POST",
            "/api/v1/payments/42"
        )
        .await?
    );
    assert!(
        !allowed(
            &node,
            "api-gateway",
            "tron-payment",
            "GET",
            "/api/v1/payments/42"
        )
        .await?
    );
    assert!(
        !allowed(
            &node,
            "admin-interface",
            "tron-payment",
            "POST",
            "/api/v1/payments/42"
        )
        .await?
    );
    assert!(
        !allowed(
            &node,
            "blockchain-core",
            "tron-payment",
            "POST",
            "/api/v1/payments/1"
        )
        .await?
    );
    // Applying it again changes nothing.
    let (ok, _, err) = ctl(&node, &["policy", "apply", "-f", file.to_str().unwrap()])?;
    assert!(ok, "{err}");
    let list: Value = node
        .client()
        .call(Method::GET, "/v1/connect/intentions", "")
        .await?
        .json()?;
    assert_eq!(list.as_array().unwrap().len(), 3);

    // With planes defined, a certificate for an unknown plane, or for another plane than the
    // service's own, is refused; its own plane is signed.
    let c = node.client();
    for (svc, plane, ok) in [
        ("api-gateway", "nowhere", false),
        ("api-gateway", "chain", false),
        ("api-gateway", "ops", true),
    ] {
        let r = c
            .call(
                Method::POST,
                &format!("/certificates/{svc}"),
                json!({"plane": plane}).to_string(),
            )
            .await?;
        assert_eq!(
            r.status.is_success(),
            ok,
            "{svc} in {plane}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if !ok {
            assert_eq!(r.status, http::StatusCode::BAD_REQUEST);
            assert!(String::from_utf8_lossy(&r.body).contains("LUCID_ERR_1102"));
        }
    }
    // Without --plane, the plane map decides.
    let (ok, out, err) = ctl(
        &node,
        &[
            "certs",
            "issue",
            "tron-payment",
            "--out",
            dir.path().to_str().unwrap(),
        ],
    )?;
    assert!(
        ok && out.contains("plane/wallet/svc/tron-payment"),
        "{out}{err}"
    );

    // A policy that does not validate: non-zero exit, the reason, nothing changed.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "planeIsolation:\n  policies:\n    - source: \"Not A Plane\"\n      destination: \"*\"\n      rules: [{action: allow}]\n")?;
    let (ok, _, err) = ctl(&node, &["policy", "apply", "-f", bad.to_str().unwrap()])?;
    assert!(!ok);
    assert!(
        err.contains("LUCID_ERR_1102") && err.contains("Not A Plane"),
        "{err}"
    );
    let garbage = dir.path().join("garbage.yaml");
    std::fs::write(&garbage, "planeIsolation: [unclosed\n")?;
    let (ok, _, err) = ctl(&node, &["policy", "apply", "-f", garbage.to_str().unwrap()])?;
    assert!(!ok && err.contains("not valid YAML"), "{err}");
    Ok(())
}

#[tokio::test]
async fn the_platform_circuit_breaker_file_becomes_config_entries() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let file = fixture("circuit_breaker.yaml");
    let (ok, out, err) = ctl(&node, &["config", "apply", "-f", file.to_str().unwrap()])?;
    assert!(ok, "{out}{err}");
    for name in [
        "global",
        "blockchain-core",
        "tron-payment-service",
        "session-recorder",
    ] {
        assert!(out.contains(name), "{out}");
    }
    let v: Value = node
        .client()
        .call(
            Method::GET,
            "/v1/config/service-defaults/tron-payment-service",
            "",
        )
        .await?
        .error_for_status()?
        .json()?;
    assert_eq!(v["CircuitBreaker"]["FailureThreshold"], 10);
    assert_eq!(v["CircuitBreaker"]["Timeout"], "15s");
    assert_eq!(
        v["CircuitBreaker"]["ErrorTypes"],
        json!(["5xx", "timeout", "payment-error"])
    );
    let v: Value = node
        .client()
        .call(Method::GET, "/v1/config/proxy-defaults/global", "")
        .await?
        .error_for_status()?
        .json()?;
    assert_eq!(v["CircuitBreaker"]["RecoveryTimeout"], "30s");

    // A zero threshold: refused before anything is written.
    let bad = dir.path().join("cb.yaml");
    std::fs::write(
        &bad,
        "CircuitBreakerConfiguration:\n  serviceSpecific:\n    web:\n      failureThreshold: 0\n",
    )?;
    let (ok, _, err) = ctl(&node, &["config", "apply", "-f", bad.to_str().unwrap()])?;
    assert!(!ok, "{err}");
    assert!(err.contains("FailureThreshold"), "{err}");
    let (st, _) = {
        let r = node
            .client()
            .call(Method::GET, "/v1/config/service-defaults/web", "")
            .await?;
        (r.status, ())
    };
    assert_eq!(st, http::StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn certs_services_kv_and_cluster() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    node.client()
        .call(Method::PUT, "/v1/agent/service/register", json!({"Name": "web", "ID": "web-1", "Address": "10.0.0.1", "Port": 80, "Tags": ["v1"]}).to_string())
        .await?
        .error_for_status()?;
    // The root appears once the leader has created it.
    lucid_tests::wait::until("the root", std::time::Duration::from_secs(15), || async {
        Ok(ctl(&node, &["certs", "ca"])?.0.then_some(()))
    })
    .await?;
    let (ok, pem, _) = ctl(&node, &["certs", "ca"])?;
    assert!(
        ok && pem.starts_with("-----BEGIN CERTIFICATE-----"),
        "{pem}"
    );
    let out_dir = dir.path().to_str().unwrap();
    let (ok, out, err) = ctl(
        &node,
        &["certs", "issue", "web", "--plane", "ops", "--out", out_dir],
    )?;
    assert!(ok, "{err}");
    assert!(
        out.contains("spiffe://lucid.internal/plane/ops/svc/web"),
        "{out}"
    );
    let key = std::fs::metadata(dir.path().join("web.key"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }
    let (ok, out, _) = ctl(&node, &["--json", "certs", "list"])?;
    assert!(ok);
    let list: Value = serde_json::from_str(&out)?;
    let serial = list[0]["serial"].as_str().unwrap().to_owned();
    let (ok, out, _) = ctl(&node, &["certs", "list"])?;
    assert!(
        ok && out.starts_with("SERIAL") && out.contains("valid"),
        "{out}"
    );
    let (ok, _, err) = ctl(&node, &["certs", "revoke", &serial])?;
    assert!(ok, "{err}");
    let (ok, _, err) = ctl(&node, &["certs", "revoke", &serial])?;
    assert!(
        !ok && err.contains("LUCID_ERR_1002"),
        "revoking twice: {err}"
    );

    let (ok, out, _) = ctl(&node, &["services", "list"])?;
    assert!(ok && out.contains("web") && out.contains("v1"), "{out}");
    let (ok, out, _) = ctl(&node, &["services", "get", "web"])?;
    assert!(
        ok && out.contains("web-1") && out.contains("10.0.0.1:80") && out.contains("passing"),
        "{out}"
    );

    assert!(ctl(&node, &["kv", "put", "app/greeting", "hello"])?.0);
    let (ok, out, _) = ctl(&node, &["kv", "get", "app/greeting"])?;
    assert!(ok);
    assert_eq!(out.trim(), "hello");
    let (ok, _, err) = ctl(&node, &["kv", "get", "app/missing"])?;
    assert!(!ok && err.contains("404"), "{err}");

    let (ok, out, _) = ctl(&node, &["cluster", "status"])?;
    assert!(ok && out.contains("leader"), "{out}");
    let backup = dir.path().join("backup.gz");
    let (ok, out, err) = ctl(
        &node,
        &["cluster", "snapshot", "save", backup.to_str().unwrap()],
    )?;
    assert!(ok, "{out}{err}");
    assert!(ctl(&node, &["kv", "put", "app/greeting", "changed"])?.0);
    let (ok, _, err) = ctl(
        &node,
        &["cluster", "snapshot", "restore", backup.to_str().unwrap()],
    )?;
    assert!(ok, "{err}");
    assert_eq!(
        ctl(&node, &["kv", "get", "app/greeting"])?.1.trim(),
        "hello"
    );

    // An unreachable registry: a clear message, non-zero exit.
    let out = Command::new(bin("lucidctl"))
        .args(["--registry", "http://127.0.0.1:1", "services", "list"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the registry"));
    Ok(())
}
