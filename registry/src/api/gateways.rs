//! Ingress gateways as Consul's catalog shows them: `/v1/catalog/gateway-services/<gateway>`
//! lists what the gateway's `ingress-gateway` config entry exposes, and
//! `/v1/health/ingress/<service>` the gateway instances in front of a service. Both are read
//! from the config entries and the catalog as they are; lucid's sidecars carry no gateway
//! traffic from these entries.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use lucid_core::config_entry::{ConfigEntry, ConfigKind};
use serde::Serialize;

use super::error::ApiError;
use super::extract::Incoming;
use super::filter;
use super::health::{healthy, service_entry, Nodes};
use super::read::{self, Blocking};
use super::ApiState;
use crate::store::state::StateError;
use crate::store::StateReader;

/// Consul's `CompoundServiceName` without the enterprise fields.
#[derive(Debug, Clone, Serialize)]
pub struct Named {
    #[serde(rename = "Name")]
    pub name: String,
}

/// Consul's `GatewayService`, as `/v1/catalog/gateway-services` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayService {
    #[serde(rename = "Gateway")]
    pub gateway: Named,
    #[serde(rename = "Service")]
    pub service: Named,
    #[serde(rename = "GatewayKind")]
    pub gateway_kind: &'static str,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "Protocol")]
    pub protocol: String,
    #[serde(rename = "Hosts")]
    pub hosts: Vec<String>,
    #[serde(rename = "FromWildcard")]
    pub from_wildcard: bool,
}

/// Every service the catalog has, for a `*` listener: not the gateways and proxies
/// themselves, nor Consul's own `consul`.
fn plain_services(state: &StateReader) -> Result<BTreeSet<String>, StateError> {
    let (_, instances, _) = state.catalog()?;
    let external = state
        .external_catalog()?
        .into_iter()
        .flat_map(|n| n.instances);
    Ok(instances
        .into_iter()
        .chain(external)
        .filter(|i| i.extras.kind.is_empty() && i.name != "consul")
        .map(|i| i.name)
        .collect())
}

/// What gateway `entry` exposes, in listener order.
fn exposed(state: &StateReader, entry: &ConfigEntry) -> Result<Vec<GatewayService>, StateError> {
    let mut out = Vec::new();
    for l in &entry.listeners {
        for s in &l.services {
            let (names, from_wildcard) = if s.name == "*" {
                (plain_services(state)?.into_iter().collect(), true)
            } else {
                (vec![s.name.clone()], false)
            };
            for name in names {
                out.push(GatewayService {
                    gateway: Named {
                        name: entry.name.clone(),
                    },
                    service: Named { name },
                    gateway_kind: "ingress-gateway",
                    port: l.port,
                    protocol: l.protocol.clone(),
                    hosts: s.hosts.clone(),
                    from_wildcard,
                });
            }
        }
    }
    Ok(out)
}

/// The later of the catalog and config entry indexes: either moves what these answers say.
fn index(state: &StateReader) -> Result<u64, StateError> {
    Ok(state
        .catalog_index()?
        .max(state.config_entries(ConfigKind::IngressGateway)?.0))
}

/// `GET /v1/catalog/gateway-services/<gateway>`: `[]` for a gateway without an entry.
pub async fn services(
    State(api): State<Arc<ApiState>>,
    Path(gateway): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let blocking = Blocking::from_params(&req.params)?;
    let state = &api.node.state;
    let (index, out) = read::block_on(&api.node, read::Watch::All, blocking, || {
        let out = match state.config_entry(ConfigKind::IngressGateway, &gateway)?.1 {
            Some(stored) => exposed(state, &stored.entry)?,
            None => Vec::new(),
        };
        Ok((index(state)?, out))
    })
    .await?;
    Ok(read::indexed_json(&api.node, index, out))
}

/// `GET /v1/health/ingress/<service>`: the instances of every ingress gateway whose entry
/// exposes the service (by name or `*`), each with its checks; `?passing` keeps the healthy.
pub async fn health_ingress(
    State(api): State<Arc<ApiState>>,
    Path(service): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let filter = filter::from_request(&req, filter::check_service_node())?;
    let blocking = Blocking::from_params(&req.params)?;
    let passing = req.params.flag("passing");
    let state = &api.node.state;
    let (index, gateways) = read::block_on(&api.node, read::Watch::All, blocking, || {
        let mut gateways = Vec::new();
        for stored in state.config_entries(ConfigKind::IngressGateway)?.1 {
            if exposed(state, &stored.entry)?
                .iter()
                .any(|g| g.service.name == service)
            {
                gateways.extend(state.service(&stored.entry.name)?.1);
            }
        }
        Ok((index(state)?, gateways))
    })
    .await?;
    let nodes = Nodes::of_entries(&api, &gateways)?;
    let out: Vec<_> = gateways
        .iter()
        .filter(|(i, _)| i.extras.kind == "ingress-gateway")
        .filter(|(_, checks)| !passing || healthy(checks))
        .map(|(i, checks)| service_entry(&nodes.of(i), i, checks))
        .collect();
    let out = filter::keep(filter.as_ref(), out);
    Ok(read::indexed_json(&api.node, index, out))
}
