//! Consul's operator endpoints beyond Raft membership: `GET|PUT
//! /v1/operator/autopilot/configuration` (replicated, with `?cas=`),
//! `GET /v1/operator/autopilot/health` (from the leader's Raft state: who is voting, how far
//! each server's log trails), `GET /v1/operator/usage`, and `/v1/operator/keyring`, which
//! answers as a Consul cluster without gossip encryption does: there is no gossip keyring here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::ErrorCode;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::read;
use super::ApiState;
use crate::types::Command;

/// The setting's name in the replicated state.
const SETTING: &str = "autopilot";

/// Consul's defaults, with their exact names.
fn defaults() -> Map<String, Value> {
    let v = json!({
        "CleanupDeadServers": true,
        "LastContactThreshold": "200ms",
        "MaxTrailingLogs": 250,
        "MinQuorum": 0,
        "ServerStabilizationTime": "10s",
        "RedundancyZoneTag": "",
        "DisableUpgradeMigration": false,
        "UpgradeVersionTag": "",
    });
    v.as_object().cloned().unwrap_or_default()
}

fn current(api: &ApiState) -> Result<(Map<String, Value>, u64, u64), ApiError> {
    let mut conf = defaults();
    let Some(s) = api.node.state.setting(SETTING)? else {
        return Ok((conf, 0, 0));
    };
    if let Some(m) = s.value.as_object() {
        conf.extend(m.clone());
    }
    Ok((conf, s.create_index, s.modify_index))
}

/// `GET /v1/operator/autopilot/configuration`.
pub async fn get_config(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let (mut conf, create, modify) = current(&api)?;
    conf.insert("CreateIndex".into(), json!(create));
    conf.insert("ModifyIndex".into(), json!(modify));
    Ok(Json(Value::Object(conf)).into_response())
}

/// `PUT /v1/operator/autopilot/configuration[?cas=N]`: the fields given replace the current
/// ones (names matched as Consul does, each value checked); `false` when the cas differs.
pub async fn put_config(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let cas = req.params.u64("cas")?;
    let v: Value = body.json()?;
    let given = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    let (mut conf, _, _) = current(&api)?;
    let known = defaults();
    for (k, val) in given {
        let folded = lucid_core::fold_key(k);
        if matches!(folded.as_str(), "createindex" | "modifyindex") {
            continue;
        }
        let Some((name, default)) = known
            .iter()
            .find(|(n, _)| lucid_core::fold_key(n) == folded)
        else {
            return Err(ApiError::bad_request(format!("{k}: unknown field")));
        };
        let same_type = matches!(
            (default, val),
            (Value::Bool(_), Value::Bool(_))
                | (Value::Number(_), Value::Number(_))
                | (Value::String(_), Value::String(_))
        );
        if !same_type {
            return Err(ApiError::bad_request(format!(
                "{name}: must be like {default}"
            )));
        }
        if let Value::String(d) = val {
            if name.ends_with("Threshold") || name.ends_with("Time") {
                lucid_core::parse_duration(d)
                    .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))?;
            }
        }
        conf.insert(name.clone(), val.clone());
    }
    let res = api
        .node
        .write(Command::SettingSet {
            name: SETTING.into(),
            value: Value::Object(conf),
            cas,
        })
        .await?;
    Ok(Json(res.ok).into_response())
}

/// `GET /v1/operator/autopilot/health`: every server, from the leader's Raft metrics (a
/// follower relays the read there). A server is healthy when it is a voter whose log trails
/// the leader's by at most `MaxTrailingLogs`.
pub async fn health(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let node = &api.node;
    let m = node.raft.metrics().borrow().clone();
    let (conf, _, _) = current(&api)?;
    let max_trailing = conf
        .get("MaxTrailingLogs")
        .and_then(Value::as_u64)
        .unwrap_or(250);
    let leader = node.leader().map(|(id, _)| id);
    let last = m.last_log_index.unwrap_or(0);
    let mut servers = Vec::new();
    let mut healthy_voters = 0usize;
    let peers = super::operator::peers(node);
    for p in &peers {
        let matched = if Some(p.id) == leader {
            Some(last)
        } else {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&p.id).copied().flatten())
                .map(|l| l.index)
        };
        let healthy = p.voter && matched.is_some_and(|i| last.saturating_sub(i) <= max_trailing);
        if healthy && p.voter {
            healthy_voters += 1;
        }
        servers.push(json!({
            "ID": p.id.to_string(),
            "Name": super::agent::member_name(p.id),
            "Address": p.member.raft_addr,
            "SerfStatus": "alive",
            "Version": env!("CARGO_PKG_VERSION"),
            "Leader": Some(p.id) == leader,
            "LastContact": if Some(p.id) == leader { "0s".to_owned() } else { format!("{}ms", node.last_contact_ms()) },
            "LastTerm": m.current_term,
            "LastIndex": matched.unwrap_or(0),
            "Healthy": healthy,
            "Voter": p.voter,
            "StableSince": "",
        }));
    }
    let voters = peers.iter().filter(|p| p.voter).count();
    let quorum = voters / 2 + 1;
    let all_healthy = servers.iter().all(|s| s["Healthy"] == true);
    let body = json!({
        "Healthy": all_healthy && leader.is_some(),
        "FailureTolerance": healthy_voters.saturating_sub(quorum),
        "Servers": servers,
    });
    // Consul answers an unhealthy cluster with 429, the body still telling which server.
    let status = if all_healthy {
        StatusCode::OK
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    Ok((status, Json(body)).into_response())
}

/// `GET /v1/operator/usage`: services, instances and nodes, as Consul counts them.
pub async fn usage(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let (index, instances, _) = api.node.state.catalog()?;
    let mut names = std::collections::BTreeSet::new();
    let (mut proxies, mut native) = (0u64, 0u64);
    for i in &instances {
        names.insert(i.name.as_str());
        if i.extras.kind == "connect-proxy" {
            proxies += 1;
        }
        if i.extras.connect_native {
            native += 1;
        }
    }
    let dc = json!({
        "Services": names.len(),
        "ServiceInstances": instances.len(),
        "ConnectServiceInstances": {"connect-native": native, "connect-proxy": proxies,
            "api-gateway": 0, "ingress-gateway": 0, "mesh-gateway": 0, "terminating-gateway": 0},
        "BillableServiceInstances": instances.len() as u64 - proxies,
        "Nodes": 1,
    });
    let known = api.node.leader().is_some();
    let body = json!({"Usage": {super::agent::DATACENTER: dc}, "Index": index, "LastContact": 0,
        "KnownLeader": known, "ConsistencyLevel": "leader", "NotModified": false,
        "Backend": 0, "ResultsFilteredByACLs": false});
    Ok(read::indexed_json(&api.node, index, body))
}

/// `/v1/operator/keyring` (every method): there is no gossip, so no gossip key to list,
/// install, use or remove; cluster traffic is protected by TLS (`--tls-*`), not a keyring.
pub async fn keyring() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        ErrorCode::InvalidConfiguration,
        "no gossip keyring: lucid-registry has no gossip layer (Raft between nodes is protected by cluster TLS)",
    )
}
