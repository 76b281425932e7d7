//! `GET|POST /v1/discovery-chain/<service>`: Consul's compiled discovery chain, for the
//! routing lucid has. Lucid has no service-router, -splitter or -resolver entries, so every
//! chain is Consul's default one: a single resolver node sending everything to the service
//! in this datacenter. The protocol is the service's `service-defaults` Protocol (or the
//! POST body's `OverrideProtocol`); without one a lucid sidecar speaks HTTP, so the chain says
//! `http` (Consul's own default is `tcp`, but its sidecars would then see bytes, not requests).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use lucid_core::config_entry::ConfigKind;
use serde_json::{json, Value};

use super::agent::DATACENTER;
use super::error::ApiError;
use super::read;
use super::ApiState;

/// Consul's default connect timeout for a resolver.
const CONNECT_TIMEOUT: &str = "5s";
const PROTOCOLS: [&str; 4] = ["tcp", "http", "http2", "grpc"];

/// The body of the POST form: compile options.
fn override_protocol(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    for (k, val) in o {
        match lucid_core::fold_key(k).as_str() {
            "overrideprotocol" => {
                let p = val
                    .as_str()
                    .ok_or_else(|| ApiError::bad_request("OverrideProtocol must be a string"))?;
                if p.is_empty() {
                    return Ok(None);
                }
                if !PROTOCOLS.contains(&p) {
                    return Err(ApiError::bad_request(format!(
                        "OverrideProtocol {p:?} is not one of tcp, http, http2, grpc"
                    )));
                }
                return Ok(Some(p.to_owned()));
            }
            "overridemeshgateway" | "overrideconnecttimeout" | "evaluateindatacenter" => {}
            _ => return Err(ApiError::bad_request(format!("{k}: unknown field"))),
        }
    }
    Ok(None)
}

/// The compiled default chain for `service`.
fn compiled(service: &str, protocol: &str) -> Value {
    let target = format!("{service}.default.default.{DATACENTER}");
    let node = format!("resolver:{target}");
    let sni = format!(
        "{service}.default.{DATACENTER}.internal.{}",
        lucid_tls::TRUST_DOMAIN
    );
    json!({
        "ServiceName": service,
        "Namespace": "default",
        "Partition": "default",
        "Datacenter": DATACENTER,
        "CustomizationHash": "",
        "Default": true,
        "Protocol": protocol,
        "ServiceMeta": null,
        "StartNode": node,
        "Nodes": {
            node.clone(): {
                "Type": "resolver",
                "Name": target,
                "Resolver": {"ConnectTimeout": CONNECT_TIMEOUT, "Default": true, "Target": target},
            }
        },
        "Targets": {
            target.clone(): {
                "ID": target,
                "Service": service,
                "Namespace": "default",
                "Partition": "default",
                "Datacenter": DATACENTER,
                "MeshGateway": {},
                "Subset": {},
                "ConnectTimeout": CONNECT_TIMEOUT,
                "SNI": sni,
                "Name": sni,
            }
        },
    })
}

/// `GET|POST /v1/discovery-chain/<service>`.
pub async fn chain(
    State(api): State<Arc<ApiState>>,
    Path(service): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let overridden = override_protocol(&body)?;
    let (index, entry) = api
        .node
        .state
        .config_entry(ConfigKind::ServiceDefaults, &service)?;
    let protocol = overridden
        .or_else(|| entry.and_then(|e| e.entry.protocol))
        .unwrap_or_else(|| "http".to_owned());
    let body = json!({"Chain": compiled(&service, &protocol)});
    Ok(read::indexed_json(&api.node, index, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_options_are_checked() {
        assert_eq!(override_protocol(b"").unwrap(), None);
        assert_eq!(
            override_protocol(br#"{"OverrideProtocol": "grpc"}"#).unwrap(),
            Some("grpc".into())
        );
        assert!(override_protocol(br#"{"OverrideProtocol": "ftp"}"#).is_err());
        assert!(override_protocol(br#"{"Nope": 1}"#).is_err());
        assert!(override_protocol(b"[").is_err());
    }

    #[test]
    fn the_default_chain_ends_at_the_service() {
        let c = compiled("web", "http");
        let start = c["StartNode"].as_str().unwrap();
        let target = c["Nodes"][start]["Resolver"]["Target"].as_str().unwrap();
        assert_eq!(c["Targets"][target]["Service"], "web");
    }
}
