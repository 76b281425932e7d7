//! Config entries over Consul's `/v1/config` API: defaults filled in, cas, listing, blocking
//! reads, deletion, and bad entries refused with the platform's codes and nothing stored.

use std::time::Duration;

use http::{Method, StatusCode};
use lucid_tests::api::call;
use serde_json::{json, Value};

use crate::kv::single_node;

#[tokio::test]
async fn service_defaults_round_trip_with_cas_and_blocking_reads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let entry = json!({"Kind": "service-defaults", "Name": "blockchain-core",
        "CircuitBreaker": {"FailureThreshold": 3, "RecoveryTimeout": "60s", "Timeout": "10s",
                           "ErrorTypes": ["5xx", "timeout"]},
        "RateLimit": {"RequestsPerSecond": 200, "Burst": 400}});
    assert_eq!(
        call(&c, Method::PUT, "/v1/config", entry.clone()).await?,
        (StatusCode::OK, json!(true))
    );
    let (st, got) = call(
        &c,
        Method::GET,
        "/v1/config/service-defaults/blockchain-core",
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["CircuitBreaker"]["FailureThreshold"], 3);
    assert_eq!(
        got["CircuitBreaker"]["HalfOpenMaxCalls"], 3,
        "defaults filled in"
    );
    assert_eq!(got["CircuitBreaker"]["RecoveryTimeout"], "1m");
    assert_eq!(got["RateLimit"]["Burst"], 400);
    let modify = got["ModifyIndex"].as_u64().unwrap();

    // cas: a stale index is refused, the current one accepted; cas=0 only creates.
    let (_, ok) = call(
        &c,
        Method::PUT,
        &format!("/v1/config?cas={}", modify - 1),
        entry.clone(),
    )
    .await?;
    assert_eq!(ok, json!(false));
    let (_, ok) = call(&c, Method::PUT, "/v1/config?cas=0", entry.clone()).await?;
    assert_eq!(ok, json!(false));
    let (_, ok) = call(
        &c,
        Method::PUT,
        &format!("/v1/config?cas={modify}"),
        entry.clone(),
    )
    .await?;
    assert_eq!(ok, json!(true));

    // A blocking list wakes when an entry is added.
    let r = c
        .call(Method::GET, "/v1/config/service-defaults", "")
        .await?
        .error_for_status()?;
    let index = r.consul_index().unwrap();
    assert_eq!(r.json::<Value>()?.as_array().unwrap().len(), 1);
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            c.call(
                Method::GET,
                &format!("/v1/config/service-defaults?index={index}&wait=20s"),
                "",
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    let (_, ok) = call(
        &c,
        Method::PUT,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "web",
        "LoadBalancer": {"Policy": "least-request"}}),
    )
    .await?;
    assert_eq!(ok, json!(true));
    let woke = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert_eq!(woke.json::<Value>()?.as_array().unwrap().len(), 2);

    // The mesh-wide fallback.
    let (_, ok) = call(
        &c,
        Method::PUT,
        "/v1/config",
        json!({"Kind": "proxy-defaults", "Name": "global",
        "CircuitBreaker": {"FailureThreshold": 5}}),
    )
    .await?;
    assert_eq!(ok, json!(true));

    assert_eq!(
        call(
            &c,
            Method::DELETE,
            "/v1/config/service-defaults/web",
            Value::Null
        )
        .await?,
        (StatusCode::OK, json!(true))
    );
    let (st, v) = call(
        &c,
        Method::GET,
        "/v1/config/service-defaults/web",
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, _) = call(
        &c,
        Method::DELETE,
        "/v1/config/service-defaults/web",
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn bad_entries_are_refused_with_their_codes_and_change_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let cases = [
        (
            json!({"Kind": "service-defaults", "Name": "web", "CircuitBreaker": {"FailureThreshold": 0}}),
            "LUCID_ERR_1202",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "CircuitBreaker": {"SuccessThreshold": 9}}),
            "LUCID_ERR_1202",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "CircuitBreaker": {"RecoveryTimeout": "-1s"}}),
            "LUCID_ERR_1004",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "RateLimit": {"RequestsPerSecond": 0}}),
            "LUCID_ERR_1201",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "LoadBalancer": {"Policy": "magic"}}),
            "LUCID_ERR_1201",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "Typo": 1}),
            "LUCID_ERR_1004",
        ),
        (
            json!({"Kind": "terminating-gateway", "Name": "web"}),
            "LUCID_ERR_1004",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "Not_A_Service"}),
            "LUCID_ERR_1004",
        ),
        (json!("not an object"), "LUCID_ERR_1004"),
    ];
    for (body, code) in cases {
        let (st, v) = call(&c, Method::PUT, "/v1/config", body.clone()).await?;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    let (st, v) = call(&c, Method::GET, "/v1/config/nope", Value::Null).await?;
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("LUCID_ERR_1004"))
    );
    let (_, list) = call(&c, Method::GET, "/v1/config/service-defaults", Value::Null).await?;
    assert_eq!(list, json!([]), "nothing stored");
    Ok(())
}
