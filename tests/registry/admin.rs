//! Cluster admin: join rules, peer removal, leadership transfer, backup/restore, and writes
//! with no quorum. Every refusal is a 4xx/503 with a `LUCID_ERR_` code and changes nothing.

use std::time::Duration;

use http::{Method, StatusCode};
use lucid_client::Response;
use lucid_tests::registry::{cluster_lock, Cluster};
use lucid_tests::wait;
use serde_json::json;

use crate::cluster::{converge, replicas};

fn assert_refused(r: &Response, status: StatusCode, code: &str) {
    assert_eq!(
        r.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    let v: serde_json::Value = r.json().expect("JSON error envelope");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

async fn voters(c: &Cluster, i: usize) -> anyhow::Result<usize> {
    let peers: Vec<String> = c
        .node(i)
        .client()
        .call(Method::GET, "/v1/status/peers", "")
        .await?
        .json()?;
    Ok(peers.len())
}

#[tokio::test]
async fn membership_changes_and_their_refusals() -> anyhow::Result<()> {
    let _serial = cluster_lock().await;
    let c = Cluster::start(3, &[]).await?;
    let leader = c.wait_leader(Duration::from_secs(10)).await?;
    let follower = (leader + 1) % 3;
    let fc = c.node(follower).client();
    let n3 = c.node(2);

    // Joining twice with the same identity is a no-op (retries, wiped nodes).
    let same = json!({"node_id": 3, "raft_addr": n3.raft, "http_addr": n3.http}).to_string();
    let r = fc
        .call(Method::POST, "/v1/operator/raft/join", same)
        .await?;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json::<serde_json::Value>()?["already_member"], true);
    // Same id, other address; other id, same address: conflicts.
    let moved = json!({"node_id": 3, "raft_addr": "127.0.0.1:1", "http_addr": n3.http}).to_string();
    assert_refused(
        &fc.call(Method::POST, "/v1/operator/raft/join", moved)
            .await?,
        StatusCode::CONFLICT,
        "LUCID_ERR_1003",
    );
    let clash = json!({"node_id": 9, "raft_addr": n3.raft, "http_addr": "127.0.0.1:2"}).to_string();
    assert_refused(
        &fc.call(Method::POST, "/v1/operator/raft/join", clash)
            .await?,
        StatusCode::CONFLICT,
        "LUCID_ERR_1003",
    );
    // Malformed bodies and addresses.
    for bad in [
        "{not json",
        "{\"node_id\": 4}",
        "{\"node_id\":4,\"raft_addr\":\"nowhere\",\"http_addr\":\"127.0.0.1:5\"}",
        "{\"node_id\":4,\"raft_addr\":\"0.0.0.0:5\",\"http_addr\":\"127.0.0.1:5\"}",
    ] {
        let r = fc.call(Method::POST, "/v1/operator/raft/join", bad).await?;
        assert_refused(&r, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    }
    // Unknown peer (an error, as Consul answers: a client reads 404 on DELETE as done);
    // no peer given.
    assert_refused(
        &fc.call(Method::DELETE, "/v1/operator/raft/peer?id=77", "")
            .await?,
        StatusCode::BAD_REQUEST,
        "LUCID_ERR_1004",
    );
    assert_refused(
        &fc.call(Method::DELETE, "/v1/operator/raft/peer", "")
            .await?,
        StatusCode::BAD_REQUEST,
        "LUCID_ERR_1004",
    );
    assert_eq!(
        voters(&c, follower).await?,
        3,
        "refusals changed the membership"
    );

    // Transfer leadership to a chosen follower.
    let target = c.node(follower).spec.node_id;
    let r = fc
        .call(
            Method::POST,
            &format!("/v1/operator/raft/transfer-leader?id={target}"),
            "",
        )
        .await?;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let now = c.wait_leader(Duration::from_secs(10)).await?;
    assert_eq!(c.node(now).spec.node_id, target);
    assert_refused(
        &fc.call(
            Method::POST,
            &format!("/v1/operator/raft/transfer-leader?id={target}"),
            "",
        )
        .await?,
        StatusCode::BAD_REQUEST,
        "LUCID_ERR_1004",
    );

    // Remove two voters (by id and by address); the last one cannot be removed.
    let others: Vec<usize> = (0..3).filter(|i| *i != now).collect();
    let lc = c.node(now).client();
    let r = lc
        .call(
            Method::DELETE,
            &format!(
                "/v1/operator/raft/peer?id={}",
                c.node(others[0]).spec.node_id
            ),
            "",
        )
        .await?;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = lc
        .call(
            Method::DELETE,
            &format!("/v1/operator/raft/peer?address={}", c.node(others[1]).raft),
            "",
        )
        .await?;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    wait::until("one voter left", Duration::from_secs(10), || async {
        Ok((voters(&c, now).await? == 1).then_some(()))
    })
    .await?;
    let last = c.node(now).spec.node_id;
    assert_refused(
        &lc.call(
            Method::DELETE,
            &format!("/v1/operator/raft/peer?id={last}"),
            "",
        )
        .await?,
        StatusCode::BAD_REQUEST,
        "LUCID_ERR_1004",
    );
    assert!(
        lc.kv_put("still", "works").await?,
        "the single remaining voter still takes writes"
    );
    Ok(())
}

#[tokio::test]
async fn backup_and_restore_through_any_node() -> anyhow::Result<()> {
    let _serial = cluster_lock().await;
    let c = Cluster::start(3, &[]).await?;
    let leader = c.wait_leader(Duration::from_secs(10)).await?;
    let fc = c.node((leader + 1) % 3).client();
    for i in 0..20 {
        assert!(fc.kv_put(&format!("b/{i}"), format!("orig{i}")).await?);
    }
    let reg = json!({"name": "kept", "id": "kept-1", "port": 9, "check": {"ttl": "30s", "status": "passing"}});
    fc.call(Method::PUT, "/v1/agent/service/register", reg.to_string())
        .await?
        .error_for_status()?;
    let backup = fc
        .call(Method::GET, "/v1/snapshot", "")
        .await?
        .error_for_status()?;
    assert!(backup.consul_index().is_some());
    let blob = backup.body.clone();

    // Change things after the backup.
    assert!(fc.kv_delete("b/", "recurse").await?);
    assert!(fc.kv_put("after-backup", "x").await?);
    fc.call(Method::PUT, "/v1/agent/service/deregister/kept-1", "")
        .await?
        .error_for_status()?;

    // Garbage is refused and changes nothing.
    for junk in [b"not gzip".to_vec(), gzip(b"LUCIDSN1\x00\x00\x00\x05k:abc")] {
        let r = fc.call(Method::PUT, "/v1/snapshot", junk).await?;
        assert_refused(&r, StatusCode::BAD_REQUEST, "LUCID_ERR_1004");
    }
    assert_eq!(fc.kv_get_raw("after-backup").await?.unwrap(), "x");

    // Restore through a follower; every replica ends with the backed-up state.
    let r = fc.call(Method::PUT, "/v1/snapshot", blob).await?;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    converge(&c).await?;
    let views = replicas(&c, "").await?;
    assert!(views.iter().all(|v| v == &views[0]));
    assert_eq!(views[0].len(), 20);
    assert!(!views[0].contains_key("after-backup"));
    assert_eq!(fc.kv_get_raw("b/7").await?.unwrap(), "orig7");
    // The catalog comes back too, check status included.
    let health: serde_json::Value = fc
        .call(Method::GET, "/v1/health/service/kept?passing", "")
        .await?
        .json()?;
    assert_eq!(health[0]["Service"]["ID"], "kept-1", "{health}");
    Ok(())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    // A minimal stored-block gzip, so the test needs no compression crate.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.push(1);
    let len = data.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= *b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn without_quorum_writes_get_503_and_stale_reads_still_work() -> anyhow::Result<()> {
    let _serial = cluster_lock().await;
    let mut c = Cluster::start(3, &[]).await?;
    let c0 = c.node(0).client();
    assert!(c0.kv_put("before", "1").await?);
    converge(&c).await?;
    c.kill9(1);
    c.kill9(2);
    // Once node 1 knows it has lost its quorum (leader or not), it must refuse writes
    // without appending them.
    wait::until(
        "node 1 to notice it lost quorum",
        Duration::from_secs(10),
        || async {
            let st = c.node(0).status().await?;
            Ok(
                (st["role"] != "leader" || st["quorum_ack_ms"].as_u64().unwrap_or(0) > 1000)
                    .then_some(()),
            )
        },
    )
    .await?;
    let lone = c.node(0).client();
    let r = lone.call(Method::PUT, "/v1/kv/nope", "v").await?;
    assert_refused(&r, StatusCode::SERVICE_UNAVAILABLE, "LUCID_ERR_1205");
    // Stale reads are served from the local replica.
    let (_, p) = lone.kv_get("before", "stale").await?.unwrap();
    assert_eq!(p[0].key, "before");
    // Quorum back: writes work, and the refused write never appeared.
    c.restart(1)?;
    c.wait_leader(Duration::from_secs(30)).await?;
    wait::until("a write with quorum", Duration::from_secs(30), || async {
        Ok(lone.kv_put("after", "2").await.ok().filter(|ok| *ok))
    })
    .await?;
    assert!(lone.kv_get("nope", "").await?.is_none());
    Ok(())
}
