//! The sidecar's view of the mesh: its identity (key generated here, CSR signed by the
//! registry), its registration with a TTL check kept current from the app's health path, and
//! the intentions, plane map, config entries and revoked serials, followed with blocking
//! queries. The registry being down at start is retried with backoff; once running, the last
//! known state keeps serving when the registry goes away. Several `--registry` addresses are
//! tried in turn.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use arc_swap::ArcSwap;
use http::Method;
use lucid_core::catalog::CheckStatus;
use lucid_core::config_entry::ConfigEntry;
use lucid_core::intention::{Action, Intention};
use lucid_core::wire::ca::{CertRecord, SignRequest, SignedLeaf};
use lucid_core::wire::catalog::{SidecarRegistration, TtlCheck};
use lucid_core::wire::operator::DefaultAction;
use lucid_runtime::backoff::Backoff;
use lucid_tls::mtls::{Identity, Revoked};
use lucid_tls::SpiffeId;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::cluster::{self, Clusters};
use crate::config::{AppProtocol, ProxyConfig};
use crate::control::{retry, Control};
use crate::entries::{self, Entries};
use crate::ratelimit::Limiter;
use crate::tcp::UpstreamStats;
use crate::trust::Trust;

/// Wait this long after a change before asking for the next one, so changes in a burst
/// arrive together (revocations still reach connections within [`COALESCE`] + the grace).
const COALESCE: Duration = Duration::from_millis(250);

const TTL: &str = "30s";
const PROBE_EVERY: Duration = Duration::from_secs(10);

/// Intentions, the plane map, and what applies when no intention matches.
#[derive(Debug)]
pub struct Policy {
    pub intentions: Vec<Intention>,
    pub planes: BTreeMap<String, Vec<String>>,
    pub default: Action,
}

impl Default for Policy {
    fn default() -> Self {
        // Until the registry has said otherwise, refuse: safer than allowing.
        Policy {
            intentions: Vec::new(),
            planes: BTreeMap::new(),
            default: Action::Deny,
        }
    }
}

/// The current certificate, for `/certs`, `/config_dump` and rotation.
#[derive(Debug, Clone)]
pub struct Cert {
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub pem: String,
}

/// What the proxy knows.
pub struct Mesh {
    /// The registry.
    pub control: Arc<Control>,
    pub cfg: ProxyConfig,
    pub me: SpiffeId,
    pub instance_id: String,
    pub identity: Arc<Identity>,
    pub cert: ArcSwap<Cert>,
    /// Bumped at each rotation; pooled connections made before it are replaced, and a
    /// request a peer refused for our certificate waits here for the next one.
    pub generation: watch::Sender<u64>,
    /// Rotate at once (our own certificate was revoked or refused)...
    pub rotate_now: Notify,
    /// ...unless the generation asked about has already been replaced.
    rotate_from: AtomicU64,
    pub root_pem: String,
    /// The revoked serials; connections end when their peer's shows up.
    pub trust: Trust,
    pub policy: ArcSwap<Policy>,
    pub entries: Arc<Entries>,
    pub clusters: Clusters,
    /// The `--upstream` listeners' counters.
    pub upstreams: Vec<Arc<UpstreamStats>>,
    pub limiter: Limiter,
    /// Set by `POST /drain` or SIGTERM: `/ready` answers 503.
    pub draining: AtomicBool,
}

/// A fresh key and a certificate for it signed by the registry: `(cert, key PEM, root PEM)`.
async fn new_certificate(
    control: &Control,
    service: &str,
    plane: &str,
) -> anyhow::Result<(Cert, String, String)> {
    let key = rcgen::KeyPair::generate().context("generating the key")?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|c| c.pem())
        .context("making the CSR")?;
    let body = serde_json::to_string(&SignRequest {
        csr,
        service: service.to_owned(),
        plane: Some(plane.to_owned()),
    })
    .context("encoding the CSR")?;
    let signed: SignedLeaf = control
        .send(Method::POST, "/v1/connect/ca/sign", body)
        .await
        .context("signing")?
        .json()?;
    let (pem, root) = (signed.cert_pem, signed.chain_pem);
    if pem.is_empty() {
        bail!("the registry sent no cert_pem");
    }
    let info = lucid_tls::inspect_pem(&pem)?;
    let cert = Cert {
        serial: info.serial,
        not_before: info.not_before,
        not_after: info.not_after,
        pem,
    };
    Ok((cert, key.serialize_pem(), root))
}

impl Mesh {
    /// Get a certificate and register, retrying until the registry answers.
    pub async fn start(
        cfg: ProxyConfig,
        mesh_port: u16,
        address: String,
        upstreams: Vec<Arc<UpstreamStats>>,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Mesh>> {
        let control = Arc::new(Control::new(&cfg)?);
        let me = SpiffeId::new(&cfg.plane, &cfg.service)
            .ok_or_else(|| anyhow!("--service and --plane must be lower-case names"))?;
        let (cert, key_pem, root_pem) =
            retry("getting a certificate from the registry", &stop, || {
                new_certificate(&control, &cfg.service, &cfg.plane)
            })
            .await?;
        let identity = Arc::new(Identity::from_pem(&cert.pem, &key_pem)?);
        let instance_id = format!(
            "{}-{}-{}",
            cfg.service,
            address.replace([':', '.'], "-"),
            mesh_port
        );
        let meta: BTreeMap<String, String> = cfg
            .meta
            .iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .chain([("plane".to_owned(), cfg.plane.clone())])
            .collect();
        let registration = serde_json::to_string(&SidecarRegistration {
            address,
            check: TtlCheck {
                check_id: format!("{instance_id}-sidecar"),
                status: CheckStatus::Passing,
                ttl: TTL.to_owned(),
            },
            id: instance_id.clone(),
            mesh_port,
            meta,
            name: cfg.service.clone(),
            port: cfg.app_port,
            tags: cfg.tags.clone(),
        })
        .context("encoding the registration")?;
        let entries = Arc::new(Entries::default());
        let trust = Trust::new(Revoked::default());
        let clusters = Clusters::new(cluster::Context {
            control: control.clone(),
            entries: entries.clone(),
            identity: identity.clone(),
            root_pem: root_pem.clone(),
            revoked: trust.revoked().clone(),
        });
        let mesh = Arc::new(Mesh {
            control,
            cfg,
            me,
            instance_id,
            identity,
            cert: ArcSwap::from_pointee(cert),
            generation: watch::Sender::new(0),
            rotate_now: Notify::new(),
            rotate_from: AtomicU64::new(0),
            root_pem,
            trust,
            policy: ArcSwap::from_pointee(Policy::default()),
            entries,
            clusters,
            upstreams,
            limiter: Limiter::default(),
            draining: AtomicBool::new(false),
        });
        retry("registering", &stop, || {
            mesh.control.send(
                Method::PUT,
                "/v1/agent/service/register",
                registration.clone(),
            )
        })
        .await?;
        retry("reading intentions", &stop, || mesh.refresh_policy(None)).await?;
        retry("reading config entries", &stop, || {
            mesh.refresh_entries(None)
        })
        .await?;
        retry("reading revoked certificates", &stop, || {
            mesh.refresh_revoked(None)
        })
        .await?;
        Ok(mesh)
    }

    /// `service-defaults` (blocking on the config index when `index` is set) and the global
    /// `proxy-defaults`; applied to the breakers and the inbound limiter at once.
    async fn refresh_entries(&self, index: Option<u64>) -> anyhow::Result<u64> {
        let r = self
            .control
            .get("/v1/config/service-defaults", index)
            .await?;
        let next = r.consul_index().unwrap_or(0);
        let list: Vec<ConfigEntry> = r.json()?;
        let global = match self
            .control
            .get_optional("/v1/config/proxy-defaults/global")
            .await?
        {
            Some(r) => Some(r.json::<ConfigEntry>()?),
            None => None,
        };
        let snapshot = entries::Snapshot::new(list, global);
        self.limiter
            .configure(snapshot.rate_limit(&self.cfg.service));
        self.entries.store(snapshot);
        self.clusters.reconfigure();
        Ok(next)
    }

    /// A new key and certificate, swapped in for new handshakes.
    pub async fn rotate(&self) -> anyhow::Result<()> {
        let (cert, key_pem, _) =
            new_certificate(&self.control, &self.cfg.service, &self.cfg.plane).await?;
        self.identity.rotate(&cert.pem, &key_pem)?;
        let old = self.cert.load().serial.clone();
        tracing::info!(old = %old, new = %cert.serial, "certificate rotated");
        self.cert.store(Arc::new(cert));
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// Rotate now if generation `seen` is still current: many requests refused for the same
    /// certificate, and the revoked list, ask for one rotation, not one each.
    pub fn rotate_soon(&self, seen: u64) {
        if *self.generation.borrow() == seen {
            self.rotate_from.store(seen, Ordering::Relaxed);
            self.rotate_now.notify_one();
        }
    }

    /// Whether a wake-up of the rotation task still asks for a rotation.
    fn rotation_wanted(&self) -> bool {
        self.rotate_from.load(Ordering::Relaxed) == *self.generation.borrow()
    }

    /// `index`: block until the intentions move past it; `None`: answer at once.
    async fn refresh_policy(&self, index: Option<u64>) -> anyhow::Result<u64> {
        let r = self.control.get("/v1/connect/intentions", index).await?;
        let next = r.consul_index().unwrap_or(0);
        let list: Vec<Intention> = r.json()?;
        let planes = self.control.get("/v1/connect/planes", None).await?.json()?;
        let default: DefaultAction = self
            .control
            .get("/v1/connect/intentions/default", None)
            .await?
            .json()?;
        self.policy.store(Arc::new(Policy {
            intentions: list,
            planes,
            default: default.action,
        }));
        Ok(next)
    }

    /// The revoked serials: in full the first time (and whenever the index went backwards:
    /// a registry that lost its state), then only what was revoked since the index last
    /// seen (a restore restamps what it brings back, so deltas carry it). Our own among
    /// them means rotate now.
    async fn refresh_revoked(&self, index: Option<u64>) -> anyhow::Result<u64> {
        let since = index.unwrap_or(0);
        let r = self
            .control
            .get(&format!("/v1/connect/ca/revoked?since={since}"), index)
            .await?;
        let next = r.consul_index().unwrap_or(0);
        let list: Vec<CertRecord> = r.json()?;
        let entries = list.into_iter().map(|c| (c.serial, c.not_after_unix));
        if since == 0 {
            self.trust.replace(entries);
        } else {
            self.trust.merge(entries);
        }
        if self.trust.revoked().contains(&self.cert.load().serial) {
            tracing::warn!(serial = %self.cert.load().serial, "our certificate was revoked; rotating now");
            self.rotate_soon(*self.generation.borrow());
        }
        Ok(next)
    }

    /// Follow intentions, config entries and revocations; keep the TTL check current; rotate
    /// the certificate. Errors only delay: the last known state keeps serving.
    pub fn spawn_followers(self: &Arc<Self>, stop: CancellationToken) {
        for follower in Follower::ALL {
            tokio::spawn(follow(self.clone(), follower, stop.clone()));
        }
        tokio::spawn(rotation(self.clone(), stop));
    }

    /// How the inbound side talks to the app: the `Protocol` of our `service-defaults` when
    /// set, else `--app-protocol`.
    pub fn app_protocol(&self) -> AppProtocol {
        self.entries
            .load()
            .services
            .get(&self.cfg.service)
            .and_then(|e| e.protocol.as_deref())
            .and_then(AppProtocol::from_entry)
            .unwrap_or(self.cfg.app_protocol)
    }

    /// Probe the app (`--health-check`); pass or fail the TTL check accordingly.
    async fn probe_app(&self) {
        let healthy = crate::health::probe(&self.cfg, self.app_protocol()).await;
        let verb = if healthy { "pass" } else { "fail" };
        let path = format!("/v1/agent/check/{verb}/{}-sidecar", self.instance_id);
        if let Err(e) = self.control.send(Method::PUT, &path, String::new()).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot update the TTL check");
        }
    }

    /// Deregister (on drain or SIGTERM); once only.
    pub async fn deregister(&self) {
        if self.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        let path = format!("/v1/agent/service/deregister/{}", self.instance_id);
        match self.control.send(Method::PUT, &path, String::new()).await {
            Ok(_) => tracing::info!(instance = %self.instance_id, "deregistered"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot deregister"),
        }
    }
}

/// When to rotate a certificate: at a random point between 60 % and 90 % of its lifetime
/// (spread so a fleet started together does not renew together).
fn rotation_due(cert: &Cert) -> i64 {
    let life = (cert.not_after - cert.not_before).max(0);
    let frac = rand::random_range(0.6..0.9);
    cert.not_before + (life as f64 * frac) as i64
}

/// The sidecar's background loops over the registry, each one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follower {
    /// Intentions, the plane map and the default action (blocking on the intentions).
    Intentions,
    /// Revoked serials, as deltas.
    Revocations,
    /// `service-defaults` and the global `proxy-defaults`.
    ConfigEntries,
    /// Probe the app and keep the instance's TTL check current.
    AppHealth,
}

impl Follower {
    const ALL: [Follower; 4] = [
        Follower::Intentions,
        Follower::Revocations,
        Follower::ConfigEntries,
        Follower::AppHealth,
    ];

    fn name(self) -> &'static str {
        match self {
            Follower::Intentions => "intentions",
            Follower::Revocations => "revocations",
            Follower::ConfigEntries => "config-entries",
            Follower::AppHealth => "app-health",
        }
    }

    /// One round: a blocking read past `index` (its new index), or one probe.
    async fn step(self, mesh: &Mesh, index: u64) -> anyhow::Result<u64> {
        match self {
            Follower::Intentions => mesh.refresh_policy(Some(index)).await,
            Follower::Revocations => mesh.refresh_revoked(Some(index)).await,
            Follower::ConfigEntries => mesh.refresh_entries(Some(index)).await,
            Follower::AppHealth => {
                mesh.probe_app().await;
                tokio::time::sleep(PROBE_EVERY).await;
                Ok(0)
            }
        }
    }

    /// Coalesce bursts: a bulk write of thousands of intentions is fetched a few times a
    /// second, not once per entry. The probe paces itself.
    fn coalesces(self) -> bool {
        self != Follower::AppHealth
    }
}

/// Run `follower` until `stop`, backing off (with jitter) while the registry is unreachable.
async fn follow(mesh: Arc<Mesh>, follower: Follower, stop: CancellationToken) {
    let mut index = 0;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        let outcome = tokio::select! {
            r = follower.step(&mesh, index) => Some(r),
            _ = stop.cancelled() => None,
        };
        match outcome {
            None => return,
            // An index going backwards (a restored registry) must not make us spin.
            Some(Ok(i)) => {
                backoff.reset();
                index = if i < index { 0 } else { i };
                if follower.coalesces() {
                    tokio::time::sleep(COALESCE).await;
                }
            }
            Some(Err(e)) => {
                let delay = backoff.next_delay();
                tracing::warn!(follower = follower.name(), error = %format!("{e:#}"), ?delay,
                    "registry unreachable; serving the last known state");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

/// Rotate when due or when told (revocation); a failed renewal is retried every 5 s.
async fn rotation(mesh: Arc<Mesh>, stop: CancellationToken) {
    let mut due = rotation_due(&mesh.cert.load());
    loop {
        let wait = Duration::from_secs(u64::try_from(due - lucid_core::unix_now()).unwrap_or(0));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = mesh.rotate_now.notified() => {
                // A request left over from before the last rotation: that one answered it.
                if !mesh.rotation_wanted() {
                    continue;
                }
            }
            _ = stop.cancelled() => return,
        }
        match mesh.rotate().await {
            Ok(()) => due = rotation_due(&mesh.cert.load()),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "certificate renewal failed; retrying in 5 s");
                due = lucid_core::unix_now() + 5;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_falls_between_60_and_90_percent_of_the_lifetime() {
        let cert = Cert {
            serial: String::new(),
            not_before: 1_000,
            not_after: 2_000,
            pem: String::new(),
        };
        for _ in 0..1000 {
            let at = rotation_due(&cert);
            assert!((1_600..=1_900).contains(&at), "{at}");
        }
    }
}
