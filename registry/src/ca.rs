//! The mesh CA as a registry service: the leader creates the root once and stores it through
//! Raft (so every later leader signs with the same root), any node signs with it from its
//! replica, and every leaf signed is recorded through Raft before it is handed out (a leaf
//! the client receives is always one the CA can list and revoke).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lucid_tls::seal::Sealer;
use lucid_tls::{CaMaterial, Leaf, Signer, SpiffeId};
use tokio_util::sync::CancellationToken;

use crate::node::{Node, WriteError};
use crate::store::ca::IssuedCert;
use crate::store::state::StateError;
use crate::types::Command;

/// The replicated CA configuration's name in the settings (`store/settings.rs`).
pub const SETTING: &str = "ca";
/// The one field of it that changes how leaves are signed.
pub const LEAF_TTL: &str = "LeafCertTTL";

/// How often a leader looks again whether the root exists (also woken by leader changes).
const ROOT_CHECK: Duration = Duration::from_secs(2);

/// Why the CA could not sign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaOpError {
    #[error("the mesh CA is not initialised yet (no leader has created the root)")]
    NotReady,
    #[error("this node cannot sign: {0}")]
    NoKey(String),
    #[error("{0}")]
    Csr(String),
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<lucid_tls::CaError> for CaOpError {
    fn from(e: lucid_tls::CaError) -> Self {
        match e {
            lucid_tls::CaError::Csr(m) => CaOpError::Csr(m),
            other => CaOpError::Sign(other.to_string()),
        }
    }
}

pub use lucid_core::unix_now as now;

/// Signs leaves with the root in the local replica.
pub struct Ca {
    node: Arc<Node>,
    leaf_ttl: time::Duration,
    /// Opens the sealed root key; `None` when no `--ca-key-secret-file` was given.
    sealer: Option<Arc<Sealer>>,
    /// The signer for the root last seen (a restore could bring another root).
    cached: Mutex<Option<(String, Arc<Signer>)>>,
}

impl Ca {
    pub fn new(node: Arc<Node>, leaf_ttl: Duration, sealer: Option<Arc<Sealer>>) -> Ca {
        Ca {
            node,
            leaf_ttl: time::Duration::seconds(leaf_ttl.as_secs() as i64),
            sealer,
            cached: Mutex::new(None),
        }
    }

    /// How long leaves are valid: the replicated CA configuration's `LeafCertTTL` when an
    /// operator set one (`PUT /v1/connect/ca/configuration`), else `--leaf-ttl`.
    pub fn leaf_ttl(&self) -> Result<time::Duration, CaOpError> {
        let set = self.node.state.setting(SETTING)?;
        let configured = set
            .as_ref()
            .and_then(|s| s.value.get(LEAF_TTL)?.as_str().map(str::to_owned));
        Ok(match configured.map(|t| lucid_core::parse_duration(&t)) {
            Some(Ok(d)) => time::Duration::seconds(d.as_secs() as i64),
            // Checked when written; a value that no longer parses falls back to the flag.
            Some(Err(_)) | None => self.leaf_ttl,
        })
    }

    /// `--leaf-ttl`, before any run-time configuration.
    pub fn default_leaf_ttl(&self) -> Duration {
        Duration::from_secs(self.leaf_ttl.whole_seconds().max(0) as u64)
    }

    /// Can this node sign leaves now? `Err` says why not (`/status` shows it).
    pub fn can_sign(&self) -> Result<(), String> {
        match self.signer() {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(CaOpError::NotReady.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The signer for the current root, if there is one.
    pub fn signer(&self) -> Result<Option<Arc<Signer>>, CaOpError> {
        let Some(root) = self.node.state.ca_root()? else {
            return Ok(None);
        };
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((pem, s)) = cached.as_ref() {
            if *pem == root.cert_pem {
                return Ok(Some(s.clone()));
            }
        }
        let open = if lucid_tls::seal::is_sealed(&root) {
            let sealer = self.sealer.as_ref().ok_or_else(|| {
                CaOpError::NoKey(
                    "the CA key is sealed and this node has no --ca-key-secret-file".into(),
                )
            })?;
            sealer
                .open(&root)
                .map_err(|e| CaOpError::NoKey(e.to_string()))?
        } else {
            // A root stored before keys were sealed.
            root.clone()
        };
        let s = Arc::new(Signer::new(&open)?);
        *cached = Some((root.cert_pem.clone(), s.clone()));
        Ok(Some(s))
    }

    /// Sign a CSR for `id` and record the leaf.
    pub async fn sign_csr(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
    ) -> Result<(Leaf, Arc<Signer>), CaOpError> {
        let signer = self.signer()?.ok_or(CaOpError::NotReady)?;
        let leaf = signer.sign_csr(csr_pem, id, self.leaf_ttl()?, now())?;
        self.record(&leaf, id).await?;
        Ok((leaf, signer))
    }

    /// Issue a leaf with a key generated here, and record it.
    pub async fn issue(&self, id: &SpiffeId) -> Result<(Leaf, Arc<Signer>), CaOpError> {
        let signer = self.signer()?.ok_or(CaOpError::NotReady)?;
        let leaf = signer.issue(id, self.leaf_ttl()?, now())?;
        self.record(&leaf, id).await?;
        Ok((leaf, signer))
    }

    async fn record(&self, leaf: &Leaf, id: &SpiffeId) -> Result<(), CaOpError> {
        let cert = IssuedCert {
            serial: leaf.serial.clone(),
            service: id.service.clone(),
            plane: id.plane.clone(),
            not_after: leaf.not_after,
            revoked_index: None,
        };
        self.node.write(Command::CertIssued { cert }).await?;
        Ok(())
    }
}

/// While this node leads, make sure the replicated state holds a root: the first leader of a
/// new cluster creates it; later leaders find it and do nothing.
pub(crate) async fn ensure_root(
    node: Arc<Node>,
    sealer: Option<Arc<Sealer>>,
    stop: CancellationToken,
) {
    let mut metrics = node.raft.metrics();
    let mut warned = false;
    loop {
        if node.is_leader() {
            match (node.state.ca_root(), &sealer) {
                (Ok(Some(_)), _) => {}
                (Ok(None), Some(sealer)) => create_root(&node, sealer).await,
                (Ok(None), None) => {
                    if !warned {
                        tracing::warn!(
                            "no --ca-key-secret-file: this leader cannot create the mesh root CA"
                        );
                        warned = true;
                    }
                }
                (Err(e), _) => tracing::error!(error = %e, "cannot read the CA root"),
            }
        }
        tokio::select! {
            _ = metrics.changed() => {}
            _ = tokio::time::sleep(ROOT_CHECK) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn create_root(node: &Node, sealer: &Sealer) {
    // Only the sealed key ever reaches the Raft log.
    let material = match CaMaterial::generate(now()).and_then(|m| sealer.seal(&m)) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot generate the mesh root CA");
            return;
        }
    };
    match node.write(Command::CaInit { material }).await {
        Ok(r) if r.ok => tracing::info!(index = r.index, "created the mesh root CA"),
        Ok(_) => tracing::info!("the mesh root CA already existed"),
        Err(e) => tracing::warn!(error = %e, "cannot store the mesh root CA yet; will retry"),
    }
}

/// How often the leader looks for expired leaves to prune.
const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// How long after its expiry a leaf is kept: covers clock skew between the leader and the
/// sidecars that still hold it in their revoked lists.
pub(crate) const PRUNE_GRACE_SECS: i64 = 3600;

/// While this node leads, drop leaves (and their revocations) that expired more than
/// [`PRUNE_GRACE_SECS`] ago, so the issued and revoked lists stay as long as the live fleet.
pub(crate) async fn prune_expired(node: Arc<Node>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        if !node.is_leader() {
            continue;
        }
        let before = now() - PRUNE_GRACE_SECS;
        match node.state.expired_certs(before) {
            Ok(0) => {}
            Ok(n) => match node.write(Command::CertPrune { before }).await {
                Ok(r) => tracing::info!(leaves = n, index = r.index, "pruned expired leaves"),
                Err(e) => tracing::warn!(error = %e, "cannot prune expired leaves yet; will retry"),
            },
            Err(e) => tracing::error!(error = %e, "cannot read the issued leaves"),
        }
    }
}
