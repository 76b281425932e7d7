//! Crash loop: a write storm while a random node is killed with -9 and restarted, at least
//! 20 times. Afterwards no acknowledged write is missing, replicas are identical, and every
//! store reopened.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lucid_client::RegistryClient;
use lucid_tests::registry::{cluster_lock, Cluster};
use rand::Rng;

use crate::cluster::{converge, replicas};

const ROUNDS: usize = 20;
const WRITERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let _serial = cluster_lock().await;
    // A low snapshot threshold so compaction and snapshot installs happen during the storm.
    let mut c = Cluster::start(3, &["--snapshot-threshold", "200"]).await?;
    let addrs: Vec<String> = c.nodes.iter().flatten().map(|n| n.http.clone()).collect();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (addrs, acked, stop) = (addrs.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let clients: Vec<RegistryClient> =
                addrs.iter().map(|a| RegistryClient::new(a)).collect();
            let mut n = 0u64;
            let mut attempts = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("storm/w{w}/{n:06}");
                let i = rand::rng().random_range(0..clients.len());
                attempts += 1;
                if let Ok(true) = clients[i].kv_put(&key, key.clone()).await {
                    acked.lock().unwrap().insert(key);
                    n += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            attempts
        }));
    }
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(300..900))).await;
        let victim = rand::rng().random_range(0..3);
        eprintln!("--- round {round}: kill -9 node {}", victim + 1);
        c.kill9(victim);
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(100..700))).await;
        c.restart(victim)?;
        c.wait_leader(Duration::from_secs(30)).await?;
    }
    stop.store(true, Ordering::Relaxed);
    let mut attempts = 0;
    for w in writers {
        attempts += w.await?;
    }
    converge(&c).await?;
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{} acknowledged writes out of {attempts} attempts",
        acked.len()
    );
    assert!(
        acked.len() > 100,
        "the storm barely wrote anything: {}",
        acked.len()
    );
    let views = replicas(&c, "storm/").await?;
    for (i, v) in views.iter().enumerate() {
        let missing: Vec<_> = acked
            .iter()
            .filter(|k| !v.contains_key(*k))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "node {} lost acknowledged writes, e.g. {missing:?}",
            i + 1
        );
    }
    assert!(
        views.iter().all(|v| v == &views[0]),
        "replicas differ after the crash loop"
    );
    Ok(())
}
