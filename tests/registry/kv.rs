//! Single node: Consul KV wire semantics, blocking queries, durability across kill -9.

use std::time::{Duration, Instant};

use base64::Engine;
use http::{Method, StatusCode};
use lucid_tests::registry::{NodeSpec, RegistryProc};
use lucid_tests::wait;

/// A bootstrapped single node, leader once this returns.
pub async fn single_node(dir: &std::path::Path) -> anyhow::Result<RegistryProc> {
    single_node_with(&dir.join("n1"), &[] as &[&str]).await
}

/// A bootstrapped single-node registry with its data in `data_dir`, started with `flags`,
/// once it leads.
pub async fn single_node_with<S: AsRef<str>>(
    data_dir: &std::path::Path,
    flags: &[S],
) -> anyhow::Result<RegistryProc> {
    let node = RegistryProc::spawn(NodeSpec {
        node_id: 1,
        data_dir: data_dir.to_owned(),
        bootstrap: true,
        extra: flags.iter().map(|f| f.as_ref().to_owned()).collect(),
        ..Default::default()
    })?;
    wait_leader(&node).await?;
    Ok(node)
}

pub async fn wait_leader(node: &RegistryProc) -> anyhow::Result<()> {
    wait::until("node to lead", Duration::from_secs(20), || async {
        Ok((node.status().await?["role"] == "leader").then_some(()))
    })
    .await
}

#[tokio::test]
async fn kv_round_trip_and_consul_semantics() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();

    // Round trip, raw, flags.
    assert!(c.kv_put_query("app/config", "flags=42", "hello").await?);
    let (idx, pairs) = c.kv_get("app/config", "").await?.expect("present");
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].flags, 42);
    assert_eq!(
        pairs[0].modify_index, idx,
        "single-key index is the ModifyIndex"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(b64.decode(pairs[0].value.as_ref().unwrap())?, b"hello");
    assert_eq!(c.kv_get_raw("app/config").await?.unwrap(), "hello");

    // Empty value comes back as null.
    assert!(c.kv_put("app/empty", "").await?);
    let (_, pairs) = c.kv_get("app/empty", "").await?.unwrap();
    assert_eq!(pairs[0].value, None);

    // 404 still carries X-Consul-Index.
    let r = c.call(Method::GET, "/v1/kv/missing", "").await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.consul_index().unwrap() >= 1);
    assert_eq!(r.header("x-consul-knownleader"), Some("true"));
    assert!(r.header("x-consul-lastcontact").is_some());

    // cas=0 creates only when absent; cas=N must match ModifyIndex.
    assert!(c.kv_put_query("lock", "cas=0", "a").await?);
    assert!(!c.kv_put_query("lock", "cas=0", "b").await?);
    let (_, p) = c.kv_get("lock", "").await?.unwrap();
    let m = p[0].modify_index;
    assert!(
        !c.kv_put_query("lock", &format!("cas={}", m + 100), "c")
            .await?
    );
    assert!(c.kv_put_query("lock", &format!("cas={m}"), "d").await?);
    assert_eq!(c.kv_get_raw("lock").await?.unwrap(), "d");
    let (_, p) = c.kv_get("lock", "").await?.unwrap();
    assert_eq!(p[0].create_index, m, "CreateIndex survives updates");

    // recurse, keys, separator.
    for k in ["tree/a", "tree/b/1", "tree/b/2", "tree/c"] {
        assert!(c.kv_put(k, k).await?);
    }
    let (_, all) = c.kv_get("tree/", "recurse").await?.unwrap();
    let keys: Vec<_> = all.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["tree/a", "tree/b/1", "tree/b/2", "tree/c"]);
    let r = c
        .call(Method::GET, "/v1/kv/tree/?keys&separator=/", "")
        .await?;
    let folded: Vec<String> = r.json()?;
    assert_eq!(folded, ["tree/a", "tree/b/", "tree/c"]);
    let r = c.call(Method::GET, "/v1/kv/?keys", "").await?;
    let every: Vec<String> = r.json()?;
    assert!(every.len() >= 7);

    // Delete: single, cas, recurse; the prefix index keeps moving forward.
    let (before, _) = c.kv_get("tree/", "recurse").await?.unwrap();
    assert!(c.kv_delete("tree/a", "").await?);
    let (_, p) = c.kv_get("tree/c", "").await?.unwrap();
    assert!(
        !c.kv_delete("tree/c", &format!("cas={}", p[0].modify_index + 1))
            .await?
    );
    assert!(
        c.kv_delete("tree/c", &format!("cas={}", p[0].modify_index))
            .await?
    );
    let (after, left) = c.kv_get("tree/", "recurse").await?.unwrap();
    assert!(
        after > before,
        "deletes move the prefix index ({before} -> {after})"
    );
    assert_eq!(left.len(), 2);
    assert!(c.kv_delete("tree/", "recurse").await?);
    assert!(c.kv_get("tree/", "recurse").await?.is_none());

    // Consistency modes answer the same on a single node.
    for q in ["stale", "consistent"] {
        assert_eq!(c.kv_get("lock", q).await?.unwrap().1[0].key, "lock");
    }
    let r = c
        .call(Method::GET, "/v1/kv/lock?stale&consistent", "")
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn kv_rejects_bad_input_with_reasons() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let idx_before = node.status().await?["applied_index"].as_u64().unwrap();

    let check = |r: &lucid_client::Response, status: StatusCode, code: &str| {
        assert_eq!(
            r.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&r.body)
        );
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["error"]["code"], code);
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    };
    // Value over 512 KiB, body over 1 MiB.
    let r = c
        .call(Method::PUT, "/v1/kv/big", vec![b'x'; 512 * 1024 + 1])
        .await?;
    check(&r, StatusCode::PAYLOAD_TOO_LARGE, "LUCID_ERR_1004");
    let r = c
        .call(Method::PUT, "/v1/kv/huge", vec![b'x'; 2 * 1024 * 1024])
        .await?;
    check(&r, StatusCode::PAYLOAD_TOO_LARGE, "LUCID_ERR_1004");
    // Exactly 512 KiB is fine.
    assert!(c.kv_put("big", vec![b'y'; 512 * 1024]).await?);
    let r = c.call(Method::PUT, "/v1/kv/x?cas=abc", "v").await?;
    check(&r, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    let r = c.call(Method::PUT, "/v1/kv/x?flags=-1", "v").await?;
    check(&r, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    let r = c.call(Method::PUT, "/v1/kv/", "v").await?;
    check(&r, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    let r = c.call(Method::DELETE, "/v1/kv/", "").await?;
    check(&r, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    let r = c.call(Method::PUT, "/v1/kv/x?acquire=abc", "v").await?;
    check(&r, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    let r = c
        .call(Method::GET, "/v1/kv/x?index=1&wait=forever", "")
        .await?;
    check(&r, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    let r = c.call(Method::GET, "/v1/nope", "").await?;
    check(&r, StatusCode::NOT_FOUND, "LUCID_ERR_1002");
    // Only the one good write above changed anything.
    let idx_after = node.status().await?["applied_index"].as_u64().unwrap();
    assert_eq!(idx_after, idx_before + 1);
    assert!(c.kv_get("x", "").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn blocking_query_wakes_on_change_and_honours_wait() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    assert!(c.kv_put("watched", "v1").await?);
    let (idx, _) = c.kv_get("watched", "").await?.unwrap();

    // No change: returns after about `wait` with the same index.
    let t = Instant::now();
    let r = c
        .call(
            Method::GET,
            &format!("/v1/kv/watched?index={idx}&wait=400ms"),
            "",
        )
        .await?;
    let took = t.elapsed();
    assert_eq!(r.consul_index(), Some(idx));
    assert!(
        took >= Duration::from_millis(390),
        "returned early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "overslept: {took:?}");

    // A change to another key does not end the wait; a change to this key does.
    let c2 = c.clone();
    let watcher = tokio::spawn(async move {
        let t = Instant::now();
        let r = c2
            .call(
                Method::GET,
                &format!("/v1/kv/watched?index={idx}&wait=30s"),
                "",
            )
            .await;
        (r, t.elapsed())
    });
    lucid_tests::registry::until_blocking(&c, 1).await?;
    assert!(c.kv_put("unrelated", "x").await?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !watcher.is_finished(),
        "an unrelated write woke the watcher"
    );
    assert!(c.kv_put("watched", "v2").await?);
    let (r, took) = watcher.await?;
    let r = r?;
    assert!(took < Duration::from_secs(10));
    assert!(r.consul_index().unwrap() > idx);
    let pairs: Vec<lucid_client::KvPair> = r.json()?;
    assert_eq!(pairs[0].value.as_deref(), Some("djI=")); // "v2"
    Ok(())
}

#[tokio::test]
async fn kill9_keeps_every_acknowledged_write() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = single_node(dir.path()).await?;
    let c = node.client();
    let mut acked = Vec::new();
    for i in 0..200 {
        let key = format!("durable/{i:04}");
        if c.kv_put(&key, format!("value-{i}")).await? {
            acked.push(key);
        }
    }
    assert_eq!(acked.len(), 200);
    let spec = node.restart_spec();
    node.kill9();
    let node = RegistryProc::spawn(spec)?;
    wait_leader(&node).await?;
    let c = node.client();
    let (_, pairs) = c
        .kv_get("durable/", "recurse")
        .await?
        .expect("data survived");
    assert_eq!(pairs.len(), acked.len());
    for (i, key) in acked.iter().enumerate() {
        assert_eq!(c.kv_get_raw(key).await?.unwrap(), format!("value-{i}"));
    }
    Ok(())
}
