//! `lucid-registry` child processes for tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::PoisonError;
use std::time::Duration;

use anyhow::Context;
use lucid_client::RegistryClient;

use crate::bins::bin;
use crate::procs::{listeners, terminate, Log};
use crate::wait;

/// How a node is started.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub bootstrap: bool,
    /// HTTP addresses to join through.
    pub join: Vec<String>,
    /// Fixed addresses (a restart keeps its ports); `None` binds port 0.
    pub http_addr: Option<String>,
    pub raft_addr: Option<String>,
    pub dns_addr: Option<String>,
    pub extra: Vec<String>,
    /// Run inside this network namespace (`ip netns exec`; see [`crate::netns`]).
    pub netns: Option<String>,
}

/// `<parent of data_dir>/ca-key.secret`, created (random, 0600) if absent.
fn shared_secret(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = data_dir.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir)?;
    let path = dir.join("ca-key.secret");
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        std::io::Write::write_all(&mut f, secret.as_bytes())?;
    }
    Ok(path)
}

/// A running registry; killed (SIGKILL) when dropped.
pub struct RegistryProc {
    child: Child,
    pub spec: NodeSpec,
    pub http: String,
    pub raft: String,
    /// DNS address (UDP and TCP).
    pub dns: String,
    log: Log,
}

impl RegistryProc {
    /// Spawn and wait until both listeners are bound.
    pub fn spawn(spec: NodeSpec) -> anyhow::Result<RegistryProc> {
        let mut cmd = match &spec.netns {
            Some(ns) => {
                // `ip netns exec` execs the registry itself, so the child's PID is the node's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("lucid-registry"));
                c
            }
            None => Command::new(bin("lucid-registry")),
        };
        cmd.arg("--node-id")
            .arg(spec.node_id.to_string())
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .arg("--http-addr")
            .arg(spec.http_addr.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--raft-addr")
            .arg(spec.raft_addr.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--dns-addr")
            .arg(spec.dns_addr.as_deref().unwrap_or("127.0.0.1:0"))
            // Tests share two cores with several nodes; keep elections calm but fast.
            .args(["--heartbeat-ms", "100"]);
        if spec.bootstrap {
            cmd.arg("--bootstrap");
        }
        for j in &spec.join {
            cmd.arg("--join").arg(j);
        }
        // Every node of a test cluster shares one CA key secret (beside the data dirs), as
        // an operator's nodes share one file.
        if !spec
            .extra
            .iter()
            .any(|a| a == "--ca-key-secret-file" || a == "--dev")
        {
            cmd.arg("--ca-key-secret-file")
                .arg(shared_secret(&spec.data_dir)?);
        }
        cmd.args(&spec.extra)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning lucid-registry")?;
        let (addrs, log) = listeners(
            &mut child,
            &["http", "raft", "dns"],
            &format!("node {}", spec.node_id),
        )?;
        let addr = |k: &str| addrs.get(k).cloned().unwrap_or_default();
        let (http, raft, dns) = (addr("http"), addr("raft"), addr("dns"));
        Ok(RegistryProc {
            child,
            spec,
            http,
            raft,
            dns,
            log,
        })
    }

    pub fn client(&self) -> RegistryClient {
        RegistryClient::new(&self.http)
    }

    /// The HTTPS listener's address, once the node has logged it (cluster TLS only).
    pub fn https(&self) -> Option<String> {
        self.log()
            .lines()
            .find_map(|l| l.split("listening https ").nth(1))
            .map(|a| a.trim().to_owned())
    }

    /// The `--acl-bootstrap-token` this node was started with, if any.
    pub fn boot_token(&self) -> Option<String> {
        let i = self
            .spec
            .extra
            .iter()
            .position(|a| a == "--acl-bootstrap-token")?;
        self.spec.extra.get(i + 1).cloned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; the exit status.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        terminate(&mut self.child, Duration::from_secs(15))
    }

    /// Has the process exited (e.g. refused to start)?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }

    /// A spec that restarts this node on the same ports and data.
    pub fn restart_spec(&self) -> NodeSpec {
        NodeSpec {
            http_addr: Some(self.http.clone()),
            raft_addr: Some(self.raft.clone()),
            dns_addr: Some(self.dns.clone()),
            bootstrap: false,
            ..self.spec.clone()
        }
    }

    /// `/status` as JSON.
    pub async fn status(&self) -> anyhow::Result<serde_json::Value> {
        // With ACLs, anonymous callers see no peer addresses: use the management token.
        let c = match self.boot_token() {
            Some(t) => self.client().with_token(t),
            None => self.client(),
        };
        Ok(serde_json::to_value(c.status().await?)?)
    }
}

impl Drop for RegistryProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The count of blocking queries waiting in the node `c` talks to (`/metrics`).
pub async fn blocking_waiting(c: &RegistryClient) -> anyhow::Result<u64> {
    let r = c.call(http::Method::GET, "/metrics", "").await?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("lucid_blocking_queries_waiting "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

/// Wait until at least `n` blocking queries wait in the node `c` talks to: they are in
/// flight, so a test that then checks one was *not* answered cannot pass by being early.
pub async fn until_blocking(c: &RegistryClient, n: u64) -> anyhow::Result<()> {
    wait::until(
        &format!("{n} blocking queries waiting"),
        Duration::from_secs(30),
        || async { Ok((blocking_waiting(c).await? >= n).then_some(())) },
    )
    .await
}

/// Wait until the node `c` talks to has a mesh CA root (the first leader creates it).
pub async fn wait_ca_root(c: &RegistryClient) -> anyhow::Result<()> {
    wait::until("the CA root", Duration::from_secs(20), || async {
        let r = c
            .call(http::Method::GET, "/v1/connect/ca/roots", "")
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        Ok((v["ActiveRootID"].as_str().is_some_and(|s| !s.is_empty())).then_some(()))
    })
    .await
}

/// Only one multi-node cluster at a time: the machines have two cores. (Each test has its own
/// runtime, so this is a runtime-agnostic async lock held for the whole test.)
pub async fn cluster_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Several registry nodes in one temporary directory.
pub struct Cluster {
    pub nodes: Vec<Option<RegistryProc>>,
    pub dir: tempfile::TempDir,
    /// Specs of killed nodes, for restarting them on the same ports.
    parked: Vec<Option<NodeSpec>>,
    extra: Vec<String>,
}

impl Cluster {
    /// Start `n` nodes: node 1 bootstraps, the rest join through it; wait for all voters.
    pub async fn start(n: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
        Self::start_with(n, extra, |_, _| {}).await
    }

    /// [`Cluster::start`], with `place(i, spec)` adjusting node `i`'s spec before it starts
    /// (addresses, a network namespace).
    pub async fn start_with(
        n: usize,
        extra: &[&str],
        place: impl Fn(usize, &mut NodeSpec),
    ) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut spec = NodeSpec {
            node_id: 1,
            data_dir: dir.path().join("n1"),
            bootstrap: true,
            extra: extra.clone(),
            ..Default::default()
        };
        place(0, &mut spec);
        let first = RegistryProc::spawn(spec)?;
        let seed = first.http.clone();
        let mut c = Cluster {
            nodes: vec![Some(first)],
            dir,
            parked: vec![None],
            extra,
        };
        c.wait_leader(Duration::from_secs(20)).await?;
        for id in 2..=n as u64 {
            let mut spec = NodeSpec {
                node_id: id,
                data_dir: c.dir.path().join(format!("n{id}")),
                join: vec![seed.clone()],
                extra: c.extra.clone(),
                ..Default::default()
            };
            place(id as usize - 1, &mut spec);
            c.nodes.push(Some(RegistryProc::spawn(spec)?));
            c.parked.push(None);
        }
        c.wait_voters(n, Duration::from_secs(60)).await?;
        Ok(c)
    }

    pub fn node(&self, i: usize) -> &RegistryProc {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    /// Running nodes with their index.
    pub fn running(&self) -> impl Iterator<Item = (usize, &RegistryProc)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// Wait until every running node agrees on one leader; its index.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        match self.wait_leader_inner(timeout).await {
            Ok(i) => Ok(i),
            Err(e) => Err(e.context(self.diagnostics().await)),
        }
    }

    /// Every node's `/status` and the end of its log, for failure messages.
    pub async fn diagnostics(&self) -> String {
        let mut out = String::from("cluster state:");
        for (i, n) in self.running() {
            let st = match n.status().await {
                Ok(v) => v.to_string(),
                Err(e) => format!("status failed: {e}"),
            };
            let log = n.log();
            let lines: Vec<&str> = log.lines().collect();
            for (j, l) in lines.iter().enumerate() {
                if l.contains("panicked at") || l.contains("cutting a torn") {
                    out.push_str(&format!(
                        "\n[node {}] {}",
                        n.spec.node_id,
                        lines[j..(j + 3).min(lines.len())].join(" | ")
                    ));
                }
            }
            let tail: Vec<&str> = lines.iter().rev().take(15).copied().collect();
            out.push_str(&format!(
                "\n--- node index {i} (id {}): {st}\n{}",
                n.spec.node_id,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }

    async fn wait_leader_inner(&self, timeout: Duration) -> anyhow::Result<usize> {
        wait::until("a leader every running node agrees on", timeout, || async {
            let mut leader = None;
            for (_, n) in self.running() {
                let st = n.status().await?;
                let Some(id) = st["leader"]["id"].as_u64() else {
                    return Ok(None);
                };
                if leader.is_some_and(|l| l != id) {
                    return Ok(None);
                }
                leader = Some(id);
            }
            Ok(leader.and_then(|id| {
                self.running()
                    .find(|(_, n)| n.spec.node_id == id)
                    .map(|(i, _)| i)
            }))
        })
        .await
    }

    /// Wait until the leader reports `n` voters.
    pub async fn wait_voters(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        wait::until(&format!("{n} voters"), timeout, || async {
            let l = self.wait_leader(Duration::from_secs(10)).await?;
            let st = self.node(l).status().await?;
            let voters = st["peers"]
                .as_array()
                .map_or(0, |p| p.iter().filter(|p| p["voter"] == true).count());
            Ok((voters == n).then_some(()))
        })
        .await
    }

    /// kill -9 node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].take() {
            p.kill9();
            self.parked[i] = Some(p.restart_spec());
        }
    }

    /// Restart node `i` on its old ports and data.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let spec = self.parked[i].take().context("node was not killed")?;
        self.nodes[i] = Some(RegistryProc::spawn(spec)?);
        Ok(())
    }

    /// Wait until every running node has applied at least `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> anyhow::Result<()> {
        wait::until(
            &format!("every node applied index {index}"),
            timeout,
            || async {
                for (_, n) in self.running() {
                    let st = n.status().await?;
                    if st["applied_index"].as_u64().unwrap_or(0) < index {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            },
        )
        .await
    }
}

/// Remove a directory tree if present.
pub fn wipe(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}
