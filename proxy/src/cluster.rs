//! Upstream clusters: per destination service, its endpoints (passing instances with a
//! `mesh_port`) followed with blocking queries, each endpoint with its circuit breaker,
//! connection pool and counters; and the load-balancing pick (round-robin, random, or
//! least-request over two random choices), which skips endpoints whose circuit refuses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use lucid_core::config_entry::{LbPolicy, Resolved};
use lucid_core::wire::catalog::ServiceEntry;
use lucid_tls::mtls::{client_config, with_alpn, Identity, Revoked, ALPN_H1, ALPN_TCP};
use rand::Rng;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use lucid_runtime::backoff::Backoff;

use crate::breaker::{Admission, Breaker, State};
use crate::control::Control;
use crate::entries::Entries;
use crate::pool::Pool;

/// A cap on destinations, so a caller naming endless services cannot grow us without bound.
const MAX_CLUSTERS: usize = 1024;
/// At the cap, the destination unused longest (and at least this many seconds, with nothing
/// in flight) makes room for a new one, so names a caller got wrong cannot lock out a real
/// destination; its follower stops and its connections close.
const EVICT_AFTER_S: i64 = 60;

/// One instance of the destination service.
#[derive(Debug)]
pub struct Endpoint {
    pub id: String,
    pub addr: String,
    pub port: u16,
    pub breaker: Arc<Breaker>,
    pub pool: Pool,
    pub rq_total: AtomicU64,
    pub rq_error: AtomicU64,
    pub rq_active: AtomicU64,
}

/// The mTLS connectors to a destination's sidecars, one per ALPN: the pooled HTTP/2 (or
/// HTTP/1.1) connection, an HTTP/1.1 connection of its own for an `Upgrade`, and a raw TCP
/// stream for an `--upstream` connection. They share the verifier (the peer must be the
/// destination) and our identity.
#[derive(Clone)]
pub struct Connectors {
    pub http: TlsConnector,
    pub upgrade: TlsConnector,
    pub tcp: TlsConnector,
}

impl Connectors {
    pub fn new(cfg: Arc<rustls::ClientConfig>) -> Connectors {
        Connectors {
            upgrade: TlsConnector::from(with_alpn(&cfg, ALPN_H1)),
            tcp: TlsConnector::from(with_alpn(&cfg, ALPN_TCP)),
            http: TlsConnector::from(cfg),
        }
    }
}

/// A destination service.
pub struct Cluster {
    pub service: String,
    pub endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    pub tls: Connectors,
    /// What the config entries say for this service (read per request, replaced on change).
    pub settings: ArcSwap<Resolved>,
    rr: AtomicUsize,
    /// Requests and retries in flight, for the retry budget.
    pub active: AtomicU64,
    pub retries_active: AtomicU64,
    pub retries: AtomicU64,
    /// When a request last asked for this destination (unix seconds).
    last_used: AtomicI64,
    /// Cancelled when the sidecar stops or the cluster is evicted (a child of the sidecar's
    /// stop token): its follower ends.
    stop: CancellationToken,
}

/// What the clusters take from the rest of the sidecar: the registry to discover endpoints
/// from, the config entries their settings come from, and what their mTLS connector is made
/// of (our identity, the mesh root, the revoked serials).
pub struct Context {
    pub control: Arc<Control>,
    pub entries: Arc<Entries>,
    pub identity: Arc<Identity>,
    pub root_pem: String,
    pub revoked: Revoked,
}

/// Every destination this sidecar has sent to.
pub struct Clusters {
    map: Mutex<HashMap<String, Arc<Cluster>>>,
    ctx: Context,
}

/// Pull the usable endpoints out of a `/v1/health/service/<svc>` answer: passing instances
/// with a `MeshPort`, each keyed by its service ID. An ID is unique per node only (external
/// nodes may repeat one), so an ID the answer holds twice is keyed `<id>@<node>`: two
/// endpoints never share one breaker.
fn usable(list: &[ServiceEntry]) -> Vec<(String, String, u16)> {
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for e in list {
        *seen.entry(e.service.id.as_str()).or_default() += 1;
    }
    list.iter()
        .filter(|e| e.passing())
        .filter_map(|e| {
            let port = e.service.mesh_port?;
            let id = &e.service.id;
            let key = if seen.get(id.as_str()).copied().unwrap_or(0) > 1 {
                format!("{id}@{}", e.node.node)
            } else {
                id.clone()
            };
            Some((key, e.address().to_owned(), port))
        })
        .collect()
}

impl Clusters {
    pub fn new(ctx: Context) -> Clusters {
        Clusters {
            map: Mutex::new(HashMap::new()),
            ctx,
        }
    }

    pub fn all(&self) -> Vec<Arc<Cluster>> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a.service.cmp(&b.service));
        v
    }

    /// The cluster for `service`, created (first discovery answered, follower started) on
    /// first use.
    pub async fn get(
        &self,
        service: &str,
        stop: &CancellationToken,
    ) -> anyhow::Result<Arc<Cluster>> {
        if let Some(c) = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
        {
            c.last_used.store(lucid_core::unix_now(), Ordering::Relaxed);
            return Ok(c.clone());
        }
        let ctx = &self.ctx;
        let (index, eps) = discover(&ctx.control, service, None).await?;
        let tls = Connectors::new(client_config(
            ctx.identity.clone(),
            &ctx.root_pem,
            service,
            ctx.revoked.clone(),
        )?);
        let settings = ctx.entries.settings(service);
        let cluster = Arc::new(Cluster::new(
            service,
            tls,
            settings.clone(),
            stop.child_token(),
        ));
        cluster.update(eps, &settings);
        {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = map.get(service) {
                // Another request created it meanwhile: use theirs (its follower runs).
                return Ok(c.clone());
            }
            if map.len() >= MAX_CLUSTERS {
                let unused = victim(
                    map.iter().map(|(name, c)| {
                        let last = c.last_used.load(Ordering::Relaxed);
                        (name.as_str(), last, c.active.load(Ordering::Relaxed))
                    }),
                    lucid_core::unix_now(),
                )
                .map(str::to_owned);
                let Some(old) = unused.and_then(|name| map.remove(&name)) else {
                    anyhow::bail!(
                        "this sidecar already follows {MAX_CLUSTERS} destinations, all in use"
                    );
                };
                old.stop.cancel();
                tracing::info!(evicted = %old.service, service, "destination cap reached; the one unused longest makes room");
            }
            map.insert(service.to_owned(), cluster.clone());
        }
        tokio::spawn(follow(ctx.control.clone(), cluster.clone(), index));
        Ok(cluster)
    }

    /// Apply changed config entries to every cluster and its breakers.
    pub fn reconfigure(&self) {
        let entries = self.ctx.entries.load();
        for c in self.all() {
            let s = entries.settings(&c.service);
            for e in c.endpoints.load().iter() {
                e.breaker.configure(&s.circuit_breaker);
            }
            c.settings.store(Arc::new(s));
        }
    }
}

/// Of `(name, last used, requests in flight)`, the destination to evict: the one unused
/// longest, if it has been unused for [`EVICT_AFTER_S`] and has nothing in flight.
fn victim<'a>(clusters: impl Iterator<Item = (&'a str, i64, u64)>, now: i64) -> Option<&'a str> {
    clusters
        .filter(|(_, last, active)| *active == 0 && now - *last >= EVICT_AFTER_S)
        .min_by_key(|(_, last, _)| *last)
        .map(|(name, _, _)| name)
}

async fn discover(
    control: &Control,
    service: &str,
    index: Option<u64>,
) -> anyhow::Result<(u64, Vec<(String, String, u16)>)> {
    let r = control
        .get(&format!("/v1/health/service/{service}?stale"), index)
        .await?;
    let list: Vec<ServiceEntry> = r.json()?;
    Ok((r.consul_index().unwrap_or(0), usable(&list)))
}

/// Keep a cluster's endpoints current; on errors keep the last known set.
async fn follow(control: Arc<Control>, cluster: Arc<Cluster>, mut index: u64) {
    let stop = &cluster.stop;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        let r = tokio::select! {
            r = discover(&control, &cluster.service, Some(index)) => r,
            () = stop.cancelled() => return,
        };
        match r {
            Ok((i, eps)) => {
                backoff.reset();
                // An index going backwards (a restored registry) must not make us spin.
                index = if i < index { 0 } else { i };
                cluster.update(eps, &cluster.settings.load());
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(service = %cluster.service, error = %format!("{e:#}"), ?delay,
                    "discovery failed; keeping the last known endpoints");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// A chosen endpoint with its breaker admission.
pub struct Pick {
    pub endpoint: Arc<Endpoint>,
    pub admission: Admission,
}

impl Cluster {
    /// A destination with no endpoints yet, used as of now.
    fn new(service: &str, tls: Connectors, settings: Resolved, stop: CancellationToken) -> Cluster {
        Cluster {
            service: service.to_owned(),
            endpoints: ArcSwap::from_pointee(Vec::new()),
            tls,
            settings: ArcSwap::from_pointee(settings),
            rr: AtomicUsize::new(0),
            active: AtomicU64::new(0),
            retries_active: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            last_used: AtomicI64::new(lucid_core::unix_now()),
            stop,
        }
    }

    /// Replace the endpoint set, keeping the state (breaker, connection) of those that stay.
    fn update(&self, eps: Vec<(String, String, u16)>, settings: &Resolved) {
        let old = self.endpoints.load();
        let next: Vec<Arc<Endpoint>> = eps
            .into_iter()
            .map(|(id, addr, port)| {
                old.iter()
                    .find(|e| e.id == id && e.addr == addr && e.port == port)
                    .cloned()
                    .unwrap_or_else(|| {
                        let breaker = Arc::new(Breaker::new(
                            settings.circuit_breaker.clone(),
                            self.service.clone(),
                            format!("{addr}:{port}"),
                        ));
                        Arc::new(Endpoint {
                            id,
                            addr,
                            port,
                            breaker,
                            pool: Pool::default(),
                            rq_total: AtomicU64::new(0),
                            rq_error: AtomicU64::new(0),
                            rq_active: AtomicU64::new(0),
                        })
                    })
            })
            .collect();
        if next.len() != old.len() || next.iter().zip(old.iter()).any(|(a, b)| a.id != b.id) {
            tracing::info!(service = %self.service, endpoints = next.len(), "endpoints changed");
        }
        self.endpoints.store(Arc::new(next));
    }

    /// Choose an endpoint by `policy`, avoiding `tried` when another is available, and take
    /// its breaker's admission. `None`: no endpoint will take a request now.
    pub fn pick(&self, policy: LbPolicy, tried: &[Arc<Endpoint>], now: Instant) -> Option<Pick> {
        let all = self.endpoints.load();
        let fresh: Vec<&Arc<Endpoint>> = all
            .iter()
            .filter(|e| !tried.iter().any(|t| Arc::ptr_eq(t, e)) && e.breaker.available(now))
            .collect();
        let candidates = if fresh.is_empty() {
            all.iter().filter(|e| e.breaker.available(now)).collect()
        } else {
            fresh
        };
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let first = match policy {
            LbPolicy::RoundRobin => self.rr.fetch_add(1, Ordering::Relaxed) % n,
            LbPolicy::Random => rand::rng().random_range(0..n),
            LbPolicy::LeastRequest => {
                let mut rng = rand::rng();
                let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
                let load = |i: usize| candidates[i].rq_active.load(Ordering::Relaxed);
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        };
        // The chosen one may have been taken meanwhile (its last half-open probe): walk on.
        (0..n).find_map(|k| {
            let e = candidates[(first + k) % n];
            e.breaker.admit(now).map(|admission| Pick {
                endpoint: e.clone(),
                admission,
            })
        })
    }

    /// `(endpoints, open circuits)` for error messages.
    pub fn summary(&self, now: Instant) -> (usize, usize) {
        let all = self.endpoints.load();
        let open = all
            .iter()
            .filter(|e| e.breaker.state(now) != State::Closed)
            .count();
        (all.len(), open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lucid_core::config_entry::CircuitBreaker;
    use serde_json::json;

    #[test]
    fn the_destination_unused_longest_and_idle_makes_room() {
        let now = 10_000;
        let all = [
            ("typo-1", now - 300, 0),
            ("typo-2", now - 600, 0),
            ("busy", now - 900, 2),
            ("recent", now - 5, 0),
        ];
        assert_eq!(victim(all.iter().copied(), now), Some("typo-2"));
        let in_use = [("busy", now - 900, 1), ("recent", now - 59, 0)];
        assert_eq!(
            victim(in_use.iter().copied(), now),
            None,
            "nothing in flight and unused for a minute, or no eviction"
        );
    }

    fn cluster(n: usize) -> Cluster {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let c = Cluster::new(
            "s",
            Connectors::new(Arc::new(tls)),
            Resolved::default(),
            CancellationToken::new(),
        );
        let eps = (0..n)
            .map(|i| (format!("e{i}"), "127.0.0.1".to_owned(), 1000 + i as u16))
            .collect();
        let settings = Resolved {
            circuit_breaker: CircuitBreaker {
                failure_threshold: 1,
                ..CircuitBreaker::default()
            },
            ..Resolved::default()
        };
        c.update(eps, &settings);
        c
    }

    fn picks(c: &Cluster, policy: LbPolicy, tried: &[Arc<Endpoint>], n: usize) -> Vec<String> {
        (0..n)
            .filter_map(|_| {
                let p = c.pick(policy, tried, Instant::now())?;
                p.endpoint.breaker.release(p.admission);
                Some(p.endpoint.id.clone())
            })
            .collect()
    }

    fn count(v: &[String], id: &str) -> usize {
        v.iter().filter(|x| *x == id).count()
    }

    #[test]
    fn round_robin_random_and_least_request() {
        let c = cluster(3);
        assert_eq!(
            picks(&c, LbPolicy::RoundRobin, &[], 6),
            ["e0", "e1", "e2", "e0", "e1", "e2"]
        );
        let r = picks(&c, LbPolicy::Random, &[], 300);
        assert!(
            ["e0", "e1", "e2"].iter().all(|id| count(&r, id) > 50),
            "{r:?}"
        );
        // Two busy endpoints and an idle one: two random choices favour the idle one.
        let eps = c.endpoints.load();
        eps[0].rq_active.store(10, Ordering::Relaxed);
        eps[1].rq_active.store(10, Ordering::Relaxed);
        let l = picks(&c, LbPolicy::LeastRequest, &[], 300);
        assert!(
            count(&l, "e2") > 130,
            "expected about 5/9 of 300: {}",
            count(&l, "e2")
        );
    }

    #[test]
    fn open_circuits_and_tried_endpoints_are_avoided() {
        let c = cluster(3);
        let eps = c.endpoints.load();
        let a = eps[1].breaker.admit(Instant::now());
        eps[1]
            .breaker
            .record(a.expect("closed"), true, Instant::now());
        let p = picks(&c, LbPolicy::RoundRobin, &[], 10);
        assert_eq!(count(&p, "e1"), 0, "open: {p:?}");
        let p = picks(&c, LbPolicy::RoundRobin, &[eps[0].clone()], 5);
        assert!(p.iter().all(|id| id == "e2"), "{p:?}");
        // Everything tried: the usable ones again rather than nothing.
        let all = [eps[0].clone(), eps[2].clone()];
        assert_eq!(picks(&c, LbPolicy::RoundRobin, &all, 4).len(), 4);
        let a = eps[0].breaker.admit(Instant::now());
        eps[0]
            .breaker
            .record(a.expect("closed"), true, Instant::now());
        let a = eps[2].breaker.admit(Instant::now());
        eps[2]
            .breaker
            .record(a.expect("closed"), true, Instant::now());
        assert!(c.pick(LbPolicy::RoundRobin, &[], Instant::now()).is_none());
        assert_eq!(c.summary(Instant::now()), (3, 3));
    }

    #[test]
    fn only_passing_instances_with_a_mesh_port_are_usable() {
        let list = vec![
            json!({"Node": {"Address": "10.0.0.1"}, "Service": {"ID": "a", "Address": "10.0.0.9", "MeshPort": 15001},
                   "Checks": [{"Status": "passing"}]}),
            json!({"Node": {"Address": "10.0.0.2"}, "Service": {"ID": "b", "Address": "", "MeshPort": 15001},
                   "Checks": []}),
            json!({"Node": {"Address": "10.0.0.3"}, "Service": {"ID": "c", "Address": "10.0.0.3", "MeshPort": 15001},
                   "Checks": [{"Status": "passing"}, {"Status": "critical"}]}),
            json!({"Node": {"Address": "10.0.0.4"}, "Service": {"ID": "d", "Address": "10.0.0.4"},
                   "Checks": []}),
        ];
        let list: Vec<ServiceEntry> =
            serde_json::from_value(serde_json::Value::Array(list)).expect("the registry's shape");
        assert_eq!(
            usable(&list),
            vec![
                ("a".to_owned(), "10.0.0.9".to_owned(), 15001),
                ("b".to_owned(), "10.0.0.2".to_owned(), 15001)
            ]
        );
    }

    #[test]
    fn one_id_on_two_nodes_is_two_endpoints() {
        let list = vec![
            json!({"Node": {"Node": "n1", "Address": "10.0.0.1"}, "Service": {"ID": "db-1", "MeshPort": 15001},
                   "Checks": []}),
            json!({"Node": {"Node": "n2", "Address": "10.0.0.2"}, "Service": {"ID": "db-1", "MeshPort": 15001},
                   "Checks": []}),
            json!({"Node": {"Node": "lucid", "Address": "10.0.0.3"}, "Service": {"ID": "db-2", "MeshPort": 15001},
                   "Checks": []}),
        ];
        let list: Vec<ServiceEntry> =
            serde_json::from_value(serde_json::Value::Array(list)).expect("the registry's shape");
        let keys: Vec<String> = usable(&list).into_iter().map(|(k, _, _)| k).collect();
        assert_eq!(keys, ["db-1@n1", "db-1@n2", "db-2"]);
    }
}
