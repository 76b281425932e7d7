//! Health checking by the registry (DESIGN §6). One task per node acts only while its node
//! leads, so checks are never run twice and carry on under a new leader:
//! - HTTP and TCP checks are probed every interval (2xx passing, 429 warning, else critical),
//!   damped by `SuccessBeforePassing` / `FailuresBeforeCritical`;
//! - TTL checks go critical when not refreshed in time (a new leader grants a full TTL);
//! - services critical for longer than `DeregisterCriticalServiceAfter` are deregistered.
//!
//! Only status transitions are written through Raft; probe results that confirm the stored
//! status cost nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use lucid_core::catalog::{Check, CheckKind, CheckStatus};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::types::Command;

const TICK: Duration = Duration::from_millis(250);
const PENDING_FOR: Duration = Duration::from_secs(10);

impl Tracked {
    fn pending_is(&self, s: CheckStatus, now: Instant) -> bool {
        self.pending
            .is_some_and(|(p, at)| p == s && now.duration_since(at) < PENDING_FOR)
    }
}

/// What the leader remembers about one check between ticks (lost on leader change, which
/// only restarts timers).
struct Tracked {
    seen_index: u64,
    status: CheckStatus,
    ttl_from: Instant,
    next_probe: Instant,
    probing: bool,
    successes: u32,
    failures: u32,
    critical_since: Option<Instant>,
    /// Consecutive results needed before a transition (`SuccessBeforePassing`,
    /// `FailuresBeforeCritical`; 0 and 1 both mean "at once").
    need_pass: u32,
    need_fail: u32,
    /// A transition written but not yet seen in the state, and when it was written (a write
    /// that failed is retried once this is older than [`PENDING_FOR`]).
    pending: Option<(CheckStatus, Instant)>,
    reaping: bool,
}

struct Probe {
    check_id: String,
    status: CheckStatus,
    output: String,
}

/// Run until `stop`.
pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Probe>();
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    let mut checks: Vec<Check> = Vec::new();
    let mut seen = 0u64;
    // A TTL is counted from the write that refreshed it and lapses on time, not at the next
    // tick: the loop wakes on every applied change of the checks and at the next deadline.
    let mut applied = node.state.subscribe();
    let mut wake_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = applied.changed() => {
                if r.is_err() {
                    return;
                }
                if node.state.checks_index().unwrap_or(u64::MAX) == seen {
                    continue;
                }
            }
            () = sleep_until_opt(wake_at) => {}
            Some(p) = rx.recv() => {
                if let Some(t) = tracked.get_mut(&p.check_id) {
                    judge(&node, &p, t);
                }
                continue;
            }
            _ = stop.cancelled() => return,
        }
        if !node.is_leader() {
            tracked.clear();
            seen = 0;
            continue;
        }
        // Re-read the checks only when one changed or was refreshed: decoding every check
        // each tick would cost the leader CPU in proportion to the whole catalog.
        let index = node.state.checks_index().unwrap_or(u64::MAX);
        if index != seen || tracked.is_empty() {
            match node.state.checks() {
                Ok((i, c)) => {
                    seen = i;
                    checks = c;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "health checker cannot read the catalog");
                    continue;
                }
            }
        }
        let now = Instant::now();
        wake_at = None;
        tracked.retain(|id, _| checks.iter().any(|c| &c.id == id));
        for c in &checks {
            let t = tracked.entry(c.id.clone()).or_insert_with(|| Tracked {
                seen_index: c.updated_index,
                status: c.status,
                ttl_from: now,
                next_probe: now,
                probing: false,
                successes: 0,
                failures: 0,
                critical_since: None,
                need_pass: 1,
                need_fail: 1,
                pending: None,
                reaping: false,
            });
            if c.updated_index != t.seen_index {
                t.seen_index = c.updated_index;
                t.ttl_from = now;
            }
            t.status = c.status;
            t.need_pass = c.success_before_passing.max(1);
            t.need_fail = c.failures_before_critical.max(1);
            if t.pending
                .is_some_and(|(p, at)| p == c.status || now.duration_since(at) >= PENDING_FOR)
            {
                t.pending = None;
            }
            match &c.kind {
                CheckKind::Ttl => {
                    let due = t.ttl_from + c.interval;
                    if c.status != CheckStatus::Critical && t.pending.is_none() && now < due {
                        wake_at = Some(wake_at.map_or(due, |w| w.min(due)));
                    }
                    if c.status != CheckStatus::Critical && t.pending.is_none() && now >= due {
                        t.pending = Some((CheckStatus::Critical, now));
                        let output = format!(
                            "TTL expired ({} without an update)",
                            lucid_core::format_duration(c.interval)
                        );
                        spawn_update(&node, c.id.clone(), CheckStatus::Critical, output);
                    }
                }
                CheckKind::Maintenance | CheckKind::External => {}
                CheckKind::Http { .. } | CheckKind::Tcp { .. } | CheckKind::Script { .. } => {
                    if !t.probing && now >= t.next_probe {
                        t.probing = true;
                        t.next_probe = now + c.interval;
                        tokio::spawn(probe(node.clone(), c.clone(), tx.clone()));
                    }
                }
            }
            reap(&node, c, t, now);
        }
    }
}

/// Deregister a service whose check stayed critical past `DeregisterCriticalServiceAfter`.
fn reap(node: &Arc<Node>, c: &Check, t: &mut Tracked, now: Instant) {
    if c.status != CheckStatus::Critical {
        t.critical_since = None;
        return;
    }
    let since = *t.critical_since.get_or_insert(now);
    let Some(after) = c.deregister_critical_after else {
        return;
    };
    if t.reaping || c.service_id.is_empty() || now.duration_since(since) < after {
        return;
    }
    t.reaping = true;
    let (node, service_id) = (node.clone(), c.service_id.clone());
    tracing::info!(service_id = %service_id, check = %c.id, "reaping a service critical for too long");
    tokio::spawn(async move {
        if let Err(e) = node
            .write(Command::CatalogDeregister {
                service_id,
                at_ms: crate::types::now_ms(),
            })
            .await
        {
            tracing::warn!(error = %e, "reaping failed; will retry");
        }
    });
}

/// Apply one probe result to the damping counters; write a transition if there is one.
fn judge(node: &Arc<Node>, p: &Probe, t: &mut Tracked) {
    t.probing = false;
    if !node.is_leader() {
        return;
    }
    let wanted = if p.status == CheckStatus::Passing {
        t.successes += 1;
        t.failures = 0;
        (t.successes >= t.need_pass).then_some(CheckStatus::Passing)
    } else {
        t.failures += 1;
        t.successes = 0;
        (t.failures >= t.need_fail).then_some(p.status)
    };
    let now = Instant::now();
    if let Some(s) = wanted {
        if s != t.status && !t.pending_is(s, now) {
            t.pending = Some((s, now));
            spawn_update(node, p.check_id.clone(), s, p.output.clone());
        }
    }
}

fn spawn_update(node: &Arc<Node>, check_id: String, status: CheckStatus, output: String) {
    let node = node.clone();
    tokio::spawn(async move {
        let cmd = Command::CheckUpdate {
            check_id: check_id.clone(),
            status,
            output,
            at_ms: crate::types::now_ms(),
        };
        if let Err(e) = node.write(cmd).await {
            tracing::warn!(check = %check_id, error = %e, "could not record a check transition");
        }
    });
}

async fn probe(node: Arc<Node>, c: Check, tx: mpsc::UnboundedSender<Probe>) {
    let (status, output) = match &c.kind {
        CheckKind::Http {
            url,
            method,
            header,
            body,
            ..
        } => probe_http(&node, url, method, header, body, c.timeout).await,
        CheckKind::Tcp { address } => probe_tcp(address, c.timeout).await,
        CheckKind::Script { args } => probe_script(args, c.timeout).await,
        CheckKind::Ttl | CheckKind::Maintenance | CheckKind::External => return,
    };
    let _ = tx.send(Probe {
        check_id: c.id,
        status,
        output,
    });
}

async fn probe_http(
    node: &Node,
    url: &str,
    method: &str,
    header: &std::collections::BTreeMap<String, Vec<String>>,
    body: &str,
    timeout: Duration,
) -> (CheckStatus, String) {
    if url.starts_with("https://") {
        return (
            CheckStatus::Critical,
            format!("{url}: https checks are not supported yet"),
        );
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return (CheckStatus::Critical, format!("invalid method {method:?}"));
    };
    let headers: Vec<(&str, &str)> = header
        .iter()
        .filter_map(|(k, v)| v.first().map(|v| (k.as_str(), v.as_str())))
        .collect();
    match node
        .http
        .send_with_timeout(method.clone(), url, &headers, body.to_owned(), timeout)
        .await
    {
        Ok(r) => {
            let code = r.status.as_u16();
            let status = match code {
                200..=299 => CheckStatus::Passing,
                429 => CheckStatus::Warning,
                _ => CheckStatus::Critical,
            };
            (status, format!("HTTP {method} {url}: {}", r.status))
        }
        Err(e) => (CheckStatus::Critical, format!("HTTP {method} {url}: {e}")),
    }
}

/// Consul's limit on a check's output.
const OUTPUT_MAX: usize = 4096;

/// Run a script check: exit 0 passing, 1 warning, anything else (or no exit within the
/// timeout: the process is killed) critical; its output is what it printed.
async fn probe_script(args: &[String], timeout: Duration) -> (CheckStatus, String) {
    let Some((cmd, rest)) = args.split_first() else {
        return (CheckStatus::Critical, "no command".into());
    };
    let child = tokio::process::Command::new(cmd)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, child).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            if text.len() > OUTPUT_MAX {
                let mut cut = OUTPUT_MAX;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            let status = match out.status.code() {
                Some(0) => CheckStatus::Passing,
                Some(1) => CheckStatus::Warning,
                _ => CheckStatus::Critical,
            };
            (status, text)
        }
        Ok(Err(e)) => (CheckStatus::Critical, format!("{cmd}: {e}")),
        Err(_) => (
            CheckStatus::Critical,
            format!("{cmd}: no exit within {timeout:?}; killed"),
        ),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn probe_tcp(address: &str, timeout: Duration) -> (CheckStatus, String) {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => (
            CheckStatus::Passing,
            format!("TCP connect {address}: Success"),
        ),
        Ok(Err(e)) => (CheckStatus::Critical, format!("TCP connect {address}: {e}")),
        Err(_) => (
            CheckStatus::Critical,
            format!("TCP connect {address}: timed out after {timeout:?}"),
        ),
    }
}
