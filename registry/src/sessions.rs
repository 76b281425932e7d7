//! Session TTLs, counted by the leader. A session with a TTL is invalidated once its last
//! renewal is more than twice its TTL ago (Consul's `SessionTTLMultiplier`). Renewals are
//! replicated (`Command::SessionRenew`), so a new leader counts from the last renewal any
//! leader saw: a failover neither resets a TTL (keeping a dead holder's lock) nor cuts one
//! short. Only a restored session, whose renewal time belongs to the other cluster, counts
//! from when this leader first sees it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::types::{now_ms, Command};

/// How often the leader looks.
const TICK: Duration = Duration::from_millis(500);
/// Consul's multiplier: a session lives up to twice its TTL without a renewal.
const MULTIPLIER: i64 = 2;

/// Run until `stop`.
pub async fn run(node: Arc<Node>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    // Restored sessions (no renewal time): when this leader first saw each.
    let mut first_seen: HashMap<String, i64> = HashMap::new();
    let mut expiring: HashMap<String, i64> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if !node.is_leader() {
            first_seen.clear();
            expiring.clear();
            continue;
        }
        let sessions = match node.state.sessions() {
            Ok((_, s)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read sessions");
                continue;
            }
        };
        let now = now_ms();
        first_seen.retain(|id, _| sessions.iter().any(|s| &s.id == id));
        expiring.retain(|_, at| now - *at < 10_000);
        for s in sessions.iter().filter(|s| s.ttl_ms > 0) {
            let from = if s.renewed_ms > 0 {
                s.renewed_ms
            } else {
                *first_seen.entry(s.id.clone()).or_insert(now)
            };
            let ttl = i64::try_from(s.ttl_ms).unwrap_or(i64::MAX);
            if now <= from.saturating_add(ttl.saturating_mul(MULTIPLIER)) {
                continue;
            }
            // One destroy in flight per session (the write may take a moment to apply).
            if expiring.contains_key(&s.id) {
                continue;
            }
            expiring.insert(s.id.clone(), now);
            tracing::info!(session = %s.id, name = %s.name, ttl = %s.ttl, "session TTL expired; invalidating");
            metrics::counter!("lucid_sessions_expired_total").increment(1);
            let node = node.clone();
            let id = s.id.clone();
            tokio::spawn(async move {
                if let Err(e) = node
                    .write(Command::SessionDestroy { id, now_ms: now })
                    .await
                {
                    tracing::warn!(error = %e, "could not invalidate an expired session; will retry");
                }
            });
        }
    }
}
