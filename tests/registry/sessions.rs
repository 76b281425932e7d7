//! Sessions, KV locks, `/v1/txn` and `?filter` (issue 16): a lock whose holder stops renewing
//! is released after its TTL although the leader that granted it was killed meanwhile, and a
//! second client then takes it; bad inputs are refused with a reason and change nothing.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::registry::{cluster_lock, Cluster};
use lucid_tests::wait;
use serde_json::{json, Value};

use crate::kv::single_node;

async fn create_session(c: &RegistryClient, body: Value) -> anyhow::Result<String> {
    let r = c
        .call(Method::PUT, "/v1/session/create", body.to_string())
        .await?
        .error_for_status()?;
    let v: Value = r.json()?;
    Ok(v["ID"].as_str().unwrap_or_default().to_owned())
}

/// The session holding `key`'s lock, as a node sees it on its own replica.
async fn holder(c: &RegistryClient, key: &str) -> anyhow::Result<Option<String>> {
    Ok(c.kv_get(key, "stale")
        .await?
        .and_then(|(_, p)| p.into_iter().next())
        .and_then(|p| p.session)
        .filter(|s| !s.is_empty()))
}

#[tokio::test]
async fn a_lock_is_released_when_its_ttl_lapses_across_a_leader_failover() -> anyhow::Result<()> {
    let _serial = cluster_lock().await;
    let mut c = Cluster::start(3, &[]).await?;
    let leader = c.wait_leader(Duration::from_secs(30)).await?;
    let follower = (leader + 1) % 3;
    let a = c.node(follower).client();
    // Client A: a 10 s TTL (the shortest Consul allows) and a short lock-delay.
    let sa = create_session(&a, json!({"Name": "a", "TTL": "10s", "LockDelay": "1s"})).await?;
    assert!(
        a.kv_put_query("svc/leader", &format!("acquire={sa}"), "a")
            .await?
    );
    let renewed = Instant::now();
    let r = a
        .call(Method::PUT, &format!("/v1/session/renew/{sa}"), "")
        .await?;
    assert_eq!(r.status, StatusCode::OK);
    // Client B: no TTL; it cannot take the lock while A holds it.
    let b = c.node((leader + 2) % 3).client();
    let sb = create_session(&b, json!({"Name": "b"})).await?;
    assert!(
        !b.kv_put_query("svc/leader", &format!("acquire={sb}"), "b")
            .await?
    );

    // The leader that counted A's TTL dies; A stops renewing (it died too).
    c.kill9(leader);
    let new = c.wait_leader(Duration::from_secs(30)).await?;
    assert_ne!(new, leader);
    assert_eq!(
        holder(&b, "svc/leader").await?.as_deref(),
        Some(sa.as_str())
    );
    let released = wait::until(
        "A's lock to be released",
        Duration::from_secs(60),
        || async { Ok(holder(&b, "svc/leader").await?.is_none().then(Instant::now)) },
    )
    .await?;
    let after = released.duration_since(renewed);
    // Invalidated after up to 2x TTL from the last renewal, not reset by the failover.
    assert!(
        after >= Duration::from_secs(10) && after <= Duration::from_secs(25),
        "released {after:?} after the last renewal (TTL 10s)"
    );
    // Past the lock-delay, B takes it.
    let took = wait::until("B to acquire", Duration::from_secs(30), || async {
        Ok(b.kv_put_query("svc/leader", &format!("acquire={sb}"), "b")
            .await?
            .then_some(()))
    })
    .await;
    took?;
    assert_eq!(
        holder(&b, "svc/leader").await?.as_deref(),
        Some(sb.as_str())
    );
    // A learns its session is gone when it next renews.
    let r = b
        .call(Method::PUT, &format!("/v1/session/renew/{sa}"), "")
        .await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn bad_sessions_filters_and_transactions_are_refused_and_change_nothing() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let index = |c: RegistryClient| async move {
        let r = c.call(Method::GET, "/v1/kv/?recurse", "").await?;
        anyhow::Ok(r.consul_index().unwrap_or(0))
    };
    let before = index(c.clone()).await?;

    // A TTL outside 10s..24h: 400 in Consul's words, and no session.
    for ttl in ["5s", "25h", "soon"] {
        let r = c
            .call(
                Method::PUT,
                "/v1/session/create",
                json!({"TTL": ttl}).to_string(),
            )
            .await?;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{ttl}");
        let body = String::from_utf8_lossy(&r.body);
        if ttl != "soon" {
            assert!(body.contains("Invalid Session TTL"), "{body}");
        }
    }
    let v: Value = c.call(Method::GET, "/v1/session/list", "").await?.json()?;
    assert_eq!(v, json!([]));

    // A filter that does not parse, names no field, or misuses an operator: 400, the reason.
    for (path, filter) in [
        ("/v1/agent/services", "not a valid expression(("),
        ("/v1/health/state/any", "Nope == 1"),
        ("/v1/catalog/services", "ServicePort matches \"x\""),
    ] {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("filter", filter)
            .finish();
        let r = c.call(Method::GET, &format!("{path}?{q}"), "").await?;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {filter}");
        assert!(
            String::from_utf8_lossy(&r.body)
                .contains("Failed to create boolean expression evaluator"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }

    // 65 operations: 413; one failing operation among good ones: 409, and nothing written.
    let set = |k: String| json!({"KV": {"Verb": "set", "Key": k, "Value": "MQ=="}});
    let many: Vec<Value> = (0..65).map(|i| set(format!("t/{i}"))).collect();
    let r = c
        .call(Method::PUT, "/v1/txn", Value::Array(many).to_string())
        .await?;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&r.body).contains("too many operations (65 > 64)"));
    let mixed = json!([set("t/a".into()), set("t/b".into()),
        {"KV": {"Verb": "check-index", "Key": "t/missing", "Index": 7}}]);
    let r = c.call(Method::PUT, "/v1/txn", mixed.to_string()).await?;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let v: Value = r.json()?;
    assert_eq!(v["Errors"][0]["OpIndex"], 2, "{v}");
    assert_eq!(v["Errors"][0]["What"], "key \"t/missing\" doesn't exist");
    let r = c.call(Method::PUT, "/v1/txn", "[{\"KV\": 7}]").await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        c.kv_get("t/", "recurse").await?.is_none(),
        "nothing of any was written"
    );

    // Acquiring with a session that does not exist: 400; releasing one: false.
    let r = c.call(Method::PUT, "/v1/kv/lk?acquire=nope", "x").await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!c.kv_put_query("lk", "release=nope", "x").await?);
    assert!(c.kv_get("lk", "").await?.is_none());
    // Another datacenter: refused.
    let r = c.call(Method::GET, "/v1/session/list?dc=dc2", "").await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(index(c.clone()).await?, before, "no KV write happened");
    Ok(())
}
