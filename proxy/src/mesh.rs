//! The sidecar's view of the mesh: its identity (key generated here, CSR signed by the
//! registry), its registration with a TTL check kept current from the app's health path, and
//! the intentions, plane map and revoked serials, followed with blocking queries. The
//! registry being down at start is retried with backoff; once running, the last known state
//! keeps serving when the registry goes away.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use arc_swap::ArcSwap;
use http::Method;
use lucid_client::{RegistryClient, Response};
use lucid_core::intention::{Action, Intention};
use lucid_tls::mtls::{Identity, Revoked};
use lucid_tls::SpiffeId;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::ProxyConfig;

/// How long a blocking query waits at the registry.
const BLOCK: &str = "30s";
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

/// What the proxy knows.
pub struct Mesh {
    pub registry: RegistryClient,
    pub cfg: ProxyConfig,
    pub me: SpiffeId,
    pub instance_id: String,
    pub identity: Arc<Identity>,
    pub root_pem: String,
    pub revoked: Revoked,
    pub policy: ArcSwap<Policy>,
}

fn ok(r: Response, what: &str) -> anyhow::Result<Response> {
    if r.status.is_success() {
        Ok(r)
    } else {
        bail!("{what}: {} {}", r.status, String::from_utf8_lossy(&r.body))
    }
}

/// Retry `f` with backoff (200 ms doubling to 5 s) until it works or `stop` fires.
async fn retry<T, F, Fut>(
    what: &str,
    stop: &mut watch::Receiver<bool>,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "{what}; retrying in {backoff:?}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => bail!("stopped while {what}"),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

impl Mesh {
    /// Get a certificate and register, retrying until the registry answers.
    pub async fn start(
        cfg: ProxyConfig,
        mesh_port: u16,
        address: String,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Mesh>> {
        let base = cfg.registry.first().cloned().unwrap_or_default();
        let mut registry = RegistryClient::new(&base);
        if let Some(t) = &cfg.token {
            registry = registry.with_token(t.clone());
        }
        let me = SpiffeId::new(&cfg.plane, &cfg.service)
            .ok_or_else(|| anyhow!("--service and --plane must be lower-case names"))?;
        let key = rcgen::KeyPair::generate().context("generating the key")?;
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .and_then(|p| p.serialize_request(&key))
            .and_then(|c| c.pem())
            .context("making the CSR")?;
        let body = json!({"csr": csr, "service": cfg.service, "plane": cfg.plane}).to_string();
        let signed: Value = retry("getting a certificate from the registry", &mut stop, || {
            let (r, body) = (registry.clone(), body.clone());
            async move {
                Ok(ok(
                    r.call(Method::POST, "/v1/connect/ca/sign", body).await?,
                    "signing",
                )?
                .json()?)
            }
        })
        .await?;
        let cert = signed["cert_pem"].as_str().unwrap_or_default();
        let root_pem = signed["chain_pem"].as_str().unwrap_or_default().to_owned();
        let identity = Arc::new(Identity::from_pem(cert, &key.serialize_pem())?);
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
        let reg = json!({"Name": cfg.service, "ID": instance_id, "Address": address,
            "Port": cfg.app_port, "MeshPort": mesh_port, "Tags": cfg.tags, "Meta": meta,
            "Check": {"CheckID": format!("{instance_id}-sidecar"), "TTL": TTL, "Status": "passing"}})
        .to_string();
        retry("registering", &mut stop, || {
            let (r, reg) = (registry.clone(), reg.clone());
            async move {
                ok(
                    r.call(Method::PUT, "/v1/agent/service/register", reg)
                        .await?,
                    "registering",
                )
                .map(|_| ())
            }
        })
        .await?;
        let mesh = Arc::new(Mesh {
            registry,
            cfg,
            me,
            instance_id,
            identity,
            root_pem,
            revoked: Revoked::default(),
            policy: ArcSwap::from_pointee(Policy::default()),
        });
        mesh.refresh_policy(None).await?;
        mesh.refresh_revoked(None).await?;
        Ok(mesh)
    }

    /// `index`: block until the intentions move past it; `None`: answer at once.
    async fn refresh_policy(&self, index: Option<u64>) -> anyhow::Result<u64> {
        let path = match index {
            Some(i) => format!("/v1/connect/intentions?index={i}&wait={BLOCK}"),
            None => "/v1/connect/intentions".to_owned(),
        };
        let r = ok(
            self.registry
                .call_with_timeout(Method::GET, &path, "", Duration::from_secs(40))
                .await?,
            "intentions",
        )?;
        let next = r.consul_index().unwrap_or(0);
        let list: Vec<Intention> = r.json()?;
        let planes: Value = ok(
            self.registry
                .call(Method::GET, "/v1/connect/planes", "")
                .await?,
            "planes",
        )?
        .json()?;
        let planes = serde_json::from_value(planes).unwrap_or_default();
        let d: Value = ok(
            self.registry
                .call(Method::GET, "/v1/connect/intentions/default", "")
                .await?,
            "default action",
        )?
        .json()?;
        let default = serde_json::from_value(d["Action"].clone()).unwrap_or(Action::Deny);
        self.policy.store(Arc::new(Policy {
            intentions: list,
            planes,
            default,
        }));
        Ok(next)
    }

    async fn refresh_revoked(&self, index: Option<u64>) -> anyhow::Result<u64> {
        let path = match index {
            Some(i) => format!("/v1/connect/ca/revoked?index={i}&wait={BLOCK}"),
            None => "/v1/connect/ca/revoked".to_owned(),
        };
        let r = ok(
            self.registry
                .call_with_timeout(Method::GET, &path, "", Duration::from_secs(40))
                .await?,
            "revoked",
        )?;
        let next = r.consul_index().unwrap_or(0);
        let list: Vec<Value> = r.json()?;
        self.revoked.replace(
            list.iter()
                .filter_map(|c| c["serial"].as_str().map(str::to_owned)),
        );
        Ok(next)
    }

    /// Follow intentions and revocations; keep the TTL check current. Errors only delay:
    /// the last known state keeps serving.
    pub fn spawn_followers(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        for which in 0..3 {
            let mesh = self.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut index = 0;
                loop {
                    let step = async {
                        match which {
                            0 => mesh.refresh_policy(Some(index)).await,
                            1 => mesh.refresh_revoked(Some(index)).await,
                            _ => {
                                mesh.probe_app().await;
                                tokio::time::sleep(PROBE_EVERY).await;
                                Ok(0)
                            }
                        }
                    };
                    let outcome = tokio::select! {
                        r = step => Some(r),
                        _ = stop.wait_for(|s| *s) => None,
                    };
                    match outcome {
                        None => return,
                        Some(Ok(i)) => index = i,
                        Some(Err(e)) => {
                            tracing::warn!(error = %format!("{e:#}"), "registry unreachable; serving the last known state");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
        }
    }

    /// GET the app's health path; pass or fail the TTL check accordingly.
    async fn probe_app(&self) {
        let url = format!(
            "http://127.0.0.1:{}{}",
            self.cfg.app_port, self.cfg.health_path
        );
        let healthy = lucid_client::HttpClient::new(Duration::from_secs(2))
            .send(Method::GET, &url, &[], "")
            .await
            .is_ok_and(|r| r.status.is_success());
        let verb = if healthy { "pass" } else { "fail" };
        let path = format!("/v1/agent/check/{verb}/{}-sidecar", self.instance_id);
        if let Err(e) = self.registry.call(Method::PUT, &path, "").await {
            tracing::warn!(error = %e, "cannot update the TTL check");
        }
    }

    /// Deregister (on SIGTERM).
    pub async fn deregister(&self) {
        let path = format!("/v1/agent/service/deregister/{}", self.instance_id);
        if let Err(e) = self.registry.call(Method::PUT, &path, "").await {
            tracing::warn!(error = %e, "cannot deregister");
        }
    }
}
