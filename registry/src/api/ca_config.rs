//! `GET|PUT /v1/connect/ca/configuration`, Consul's CA configuration. Lucid's CA is the
//! built-in provider (`consul`, an ECDSA P-256 root valid ten years, no intermediates), so of
//! its settings only `LeafCertTTL` changes at run time: it is replicated (`ca` in
//! `store/settings.rs`) and the next leaf any node signs uses it. The others are reported as
//! they are and accepted back unchanged, so a client can PUT what it read.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lucid_core::format_duration;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::extract::ApiBody;
use super::read;
use super::ApiState;
use crate::ca::{LEAF_TTL, SETTING};
use crate::types::Command;

/// The longest leaf Consul allows (a year); the shortest is a minute here, since
/// `--leaf-ttl` accepts that for tests of rotation.
const LEAF_MAX: Duration = Duration::from_secs(8760 * 3600);
const LEAF_MIN: Duration = Duration::from_secs(60);

/// What is fixed about the built-in CA, under Consul's names.
fn fixed() -> [(&'static str, Value); 5] {
    [
        ("IntermediateCertTTL", json!("8760h")),
        ("RootCertTTL", json!("87600h")),
        ("RotationPeriod", json!("2160h")),
        ("PrivateKeyType", json!("ec")),
        ("PrivateKeyBits", json!(256)),
    ]
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => {
            match (lucid_core::parse_duration(x), lucid_core::parse_duration(y)) {
                (Ok(x), Ok(y)) => x == y,
                _ => x.eq_ignore_ascii_case(y),
            }
        }
        _ => a.as_f64().is_some() && a.as_f64() == b.as_f64(),
    }
}

/// `GET /v1/connect/ca/configuration`.
pub async fn get(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let set = api.node.state.setting(SETTING)?;
    let leaf = set
        .as_ref()
        .and_then(|s| s.value.get(LEAF_TTL)?.as_str().map(str::to_owned))
        .unwrap_or_else(|| format_duration(api.ca.default_leaf_ttl()));
    let mut config = Map::new();
    config.insert(LEAF_TTL.into(), json!(leaf));
    for (k, v) in fixed() {
        config.insert(k.into(), v);
    }
    let (create, modify) = set.map_or((0, 0), |s| (s.create_index, s.modify_index));
    let body = json!({
        "Provider": "consul",
        "Config": config,
        "State": null,
        "ForceWithoutCrossSigning": false,
        "CreateIndex": create,
        "ModifyIndex": modify,
    });
    Ok(read::indexed_json(&api.node, modify.max(1), body))
}

/// `PUT /v1/connect/ca/configuration` `{"Provider": "consul", "Config": {...}}`.
pub async fn put(State(api): State<Arc<ApiState>>, body: ApiBody) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let field = |name: &str| {
        v.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| lucid_core::fold_key(k) == lucid_core::fold_key(name))
                .map(|(_, v)| v)
        })
    };
    match field("Provider").and_then(Value::as_str) {
        Some("consul") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Provider {other:?}: lucid-registry has only the built-in CA (\"consul\")"
            )))
        }
        None => return Err(ApiError::bad_request("Provider is required (\"consul\")")),
    }
    let config = match field("Config") {
        Some(Value::Object(m)) => m.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(ApiError::bad_request("Config must be a JSON object")),
    };
    let mut leaf = None;
    for (k, val) in &config {
        let folded = lucid_core::fold_key(k);
        if folded == lucid_core::fold_key(LEAF_TTL) {
            let text = val
                .as_str()
                .ok_or_else(|| ApiError::bad_request("LeafCertTTL must be a duration string"))?;
            let d = lucid_core::parse_duration(text)
                .map_err(|e| ApiError::bad_request(format!("LeafCertTTL: {e}")))?;
            if !(LEAF_MIN..=LEAF_MAX).contains(&d) {
                return Err(ApiError::bad_request(format!(
                    "LeafCertTTL {text:?} must be between 1m and 8760h"
                )));
            }
            leaf = Some(format_duration(d));
            continue;
        }
        match fixed()
            .into_iter()
            .find(|(name, _)| lucid_core::fold_key(name) == folded)
        {
            Some((_, current)) if same(&current, val) => {}
            Some((name, current)) => {
                return Err(ApiError::bad_request(format!(
                    "{name} is fixed at {current} for lucid's built-in CA"
                )))
            }
            None => return Err(ApiError::bad_request(format!("Config.{k}: unknown field"))),
        }
    }
    let leaf = leaf.unwrap_or_else(|| format_duration(api.ca.default_leaf_ttl()));
    api.node
        .write(Command::SettingSet {
            name: SETTING.into(),
            value: json!({ LEAF_TTL: leaf }),
            cas: None,
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_consul_stores_them() {
        assert_eq!(format_duration(Duration::from_secs(72 * 3600)), "72h");
        assert_eq!(format_duration(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert!(same(&json!("8760h"), &json!("8760h0m0s")));
        assert!(same(&json!(256), &json!(256.0)));
        assert!(!same(&json!("ec"), &json!("rsa")));
    }
}
