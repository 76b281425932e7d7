//! Consul read semantics: consistency modes (`?consistent` served by the leader after a
//! read-index confirmation, default by the leader under its lease or else after the same
//! confirmation, `?stale` by any replica), blocking queries (`?index=&wait=`) with caps per
//! caller, forwarding to the leader, and the `X-Consul-*` response headers.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response};
use rand::Rng;
use tokio::time::Instant;

use super::error::ApiError;
use super::extract::{Incoming, Params};
use crate::node::Node;

/// Marks a request one node forwarded to another, so a stale view of the leader cannot loop.
pub const FORWARDED: &str = "x-lucid-forwarded";

const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Consul's consistency modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Default,
    Stale,
    Consistent,
}

impl Consistency {
    pub fn from_params(p: &Params) -> Result<Self, ApiError> {
        match (p.get("stale").is_some(), p.get("consistent").is_some()) {
            (true, true) => Err(ApiError::bad_request(
                "cannot ask for both ?stale and ?consistent",
            )),
            (true, false) => Ok(Consistency::Stale),
            (false, true) => Ok(Consistency::Consistent),
            (false, false) => Ok(Consistency::Default),
        }
    }
}

/// A blocking query's parameters: return once the index passes `index`, or after `wait`.
#[derive(Debug, Clone, Copy)]
pub struct Blocking {
    pub index: u64,
    pub wait: Duration,
}

impl Blocking {
    pub fn from_params(p: &Params) -> Result<Option<Self>, ApiError> {
        let index = p.u64("index")?.unwrap_or(0);
        if index == 0 {
            return Ok(None);
        }
        let wait = match p.get("wait") {
            Some(w) => lucid_core::parse_duration(w)
                .map_err(|e| ApiError::bad_request(format!("query parameter wait: {e}")))?
                .min(MAX_WAIT),
            None => DEFAULT_WAIT,
        };
        let wait = if wait.is_zero() { DEFAULT_WAIT } else { wait };
        // Consul adds up to wait/16 so that many watchers do not all return at once.
        let jitter_ms = (wait.as_millis() / 16) as u64;
        let jitter = Duration::from_millis(rand::rng().random_range(0..=jitter_ms));
        Ok(Some(Blocking {
            index,
            wait: wait + jitter,
        }))
    }
}

/// Where a read should run.
pub enum Route {
    Local,
    Forwarded(Response<Body>),
}

/// Decide whether this node may answer the read, forwarding it to the leader if not.
pub async fn route(node: &Node, req: &Incoming) -> Result<Route, ApiError> {
    let mode = Consistency::from_params(&req.params)?;
    if mode == Consistency::Stale {
        return Ok(Route::Local);
    }
    if node.is_leader() {
        // `?consistent` always confirms leadership; a default read does when the lease
        // cannot vouch for it (a leader cut off from its peers must not serve stale data).
        if mode == Consistency::Consistent || !node.lease_valid() {
            metrics::counter!("lucid_reads_confirmed_total").increment(1);
            node.linearize().await?;
        }
        return Ok(Route::Local);
    }
    let blocking = Blocking::from_params(&req.params)?;
    let timeout = blocking.map_or(Duration::ZERO, |b| b.wait) + Duration::from_secs(15);
    to_leader(node, req, Vec::new(), timeout)
        .await
        .map(Route::Forwarded)
}

/// Layer on the Consul read routes: a `GET` this node may not answer under the requested
/// consistency mode is relayed to the leader, so handlers only ever answer locally.
pub async fn leader_reads(
    axum::extract::State(api): axum::extract::State<std::sync::Arc<super::ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    if req.method() != axum::http::Method::GET {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let incoming = match Incoming::from_request_parts(&mut parts, &()).await {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    // A blocking query holds its place until it answers (here or relayed to the leader).
    let _permit = match Blocking::from_params(&incoming.params) {
        Ok(Some(_)) => match api.watchers.admit(watch_keys(&parts.extensions, &incoming)) {
            Ok(p) => Some(p),
            Err(e) => return e.into_response(),
        },
        Ok(None) => None,
        Err(e) => return e.into_response(),
    };
    match route(&api.node, &incoming).await {
        Ok(Route::Local) => {
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
        Ok(Route::Forwarded(resp)) => resp,
        Err(e) => e.into_response(),
    }
}

/// The keys a blocking query counts against: its token, and its client address unless a
/// peer relayed it (the peer counted the address where the client connected).
fn watch_keys(ext: &axum::http::Extensions, req: &Incoming) -> Vec<super::limits::Key> {
    use super::limits::Key;
    let mut keys = Vec::with_capacity(2);
    if let k @ Key::Token(_) = super::authz::limit_key(&req.headers, ext) {
        keys.push(k);
    }
    let client = ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
    if let (Some(c), false) = (client, req.headers.contains_key(FORWARDED)) {
        keys.push(Key::Ip(c.0.ip()));
    }
    keys
}

/// Relay a request to the leader, refusing if it was already relayed once (a stale view of
/// the leader must not loop).
pub async fn to_leader(
    node: &Node,
    req: &Incoming,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Response<Body>, ApiError> {
    if req.headers.contains_key(FORWARDED) {
        return Err(ApiError::unavailable(
            "forwarded request reached a node that is not the leader",
        ));
    }
    let (_, leader) = node
        .leader()
        .ok_or_else(|| ApiError::unavailable("no cluster leader; retry, or read with ?stale"))?;
    forward(node, &leader.http_addr, req, body, timeout).await
}

/// Relay a request to another node's HTTP API and hand back its answer unchanged.
pub async fn forward(
    node: &Node,
    http_addr: &str,
    req: &Incoming,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = node.http.url(http_addr, path);
    let from = node.id.to_string();
    let mut fwd: Vec<(&str, &str)> = vec![(FORWARDED, from.as_str())];
    for name in ["x-consul-token", "authorization", "content-type"] {
        if let Some(v) = req.headers.get(name).and_then(|v| v.to_str().ok()) {
            fwd.push((name, v));
        }
    }
    let resp = node
        .http
        .send_with_timeout(req.method.clone(), &url, &fwd, body, timeout)
        .await
        .map_err(|e| ApiError::unavailable(format!("forwarding to the leader failed: {e}")))?;
    let mut out = Response::new(Body::from(resp.body));
    *out.status_mut() = resp.status;
    for (k, v) in resp.headers.iter() {
        let name = k.as_str();
        if name == "content-type" || name.starts_with("x-consul-") || name == "x-lucid-error" {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

/// What a blocking query waits on: the narrowest channel that covers what it reads.
#[derive(Debug, Clone, Copy)]
pub enum Watch<'a> {
    /// Every apply (the catalog as a whole, config entries, intentions, revocations).
    All,
    /// Changes to one service.
    Service(&'a str),
    /// Writes under a KV prefix (a single key is its own prefix), so watchers of other keys
    /// cost a write nothing.
    Kv(&'a str),
}

/// Run `read` until its index passes the blocking index, or the wait runs out.
pub async fn block_on<T>(
    node: &Node,
    watch: Watch<'_>,
    blocking: Option<Blocking>,
    read: impl FnMut() -> Result<(u64, T), ApiError>,
) -> Result<(u64, T), ApiError> {
    let Some(b) = blocking else {
        let mut read = read;
        return read();
    };
    let rx = match watch {
        Watch::All => node.state.subscribe(),
        Watch::Service(s) => node.state.subscribe_service(s),
        Watch::Kv(prefix) => node.state.subscribe_kv(prefix),
    };
    wait_on(rx, b, read).await
}

async fn wait_on<T>(
    mut applied: tokio::sync::watch::Receiver<u64>,
    b: Blocking,
    mut read: impl FnMut() -> Result<(u64, T), ApiError>,
) -> Result<(u64, T), ApiError> {
    let deadline = Instant::now() + b.wait;
    loop {
        applied.borrow_and_update();
        let (index, value) = read()?;
        if index > b.index {
            return Ok((index, value));
        }
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return Ok((index, value));
                }
                metrics::counter!("lucid_blocking_query_wakeups_total").increment(1);
            }
            _ = tokio::time::sleep_until(deadline) => return Ok((index, value)),
        }
    }
}

/// A JSON answer with the `X-Consul-*` headers for `index`.
pub fn indexed_json<T: serde::Serialize>(
    node: &Node,
    index: u64,
    body: T,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = axum::Json(body).into_response();
    meta_headers(node, index, resp.headers_mut());
    resp
}

/// `X-Consul-Index`, `X-Consul-KnownLeader`, `X-Consul-LastContact`.
pub fn meta_headers(node: &Node, index: u64, headers: &mut HeaderMap) {
    // Index 0 would make clients' next blocking query return at once; Consul never sends it.
    headers.insert("x-consul-index", HeaderValue::from(index.max(1)));
    let known = if node.leader().is_some() {
        "true"
    } else {
        "false"
    };
    headers.insert("x-consul-knownleader", HeaderValue::from_static(known));
    headers.insert(
        "x-consul-lastcontact",
        HeaderValue::from(node.last_contact_ms()),
    );
}
