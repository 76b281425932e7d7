//! The sidecar's connection to the registry (the control plane): every configured
//! `--registry`, tried in turn from the one that answered last, over one connection pool;
//! plain calls and blocking queries, and the retry-until-it-answers loop startup uses.
//! Everything the sidecar asks the registry goes through this handle, so the clusters, the
//! followers and the identity code share it without reaching into each other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail};
use http::Method;
use lucid_client::{ClientError, RegistryClient, Response};
use lucid_runtime::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use crate::config::ProxyConfig;

/// How long a blocking query waits at the registry.
const BLOCK: &str = "30s";
/// A plain call's timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A blocking query's own timeout: the registry's wait plus its jitter and some slack.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(40);

/// The configured registries.
pub struct Control {
    list: Vec<RegistryClient>,
    /// The registry answering last: tried first.
    current: AtomicUsize,
}

fn ok(r: Response, what: &str) -> anyhow::Result<Response> {
    if r.status.is_success() {
        Ok(r)
    } else {
        bail!("{what}: {} {}", r.status, String::from_utf8_lossy(&r.body))
    }
}

impl Control {
    /// One client per `--registry`, sharing a pool (`https://` ones verified against
    /// `--registry-ca`, else `LUCID_CACERT`) and the sidecar's token.
    pub fn new(cfg: &ProxyConfig) -> anyhow::Result<Control> {
        let http = registry_http(cfg)?;
        let list = cfg
            .registry
            .iter()
            .map(|base| {
                let r = RegistryClient::with_http(base, http.clone());
                match &cfg.token {
                    Some(t) => r.with_token(t.clone()),
                    None => r,
                }
            })
            .collect();
        Ok(Control {
            list,
            current: AtomicUsize::new(0),
        })
    }

    /// One call, to each registry in turn until one answers (an answer, even an error
    /// status, is final: only an unreachable registry moves on).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: String,
        timeout: Duration,
    ) -> anyhow::Result<Response> {
        let n = self.list.len().max(1);
        let first = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..n {
            let i = (first + k) % n;
            let Some(r) = self.list.get(i) else { break };
            match r
                .call_with_timeout(method.clone(), path, body.clone(), timeout)
                .await
            {
                Ok(resp) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e @ ClientError::Transport { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| anyhow!("no --registry given"), Into::into))
    }

    /// GET, failing on a non-2xx answer; with `index`, a blocking query that waits (up to
    /// [`BLOCK`]) until the answer moves past it.
    pub async fn get(&self, path: &str, index: Option<u64>) -> anyhow::Result<Response> {
        let (path, timeout) = match index {
            Some(i) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                (format!("{path}{sep}index={i}&wait={BLOCK}"), BLOCK_TIMEOUT)
            }
            None => (path.to_owned(), CALL_TIMEOUT),
        };
        ok(
            self.call(Method::GET, &path, String::new(), timeout)
                .await?,
            &path,
        )
    }

    /// GET that answers `None` for a 404 (an entry that does not exist).
    pub async fn get_optional(&self, path: &str) -> anyhow::Result<Option<Response>> {
        match self
            .call(Method::GET, path, String::new(), CALL_TIMEOUT)
            .await?
        {
            r if r.status == http::StatusCode::NOT_FOUND => Ok(None),
            r => ok(r, path).map(Some),
        }
    }

    /// PUT or POST `body`, failing on a non-2xx answer.
    pub async fn send(&self, method: Method, path: &str, body: String) -> anyhow::Result<Response> {
        ok(self.call(method, path, body, CALL_TIMEOUT).await?, path)
    }
}

/// Retry `f` with backoff (200 ms doubling to 5 s, with jitter) until it works or `stop`
/// fires.
pub async fn retry<T, F, Fut>(what: &str, stop: &CancellationToken, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let delay = match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %format!("{e:#}"), "{what}; retrying in {delay:?}");
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => bail!("stopped while {what}"),
        }
    }
}

/// One connection pool for every registry; `https://` registries are verified against
/// `--registry-ca` (else `LUCID_CACERT`).
fn registry_http(cfg: &ProxyConfig) -> anyhow::Result<lucid_client::HttpClient> {
    let timeout = Duration::from_secs(15);
    let ca = cfg.registry_ca.clone().or_else(|| {
        std::env::var_os("LUCID_CACERT")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    });
    let Some(path) = ca else {
        return Ok(lucid_client::HttpClient::new(timeout));
    };
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("--registry-ca {}: {e}", path.display()))?;
    let tls = lucid_tls::cluster::client_trusting(&pem)
        .map_err(|e| anyhow!("--registry-ca {}: {e}", path.display()))?;
    Ok(lucid_client::HttpClient::with_tls(timeout, tls))
}
