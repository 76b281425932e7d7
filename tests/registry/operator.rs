//! Consul's run-time settings and gossip-era endpoints without gossip (issue 16): the CA
//! configuration's LeafCertTTL set on one node decides the next leaf another node signs;
//! user events fired on one node are listed on the others; the autopilot configuration
//! honours `?cas=`; bad bodies are 4xx with a reason and change nothing; an unknown peer is an
//! error, not "nothing to do"; the fallback for unknown routes tells the client it closes.

use std::time::Duration;

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::registry::{cluster_lock, Cluster};
use lucid_tests::wait;
use serde_json::{json, Value};

use crate::kv::single_node;

async fn json_of(
    c: &RegistryClient,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let r = c.call(method, path, body).await.expect("request");
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

fn refused((st, v): &(StatusCode, Value), what: &str) {
    assert_eq!(*st, StatusCode::BAD_REQUEST, "{what}: {v}");
    assert!(
        v["error"]["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("LUCID_ERR_")),
        "{what}: {v}"
    );
}

/// Seconds between a leaf's notBefore and notAfter, as signed by `c`'s node.
async fn leaf_lifetime(c: &RegistryClient) -> anyhow::Result<i64> {
    let v: Value = c
        .call(Method::GET, "/v1/agent/connect/ca/leaf/web", "")
        .await?
        .error_for_status()?
        .json()?;
    let pem = v["CertPEM"].as_str().unwrap_or_default();
    let info = lucid_tls::inspect_pem(pem)?;
    Ok(info.not_after - info.not_before)
}

/// The lifetime of `c`'s leaves once it differs from `old` (signing is rate limited, so
/// poll gently).
async fn changed_lifetime(c: &RegistryClient, old: i64) -> anyhow::Result<i64> {
    for _ in 0..40 {
        let now = leaf_lifetime(c).await?;
        if now != old {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("leaves still live {old} s")
}

#[tokio::test]
async fn ca_configuration_is_replicated_and_decides_the_next_leaf() -> anyhow::Result<()> {
    let _serial = cluster_lock().await;
    let c = Cluster::start(3, &[]).await?;
    let leader = c.wait_leader(Duration::from_secs(30)).await?;
    let l = c.node(leader).client();
    let f = c.node((leader + 1) % 3).client();
    f.call(
        Method::PUT,
        "/v1/agent/service/register",
        json!({"Name": "web", "ID": "web-1", "Port": 80}).to_string(),
    )
    .await?
    .error_for_status()?;
    wait::until("the CA root", Duration::from_secs(20), || async {
        Ok(f.call(Method::GET, "/v1/agent/connect/ca/leaf/web", "")
            .await?
            .status
            .is_success()
            .then_some(()))
    })
    .await?;
    let before = leaf_lifetime(&f).await?;
    let (st, conf) = json_of(&l, Method::GET, "/v1/connect/ca/configuration", Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{conf}");
    assert_eq!(conf["Provider"], "consul");

    // Bad inputs: each refused, and none changes what the next leaf gets.
    for (body, what) in [
        (
            json!({"Provider": "vault", "Config": {}}),
            "another provider",
        ),
        (json!({"Config": {"LeafCertTTL": "2h"}}), "no provider"),
        (
            json!({"Provider": "consul", "Config": {"LeafCertTTL": "1s"}}),
            "a 1 s leaf",
        ),
        (
            json!({"Provider": "consul", "Config": {"LeafCertTTL": "9000h"}}),
            "a leaf over a year",
        ),
        (
            json!({"Provider": "consul", "Config": {"LeafCertTTL": 7200}}),
            "a number",
        ),
        (
            json!({"Provider": "consul", "Config": {"RootCertTTL": "1h"}}),
            "a fixed field changed",
        ),
        (
            json!({"Provider": "consul", "Config": {"Nope": 1}}),
            "an unknown field",
        ),
        (json!([1]), "not an object"),
    ] {
        refused(
            &json_of(&l, Method::PUT, "/v1/connect/ca/configuration", body).await,
            what,
        );
    }
    assert_eq!(leaf_lifetime(&f).await?, before);

    // What GET gave back is accepted as it is (the fixed fields unchanged), with a new TTL.
    let mut put = conf.clone();
    put["Config"]["LeafCertTTL"] = json!("2h");
    let (st, v) = json_of(&l, Method::PUT, "/v1/connect/ca/configuration", put).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Signed by the follower, from its replica (a leaf's lifetime also counts the backdating
    // of notBefore, so compare two settings: 3 h leaves live one hour longer than 2 h ones).
    let two = changed_lifetime(&f, before).await?;
    let mut put = conf.clone();
    put["Config"]["LeafCertTTL"] = json!("3h");
    let (st, v) = json_of(&f, Method::PUT, "/v1/connect/ca/configuration", put).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let three = changed_lifetime(&f, two).await?;
    assert_eq!(three - two, 3600);
    let (_, now) = json_of(
        &f,
        Method::GET,
        "/v1/connect/ca/configuration?stale",
        Value::Null,
    )
    .await;
    assert_eq!(now["Config"]["LeafCertTTL"], "3h");
    assert!(now["ModifyIndex"].as_u64() > conf["ModifyIndex"].as_u64());

    // User events fired on one node are listed on another; a bad one is refused.
    let (st, v) = json_of(
        &l,
        Method::PUT,
        "/v1/event/fire/deploy?service=web",
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["Name"], "deploy");
    let r = f
        .call(
            Method::PUT,
            "/v1/event/fire/big",
            vec![b'x'; 100 * 1024 + 1],
        )
        .await?;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let (st, list) = json_of(&f, Method::GET, "/v1/event/list", Value::Null).await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["Name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["deploy"], "{list}");
    assert_eq!(list[0]["ServiceFilter"], "web");
    Ok(())
}

#[tokio::test]
async fn operator_settings_refuse_bad_input_and_honour_cas() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let path = "/v1/operator/autopilot/configuration";
    let (_, conf) = json_of(&c, Method::GET, path, Value::Null).await;
    assert_eq!(conf["CleanupDeadServers"], true);
    let index = conf["ModifyIndex"].as_u64().unwrap_or_default();

    for (body, what) in [
        (json!({"CleanupDeadServers": "no"}), "a string for a bool"),
        (json!({"LastContactThreshold": "soon"}), "not a duration"),
        (json!({"Bogus": 1}), "an unknown field"),
        (json!("x"), "not an object"),
    ] {
        refused(&json_of(&c, Method::PUT, path, body).await, what);
    }
    // A stale cas is `false` and changes nothing; the right one is `true`.
    let stale = format!("{path}?cas={}", index + 1000);
    let (st, v) = json_of(
        &c,
        Method::PUT,
        &stale,
        json!({"CleanupDeadServers": false}),
    )
    .await;
    assert_eq!((st, v), (StatusCode::OK, json!(false)));
    let (_, after) = json_of(&c, Method::GET, path, Value::Null).await;
    assert_eq!(after, conf);
    let fresh = format!("{path}?cas={index}");
    let (st, v) = json_of(
        &c,
        Method::PUT,
        &fresh,
        json!({"cleanup_dead_servers": false}),
    )
    .await;
    assert_eq!((st, v), (StatusCode::OK, json!(true)));
    let (_, after) = json_of(&c, Method::GET, path, Value::Null).await;
    assert_eq!(after["CleanupDeadServers"], false);
    assert_eq!(after["MaxTrailingLogs"], 250);

    // Coordinates: what is reported comes back; malformed ones are refused.
    for (body, what) in [
        (json!({"Coord": {"Vec": [0]}}), "no node"),
        (json!({"Node": "n1"}), "no coordinate"),
        (
            json!({"Node": "n1", "Coord": {"Vec": ["a"]}}),
            "a non-numeric vector",
        ),
    ] {
        refused(
            &json_of(&c, Method::PUT, "/v1/coordinate/update", body).await,
            what,
        );
    }
    let coord =
        json!({"Vec": [0.5, 0, 0, 0, 0, 0, 0, 0], "Error": 1.5, "Adjustment": 0, "Height": 0});
    let (st, _) = json_of(
        &c,
        Method::PUT,
        "/v1/coordinate/update",
        json!({"Node": "n1", "Coord": coord}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = json_of(&c, Method::GET, "/v1/coordinate/node/n1", Value::Null).await;
    assert_eq!(v[0]["Coord"], coord);

    // An unknown peer is an error (a client reads 404 on DELETE as done).
    let r = c
        .call(
            Method::DELETE,
            "/v1/operator/raft/peer?address=10.255.255.1:8300",
            "",
        )
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&r.body).contains("was not found in the Raft configuration"));

    // No gossip, so no keyring, whatever the method.
    for m in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
        let r = c.call(m.clone(), "/v1/operator/keyring", "{}").await?;
        assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{m}");
    }

    // A body sent to a route that does not exist is never read: the answer says the
    // connection closes, so a keep-alive client does not lose its next request on it.
    let r = c.call(Method::PUT, "/v1/no/such/route", "payload").await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("connection"), Some("close"));
    let r = c.call(Method::POST, "/v1/kv/x", "payload").await?;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("connection"), Some("close"));
    Ok(())
}
