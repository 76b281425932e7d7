//! The agent's own operations: `PUT /v1/agent/reload`, `PUT /v1/agent/leave`,
//! `PUT /v1/agent/force-leave/<node>`, `GET /v1/agent/metrics` (Consul's JSON, or
//! `?format=prometheus`), `GET /v1/agent/monitor` (the log, streamed), `PUT
//! /v1/agent/token/<kind>`, and `PUT /v1/agent/maintenance` (node maintenance mode).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::catalog::Check;
use lucid_core::ErrorCode;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{ApiBody, Incoming, Params};
use super::ApiState;
use crate::types::{now_ms, Command};

/// The id of the node maintenance check, as in Consul.
pub const NODE_MAINTENANCE: &str = "_node_maintenance";

/// `PUT /v1/agent/reload`. Settings come from flags and the file at start; there is nothing
/// a reload could change without a restart, so it answers as Consul does and says so in the
/// log.
pub async fn reload() -> StatusCode {
    tracing::info!(
        "reload asked: lucid-registry reads its settings at start; restart to change them"
    );
    StatusCode::OK
}

/// Remove node `id` from the Raft configuration, on the leader (`remove_peer` forwards it
/// there), with the caller's credentials.
async fn remove(api: &Arc<ApiState>, req: &Incoming, id: u64) -> Result<Response, ApiError> {
    let uri: http::Uri = format!("/v1/operator/raft/peer?id={id}")
        .parse()
        .map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let synthetic = Incoming {
        params: Params::parse(&format!("id={id}")),
        method: http::Method::DELETE,
        uri,
        headers: req.headers.clone(),
    };
    super::operator::remove_peer(State(api.clone()), synthetic).await
}

/// `PUT /v1/agent/leave`: leave gracefully (a voter that is not the last one is removed from
/// the Raft configuration first, so the others keep their quorum), then shut down.
pub async fn leave(State(api): State<Arc<ApiState>>, req: Incoming) -> StatusCode {
    let voters = super::operator::peers(&api.node)
        .iter()
        .filter(|p| p.voter)
        .count();
    if voters > 1 {
        match remove(&api, &req, api.node.id).await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(status = %r.status(), "could not leave the Raft configuration; shutting down anyway")
            }
            Err(e) => {
                tracing::warn!(error = ?e, "could not leave the Raft configuration; shutting down anyway")
            }
        }
    }
    tracing::info!("leaving: shutting down at the agent's request");
    api.leave.cancel();
    StatusCode::OK
}

/// `PUT /v1/agent/force-leave/<node>[?prune]`: a server that is gone is removed from the Raft
/// configuration; a name no member has is an error, as in Consul.
pub async fn force_leave(
    State(api): State<Arc<ApiState>>,
    Path(name): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let peer = super::operator::peers(&api.node).into_iter().find(|p| {
        let m = super::agent::member_name(p.id);
        name == m || name == format!("{m}.{}", super::agent::DATACENTER)
    });
    let Some(peer) = peer else {
        return Err(ApiError::bad_request(format!(
            "No node found with name '{name}'"
        )));
    };
    if peer.id == api.node.id {
        return Err(ApiError::bad_request(
            "a node cannot force itself out; use /v1/agent/leave",
        ));
    }
    remove(&api, &req, peer.id).await
}

/// The Prometheus text as Consul's metrics JSON: gauges, counters, and the sums and counts of
/// histograms as samples.
fn metrics_json(text: &str) -> Value {
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    let (mut gauges, mut counters, mut samples) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                kinds.insert(name, kind);
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels: BTreeMap<&str, &str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        match kinds.get(name).or(kinds.get(base)).copied() {
            Some("gauge") => gauges.push(json!({"Name": name, "Value": value, "Labels": labels})),
            Some("counter") => counters.push(json!({"Name": name, "Count": value, "Sum": value,
                "Rate": 0.0, "Min": value, "Max": value, "Mean": value, "Stddev": 0.0, "Labels": labels})),
            Some(_) if name.ends_with("_sum") || name.ends_with("_count") => {
                samples.push(json!({"Name": name, "Count": value, "Sum": value, "Labels": labels}))
            }
            _ => {}
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(&time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] +0000 UTC"
        ))
        .unwrap_or_default();
    json!({"Timestamp": stamp, "Gauges": gauges, "Points": [], "Counters": counters, "Samples": samples})
}

/// `GET /v1/agent/metrics`: Consul's JSON, or the Prometheus text with `?format=prometheus`.
pub async fn metrics(State(api): State<Arc<ApiState>>, params: Params) -> Response {
    let text = api.metrics.render();
    if params.get("format") == Some("prometheus") {
        let mut r = Response::new(Body::from(text));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return r;
    }
    Json(metrics_json(&text)).into_response()
}

/// `GET /v1/agent/monitor?loglevel=<level>[&logjson]`: the log from now on, streamed, at or
/// above `loglevel` (within what `RUST_LOG` lets through); an unknown level is 400.
pub async fn monitor(params: Params) -> Result<Response, ApiError> {
    use tokio::sync::broadcast::error::RecvError;
    use tracing::Level;
    let raw = params
        .get("loglevel")
        .unwrap_or("info")
        .to_ascii_lowercase();
    let min = match raw.as_str() {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "info" | "" => Level::INFO,
        "warn" | "warning" => Level::WARN,
        "err" | "error" => Level::ERROR,
        other => return Err(ApiError::bad_request(format!("Unknown log level: {other}"))),
    };
    let json_lines = params.get("logjson").is_some();
    let rx = lucid_runtime::logging::monitor();
    let lines = futures_util::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                // More verbose levels compare greater in tracing.
                Ok((level, line)) if level <= min => {
                    let text = if json_lines {
                        json!({"@level": level.as_str().to_ascii_lowercase(), "@message": line})
                            .to_string()
                    } else {
                        line
                    };
                    let chunk = bytes::Bytes::from(format!("{text}\n"));
                    return Some((Ok::<_, std::convert::Infallible>(chunk), rx));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let mut r = Response::new(Body::from_stream(lines));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}

/// The kinds of agent token Consul has.
const TOKEN_KINDS: [&str; 7] = [
    "default",
    "agent",
    "agent_recovery",
    "agent_master",
    "replication",
    "config_file_service_registration",
    "dns",
];

/// `PUT /v1/agent/token/<kind>` `{"Token": "..."}`: 401 with ACLs off (as Consul); with them
/// on, kept for this agent's run (lucid's registry uses no agent token of its own: nothing
/// acts with it).
pub async fn token(
    State(api): State<Arc<ApiState>>,
    Path(kind): Path<String>,
    body: ApiBody,
) -> Result<StatusCode, ApiError> {
    if !api.acl.enabled {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::SecurityPolicyViolation,
            "ACL support disabled",
        ));
    }
    if !TOKEN_KINDS.contains(&kind.as_str()) {
        return Err(ApiError::not_found(format!("Token {kind:?} is unknown")));
    }
    let v: Value = body.json()?;
    let token = v
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("token")))
        .and_then(|(_, t)| t.as_str())
        .ok_or_else(|| ApiError::bad_request("Token is required"))?;
    api.agent_tokens
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(kind, token.to_owned());
    Ok(StatusCode::OK)
}

/// `PUT /v1/agent/maintenance?enable=true|false&reason=`: a critical `_node_maintenance`
/// check on the node takes every service on it out of healthy answers until disabled.
pub async fn node_maintenance(
    State(api): State<Arc<ApiState>>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let enable = match params.get("enable") {
        Some("true") => true,
        Some("false") => false,
        _ => return Err(ApiError::bad_request("enable must be true or false")),
    };
    if !enable {
        api.node
            .write(Command::CheckDeregister {
                check_id: NODE_MAINTENANCE.into(),
                at_ms: now_ms(),
            })
            .await?;
        return Ok(StatusCode::OK);
    }
    let reason = params.get("reason").unwrap_or_default();
    let notes = if reason.is_empty() {
        "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.".into()
    } else {
        reason.to_owned()
    };
    let check = Check::maintenance(
        NODE_MAINTENANCE.into(),
        "Node Maintenance Mode",
        String::new(),
        notes,
    );
    api.node.write(Command::CheckRegister { check }).await?;
    Ok(StatusCode::OK)
}
