//! The mesh CA: CSRs made by OpenSSL signed by a live registry and checked by OpenSSL (chain,
//! SANs, not a CA, expiry), server-side keys, revocation with a blocking revoked list, bad
//! input refused without a trace, and the same root after a leader failover.

use std::time::Duration;

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::api::call;
use lucid_tests::registry::{cluster_lock, Cluster};
use lucid_tests::wait;
use serde_json::{json, Value};

use lucid_tests::openssl::{make_csr, openssl};

use crate::kv::single_node;

async fn root_pem(c: &RegistryClient) -> anyhow::Result<String> {
    wait::until("the mesh root CA", Duration::from_secs(15), || async {
        let v: Value = c
            .call(Method::GET, "/v1/connect/ca/roots", "")
            .await?
            .json()?;
        Ok(v["Roots"][0]["RootCert"].as_str().map(str::to_owned))
    })
    .await
}

fn assert_refused(status: StatusCode, v: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        !v["error"]["message"].as_str().unwrap_or("").is_empty(),
        "{v}"
    );
}

#[tokio::test]
async fn csrs_are_signed_as_leaves_openssl_accepts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let root = root_pem(&c).await?;
    let v: Value = c
        .call(Method::GET, "/v1/connect/ca/roots", "")
        .await?
        .json()?;
    assert_eq!(v["TrustDomain"], "lucid.internal");
    assert_eq!(v["ActiveRootID"], v["Roots"][0]["ID"]);

    let csr = make_csr(dir.path(), "chain")?;
    let (st, v) = call(
        &c,
        Method::POST,
        "/v1/connect/ca/sign",
        json!({"csr": csr, "service": "chain", "plane": "ops"}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["chain_pem"], root.as_str());
    let leaf = dir.path().join("chain.pem");
    let ca = dir.path().join("root.pem");
    std::fs::write(&leaf, v["cert_pem"].as_str().unwrap())?;
    std::fs::write(&ca, &root)?;
    let (leaf_s, ca_s) = (leaf.to_str().unwrap(), ca.to_str().unwrap());

    let (ok, text) = openssl(&["verify", "-CAfile", ca_s, leaf_s])?;
    assert!(ok, "openssl verify: {text}");
    let (_, text) = openssl(&["x509", "-in", leaf_s, "-noout", "-text"])?;
    assert!(
        text.contains("URI:spiffe://lucid.internal/plane/ops/svc/chain"),
        "{text}"
    );
    assert!(
        text.contains("DNS:chain, DNS:chain.lucid.internal"),
        "{text}"
    );
    assert!(
        !text.contains("evil.example.com"),
        "the CSR's names are ignored: {text}"
    );
    assert!(text.contains("CA:FALSE"), "never a CA: {text}");
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    let (_, serial) = openssl(&["x509", "-in", leaf_s, "-noout", "-serial"])?;
    assert_eq!(
        serial
            .trim()
            .trim_start_matches("serial=")
            .to_ascii_lowercase(),
        v["serial"].as_str().unwrap()
    );
    // 72 h by default: still valid in 71.9 h, expired at 72 h + 1 min.
    let (ok, _) = openssl(&[
        "x509",
        "-in",
        leaf_s,
        "-noout",
        "-checkend",
        &(72 * 3600 - 600).to_string(),
    ])?;
    assert!(ok, "valid almost 72 h");
    let (ok, _) = openssl(&[
        "x509",
        "-in",
        leaf_s,
        "-noout",
        "-checkend",
        &(72 * 3600 + 60).to_string(),
    ])?;
    assert!(!ok, "expired after 72 h");
    let after = lucid_tests::unix_now() + 72 * 3600 + 120;
    let (ok, text) = openssl(&[
        "verify",
        "-attime",
        &after.to_string(),
        "-CAfile",
        ca_s,
        leaf_s,
    ])?;
    assert!(!ok && text.contains("expired"), "{text}");
    // Recorded, listed by the controller endpoint.
    let list: Value = c.call(Method::GET, "/certificates", "").await?.json()?;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["service"], "chain");
    assert_eq!(list[0]["plane"], "ops");
    let ca_doc: Value = c.call(Method::GET, "/certificates/ca", "").await?.json()?;
    assert_eq!(ca_doc["ca_pem"], root.as_str());
    Ok(())
}

#[tokio::test]
async fn bad_signing_requests_are_refused_and_leave_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let root = root_pem(&c).await?;
    let csr = make_csr(dir.path(), "x")?;
    let tampered = csr.replacen("MII", "MIJ", 1);
    let cases = [
        (
            json!({"csr": "not a csr", "service": "web"}),
            StatusCode::BAD_REQUEST,
            "LUCID_ERR_1204",
        ),
        (
            json!({"csr": root, "service": "web"}),
            StatusCode::BAD_REQUEST,
            "LUCID_ERR_1204",
        ),
        (
            json!({"csr": tampered, "service": "web"}),
            StatusCode::BAD_REQUEST,
            "LUCID_ERR_1204",
        ),
        (
            json!({"csr": csr, "service": "Web_1"}),
            StatusCode::BAD_REQUEST,
            "LUCID_ERR_1004",
        ),
        (
            json!({"csr": csr, "service": "web", "plane": "no/such"}),
            StatusCode::BAD_REQUEST,
            "LUCID_ERR_1004",
        ),
        (
            json!({"csr": csr}),
            StatusCode::BAD_REQUEST,
            "LUCID_ERR_1004",
        ),
        (json!("[1,2"), StatusCode::BAD_REQUEST, "LUCID_ERR_1004"),
    ];
    for (body, status, code) in cases {
        let (st, v) = call(&c, Method::POST, "/v1/connect/ca/sign", body.clone()).await?;
        assert_refused(st, &v, status, code);
    }
    let (st, v) = call(&c, Method::POST, "/certificates/Bad_Name", Value::Null).await?;
    assert_refused(st, &v, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    let (st, v) = call(
        &c,
        Method::DELETE,
        "/v1/connect/ca/certs/zz-not-hex",
        Value::Null,
    )
    .await?;
    assert_refused(st, &v, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    let (st, v) = call(&c, Method::DELETE, "/v1/connect/ca/certs/00aa", Value::Null).await?;
    assert_refused(st, &v, StatusCode::NOT_FOUND, "LUCID_ERR_1002");
    let (st, v) = call(&c, Method::DELETE, "/certificates/nobody", Value::Null).await?;
    assert_refused(st, &v, StatusCode::NOT_FOUND, "LUCID_ERR_1002");
    let list: Value = c.call(Method::GET, "/certificates", "").await?.json()?;
    assert_eq!(list, json!([]), "nothing was recorded");
    Ok(())
}

#[tokio::test]
async fn server_side_leaves_and_revocation() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let root = root_pem(&c).await?;
    std::fs::write(dir.path().join("root.pem"), &root)?;
    c.call(
        Method::PUT,
        "/v1/agent/service/register",
        json!({"Name": "wallet", "ID": "wallet-1", "Port": 1, "Meta": {"plane": "chain"}})
            .to_string(),
    )
    .await?
    .error_for_status()?;

    // Consul's agent leaf: the plane comes from the instance's meta; the key matches.
    let v: Value = c
        .call(Method::GET, "/v1/agent/connect/ca/leaf/wallet", "")
        .await?
        .error_for_status()?
        .json()?;
    assert_eq!(
        v["ServiceURI"],
        "spiffe://lucid.internal/plane/chain/svc/wallet"
    );
    let cert = dir.path().join("w.pem");
    let key = dir.path().join("w.key");
    std::fs::write(&cert, v["CertPEM"].as_str().unwrap())?;
    std::fs::write(&key, v["PrivateKeyPEM"].as_str().unwrap())?;
    let (_, from_cert) = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-pubkey"])?;
    let (_, from_key) = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"])?;
    assert_eq!(
        from_cert, from_key,
        "the private key belongs to the certificate"
    );
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        dir.path().join("root.pem").to_str().unwrap(),
        cert.to_str().unwrap(),
    ])?;
    assert!(ok, "{text}");
    let first = v["SerialNumber"].as_str().unwrap().to_owned();

    // The controller endpoint, twice more.
    let (st, second) = call(
        &c,
        Method::POST,
        "/certificates/wallet",
        json!({"plane": "chain"}),
    )
    .await?;
    assert_eq!(st, StatusCode::CREATED, "{second}");
    assert!(second["key_pem"].as_str().unwrap().contains("PRIVATE KEY"));
    let (st, third) = call(&c, Method::POST, "/certificates/wallet", Value::Null).await?;
    assert_eq!(st, StatusCode::CREATED, "{third}");

    // A blocking read of the revoked list wakes on a revocation.
    let r = c
        .call(Method::GET, "/v1/connect/ca/revoked", "")
        .await?
        .error_for_status()?;
    let index = r.consul_index().unwrap();
    assert_eq!(r.json::<Value>()?, json!([]));
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.call(
                Method::GET,
                &format!("/v1/connect/ca/revoked?index={index}&wait=20s"),
                "",
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "blocks until something is revoked");
    let (st, v) = call(
        &c,
        Method::DELETE,
        &format!("/v1/connect/ca/certs/{first}"),
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    let woke = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    let list: Value = woke.json()?;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["serial"], first.as_str());
    assert!(woke.consul_index().unwrap() > index);
    // Twice is refused.
    let (st, v) = call(
        &c,
        Method::DELETE,
        &format!("/v1/connect/ca/certs/{first}"),
        Value::Null,
    )
    .await?;
    assert_refused(st, &v, StatusCode::NOT_FOUND, "LUCID_ERR_1002");

    // Revoking the service takes the other two.
    let (st, v) = call(&c, Method::DELETE, "/certificates/wallet", Value::Null).await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    let list: Value = c
        .call(Method::GET, "/v1/connect/ca/revoked", "")
        .await?
        .json()?;
    let mut serials: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["serial"].as_str().unwrap())
        .collect();
    serials.sort();
    let mut want = vec![
        first.as_str(),
        second["serial"].as_str().unwrap(),
        third["serial"].as_str().unwrap(),
    ];
    want.sort();
    assert_eq!(serials, want);
    let (st, _) = call(&c, Method::DELETE, "/certificates/wallet", Value::Null).await?;
    assert_eq!(st, StatusCode::NOT_FOUND, "nothing left to revoke");

    // A follower that saw the first revocation's index gets only the two revoked after it:
    // the delta a sidecar follows, not the whole list again.
    let since = woke.consul_index().unwrap();
    let delta: Value = c
        .call(
            Method::GET,
            &format!("/v1/connect/ca/revoked?since={since}"),
            "",
        )
        .await?
        .error_for_status()?
        .json()?;
    let mut got: Vec<&str> = delta
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["serial"].as_str().unwrap())
        .collect();
    got.sort();
    let mut later = vec![
        second["serial"].as_str().unwrap(),
        third["serial"].as_str().unwrap(),
    ];
    later.sort();
    assert_eq!(got, later);
    assert!(delta[0]["not_after_unix"].as_i64().unwrap() > lucid_tests::unix_now());
    let (st, v) = call(
        &c,
        Method::GET,
        "/v1/connect/ca/revoked?since=soon",
        Value::Null,
    )
    .await?;
    assert_refused(st, &v, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    Ok(())
}

#[tokio::test]
async fn the_root_survives_leader_failover() -> anyhow::Result<()> {
    let _g = cluster_lock().await;
    let mut cluster = Cluster::start(3, &[]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let root = root_pem(&cluster.node(leader).client()).await?;
    for (i, n) in cluster.running() {
        assert_eq!(
            root_pem(&n.client()).await?,
            root,
            "node {i} serves the same root"
        );
    }
    cluster.kill9(leader);
    let new_leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    assert_ne!(new_leader, leader);
    let c = cluster.node(new_leader).client();
    assert_eq!(root_pem(&c).await?, root, "a new leader keeps the root");
    let dir = tempfile::tempdir()?;
    let csr = make_csr(dir.path(), "api")?;
    let (st, v) = call(
        &c,
        Method::POST,
        "/v1/connect/ca/sign",
        json!({"csr": csr, "service": "api", "plane": "ops"}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    std::fs::write(dir.path().join("root.pem"), &root)?;
    std::fs::write(dir.path().join("api.pem"), v["cert_pem"].as_str().unwrap())?;
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        dir.path().join("root.pem").to_str().unwrap(),
        dir.path().join("api.pem").to_str().unwrap(),
    ])?;
    assert!(ok, "signed by the same root after failover: {text}");
    Ok(())
}
