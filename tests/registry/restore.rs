//! Issue "Trust II" 1-3: a backup restored the way an operator would after a disaster, into
//! a *fresh* node (never the one it came from), brings back every kind of record: KV, the
//! catalog, config entries, intentions and the plane map, ACL tokens, and the CA root with its
//! (sealed) key, so leaves issued before the backup still verify and the new node signs.

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::api::call;
use lucid_tests::openssl::openssl;
use lucid_tests::registry::{wait_ca_root, RegistryProc};
use serde_json::{json, Value};

use crate::kv::single_node_with;

const BOOT: &str = "restore-bootstrap-secret-0123456789";

async fn acl_node(dir: &std::path::Path, name: &str) -> anyhow::Result<RegistryProc> {
    // Both nodes' data directories sit in one folder, so they share the CA key secret
    // file, as an operator's replacement node gets the cluster's secret.
    let node = single_node_with(
        &dir.join(name),
        &["--acl-enabled", "--acl-bootstrap-token", BOOT],
    )
    .await?;
    wait_ca_root(&node.client().with_token(BOOT)).await?;
    Ok(node)
}

async fn ok(c: &RegistryClient, m: Method, path: &str, body: Value) -> anyhow::Result<Value> {
    let (st, v) = call(c, m, path, body).await?;
    anyhow::ensure!(st.is_success(), "{path}: {st} {v}");
    Ok(v)
}

#[tokio::test]
async fn a_backup_restored_into_a_fresh_node_brings_back_every_kind() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let old = acl_node(dir.path(), "old").await?;
    let a = old.client().with_token(BOOT);
    ok(&a, Method::PUT, "/v1/kv/app/config", json!("v1")).await?;
    ok(
        &a,
        Method::PUT,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "ledger",
        "CircuitBreaker": {"FailureThreshold": 7}}),
    )
    .await?;
    ok(&a, Method::PUT, "/v1/connect/policy", json!({"planeIsolation": {
        "planes": {"chain": {"allowedClusters": ["ledger"]}},
        "policies": [{"source": "plane:chain", "destination": "plane:chain", "rules": [{"action": "allow"}]}]}})).await?;
    let token = ok(
        &a,
        Method::PUT,
        "/v1/acl/token",
        json!({"Description": "web", "ServiceIdentities": [{"ServiceName": "web"}]}),
    )
    .await?;
    let web_secret = token["SecretID"].as_str().unwrap_or_default().to_owned();
    let (st, leaf) = call(&a, Method::POST, "/certificates/ledger", Value::Null).await?;
    assert_eq!(st, StatusCode::CREATED, "{leaf}");
    ok(
        &a,
        Method::PUT,
        "/v1/agent/service/register",
        json!({"Name": "ledger", "ID": "ledger-1", "Address": "10.1.0.4", "Port": 7000}),
    )
    .await?;
    let roots_before = ok(&a, Method::GET, "/v1/connect/ca/roots", Value::Null).await?;
    let backup = a.call(Method::GET, "/v1/snapshot", "").await?;
    assert_eq!(backup.status, StatusCode::OK);
    drop(old);

    // A fresh node: its own CA root, no policy, no tokens but the bootstrap one.
    let new = acl_node(dir.path(), "new").await?;
    let b = new.client().with_token(BOOT);
    let fresh_root = ok(&b, Method::GET, "/v1/connect/ca/roots", Value::Null).await?;
    assert_ne!(fresh_root["ActiveRootID"], roots_before["ActiveRootID"]);
    let r = b
        .call(Method::PUT, "/v1/snapshot", backup.body.clone())
        .await?;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    assert_eq!(
        b.call(Method::GET, "/v1/kv/app/config?raw", "")
            .await?
            .body
            .as_ref(),
        b"\"v1\""
    );
    let entry = ok(
        &b,
        Method::GET,
        "/v1/config/service-defaults/ledger",
        Value::Null,
    )
    .await?;
    assert_eq!(entry["CircuitBreaker"]["FailureThreshold"], 7, "{entry}");
    let intentions = ok(&b, Method::GET, "/v1/connect/intentions", Value::Null).await?;
    assert_eq!(intentions.as_array().map(Vec::len), Some(1), "{intentions}");
    let planes = ok(&b, Method::GET, "/v1/connect/planes", Value::Null).await?;
    assert_eq!(planes, json!({"chain": ["ledger"]}));
    let services = ok(&b, Method::GET, "/v1/agent/services", Value::Null).await?;
    assert_eq!(services["ledger-1"]["Service"], "ledger");
    // The service token from before the disaster still works.
    let web = new.client().with_token(web_secret);
    let (st, v) = call(&web, Method::GET, "/v1/kv/app/config", Value::Null).await?;
    assert_eq!(st, StatusCode::OK, "the restored token: {v}");
    // The backup's CA root is back, and a leaf issued before the backup verifies against it.
    let roots = ok(&b, Method::GET, "/v1/connect/ca/roots", Value::Null).await?;
    assert_eq!(roots["ActiveRootID"], roots_before["ActiveRootID"]);
    let root_pem = roots["Roots"][0]["RootCert"].as_str().unwrap_or_default();
    let (root_f, leaf_f) = (dir.path().join("root.pem"), dir.path().join("leaf.pem"));
    std::fs::write(&root_f, root_pem)?;
    std::fs::write(&leaf_f, leaf["cert_pem"].as_str().unwrap_or_default())?;
    let (verified, text) = openssl(&[
        "verify",
        "-CAfile",
        &root_f.display().to_string(),
        &leaf_f.display().to_string(),
    ])?;
    assert!(
        verified,
        "a pre-backup leaf against the restored root: {text}"
    );
    // ... and the fresh node signs with the restored key.
    let (st, v) = call(&b, Method::POST, "/certificates/ledger", Value::Null).await?;
    assert_eq!(st, StatusCode::CREATED, "signing after the restore: {v}");
    Ok(())
}
