//! The service catalog's data model (DESIGN §4): service instances and their checks, parsed
//! from the registration bodies Consul clients send and validated before anything is written.
//!
//! Consul decodes JSON keys case-insensitively and accepts snake_case aliases; python clients
//! send `name`, `checks`, `deregister_critical_service_after`, ... So a body is first
//! normalised ([`parse`]) and only then mapped onto typed structs. User data (`Meta` keys,
//! `Header` names) keeps its case.

mod parse;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::parse::{
    parse_catalog_deregistration, parse_catalog_registration, parse_check, parse_registration,
    parse_sidecar_service, CatalogDeregistration, CatalogRegistration, CatalogTarget,
    RegistrationError,
};

/// Longest service name (a DNS label).
pub const MAX_NAME: usize = 63;
/// Longest instance id.
pub const MAX_ID: usize = 128;

/// Is `name` a valid service name: `^[a-z0-9-]+$`, 1..=63 chars?
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Is `id` a valid instance or check id: 1 to 128 characters from ASCII letters, digits and
/// `. _ : @ ~ -`? One character set for bodies and (decoded) paths, so an id can never mean
/// one thing to the permission check and another to the handler, and `/`, `%`, spaces and
/// control characters (the catalog's index keys use NUL as a separator) never appear.
pub fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@~#-".contains(&b))
}

/// Is `id` kept from the registry's own instances? `<id>.<node>.node` is how DNS names an
/// external node's instance, so an own instance named that way would take over its answers.
pub fn reserved_instance_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() >= 5 && b[b.len() - 5..].eq_ignore_ascii_case(b".node")
}

/// Why `id` (an instance, check or node ID, or a service name given through Consul's API) is
/// refused, if it is: the one wording of the one character rule.
pub fn invalid_id(id: &str) -> Option<String> {
    (!valid_instance_id(id))
        .then(|| format!("{id:?} must be 1-{MAX_ID} characters from A-Z a-z 0-9 . _ : @ ~ # -"))
}

/// May a service registered through Consul's API carry this name? Consul takes names that are
/// no DNS label (`foo_tagged`, `app#10.0.0.1#3000`, upper case) and only warns that DNS will
/// not find them; so does the catalog, with the instance id's character set. What the mesh
/// itself names (sidecars, certificates, intentions, config entries) keeps the strict
/// [`valid_service_name`], and DNS answers only for services whose name is one.
pub fn valid_catalog_name(name: &str) -> bool {
    valid_instance_id(name)
}

/// Check status; health rolls up as critical > warning > passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<CheckStatus> {
        match s.to_ascii_lowercase().as_str() {
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
        }
    }
}

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CheckKind {
    /// GET (or `method`) on a URL: 2xx passing, 429 warning, else critical.
    Http {
        url: String,
        method: String,
        header: BTreeMap<String, Vec<String>>,
        body: String,
        tls_skip_verify: bool,
    },
    /// A TCP connect to `host:port`.
    Tcp { address: String },
    /// Kept current by the client (`/v1/agent/check/pass/<id>`); critical when it lapses.
    Ttl,
    /// `/v1/agent/service/maintenance/<id>?enable=true`: critical until maintenance ends.
    Maintenance,
    /// Run `args` (Consul's `Args`; `Script` is `sh -c <script>`): exit 0 passing, 1 warning,
    /// else critical. Only with `--enable-script-checks`, as Consul's `enable_script_checks`.
    Script { args: Vec<String> },
    /// A check of an external node (`/v1/catalog/register`): its status is whatever the
    /// registration said; nothing here probes it, as Consul's servers probe no catalog check.
    External,
}

/// One check as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub id: String,
    pub name: String,
    pub notes: String,
    /// Empty for a node-level check.
    pub service_id: String,
    pub kind: CheckKind,
    /// Probe period (HTTP/TCP) or the TTL.
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    pub status: CheckStatus,
    pub output: String,
    /// Reap the service after this long critical (`DeregisterCriticalServiceAfter`).
    #[serde(with = "opt_duration_ms")]
    pub deregister_critical_after: Option<Duration>,
    pub success_before_passing: u32,
    pub failures_before_critical: u32,
    /// Log index of the last registration or status update (a TTL refresh moves it even when
    /// the status stays the same).
    #[serde(default)]
    pub updated_index: u64,
}

impl Check {
    /// The critical check maintenance mode adds: Consul's `_node_maintenance` (no
    /// `service_id`) or `_service_maintenance:<id>`, with the operator's reason as its notes.
    pub fn maintenance(id: String, name: &str, service_id: String, notes: String) -> Check {
        Check {
            id,
            name: name.to_owned(),
            notes,
            service_id,
            kind: CheckKind::Maintenance,
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            status: CheckStatus::Critical,
            output: String::new(),
            deregister_critical_after: None,
            success_before_passing: 0,
            failures_before_critical: 0,
            updated_index: 0,
        }
    }
}

/// One service instance as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    /// `cluster`, `plane` and `version` are first-class keys.
    pub meta: BTreeMap<String, String>,
    pub weights: Weights,
    /// The sidecar's inbound port, when the instance has one.
    pub mesh_port: Option<u16>,
    pub enable_tag_override: bool,
    /// What Consul registrations carry that the mesh itself does not use, kept and given back.
    #[serde(default, skip_serializing_if = "ServiceExtras::is_empty")]
    pub extras: ServiceExtras,
    /// The external node it was registered on; empty for the registry's own node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

/// A node other than the registry's own, written through `/v1/catalog/register` for a machine
/// that runs no agent (Consul's "external node"): its own fields. Its services and checks are
/// records of their own; nothing probes its checks, whose status is what the last
/// registration said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalNode {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

impl ExternalNode {
    /// Instance `inst` of this node as the DNS zone holds it: named `<id>.<node>.node` (an ID
    /// is unique per node only), at the node's address when it has none of its own.
    pub fn zone_instance(&self, inst: &Instance) -> Instance {
        let mut z = inst.clone();
        z.id = ExternalNode::zone_id(&self.name, &inst.id);
        if z.address.is_empty() {
            z.address = self.address.clone();
        }
        z
    }

    /// The DNS zone's name for instance `id` of node `node`. The registry's own instances
    /// never end in `.node` (registration refuses it), so the two never meet.
    pub fn zone_id(node: &str, id: &str) -> String {
        format!("{id}.{node}.node")
    }
}

/// A service address by tag (`TaggedAddresses.lan`, `.wan`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddress {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Port")]
    pub port: u16,
}

/// Consul's `Locality`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locality {
    #[serde(rename = "Region")]
    pub region: String,
    #[serde(rename = "Zone")]
    pub zone: String,
}

/// Consul registration fields the mesh keeps but does not act on: the service kind
/// (`connect-proxy`, gateways), its tagged addresses, its proxy configuration, its locality,
/// and whether it is Connect-native.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceExtras {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// As given, with Consul's field names (`DestinationServiceName`, `LocalServicePort`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub connect_native: bool,
}

impl ServiceExtras {
    pub fn is_empty(&self) -> bool {
        *self == ServiceExtras::default()
    }
}

/// DNS SRV weights by health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// A validated registration: the instance and its checks (ids assigned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub instance: Instance,
    pub checks: Vec<Check>,
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
