//! Catalog and health answers: `/v1/health/service/<name>` ([`ServiceEntry`]),
//! `/v1/catalog/service/<name>` ([`CatalogService`]), `/v1/agent/services` ([`AgentService`]),
//! the checks endpoints ([`HealthCheck`]) and `/v1/catalog/nodes` ([`Node`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{CheckKind, CheckStatus, Instance, Locality, ServiceAddress, Weights};

/// A node: the registry's own, or an external one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "TaggedAddresses")]
    pub tagged_addresses: BTreeMap<String, String>,
}

impl Node {
    /// An external node as the catalog shows it.
    pub fn external(n: &crate::catalog::ExternalNode, datacenter: &str) -> Self {
        Node {
            address: n.address.clone(),
            datacenter: datacenter.to_owned(),
            id: n.id.clone(),
            meta: n.meta.clone(),
            node: n.name.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
        }
    }
}

/// SRV weights by health, as Consul spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WireWeights {
    #[serde(rename = "Passing")]
    pub passing: u32,
    #[serde(rename = "Warning")]
    pub warning: u32,
}

impl Default for WireWeights {
    fn default() -> Self {
        Weights::default().into()
    }
}

impl From<Weights> for WireWeights {
    fn from(w: Weights) -> Self {
        WireWeights {
            passing: w.passing,
            warning: w.warning,
        }
    }
}

/// A service instance as the agent and health endpoints show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentService {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    #[serde(rename = "EnableTagOverride")]
    pub enable_tag_override: bool,
    #[serde(rename = "ID")]
    pub id: String,
    /// `connect-proxy`, a gateway kind, or absent for a plain service.
    #[serde(rename = "Kind", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "Locality", skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    /// The sidecar's inbound (mTLS) port: what other sidecars dial. Absent without a sidecar
    /// (Consul's own field set otherwise; a Consul client comparing whole answers sees none).
    #[serde(rename = "MeshPort", skip_serializing_if = "Option::is_none")]
    pub mesh_port: Option<u16>,
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "Proxy", skip_serializing_if = "Option::is_none")]
    pub proxy: Option<serde_json::Value>,
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "TaggedAddresses", skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    #[serde(rename = "Weights")]
    pub weights: WireWeights,
}

impl AgentService {
    pub fn new(i: &Instance, datacenter: &str) -> Self {
        AgentService {
            address: i.address.clone(),
            datacenter: datacenter.to_owned(),
            enable_tag_override: i.enable_tag_override,
            id: i.id.clone(),
            kind: i.extras.kind.clone(),
            locality: i.extras.locality.clone(),
            mesh_port: i.mesh_port,
            meta: i.meta.clone(),
            port: i.port,
            proxy: i.extras.proxy.clone(),
            service: i.name.clone(),
            tagged_addresses: i.extras.tagged_addresses.clone(),
            tags: i.tags.clone(),
            weights: i.weights.into(),
        }
    }
}

/// A check as the health endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthCheck {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Absent on the node-level `serfHealth` check.
    #[serde(rename = "Interval", skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "Notes")]
    pub notes: String,
    #[serde(rename = "Output")]
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "ServiceTags")]
    pub service_tags: Vec<String>,
    #[serde(rename = "Status")]
    pub status: CheckStatus,
    #[serde(rename = "Timeout", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `http`, `tcp`, `ttl`, `maintenance`, or `""` for `serfHealth`.
    #[serde(rename = "Type")]
    pub kind: String,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            check_id: String::new(),
            interval: None,
            name: String::new(),
            node: String::new(),
            notes: String::new(),
            output: String::new(),
            service_id: String::new(),
            service_name: String::new(),
            service_tags: Vec::new(),
            // A reader that is not told a status must not take the instance for healthy.
            status: CheckStatus::Critical,
            timeout: None,
            kind: String::new(),
        }
    }
}

impl HealthCheck {
    /// `c` on `node`; `service` is the instance it belongs to, if any.
    pub fn new(c: &crate::catalog::Check, service: Option<&Instance>, node: &str) -> Self {
        let kind = match &c.kind {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Ttl => "ttl",
            CheckKind::Script { .. } => "script",
            CheckKind::Maintenance => "maintenance",
            CheckKind::External => "",
        };
        HealthCheck {
            check_id: c.id.clone(),
            interval: Some(crate::format_duration(c.interval)),
            name: c.name.clone(),
            node: node.to_owned(),
            notes: c.notes.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            service_name: service.map_or_else(String::new, |s| s.name.clone()),
            service_tags: service.map_or_else(Vec::new, |s| s.tags.clone()),
            status: c.status,
            timeout: Some(crate::format_duration(c.timeout)),
            kind: kind.to_owned(),
        }
    }

    /// The node-level check Consul always lists first (py-consul's tests expect it).
    pub fn serf_health(node: &str) -> Self {
        HealthCheck {
            check_id: "serfHealth".into(),
            name: "Serf Health Status".into(),
            node: node.to_owned(),
            output: "Agent alive and reachable".into(),
            status: CheckStatus::Passing,
            ..HealthCheck::default()
        }
    }
}

/// One element of `/v1/health/service/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceEntry {
    #[serde(rename = "Checks")]
    pub checks: Vec<HealthCheck>,
    #[serde(rename = "Node")]
    pub node: Node,
    #[serde(rename = "Service")]
    pub service: AgentService,
}

impl ServiceEntry {
    /// Every check passes (Consul's `?passing`).
    pub fn passing(&self) -> bool {
        self.checks.iter().all(|c| c.status == CheckStatus::Passing)
    }

    /// The address to dial the instance at: its own, else its node's.
    pub fn address(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }
}

/// One element of `/v1/catalog/service/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CatalogService {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "NodeMeta")]
    pub node_meta: BTreeMap<String, String>,
    #[serde(rename = "TaggedAddresses")]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(rename = "ServiceAddress")]
    pub service_address: String,
    #[serde(rename = "ServiceEnableTagOverride")]
    pub service_enable_tag_override: bool,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "ServiceMeta")]
    pub service_meta: BTreeMap<String, String>,
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "ServicePort")]
    pub service_port: u16,
    #[serde(rename = "ServiceTags")]
    pub service_tags: Vec<String>,
    #[serde(rename = "ServiceWeights")]
    pub service_weights: WireWeights,
}

impl CatalogService {
    pub fn new(i: &Instance, node: &Node) -> Self {
        CatalogService {
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            id: node.id.clone(),
            node: node.node.clone(),
            node_meta: node.meta.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            service_address: i.address.clone(),
            service_enable_tag_override: i.enable_tag_override,
            service_id: i.id.clone(),
            service_meta: i.meta.clone(),
            service_name: i.name.clone(),
            service_port: i.port,
            service_tags: i.tags.clone(),
            service_weights: i.weights.into(),
        }
    }
}

/// The registration body a sidecar sends for its instance (`PUT /v1/agent/service/register`):
/// Consul's field names, which the registry's case-insensitive parser reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SidecarRegistration {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Check")]
    pub check: TtlCheck,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "MeshPort")]
    pub mesh_port: u16,
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
}

/// The TTL check a sidecar keeps passing for its instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TtlCheck {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    #[serde(rename = "Status")]
    pub status: CheckStatus,
    /// A Consul duration (`"15s"`).
    #[serde(rename = "TTL")]
    pub ttl: String,
}

impl Default for TtlCheck {
    fn default() -> Self {
        TtlCheck {
            check_id: String::new(),
            status: CheckStatus::Critical,
            ttl: String::new(),
        }
    }
}
