//! Three nodes: replication through every node, leader kill -9 and failover, catch-up after
//! restart, and a wiped node brought back by snapshot.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::Method;
use lucid_tests::registry::{cluster_lock, wipe, Cluster};
use lucid_tests::wait;

/// Every node's view of `prefix` (read locally with ?stale), as key -> base64 value.
pub async fn replicas(
    c: &Cluster,
    prefix: &str,
) -> anyhow::Result<Vec<BTreeMap<String, Option<String>>>> {
    let mut out = Vec::new();
    for (_, n) in c.running() {
        let pairs = n
            .client()
            .kv_get(prefix, "recurse&stale")
            .await?
            .map(|(_, p)| p)
            .unwrap_or_default();
        out.push(pairs.into_iter().map(|p| (p.key, p.value)).collect());
    }
    Ok(out)
}

/// Wait until every running node has applied what the leader has.
pub async fn converge(c: &Cluster) -> anyhow::Result<()> {
    let l = c.wait_leader(Duration::from_secs(30)).await?;
    let idx = c.node(l).status().await?["applied_index"]
        .as_u64()
        .unwrap_or(0);
    c.wait_applied(idx, Duration::from_secs(60)).await
}

/// First write that succeeds through any running node.
async fn write_somewhere(c: &Cluster, key: &str) -> anyhow::Result<()> {
    wait::until(
        &format!("a write of {key} to succeed"),
        Duration::from_secs(30),
        || async {
            for (_, n) in c.running() {
                if let Ok(true) = n.client().kv_put(key, "x").await {
                    return Ok(Some(()));
                }
            }
            Ok(None)
        },
    )
    .await
}

#[tokio::test]
async fn three_nodes_replicate_fail_over_and_catch_up() -> anyhow::Result<()> {
    let _serial = cluster_lock().await;
    let mut c = Cluster::start(3, &[]).await?;

    // Writes accepted on every node (followers forward to the leader).
    for (i, n) in c.nodes.iter().flatten().enumerate() {
        for j in 0..20 {
            assert!(
                n.client()
                    .kv_put(&format!("c/{i}-{j}"), format!("{i}:{j}"))
                    .await?
            );
        }
    }
    // A default-mode read on a follower is answered by the leader: it sees every write at once.
    let leader = c.wait_leader(Duration::from_secs(10)).await?;
    let follower = (leader + 1) % 3;
    let (_, all) = c
        .node(follower)
        .client()
        .kv_get("c/", "recurse")
        .await?
        .unwrap();
    assert_eq!(all.len(), 60);

    // Status endpoints agree across the cluster.
    let leader_raft = c.node(leader).raft.clone();
    for (_, n) in c.running() {
        assert_eq!(n.client().leader().await?, leader_raft);
        let peers: Vec<String> = n
            .client()
            .call(Method::GET, "/v1/status/peers", "")
            .await?
            .json()?;
        assert_eq!(peers.len(), 3);
    }
    let conf: serde_json::Value = c
        .node(follower)
        .client()
        .call(Method::GET, "/v1/operator/raft/configuration", "")
        .await?
        .json()?;
    let servers = conf["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert_eq!(servers.iter().filter(|s| s["Leader"] == true).count(), 1);

    // kill -9 the leader: a new one is elected and writes work again.
    let old_id = c.node(leader).spec.node_id;
    c.kill9(leader);
    let t = Instant::now();
    write_somewhere(&c, "after-failover").await?;
    eprintln!("write succeeded {:?} after killing the leader", t.elapsed());
    let new_leader = c.wait_leader(Duration::from_secs(20)).await?;
    assert_ne!(c.node(new_leader).spec.node_id, old_id);
    for (i, n) in c.nodes.iter().flatten().enumerate() {
        assert!(n.client().kv_put(&format!("post/{i}"), "y").await?);
    }

    // The killed node restarts, rejoins without re-initialising, and catches up.
    c.restart(leader)?;
    converge(&c).await?;
    let views = replicas(&c, "").await?;
    assert_eq!(views.len(), 3);
    assert_eq!(views[0].len(), 60 + 1 + 2);
    assert!(views.iter().all(|v| v == &views[0]), "replicas differ");
    let restarted = c.node(leader).log();
    assert!(
        !restarted.contains("bootstrapped a new cluster"),
        "restart must not re-initialise"
    );
    Ok(())
}

#[tokio::test]
async fn wiped_node_is_rebuilt_from_a_snapshot() -> anyhow::Result<()> {
    let _serial = cluster_lock().await;
    let mut c = Cluster::start(3, &["--snapshot-threshold", "50"]).await?;
    let leader = c.wait_leader(Duration::from_secs(10)).await?;
    // Wipe a node that joined (node 1 bootstraps, so it would start a new cluster).
    let victim = if leader == 2 { 1 } else { 2 };
    let lc = c.node(leader).client();
    for i in 0..150 {
        assert!(lc.kv_put(&format!("snap/{i:03}"), format!("v{i}")).await?);
    }
    converge(&c).await?;
    c.kill9(victim);
    wipe(&c.data_dir(victim))?;
    for i in 150..300 {
        assert!(lc.kv_put(&format!("snap/{i:03}"), format!("v{i}")).await?);
    }
    // The leader has compacted its log past what a fresh node would need.
    let purged = wait::until(
        "the leader to purge its log",
        Duration::from_secs(30),
        || async {
            let st = c.node(leader).status().await?;
            Ok(st["purged_index"].as_u64().filter(|p| *p > 10))
        },
    )
    .await?;

    c.restart(victim)?;
    converge(&c).await?;
    let st = c.node(victim).status().await?;
    assert!(
        st["snapshot_index"].as_u64().unwrap_or(0) >= purged,
        "the wiped node should hold a snapshot past the purge point {purged}: {st}"
    );
    let views = replicas(&c, "snap/").await?;
    assert_eq!(views[0].len(), 300);
    assert!(views.iter().all(|v| v == &views[0]), "replicas differ");
    Ok(())
}
