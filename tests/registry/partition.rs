//! A leader split from its peers while clients still reach it, on three test hosts in network
//! namespaces: default and `?consistent` reads of one register are never stale, no
//! acknowledged write is lost, and `?stale` reads (the positive control) do go stale.
//!
//! The check needs no full linearizability checker: every write carries a unique value, and a
//! read is stale when another write, invoked after the write of the value it returned had
//! completed, itself completed before the read began.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::Method;
use lucid_client::RegistryClient;
use lucid_tests::netns::{self, Hosts};
use lucid_tests::registry::{cluster_lock, Cluster};
use lucid_tests::wait;

const CALL: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    Default,
    Consistent,
    Stale,
}

impl Mode {
    fn query(self) -> &'static str {
        match self {
            Mode::Default => "raw",
            Mode::Consistent => "raw&consistent",
            Mode::Stale => "raw&stale",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Op {
    value: u64,
    invoke: Instant,
    complete: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Read {
    op: Op,
    node: usize,
    mode: Mode,
}

#[derive(Default)]
struct History {
    writes: Vec<Op>,
    reads: Vec<Read>,
    /// Unique keys whose write was acknowledged.
    acked: Vec<u64>,
    /// Read attempts (answered or not) per mode while the split lasted.
    tried_during_split: HashMap<Mode, usize>,
}

/// PUT `key` = `value` through `c`; acknowledged means 200 with body `true`.
async fn put(c: &RegistryClient, key: &str, value: u64) -> bool {
    let path = format!("/v1/kv/{key}");
    matches!(
        c.call_with_timeout(Method::PUT, &path, value.to_string(), CALL).await,
        Ok(r) if r.status == 200 && r.body.as_ref() == b"true"
    )
}

/// Reads whose value had been overwritten (by a write that completed) before they began.
fn stale_reads(h: &History, mode: Mode) -> Vec<Read> {
    let done: HashMap<u64, Instant> = h.writes.iter().map(|w| (w.value, w.complete)).collect();
    let mut by_complete = h.writes.clone();
    by_complete.sort_by_key(|w| w.complete);
    h.reads
        .iter()
        .filter(|r| r.mode == mode)
        .filter(|r| {
            // A value whose write was never acknowledged has no known completion: not stale.
            let Some(&wrote) = done.get(&r.op.value) else {
                return false;
            };
            by_complete
                .iter()
                .take_while(|w| w.complete < r.op.invoke)
                .any(|w| w.invoke > wrote)
        })
        .copied()
        .collect()
}

#[tokio::test]
async fn a_leader_split_from_its_peers_serves_no_stale_default_or_consistent_read(
) -> anyhow::Result<()> {
    if !netns::available() {
        // CI runs as root; say so loudly anywhere else rather than pass in silence.
        eprintln!("SKIPPED: network namespaces need root and iproute2");
        anyhow::ensure!(
            std::env::var_os("CI").is_none(),
            "CI must be able to create network namespaces"
        );
        return Ok(());
    }
    let _serial = cluster_lock().await;
    // Declared before the cluster, so the nodes die before their namespaces go.
    let hosts = Hosts::new(3)?;
    let c = Cluster::start_with(3, &[], |i, spec| {
        let a = hosts.addr(i);
        spec.netns = Some(hosts.ns(i));
        spec.http_addr = Some(format!("{a}:8500"));
        spec.raft_addr = Some(format!("{a}:8300"));
        spec.dns_addr = Some(format!("{a}:8600"));
    })
    .await?;
    let first_leader = c.wait_leader(Duration::from_secs(20)).await?;
    let clients: Vec<RegistryClient> = (0..3).map(|i| c.node(i).client()).collect();
    let t0 = Instant::now();
    anyhow::ensure!(
        put(&clients[first_leader], "reg", 0).await,
        "initial write failed"
    );
    let history = Arc::new(Mutex::new(History::default()));
    history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .writes
        .push(Op {
            value: 0,
            invoke: t0,
            complete: Instant::now(),
        });
    let (stop, split) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let next = Arc::new(AtomicU64::new(1));
    let mut tasks = tokio::task::JoinSet::new();

    // Two register writers and one unique-key writer, each cycling through the nodes.
    for w in 0..3usize {
        let (clients, history, stop, next) =
            (clients.clone(), history.clone(), stop.clone(), next.clone());
        tasks.spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let value = next.fetch_add(1, Ordering::Relaxed);
                let invoke = Instant::now();
                let key = if w == 2 {
                    format!("u/{value}")
                } else {
                    "reg".into()
                };
                let ok = put(&clients[i % 3], &key, value).await;
                let complete = Instant::now();
                {
                    let mut h = history.lock().unwrap_or_else(PoisonError::into_inner);
                    match (ok, w == 2) {
                        (true, true) => h.acked.push(value),
                        (true, false) => h.writes.push(Op {
                            value,
                            invoke,
                            complete,
                        }),
                        (false, _) => {}
                    }
                }
                if !ok {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
    }
    // One reader per node and mode.
    for (node, client) in clients.iter().enumerate() {
        for mode in [Mode::Default, Mode::Consistent, Mode::Stale] {
            let (client, history, stop, split) =
                (client.clone(), history.clone(), stop.clone(), split.clone());
            tasks.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let during = split.load(Ordering::Relaxed);
                    let invoke = Instant::now();
                    let path = format!("/v1/kv/reg?{}", mode.query());
                    let got = client.call_with_timeout(Method::GET, &path, "", CALL).await;
                    let complete = Instant::now();
                    let value = got.ok().filter(|r| r.status == 200).and_then(|r| {
                        std::str::from_utf8(&r.body)
                            .ok()?
                            .trim()
                            .parse::<u64>()
                            .ok()
                    });
                    {
                        let mut h = history.lock().unwrap_or_else(PoisonError::into_inner);
                        if during {
                            *h.tried_during_split.entry(mode).or_default() += 1;
                        }
                        if let Some(value) = value {
                            h.reads.push(Read {
                                op: Op {
                                    value,
                                    invoke,
                                    complete,
                                },
                                node,
                                mode,
                            });
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(if value.is_some() { 5 } else { 50 }))
                        .await;
                }
            });
        }
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    // Split whichever node leads now (leadership may have moved under the storm), and make
    // sure it still called itself leader as the split began: the case under test.
    let leader = c.wait_leader(Duration::from_secs(20)).await?;
    hosts.split(leader)?;
    anyhow::ensure!(
        c.node(leader).status().await?["role"] == "leader",
        "node {} stopped leading before the split",
        leader + 1
    );
    split.store(true, Ordering::Relaxed);
    let split_at = Instant::now();
    // The peers elect a leader of their own; keep the storm going under it for a while.
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = wait::until("a leader among the peers", Duration::from_secs(20), || {
        let c = &c;
        let others = &others;
        async move {
            for &i in others {
                let st = c.node(i).status().await?;
                if let Some(l) = st["leader"]["id"]
                    .as_u64()
                    .filter(|&l| l != leader as u64 + 1)
                {
                    return Ok(Some(l));
                }
            }
            Ok(None)
        }
    })
    .await?;
    // Keep the split for five seconds, and longer if need be until the storm has had writes
    // acknowledged under the new leader: on a loaded 2-core machine five seconds once gave
    // fewer than ten, and the check below would fail for want of a case to test.
    let at_least = Instant::now() + Duration::from_secs(5);
    wait::until(
        "writes acknowledged during the split",
        Duration::from_secs(30),
        || async {
            let h = history.lock().unwrap_or_else(PoisonError::into_inner);
            let n = h.writes.iter().filter(|w| w.invoke > split_at).count();
            Ok((n > 20).then_some(()))
        },
    )
    .await?;
    tokio::time::sleep_until(at_least.into()).await;
    split.store(false, Ordering::Relaxed);
    hosts.heal(leader)?;
    let split_for = split_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r?;
    }

    let h = std::mem::take(&mut *history.lock().unwrap_or_else(PoisonError::into_inner));
    let count = |m: Mode| h.reads.iter().filter(|r| r.mode == m).count();
    let on_old_leader_during = |m: Mode| {
        h.reads
            .iter()
            .filter(|r| r.mode == m && r.node == leader && r.op.invoke > split_at)
            .filter(|r| r.op.invoke < split_at + split_for)
            .count()
    };
    let report = format!(
        "leader n{} split for {split_for:?}, new leader n{new_leader}; {} register writes \
         acknowledged, {} unique keys; reads answered default {} consistent {} stale {}; \
         answered by the old leader during the split: default {} consistent {} stale {}; \
         attempted during the split: {:?}",
        leader + 1,
        h.writes.len(),
        h.acked.len(),
        count(Mode::Default),
        count(Mode::Consistent),
        count(Mode::Stale),
        on_old_leader_during(Mode::Default),
        on_old_leader_during(Mode::Consistent),
        on_old_leader_during(Mode::Stale),
        h.tried_during_split,
    );
    eprintln!("{report}");

    // The storm really ran through the split: writes landed under the new leader.
    let writes_during = h
        .writes
        .iter()
        .filter(|w| w.invoke > split_at && w.complete < split_at + split_for)
        .count();
    anyhow::ensure!(writes_during > 10, "few writes during the split: {report}");
    for m in [Mode::Default, Mode::Consistent] {
        anyhow::ensure!(
            h.tried_during_split.get(&m).copied().unwrap_or(0) > 20,
            "few {m:?} reads were in flight during the split: {report}"
        );
        // The majority side kept answering: the check below runs over real answers.
        let answered = h
            .reads
            .iter()
            .filter(|r| r.mode == m && r.node != leader)
            .filter(|r| r.op.invoke > split_at && r.op.complete < split_at + split_for)
            .count();
        anyhow::ensure!(
            answered > 10,
            "only {answered} {m:?} reads answered during the split: {report}"
        );
        let stale = stale_reads(&h, m);
        anyhow::ensure!(
            stale.is_empty(),
            "{} stale {m:?} reads, first {:?}: {report}",
            stale.len(),
            stale.first()
        );
    }
    // Positive control: the checker does see stale reads when they happen.
    let stale = stale_reads(&h, Mode::Stale);
    anyhow::ensure!(
        stale.iter().any(|r| r.node == leader),
        "the positive control found no stale ?stale read on the split leader: {report}"
    );
    eprintln!("positive control: {} stale ?stale reads", stale.len());

    // Every acknowledged unique-key write is on every node.
    for (i, client) in clients.iter().enumerate() {
        wait::until(
            &format!("node {} to hold every acknowledged key", i + 1),
            Duration::from_secs(30),
            || async {
                let pairs = client
                    .kv_get("u/", "recurse&stale")
                    .await?
                    .map(|(_, p)| p)
                    .unwrap_or_default();
                let have: std::collections::HashSet<&str> =
                    pairs.iter().map(|p| p.key.as_str()).collect();
                let missing = h
                    .acked
                    .iter()
                    .filter(|v| !have.contains(format!("u/{v}").as_str()))
                    .count();
                Ok((missing == 0).then_some(()))
            },
        )
        .await?;
    }
    anyhow::ensure!(!h.acked.is_empty(), "no unique-key write was acknowledged");
    Ok(())
}
