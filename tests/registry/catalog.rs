//! Catalog over the replicated state: Consul agent registration, TTL updates, health and
//! catalog reads with ?passing and ?tag, blocking per service, refusals that change nothing.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::registry::{cluster_lock, Cluster};
use serde_json::{json, Value};

use crate::kv::single_node;

async fn put(
    c: &RegistryClient,
    path: &str,
    body: Value,
) -> anyhow::Result<lucid_client::Response> {
    Ok(c.call(Method::PUT, path, body.to_string()).await?)
}

async fn get(c: &RegistryClient, path: &str) -> anyhow::Result<(u64, Value)> {
    let r = c.call(Method::GET, path, "").await?.error_for_status()?;
    Ok((r.consul_index().unwrap_or(0), r.json()?))
}

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn agent_registration_ttl_and_health_filters() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    // python-consul style lowercase bodies.
    for (id, tags) in [
        ("web-1", json!(["v1", "primary"])),
        ("web-2", json!(["v1"])),
    ] {
        let r = put(
            &c,
            "/v1/agent/service/register",
            json!({"name": "web", "id": id, "port": 8080, "tags": tags,
            "address": "127.0.0.1", "checks": [{"ttl": "30s"}, {"ttl": "30s", "name": "second"}]}),
        )
        .await?;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let (_, services) = get(&c, "/v1/agent/services").await?;
    assert_eq!(services["web-1"]["Service"], "web");
    assert_eq!(services["web-2"]["Port"], 8080);
    let (_, checks) = get(&c, "/v1/agent/checks").await?;
    assert_eq!(checks["service:web-1:2"]["Name"], "second");
    assert_eq!(
        checks["service:web-1:1"]["Status"], "critical",
        "TTL checks start critical"
    );

    // Nothing passes yet; all are listed without ?passing, with serfHealth first.
    let (_, all) = get(&c, "/v1/health/service/web").await?;
    assert_eq!(ids(&all), ["web-1", "web-2"]);
    assert_eq!(all[0]["Checks"][0]["CheckID"], "serfHealth");
    assert_eq!(
        get(&c, "/v1/health/service/web?passing").await?.1,
        json!([])
    );

    for id in ["service:web-1:1", "service:web-1:2"] {
        let r = put(
            &c,
            &format!("/v1/agent/check/pass/{id}?note=ok"),
            json!(null),
        )
        .await?;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(
        ids(&get(&c, "/v1/health/service/web?passing=1").await?.1),
        ["web-1"]
    );
    assert_eq!(
        ids(&get(&c, "/v1/health/service/web?tag=primary").await?.1),
        ["web-1"]
    );
    assert_eq!(
        ids(&get(&c, "/v1/health/service/web?tag=v1&tag=primary")
            .await?
            .1),
        ["web-1"]
    );
    let (_, cat) = get(&c, "/v1/catalog/services").await?;
    assert_eq!(cat["web"], json!(["primary", "v1"]));
    let (_, cs) = get(&c, "/v1/catalog/service/web?tag=primary").await?;
    assert_eq!(cs[0]["ServiceID"], "web-1");

    // warn keeps it out of ?passing; update takes Status/Output.
    put(&c, "/v1/agent/check/warn/service:web-1:1", json!(null))
        .await?
        .error_for_status()?;
    assert_eq!(
        get(&c, "/v1/health/service/web?passing").await?.1,
        json!([])
    );
    put(
        &c,
        "/v1/agent/check/update/service:web-1:1",
        json!({"Status": "passing", "Output": "fine"}),
    )
    .await?
    .error_for_status()?;
    let (_, checks) = get(&c, "/v1/agent/checks").await?;
    assert_eq!(
        (
            checks["service:web-1:1"]["Status"].as_str(),
            checks["service:web-1:1"]["Output"].as_str()
        ),
        (Some("passing"), Some("fine"))
    );

    // Deregister removes the instance and its checks.
    put(&c, "/v1/agent/service/deregister/web-1", json!(null))
        .await?
        .error_for_status()?;
    assert_eq!(ids(&get(&c, "/v1/health/service/web").await?.1), ["web-2"]);
    assert!(get(&c, "/v1/agent/checks")
        .await?
        .1
        .get("service:web-1:1")
        .is_none());
    Ok(())
}

#[tokio::test]
async fn bad_catalog_input_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let before = node.status().await?["applied_index"].as_u64().unwrap();
    let bad = [
        json!({"name": "bad name", "port": 80}),
        json!({"name": "web", "kind": "teleporter"}),
        json!({"name": "web", "port": 0}),
        json!({"name": "web", "port": 70000}),
        json!({"name": "web", "check": {"ttl": "soon"}}),
        json!({"name": "web", "check": {"grpc": "127.0.0.1:1", "interval": "10s"}}),
    ];
    for body in bad {
        let r = put(&c, "/v1/agent/service/register", body.clone()).await?;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let e: Value = r.json()?;
        assert_eq!(e["error"]["code"], "LUCID_ERR_1004");
    }
    let r = c
        .call(Method::PUT, "/v1/agent/service/register", "{nope")
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let after = node.status().await?["applied_index"].as_u64().unwrap();
    assert_eq!(after, before, "refused input must not reach the log");
    // Unknown targets are decided by the node applying the command (a follower's replica may
    // lag), so they pass through the log but change nothing.
    for path in [
        "/v1/agent/check/pass/nope",
        "/v1/agent/service/deregister/nope",
        "/v1/agent/check/deregister/nope",
    ] {
        let r = put(&c, path, json!(null)).await?;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = put(
        &c,
        "/v1/agent/check/register",
        json!({"name": "orphan", "ttl": "5s", "serviceid": "ghost"}),
    )
    .await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&c, "/v1/agent/services").await?.1, json!({}));
    assert_eq!(get(&c, "/v1/agent/checks").await?.1, json!({}));
    Ok(())
}

#[tokio::test]
async fn health_blocking_query_wakes_only_for_its_service() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    put(
        &c,
        "/v1/agent/service/register",
        json!({"name": "a", "id": "a-1", "check": {"ttl": "30s"}}),
    )
    .await?
    .error_for_status()?;
    put(
        &c,
        "/v1/agent/service/register",
        json!({"name": "b", "id": "b-1"}),
    )
    .await?
    .error_for_status()?;
    let (idx, _) = get(&c, "/v1/health/service/a").await?;
    let c2 = c.clone();
    let watcher = tokio::spawn(async move {
        let t = Instant::now();
        let r = get(&c2, &format!("/v1/health/service/a?index={idx}&wait=30s")).await;
        (r, t.elapsed())
    });
    lucid_tests::registry::until_blocking(&c, 1).await?;
    put(
        &c,
        "/v1/agent/service/register",
        json!({"name": "b", "id": "b-2"}),
    )
    .await?
    .error_for_status()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !watcher.is_finished(),
        "a change to service b answered a watcher of a"
    );
    put(&c, "/v1/agent/check/pass/service:a-1", json!(null))
        .await?
        .error_for_status()?;
    let (r, took) = watcher.await?;
    let (new_idx, v) = r?;
    assert!(new_idx > idx && took < Duration::from_secs(10));
    assert_eq!(v[0]["Checks"][1]["Status"], "passing");
    Ok(())
}

#[tokio::test]
async fn registrations_replicate_through_followers() -> anyhow::Result<()> {
    let _serial = cluster_lock().await;
    let c = Cluster::start(3, &[]).await?;
    let leader = c.wait_leader(Duration::from_secs(10)).await?;
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    put(
        &c.node(f1).client(),
        "/v1/agent/service/register",
        json!({"name": "svc", "id": "svc-1", "port": 1}),
    )
    .await?
    .error_for_status()?;
    let (_, v) = get(&c.node(f2).client(), "/v1/health/service/svc").await?;
    assert_eq!(ids(&v), ["svc-1"]);
    crate::cluster::converge(&c).await?;
    for (_, n) in c.running() {
        let (_, v) = get(&n.client(), "/v1/health/service/svc?stale").await?;
        assert_eq!(ids(&v), ["svc-1"], "node {}", n.spec.node_id);
    }
    Ok(())
}

fn code_of(r: &lucid_client::Response) -> String {
    r.json::<Value>()
        .map(|v| v["error"]["code"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn native_controller_api_maintenance_and_catalog_register() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();

    // Native API: generated ids, 409/400/404 with the platform's codes.
    let r = c
        .call(
            Method::POST,
            "/services/register",
            json!({"name": "chain", "port": 7000, "meta": {"plane": "ops"}}).to_string(),
        )
        .await?;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let id = r.json::<Value>()?["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("chain-") && id.len() == "chain-".len() + 8,
        "{id}"
    );
    let dup = json!({"name": "chain", "id": id, "port": 7000}).to_string();
    let r = c.call(Method::POST, "/services/register", dup).await?;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (StatusCode::CONFLICT, "LUCID_ERR_1003")
    );
    let r = c
        .call(
            Method::POST,
            "/services/register",
            json!({"name": "Bad!"}).to_string(),
        )
        .await?;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (StatusCode::BAD_REQUEST, "LUCID_ERR_1004")
    );
    let (_, all) = get(&c, "/services").await?;
    assert_eq!(all["services"][0]["name"], "chain");
    let (_, one) = get(&c, "/services/chain").await?;
    assert_eq!(one["instances"][0]["meta"]["plane"], "ops");
    let r = c.call(Method::GET, "/services/nope", "").await?;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (StatusCode::NOT_FOUND, "LUCID_ERR_1002")
    );

    // Maintenance takes the instance out of ?passing and puts it back.
    let reg = json!({"name": "m", "id": "m-1", "check": {"ttl": "60s", "status": "passing"}});
    put(&c, "/v1/agent/service/register", reg)
        .await?
        .error_for_status()?;
    assert_eq!(
        ids(&get(&c, "/v1/health/service/m?passing").await?.1),
        ["m-1"]
    );
    put(
        &c,
        "/v1/agent/service/maintenance/m-1?enable=true&reason=upgrade",
        json!(null),
    )
    .await?
    .error_for_status()?;
    assert_eq!(get(&c, "/v1/health/service/m?passing").await?.1, json!([]));
    put(
        &c,
        "/v1/agent/service/maintenance/m-1?enable=false",
        json!(null),
    )
    .await?
    .error_for_status()?;
    assert_eq!(
        ids(&get(&c, "/v1/health/service/m?passing").await?.1),
        ["m-1"]
    );
    let r = put(
        &c,
        "/v1/agent/service/maintenance/ghost?enable=true",
        json!(null),
    )
    .await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Catalog register/deregister.
    let body = json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "ext", "ID": "ext-1", "Port": 443}});
    put(&c, "/v1/catalog/register", body)
        .await?
        .error_for_status()?;
    assert_eq!(ids(&get(&c, "/v1/health/service/ext").await?.1), ["ext-1"]);
    let r = put(
        &c,
        "/v1/catalog/register",
        json!({"Node": "n1", "Service": {"Service": "ext"}, "Check": {"Status": "passing"}}),
    )
    .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    put(
        &c,
        "/v1/catalog/deregister",
        json!({"Node": "n1", "ServiceID": "ext-1"}),
    )
    .await?
    .error_for_status()?;
    assert_eq!(get(&c, "/v1/health/service/ext").await?.1, json!([]));

    // DELETE /services/<name> removes every instance.
    let r = c
        .call(Method::DELETE, "/services/chain", "")
        .await?
        .error_for_status()?;
    assert_eq!(r.json::<Value>()?["deregistered"], 1);
    let r = c.call(Method::DELETE, "/services/chain", "").await?;
    assert_eq!(
        (r.status, code_of(&r).as_str()),
        (StatusCode::NOT_FOUND, "LUCID_ERR_1002")
    );
    Ok(())
}

fn wakeups(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("lucid_blocking_query_wakeups_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_change_to_one_service_does_not_wake_watchers_of_another() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    put(
        &c,
        "/v1/agent/service/register",
        json!({"name": "b", "id": "b-1"}),
    )
    .await?
    .error_for_status()?;
    let (idx, _) = get(&c, "/v1/health/service/b").await?;
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let c = c.clone();
        watchers.push(tokio::spawn(async move {
            get(&c, &format!("/v1/health/service/b?index={idx}&wait=60s")).await
        }));
    }
    lucid_tests::registry::until_blocking(&c, 100).await?;
    let metrics = || async {
        Ok::<_, anyhow::Error>(String::from_utf8(
            c.call(Method::GET, "/metrics", "").await?.body.to_vec(),
        )?)
    };
    let before = wakeups(&metrics().await?);
    for i in 0..5 {
        put(
            &c,
            "/v1/agent/service/register",
            json!({"name": "a", "id": format!("a-{i}")}),
        )
        .await?
        .error_for_status()?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        wakeups(&metrics().await?),
        before,
        "changes to service a woke watchers of b"
    );
    assert!(watchers.iter().all(|w| !w.is_finished()));
    put(
        &c,
        "/v1/agent/service/register",
        json!({"name": "b", "id": "b-2"}),
    )
    .await?
    .error_for_status()?;
    for w in watchers {
        let (new_idx, v) = w.await??;
        assert!(new_idx > idx);
        assert_eq!(v.as_array().map(Vec::len), Some(2));
    }
    assert!(wakeups(&metrics().await?) >= before + 100);
    Ok(())
}
