//! Intentions over Consul's API: CRUD by pair and by id, precedence, L7 checks, `/match`,
//! `/v1/agent/connect/authorize` with SPIFFE identities and revoked serials, the default
//! action flag, and bad bodies refused with nothing stored.

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::api::call;
use serde_json::{json, Value};

use crate::kv::{single_node, single_node_with};

async fn allowed(c: &RegistryClient, q: &str) -> anyhow::Result<bool> {
    let (st, v) = call(
        c,
        Method::GET,
        &format!("/v1/connect/intentions/check?{q}"),
        Value::Null,
    )
    .await?;
    anyhow::ensure!(st == StatusCode::OK, "check {q}: {st} {v}");
    Ok(v["Allowed"].as_bool().unwrap_or(false))
}

#[tokio::test]
async fn intentions_crud_precedence_and_l7() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    // Default allow (no intentions yet).
    assert!(allowed(&c, "source=web&destination=db").await?);
    let (st, v) = call(
        &c,
        Method::POST,
        "/v1/connect/intentions",
        json!({"SourceName": "*", "DestinationName": "db", "Action": "deny"}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    let star_id = v["ID"].as_str().unwrap().to_owned();
    let (st, _) = call(
        &c,
        Method::POST,
        "/v1/connect/intentions",
        json!({"SourceName": "*", "DestinationName": "db", "Action": "allow"}),
    )
    .await?;
    assert_eq!(st, StatusCode::CONFLICT, "one intention per pair");
    let (st, v) = call(&c, Method::PUT, "/v1/connect/intentions/exact?source=web&destination=db",
        json!({"Permissions": [{"Action": "allow", "HTTP": {"Methods": ["GET"], "PathPrefix": "/read/"}}]})).await?;
    assert_eq!((st, v), (StatusCode::OK, json!(true)));

    assert!(
        !allowed(&c, "source=api&destination=db").await?,
        "* -> db deny"
    );
    assert!(allowed(&c, "source=web&destination=db&method=GET&path=/read/1").await?);
    assert!(!allowed(&c, "source=web&destination=db&method=POST&path=/read/1").await?);
    assert!(!allowed(&c, "source=web&destination=db&method=GET&path=/write").await?);
    assert!(
        allowed(&c, "source=web&destination=db").await?,
        "L4: some permission allows"
    );

    let (_, m) = call(
        &c,
        Method::GET,
        "/v1/connect/intentions/match?by=destination&name=db",
        Value::Null,
    )
    .await?;
    let order: Vec<&str> = m["db"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["SourceName"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["web", "*"], "most specific first");

    let (st, got) = call(
        &c,
        Method::GET,
        &format!("/v1/connect/intentions/{star_id}"),
        Value::Null,
    )
    .await?;
    assert_eq!(
        (st, got["DestinationName"].clone()),
        (StatusCode::OK, json!("db"))
    );
    let (st, _) = call(
        &c,
        Method::DELETE,
        &format!("/v1/connect/intentions/{star_id}"),
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::OK);
    assert!(
        allowed(&c, "source=api&destination=db").await?,
        "back to the default"
    );
    let (st, _) = call(
        &c,
        Method::DELETE,
        "/v1/connect/intentions/exact?source=api&destination=db",
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, list) = call(&c, Method::GET, "/v1/connect/intentions", Value::Null).await?;
    assert_eq!(list.as_array().unwrap().len(), 1);
    Ok(())
}

#[tokio::test]
async fn bad_intentions_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    for body in [
        json!({"SourceName": "web"}),
        json!({"SourceName": "web", "DestinationName": "db", "Action": "perhaps"}),
        json!({"SourceName": "Web!", "DestinationName": "db", "Action": "allow"}),
        json!({"SourceName": "web", "DestinationName": "db", "Permissions": [{"Action": "allow", "HTTP": {"Methods": ["YELL"]}}]}),
        json!({"SourceName": "web", "DestinationName": "db", "Action": "allow", "Permissions": [{"Action": "deny"}]}),
    ] {
        let (st, v) = call(&c, Method::POST, "/v1/connect/intentions", body.clone()).await?;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], "LUCID_ERR_1102", "{body}: {v}");
    }
    let (st, v) = call(&c, Method::PUT, "/v1/connect/policy",
        json!({"planeIsolation": {"policies": [{"source": "nowhere!", "destination": "*", "rules": [{"action": "allow"}]}]}})).await?;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("LUCID_ERR_1102")),
        "{v}"
    );
    let (st, _) = call(
        &c,
        Method::GET,
        "/v1/connect/intentions/check?source=web",
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, list) = call(&c, Method::GET, "/v1/connect/intentions", Value::Null).await?;
    assert_eq!(list, json!([]));
    let (_, planes) = call(&c, Method::GET, "/v1/connect/planes", Value::Null).await?;
    assert_eq!(planes, json!({}));
    Ok(())
}

#[tokio::test]
async fn authorize_uses_the_certificate_identity_and_the_revoked_list() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node_with(&dir.path().join("n1"), &["--intentions-default", "deny"]).await?;
    let c = node.client();
    let (st, _) = call(
        &c,
        Method::POST,
        "/v1/connect/intentions",
        json!({"SourceName": "plane:ops", "DestinationName": "db", "Action": "allow"}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK);
    let auth = |uri: &str, serial: Option<&str>| {
        let mut b = json!({"Target": "db", "ClientCertURI": uri});
        if let Some(s) = serial {
            b["ClientCertSerial"] = json!(s);
        }
        b
    };
    let (_, v) = call(
        &c,
        Method::POST,
        "/v1/agent/connect/authorize",
        auth("spiffe://lucid.internal/plane/ops/svc/api", None),
    )
    .await?;
    assert_eq!(v["Authorized"], true, "{v}");
    let (_, v) = call(
        &c,
        Method::POST,
        "/v1/agent/connect/authorize",
        auth("spiffe://lucid.internal/plane/chain/svc/api", None),
    )
    .await?;
    assert_eq!(v["Authorized"], false, "default deny: {v}");
    let (_, v) = call(
        &c,
        Method::POST,
        "/v1/agent/connect/authorize",
        auth("spiffe://evil.example/plane/ops/svc/api", None),
    )
    .await?;
    assert_eq!(v["Authorized"], false, "{v}");
    // A revoked certificate is refused even though the intention allows its identity.
    let v: Value = c
        .call(Method::GET, "/v1/agent/connect/ca/leaf/api?plane=ops", "")
        .await?
        .error_for_status()?
        .json()?;
    let serial = v["SerialNumber"].as_str().unwrap().to_owned();
    let (_, ok) = call(
        &c,
        Method::POST,
        "/v1/agent/connect/authorize",
        auth("spiffe://lucid.internal/plane/ops/svc/api", Some(&serial)),
    )
    .await?;
    assert_eq!(ok["Authorized"], true);
    c.call(
        Method::DELETE,
        &format!("/v1/connect/ca/certs/{serial}"),
        "",
    )
    .await?
    .error_for_status()?;
    let (_, v) = call(
        &c,
        Method::POST,
        "/v1/agent/connect/authorize",
        auth("spiffe://lucid.internal/plane/ops/svc/api", Some(&serial)),
    )
    .await?;
    assert_eq!(v["Authorized"], false, "{v}");
    assert!(v["Reason"].as_str().unwrap().contains("revoked"));
    Ok(())
}
