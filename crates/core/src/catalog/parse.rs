//! Consul registration bodies to [`Registration`] / [`Check`], with every rule checked before
//! anything is built.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{
    invalid_id, Check, CheckKind, CheckStatus, ExternalNode, Instance, Locality, Registration,
    ServiceAddress, ServiceExtras, Weights,
};
pub use crate::obj::BodyError as RegistrationError;
use crate::obj::{bad, Obj};

/// Consul raises shorter check intervals to this.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Consul raises shorter `DeregisterCriticalServiceAfter` values to this.
const MIN_REAP: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_META: usize = 64;
const MAX_META_KEY: usize = 128;
const MAX_META_VALUE: usize = 512;

/// Parse a service registration (`/v1/agent/service/register`, `/services/register`).
/// `default_id` names the instance when the body does not (Consul uses the service name).
pub fn parse_registration(
    body: &Value,
    default_id: impl FnOnce(&str) -> String,
) -> Result<Registration, RegistrationError> {
    let o = Obj::new(body, String::new())?;
    let name = match (
        o.string("Name", &["name"])?,
        o.string("Service", &["service"])?,
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(
                "Name",
                format!("Name {a:?} and Service {b:?} disagree; send one"),
            ))
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => return Err(bad("Name", "is required")),
    };
    if let Some(why) = invalid_id(&name) {
        return Err(bad("Name", why));
    }
    let id = match o.string("ID", &["id", "serviceid"])? {
        Some(id) => id,
        None => default_id(&name),
    };
    if let Some(why) = invalid_id(&id) {
        return Err(bad("ID", why));
    }
    let meta = o.string_map("Meta", &["meta"])?;
    if meta.len() > MAX_META {
        return Err(bad("Meta", format!("at most {MAX_META} keys")));
    }
    if let Some((k, _)) = meta
        .iter()
        .find(|(k, v)| k.is_empty() || k.len() > MAX_META_KEY || v.len() > MAX_META_VALUE)
    {
        return Err(bad("Meta", format!("key {k:?}: keys must be 1-{MAX_META_KEY} characters, values at most {MAX_META_VALUE}")));
    }
    let weights = match o.get(&["weights"]) {
        None => Weights::default(),
        Some(w) => {
            let w = Obj::new(w, "Weights.".into())?;
            let passing = w.uint("Passing", &["passing"])?.unwrap_or(1);
            let warning = w.uint("Warning", &["warning"])?.unwrap_or(1);
            if passing == 0 || passing > 65535 || warning > 65535 {
                return Err(bad(
                    "Weights",
                    "Passing must be 1-65535 and Warning 0-65535",
                ));
            }
            Weights {
                passing: passing as u32,
                warning: warning as u32,
            }
        }
    };
    let tags = o.strings("Tags", &["tags"])?;
    if tags.iter().any(String::is_empty) {
        return Err(bad("Tags", "tags must not be empty strings"));
    }
    let instance = Instance {
        address: o.string("Address", &["address"])?.unwrap_or_default(),
        // An absent port means "none", as in Consul; an explicit 0 is a mistake.
        port: o.port("Port", &["port"])?.unwrap_or(0),
        tags,
        meta,
        weights,
        mesh_port: o.port("MeshPort", &["meshport"])?,
        enable_tag_override: o.boolean("EnableTagOverride", &["enabletagoverride"])?,
        extras: extras(&o)?,
        node: String::new(),
        id,
        name,
    };
    let mut defs: Vec<(&Value, String)> = Vec::new();
    if let Some(c) = o.get(&["check"]) {
        defs.push((c, "Check.".into()));
    }
    match o.get(&["checks"]) {
        None => {}
        Some(Value::Array(list)) => defs.extend(
            list.iter()
                .enumerate()
                .map(|(i, c)| (c, format!("Checks[{i}]."))),
        ),
        Some(_) => return Err(bad("Checks", "must be a list of checks")),
    }
    let total = defs.len();
    let mut checks = Vec::with_capacity(total);
    for (n, (def, at)) in defs.into_iter().enumerate() {
        let c = Obj::new(def, at)?;
        let default_id = if total == 1 {
            format!("service:{}", instance.id)
        } else {
            format!("service:{}:{}", instance.id, n + 1)
        };
        let default_name = format!("Service '{}' check", instance.name);
        checks.push(build_check(
            &c,
            default_id,
            default_name,
            instance.id.clone(),
        )?);
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = checks.iter().find(|c| !seen.insert(c.id.clone())) {
        return Err(bad(
            "Checks",
            format!("check id {:?} appears twice", dup.id),
        ));
    }
    Ok(Registration { instance, checks })
}

/// Consul's service kinds.
const KINDS: [&str; 6] = [
    "",
    "connect-proxy",
    "mesh-gateway",
    "terminating-gateway",
    "ingress-gateway",
    "api-gateway",
];

/// Consul's `Proxy` fields, by their folded spelling: a body's `destination_service_name` is
/// given back as `DestinationServiceName`.
const PROXY_FIELDS: [&str; 12] = [
    "DestinationServiceName",
    "DestinationServiceID",
    "LocalServiceAddress",
    "LocalServicePort",
    "LocalServiceSocketPath",
    "Mode",
    "Config",
    "Upstreams",
    "MeshGateway",
    "Expose",
    "TransparentProxy",
    "AccessLogs",
];

fn proxy(v: &Value) -> Result<Value, RegistrationError> {
    let map = v
        .as_object()
        .ok_or_else(|| bad("Proxy", "must be an object"))?;
    let mut out = serde_json::Map::new();
    for (k, v) in map {
        let folded = crate::obj::norm(k);
        let name = PROXY_FIELDS
            .iter()
            .find(|f| crate::obj::norm(f) == folded)
            .map_or_else(|| k.clone(), |f| (*f).to_owned());
        out.insert(name, v.clone());
    }
    Ok(Value::Object(out))
}

/// `Kind`, `TaggedAddresses`, `Proxy`, `Locality`, `Connect.Native`.
fn extras(o: &Obj<'_>) -> Result<ServiceExtras, RegistrationError> {
    let kind = o.string("Kind", &["kind"])?.unwrap_or_default();
    if !KINDS.contains(&kind.as_str()) {
        return Err(bad(
            "Kind",
            format!("{kind:?} is not a service kind Consul knows"),
        ));
    }
    let mut tagged_addresses = BTreeMap::new();
    if let Some(v) = o.get(&["taggedaddresses"]) {
        let map = v
            .as_object()
            .ok_or_else(|| bad("TaggedAddresses", "must be an object"))?;
        for (tag, a) in map {
            let a = Obj::new(a, format!("TaggedAddresses.{tag}."))?;
            tagged_addresses.insert(
                tag.clone(),
                ServiceAddress {
                    address: a.string("Address", &["address"])?.unwrap_or_default(),
                    port: a.port("Port", &["port"])?.unwrap_or(0),
                },
            );
        }
    }
    let locality = match o.get(&["locality"]) {
        None => None,
        Some(v) => {
            let l = Obj::new(v, "Locality.".into())?;
            Some(Locality {
                region: l.string("Region", &["region"])?.unwrap_or_default(),
                zone: l.string("Zone", &["zone"])?.unwrap_or_default(),
            })
        }
    };
    let connect_native = match o.get(&["connect"]) {
        None => false,
        Some(v) => Obj::new(v, "Connect.".into())?.boolean("Native", &["native"])?,
    };
    Ok(ServiceExtras {
        kind,
        tagged_addresses,
        proxy: o.get(&["proxy"]).map(proxy).transpose()?,
        locality,
        connect_native,
    })
}

/// The sidecar Consul registers with a service whose `Connect.SidecarService` is set: kind
/// `connect-proxy`, id `<service id>-sidecar-proxy`, name `<name>-sidecar-proxy`, a port from
/// 21000 (Consul's sidecar range start; the caller may give one), proxying to the service.
pub fn parse_sidecar_service(
    body: &Value,
    parent: &Instance,
) -> Result<Option<Registration>, RegistrationError> {
    let o = Obj::new(body, String::new())?;
    let Some(connect) = o.get(&["connect"]) else {
        return Ok(None);
    };
    let c = Obj::new(connect, "Connect.".into())?;
    let Some(side) = c.get(&["sidecarservice"]) else {
        return Ok(None);
    };
    let mut def = side
        .as_object()
        .cloned()
        .ok_or_else(|| bad("Connect.SidecarService", "must be an object"))?;
    let has =
        |m: &serde_json::Map<String, Value>, k: &str| m.keys().any(|x| crate::obj::norm(x) == k);
    if !has(&def, "name") && !has(&def, "service") {
        def.insert(
            "Name".into(),
            Value::from(format!("{}-sidecar-proxy", parent.name)),
        );
    }
    if !has(&def, "id") {
        def.insert(
            "ID".into(),
            Value::from(format!("{}-sidecar-proxy", parent.id)),
        );
    }
    if !has(&def, "port") {
        def.insert("Port".into(), Value::from(21000));
    }
    if !has(&def, "kind") {
        def.insert("Kind".into(), Value::from("connect-proxy"));
    }
    let mut reg =
        parse_registration(&Value::Object(def), |n| n.to_owned()).map_err(|e| match e {
            RegistrationError::Field { field, reason } => {
                bad(&format!("Connect.SidecarService.{field}"), reason)
            }
            other => other,
        })?;
    let mut p = match reg.instance.extras.proxy.take() {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    p.entry("DestinationServiceName")
        .or_insert_with(|| Value::from(parent.name.clone()));
    p.entry("DestinationServiceID")
        .or_insert_with(|| Value::from(parent.id.clone()));
    p.entry("LocalServiceAddress")
        .or_insert_with(|| Value::from("127.0.0.1"));
    p.entry("LocalServicePort")
        .or_insert_with(|| Value::from(parent.port));
    reg.instance.extras.proxy = Some(Value::Object(p));
    Ok(Some(reg))
}

/// A `/v1/catalog/register` body: the node, its service and its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogRegistration {
    /// `Datacenter`, empty when absent.
    pub datacenter: String,
    pub node: ExternalNode,
    /// `SkipNodeUpdate`: an existing node keeps its address, tagged addresses and meta.
    pub skip_node_update: bool,
    pub service: Option<Registration>,
    /// `Check` and `Checks`: status-only checks ([`CheckKind::External`]).
    pub checks: Vec<Check>,
}

/// Parse Consul's `/v1/catalog/register` body. `Node` may be absent (the registry's own
/// node, as before external nodes existed); an external node needs `Address` unless
/// `SkipNodeUpdate` is set, as Consul requires.
pub fn parse_catalog_registration(body: &Value) -> Result<CatalogRegistration, RegistrationError> {
    let o = Obj::new(body, String::new())?;
    let name = o.string("Node", &["node"])?.unwrap_or_default();
    if let Some(why) = invalid_id(&name).filter(|_| !name.is_empty()) {
        return Err(bad("Node", why));
    }
    let node = ExternalNode {
        name,
        address: o.string("Address", &["address"])?.unwrap_or_default(),
        id: o.string("ID", &["id"])?.unwrap_or_default(),
        tagged_addresses: o.string_map("TaggedAddresses", &["taggedaddresses"])?,
        meta: o.string_map("NodeMeta", &["nodemeta"])?,
    };
    let service = match o.get(&["service"]) {
        None | Some(Value::Null) => None,
        Some(service) => Some(parse_registration(service, |name| name.to_owned()).map_err(
            |e| match e {
                RegistrationError::Field { field, reason } => {
                    bad(&format!("Service.{field}"), reason)
                }
                RegistrationError::NotObject => bad("Service", "must be an object"),
            },
        )?),
    };
    let mut checks = Vec::new();
    match o.get(&["check"]) {
        None | Some(Value::Null) => {}
        Some(c) => checks.push(catalog_check(c, "Check")?),
    }
    match o.get(&["checks"]) {
        None | Some(Value::Null) => {}
        Some(Value::Array(cs)) => {
            for (n, c) in cs.iter().enumerate() {
                checks.push(catalog_check(c, &format!("Checks[{n}]"))?);
            }
        }
        Some(_) => return Err(bad("Checks", "must be a list of checks")),
    }
    Ok(CatalogRegistration {
        datacenter: o.string("Datacenter", &["datacenter"])?.unwrap_or_default(),
        node,
        skip_node_update: o.boolean("SkipNodeUpdate", &["skipnodeupdate"])?,
        service,
        checks,
    })
}

/// One check of a catalog registration: `Name` (or `CheckID`), `Status` (critical when
/// absent, as Consul), `Notes`, `Output`, `ServiceID`. Its `Definition` is not kept: nothing
/// runs it.
fn catalog_check(v: &Value, at: &str) -> Result<Check, RegistrationError> {
    let c = Obj::new(v, at.to_owned())?;
    let name = c.string("Name", &["name"])?.unwrap_or_default();
    let id = c
        .string("CheckID", &["checkid", "id"])?
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| name.clone());
    if id.is_empty() {
        return Err(bad(&c.name("Name"), "is required (or CheckID)"));
    }
    if let Some(why) = invalid_id(&id) {
        return Err(bad(&c.name("CheckID"), why));
    }
    let status = match c.string("Status", &["status"])? {
        None => CheckStatus::Critical,
        Some(s) if s.is_empty() => CheckStatus::Critical,
        Some(s) => CheckStatus::parse(&s).ok_or_else(|| {
            bad(
                &c.name("Status"),
                format!("{s:?} is not passing, warning or critical"),
            )
        })?,
    };
    Ok(Check {
        name: if name.is_empty() { id.clone() } else { name },
        id,
        notes: c.string("Notes", &["notes"])?.unwrap_or_default(),
        service_id: c.string("ServiceID", &["serviceid"])?.unwrap_or_default(),
        kind: CheckKind::External,
        interval: Duration::ZERO,
        timeout: Duration::ZERO,
        status,
        output: c.string("Output", &["output"])?.unwrap_or_default(),
        deregister_critical_after: None,
        success_before_passing: 0,
        failures_before_critical: 0,
        updated_index: 0,
    })
}

/// What a `/v1/catalog/deregister` body removes from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogTarget {
    Service(String),
    Check(String),
    /// No `ServiceID` or `CheckID`: the node with everything on it.
    Node,
}

/// A `/v1/catalog/deregister` body: the node (empty when absent) and what goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogDeregistration {
    /// `Datacenter`, empty when absent.
    pub datacenter: String,
    pub node: String,
    pub target: CatalogTarget,
}

/// Parse Consul's `/v1/catalog/deregister` body (`Node`, and `ServiceID` or `CheckID`).
pub fn parse_catalog_deregistration(
    body: &Value,
) -> Result<CatalogDeregistration, RegistrationError> {
    let o = Obj::new(body, String::new())?;
    let target = match (
        o.string("ServiceID", &["serviceid"])?,
        o.string("CheckID", &["checkid"])?,
    ) {
        (Some(id), _) => CatalogTarget::Service(id),
        (None, Some(id)) => CatalogTarget::Check(id),
        (None, None) => CatalogTarget::Node,
    };
    Ok(CatalogDeregistration {
        datacenter: o.string("Datacenter", &["datacenter"])?.unwrap_or_default(),
        node: o.string("Node", &["node"])?.unwrap_or_default(),
        target,
    })
}

/// Parse a standalone check (`/v1/agent/check/register`): `Name` is required and is the
/// default id.
pub fn parse_check(body: &Value) -> Result<Check, RegistrationError> {
    let o = Obj::new(body, String::new())?;
    let name = o
        .string("Name", &["name"])?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("Name", "is required"))?;
    let service_id = o.string("ServiceID", &["serviceid"])?.unwrap_or_default();
    build_check(&o, name.clone(), name, service_id)
}

/// `Args` / `ScriptArgs` (a command and its arguments), or the legacy `Script` string.
fn script_args(c: &Obj<'_>) -> Result<Option<Vec<String>>, RegistrationError> {
    let args = c.strings("Args", &["args", "scriptargs"])?;
    if !args.is_empty() {
        return Ok(Some(args));
    }
    Ok(c.string("Script", &["script"])?
        .filter(|s| !s.is_empty())
        .map(|s| vec!["sh".to_owned(), "-c".to_owned(), s]))
}

fn build_check(
    c: &Obj<'_>,
    default_id: String,
    default_name: String,
    service_id: String,
) -> Result<Check, RegistrationError> {
    for unsupported in [
        "grpc",
        "dockercontainerid",
        "h2ping",
        "aliasservice",
        "aliasnode",
        "udp",
        "osservice",
    ] {
        if c.has(unsupported) {
            return Err(bad(
                &c.name(unsupported),
                "this check kind is not supported (use http, tcp or ttl)",
            ));
        }
    }
    let interval = c.duration("Interval", &["interval"])?;
    let ttl = c.duration("TTL", &["ttl"])?;
    let (kind, period) = if let Some(url) = c.string("HTTP", &["http"])? {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(
                &c.name("HTTP"),
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        let header = match c.get(&["header"]) {
            None => BTreeMap::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), vec![s.clone()])),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .map(|l| (k.clone(), l)),
                    _ => None,
                })
                .collect::<Option<BTreeMap<_, _>>>()
                .ok_or_else(|| {
                    bad(
                        &c.name("Header"),
                        "must map names to strings or lists of strings",
                    )
                })?,
            Some(_) => return Err(bad(&c.name("Header"), "must be an object")),
        };
        let kind = CheckKind::Http {
            url,
            method: c
                .string("Method", &["method"])?
                .unwrap_or_else(|| "GET".into())
                .to_ascii_uppercase(),
            header,
            body: c.string("Body", &["body"])?.unwrap_or_default(),
            tls_skip_verify: c.boolean("TLSSkipVerify", &["tlsskipverify"])?,
        };
        let period =
            interval.ok_or_else(|| bad(&c.name("Interval"), "is required for an HTTP check"))?;
        (kind, period.max(MIN_INTERVAL))
    } else if let Some(address) = c.string("TCP", &["tcp"])? {
        let valid = address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !valid {
            return Err(bad(&c.name("TCP"), format!("{address:?} is not host:port")));
        }
        let period =
            interval.ok_or_else(|| bad(&c.name("Interval"), "is required for a TCP check"))?;
        (CheckKind::Tcp { address }, period.max(MIN_INTERVAL))
    } else if let Some(args) = script_args(c)? {
        let period =
            interval.ok_or_else(|| bad(&c.name("Interval"), "is required for a script check"))?;
        (CheckKind::Script { args }, period.max(MIN_INTERVAL))
    } else if let Some(ttl) = ttl {
        if ttl.is_zero() {
            return Err(bad(&c.name("TTL"), "must be positive"));
        }
        (CheckKind::Ttl, ttl)
    } else {
        return Err(bad(
            c.at.trim_end_matches('.').trim(),
            "a check needs one of HTTP, TCP, TTL or Args",
        ));
    };
    let timeout = c
        .duration("Timeout", &["timeout"])?
        .unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        return Err(bad(&c.name("Timeout"), "must be positive"));
    }
    let status = match c.string("Status", &["status"])? {
        None => CheckStatus::Critical,
        Some(s) => CheckStatus::parse(&s).ok_or_else(|| {
            bad(
                &c.name("Status"),
                format!("{s:?} is not passing, warning or critical"),
            )
        })?,
    };
    let small = |field: &str, aliases: &[&str]| -> Result<u32, RegistrationError> {
        let v = c.uint(field, aliases)?.unwrap_or(0);
        u32::try_from(v).map_err(|_| bad(&c.name(field), "is too large"))
    };
    let id = c
        .string("CheckID", &["checkid", "id"])?
        .filter(|s| !s.is_empty())
        .unwrap_or(default_id);
    if let Some(why) = invalid_id(&id) {
        return Err(bad(&c.name("CheckID"), why));
    }
    Ok(Check {
        name: c
            .string("Name", &["name"])?
            .filter(|s| !s.is_empty())
            .unwrap_or(default_name),
        notes: c.string("Notes", &["notes"])?.unwrap_or_default(),
        service_id,
        kind,
        interval: period,
        timeout,
        status,
        output: String::new(),
        deregister_critical_after: c
            .duration(
                "DeregisterCriticalServiceAfter",
                &["deregistercriticalserviceafter"],
            )?
            .map(|d| d.max(MIN_REAP)),
        success_before_passing: small("SuccessBeforePassing", &["successbeforepassing"])?,
        failures_before_critical: small("FailuresBeforeCritical", &["failuresbeforecritical"])?,
        updated_index: 0,
        id,
    })
}

#[cfg(test)]
mod tests;
