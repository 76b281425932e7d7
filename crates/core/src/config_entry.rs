//! Config entries (DESIGN §10): what the sidecars enforce for traffic to a service.
//! `service-defaults` (one per destination service) and `proxy-defaults` (name `global`, the
//! mesh-wide fallback) carry `CircuitBreaker`, `RateLimit`, `Retry` and `LoadBalancer`. A
//! block given in part is completed with the defaults below, so what is stored is whole.
//! Parsing follows Consul's key rules, refuses unknown fields, and validates every number:
//! a bad circuit breaker is `LUCID_ERR_1202`, other bad traffic settings `LUCID_ERR_1201`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{invalid_id, valid_catalog_name, valid_service_name};
use crate::obj::{bad, BodyError, Obj};

/// Which kind of entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigKind {
    #[serde(rename = "service-defaults")]
    ServiceDefaults,
    #[serde(rename = "proxy-defaults")]
    ProxyDefaults,
    /// Which services an ingress gateway exposes, on which ports (Consul's
    /// `ingress-gateway`). Stored and answered (`/v1/catalog/gateway-services`); lucid's
    /// sidecars carry no gateway traffic from it.
    #[serde(rename = "ingress-gateway")]
    IngressGateway,
}

impl ConfigKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::ServiceDefaults => "service-defaults",
            ConfigKind::ProxyDefaults => "proxy-defaults",
            ConfigKind::IngressGateway => "ingress-gateway",
        }
    }

    pub fn parse(s: &str) -> Option<ConfigKind> {
        match s {
            "service-defaults" => Some(ConfigKind::ServiceDefaults),
            "proxy-defaults" => Some(ConfigKind::ProxyDefaults),
            "ingress-gateway" => Some(ConfigKind::IngressGateway),
            _ => None,
        }
    }
}

/// Per-endpoint circuit breaker, the platform's semantics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CircuitBreaker {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before half-open.
    #[serde(with = "duration_str")]
    pub recovery_timeout: Duration,
    /// Probes admitted while half-open.
    pub half_open_max_calls: u32,
    /// Successes in half-open that close it again.
    pub success_threshold: u32,
    /// Per-request timeout.
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// What counts as a failure (`5xx`, `timeout`, `connection-error`, ..., or a gRPC status
    /// name such as `unavailable`; a failing gRPC status also counts as its HTTP equivalent).
    pub error_types: Vec<String>,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            failure_threshold: 5,
            recovery_timeout: Duration::from_secs(30),
            half_open_max_calls: 3,
            success_threshold: 3,
            timeout: Duration::from_secs(5),
            error_types: vec!["5xx".into(), "timeout".into(), "connection-error".into()],
        }
    }
}

/// Inbound token bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RateLimit {
    pub requests_per_second: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            requests_per_second: 1000,
            burst: 2000,
        }
    }
}

/// Retries of idempotent requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Retry {
    /// Retries after the first try.
    pub attempts: u32,
    #[serde(with = "duration_str")]
    pub per_try_timeout: Duration,
    /// Conditions that retry: `5xx`, `gateway-error`, `connect-failure`, `reset`, `timeout`,
    /// and gRPC status names (`unavailable`, `resource-exhausted`, ...: `crate::grpc`).
    pub on: Vec<String>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 1,
            per_try_timeout: Duration::from_secs(5),
            on: vec!["connect-failure".into(), "5xx".into()],
        }
    }
}

/// Load-balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LbPolicy {
    #[default]
    #[serde(rename = "round-robin")]
    RoundRobin,
    #[serde(rename = "random")]
    Random,
    #[serde(rename = "least-request")]
    LeastRequest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoadBalancer {
    pub policy: LbPolicy,
}

/// One config entry as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigEntry {
    pub kind: ConfigKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// An `ingress-gateway`'s listeners (empty for the other kinds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<IngressListener>,
}

/// One port of an ingress gateway and the services behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IngressListener {
    pub port: u16,
    /// `tcp` (Consul's default), `http`, `http2` or `grpc`.
    pub protocol: String,
    pub services: Vec<IngressService>,
}

/// A service an ingress listener exposes (`*`: every service, on HTTP listeners only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IngressService {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// What a service's traffic gets: its entry, else the global one, else the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resolved {
    pub circuit_breaker: CircuitBreaker,
    pub rate_limit: RateLimit,
    pub retry: Retry,
    pub load_balancer: LoadBalancer,
}

impl Resolved {
    pub fn of(service: Option<&ConfigEntry>, global: Option<&ConfigEntry>) -> Resolved {
        let pick =
            |f: &dyn Fn(&ConfigEntry) -> bool| service.filter(|e| f(e)).or(global.filter(|e| f(e)));
        Resolved {
            circuit_breaker: pick(&|e| e.circuit_breaker.is_some())
                .and_then(|e| e.circuit_breaker.clone())
                .unwrap_or_default(),
            rate_limit: pick(&|e| e.rate_limit.is_some())
                .and_then(|e| e.rate_limit.clone())
                .unwrap_or_default(),
            retry: pick(&|e| e.retry.is_some())
                .and_then(|e| e.retry.clone())
                .unwrap_or_default(),
            load_balancer: pick(&|e| e.load_balancer.is_some())
                .and_then(|e| e.load_balancer)
                .unwrap_or_default(),
        }
    }
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// Malformed body, unknown field, bad kind or name (`LUCID_ERR_1004`).
    #[error(transparent)]
    Invalid(#[from] BodyError),
    /// A circuit breaker that cannot work (`LUCID_ERR_1202`).
    #[error("{0}")]
    CircuitBreaker(String),
    /// A rate limit, retry or load-balancer setting that cannot work (`LUCID_ERR_1201`).
    #[error("{0}")]
    Traffic(String),
}

const TOP: &[&str] = &[
    "kind",
    "name",
    "protocol",
    "circuitbreaker",
    "ratelimit",
    "retry",
    "loadbalancer",
    "meta",
    "listeners",
];

/// The fields of an `ingress-gateway` entry.
const INGRESS_TOP: &[&str] = &["kind", "name", "meta", "listeners"];

/// Parse and validate a config entry body (`PUT /v1/config`).
pub fn parse_entry(v: &Value) -> Result<ConfigEntry, EntryError> {
    let o = Obj::new(v, String::new())?;
    o.only(TOP)?;
    let kind_s = o
        .string("Kind", &["kind"])?
        .ok_or_else(|| bad("Kind", "is required"))?;
    let kind = ConfigKind::parse(&kind_s).ok_or_else(|| {
        bad(
            "Kind",
            format!(
                "{kind_s:?} is not supported (service-defaults, proxy-defaults, ingress-gateway)"
            ),
        )
    })?;
    let name = o
        .string("Name", &["name"])?
        .ok_or_else(|| bad("Name", "is required"))?;
    match kind {
        ConfigKind::ProxyDefaults if name != "global" => {
            return Err(bad("Name", "a proxy-defaults entry must be named \"global\"").into())
        }
        ConfigKind::ServiceDefaults if !valid_service_name(&name) => {
            return Err(bad(
                "Name",
                format!("{name:?} is not a service name (lower-case letters, digits, '-')"),
            )
            .into())
        }
        ConfigKind::IngressGateway => {
            if let Some(why) = invalid_id(&name) {
                return Err(bad("Name", why).into());
            }
            o.only(INGRESS_TOP)?;
            return Ok(ConfigEntry {
                kind,
                name,
                protocol: None,
                circuit_breaker: None,
                rate_limit: None,
                retry: None,
                load_balancer: None,
                meta: o.string_map("Meta", &["meta"])?,
                listeners: listeners(&o)?,
            });
        }
        _ => {}
    }
    if o.has("listeners") {
        return Err(bad("Listeners", "is a field of ingress-gateway entries only").into());
    }
    let protocol = o.string("Protocol", &["protocol"])?;
    if let Some(p) = &protocol {
        if !["http", "http2", "grpc", "tcp"].contains(&p.as_str()) {
            return Err(bad("Protocol", format!("{p:?} is not http, http2, grpc or tcp")).into());
        }
    }
    let sub = |field: &str, alias: &str| -> Result<Option<Obj<'_>>, EntryError> {
        match o.get(&[alias]) {
            None => Ok(None),
            Some(v) => Ok(Some(Obj::new(v, format!("{field}."))?)),
        }
    };
    let circuit_breaker = match sub("CircuitBreaker", "circuitbreaker")? {
        Some(c) => Some(circuit_breaker(&c)?),
        None => None,
    };
    let rate_limit = match sub("RateLimit", "ratelimit")? {
        Some(r) => Some(rate_limit(&r)?),
        None => None,
    };
    let retry = match sub("Retry", "retry")? {
        Some(r) => Some(retry(&r)?),
        None => None,
    };
    let load_balancer = match sub("LoadBalancer", "loadbalancer")? {
        Some(l) => Some(load_balancer(&l)?),
        None => None,
    };
    Ok(ConfigEntry {
        kind,
        name,
        protocol,
        circuit_breaker,
        rate_limit,
        retry,
        load_balancer,
        meta: o.string_map("Meta", &["meta"])?,
        listeners: Vec::new(),
    })
}

/// An ingress gateway's `Listeners`, with Consul's rules: a port once, a known protocol, at
/// least one service, exactly one on a `tcp` listener, `*` only on HTTP listeners.
fn listeners(o: &Obj<'_>) -> Result<Vec<IngressListener>, EntryError> {
    let items = match o.get(&["listeners"]) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad("Listeners", "must be a list").into()),
    };
    let mut out: Vec<IngressListener> = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let l = Obj::new(item, format!("Listeners[{n}]."))?;
        l.only(&["port", "protocol", "services", "tls"])?;
        if l.has("tls") {
            return Err(bad(&l.name("TLS"), "listener TLS is not supported").into());
        }
        let port = l
            .port("Port", &["port"])?
            .ok_or_else(|| bad(&l.name("Port"), "is required"))?;
        if out.iter().any(|x| x.port == port) {
            return Err(bad(&l.name("Port"), format!("port {port} is declared twice")).into());
        }
        let protocol = l
            .string("Protocol", &["protocol"])?
            .unwrap_or_else(|| "tcp".to_owned());
        if !["http", "http2", "grpc", "tcp"].contains(&protocol.as_str()) {
            return Err(bad(
                &l.name("Protocol"),
                format!("{protocol:?} is not http, http2, grpc or tcp"),
            )
            .into());
        }
        let mut services = Vec::new();
        if let Some(list) = l.get(&["services"]) {
            let Value::Array(list) = list else {
                return Err(bad(&l.name("Services"), "must be a list").into());
            };
            for (m, svc) in list.iter().enumerate() {
                let s = Obj::new(svc, format!("{}[{m}].", l.name("Services")))?;
                s.only(&["name", "hosts"])?;
                let name = s
                    .string("Name", &["name"])?
                    .filter(|x| !x.is_empty())
                    .ok_or_else(|| bad(&s.name("Name"), "is required"))?;
                if name != "*" && !valid_catalog_name(&name) {
                    return Err(
                        bad(&s.name("Name"), format!("{name:?} is not a service name")).into(),
                    );
                }
                if name == "*" && protocol == "tcp" {
                    return Err(bad(
                        &s.name("Name"),
                        "the wildcard service needs an HTTP-based protocol, not tcp",
                    )
                    .into());
                }
                services.push(IngressService {
                    name,
                    hosts: s.strings("Hosts", &["hosts"])?,
                });
            }
        }
        if services.is_empty() {
            return Err(bad(&l.name("Services"), "needs at least one service").into());
        }
        if protocol == "tcp" && services.len() > 1 {
            return Err(bad(
                &l.name("Services"),
                "a tcp listener exposes exactly one service",
            )
            .into());
        }
        out.push(IngressListener {
            port,
            protocol,
            services,
        });
    }
    Ok(out)
}

fn u32_in(
    o: &Obj<'_>,
    field: &str,
    alias: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
    err: fn(String) -> EntryError,
) -> Result<u32, EntryError> {
    let n = o.uint(field, &[alias])?.unwrap_or(u64::from(default));
    match u32::try_from(n) {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(err(format!(
            "{} must be between {} and {}, not {n}",
            o.name(field),
            range.start(),
            range.end()
        ))),
    }
}

fn duration_in(
    o: &Obj<'_>,
    field: &str,
    alias: &str,
    default: Duration,
    max: Duration,
    err: fn(String) -> EntryError,
) -> Result<Duration, EntryError> {
    let d = o.duration(field, &[alias])?.unwrap_or(default);
    if d.is_zero() || d > max {
        return Err(err(format!(
            "{} must be more than 0 and at most {}, not {}",
            o.name(field),
            crate::format_duration(max),
            crate::format_duration(d)
        )));
    }
    Ok(d)
}

fn tokens(
    o: &Obj<'_>,
    field: &str,
    alias: &str,
    default: Vec<String>,
    allowed: Option<&[&str]>,
    err: fn(String) -> EntryError,
) -> Result<Vec<String>, EntryError> {
    if o.get(&[alias]).is_none() {
        return Ok(default);
    }
    let list = o.strings(field, &[alias])?;
    if list.is_empty() {
        return Err(err(format!("{} must not be empty", o.name(field))));
    }
    let mut out: Vec<String> = Vec::new();
    for t in list {
        let ok = !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && allowed.is_none_or(|a| a.contains(&t.as_str()));
        if !ok {
            return Err(err(match allowed {
                Some(a) => format!("{}: {t:?} is not one of {}", o.name(field), a.join(", ")),
                None => format!(
                    "{}: {t:?} must be lower-case letters, digits and '-'",
                    o.name(field)
                ),
            }));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn circuit_breaker(o: &Obj<'_>) -> Result<CircuitBreaker, EntryError> {
    let e = EntryError::CircuitBreaker;
    o.only(&[
        "failurethreshold",
        "recoverytimeout",
        "halfopenmaxcalls",
        "successthreshold",
        "timeout",
        "errortypes",
    ])
    .map_err(|b| e(b.to_string()))?;
    let d = CircuitBreaker::default();
    let cb = CircuitBreaker {
        failure_threshold: u32_in(
            o,
            "FailureThreshold",
            "failurethreshold",
            d.failure_threshold,
            1..=10_000,
            e,
        )?,
        recovery_timeout: duration_in(
            o,
            "RecoveryTimeout",
            "recoverytimeout",
            d.recovery_timeout,
            Duration::from_secs(3600),
            e,
        )?,
        half_open_max_calls: u32_in(
            o,
            "HalfOpenMaxCalls",
            "halfopenmaxcalls",
            d.half_open_max_calls,
            1..=10_000,
            e,
        )?,
        success_threshold: u32_in(
            o,
            "SuccessThreshold",
            "successthreshold",
            d.success_threshold,
            1..=10_000,
            e,
        )?,
        timeout: duration_in(
            o,
            "Timeout",
            "timeout",
            d.timeout,
            Duration::from_secs(600),
            e,
        )?,
        // The platform's files name their own error kinds (e.g. `payment-error`): any token.
        error_types: tokens(o, "ErrorTypes", "errortypes", d.error_types, None, e)?,
    };
    if cb.success_threshold > cb.half_open_max_calls {
        return Err(e(format!(
            "{}SuccessThreshold ({}) is more than HalfOpenMaxCalls ({}): the circuit could never close",
            o.at, cb.success_threshold, cb.half_open_max_calls
        )));
    }
    Ok(cb)
}

fn rate_limit(o: &Obj<'_>) -> Result<RateLimit, EntryError> {
    let e = EntryError::Traffic;
    o.only(&["requestspersecond", "burst"])
        .map_err(|b| e(b.to_string()))?;
    let d = RateLimit::default();
    Ok(RateLimit {
        requests_per_second: u32_in(
            o,
            "RequestsPerSecond",
            "requestspersecond",
            d.requests_per_second,
            1..=10_000_000,
            e,
        )?,
        burst: u32_in(o, "Burst", "burst", d.burst, 1..=10_000_000, e)?,
    })
}

fn retry(o: &Obj<'_>) -> Result<Retry, EntryError> {
    let e = EntryError::Traffic;
    o.only(&["attempts", "pertrytimeout", "on"])
        .map_err(|b| e(b.to_string()))?;
    let d = Retry::default();
    Ok(Retry {
        attempts: u32_in(o, "Attempts", "attempts", d.attempts, 0..=10, e)?,
        per_try_timeout: duration_in(
            o,
            "PerTryTimeout",
            "pertrytimeout",
            d.per_try_timeout,
            Duration::from_secs(600),
            e,
        )?,
        on: tokens(o, "On", "on", d.on, Some(&retry_conditions()), e)?,
    })
}

/// What `Retry.On` accepts: the HTTP conditions, and gRPC status names (`unavailable`, ...),
/// which retry a call whose answer carries that `grpc-status`.
fn retry_conditions() -> Vec<&'static str> {
    [
        "5xx",
        "gateway-error",
        "connect-failure",
        "reset",
        "timeout",
    ]
    .into_iter()
    .chain(crate::grpc::names())
    .collect()
}

fn load_balancer(o: &Obj<'_>) -> Result<LoadBalancer, EntryError> {
    let e = EntryError::Traffic;
    o.only(&["policy"]).map_err(|b| e(b.to_string()))?;
    let policy = match o.string("Policy", &["policy"])?.as_deref() {
        None | Some("round-robin") => LbPolicy::RoundRobin,
        Some("random") => LbPolicy::Random,
        Some("least-request") => LbPolicy::LeastRequest,
        Some(other) => {
            return Err(e(format!(
                "LoadBalancer.Policy: {other:?} is not round-robin, random or least-request"
            )))
        }
    };
    Ok(LoadBalancer { policy })
}

/// The platform's circuit-breaker file (`CircuitBreakerConfiguration: {defaultConfig,
/// serviceSpecific: {<service>: {...}}}`, camelCase, `recoveryTimeout` in seconds, `timeout`
/// in milliseconds) as config entry bodies: `defaultConfig` becomes the `proxy-defaults`
/// entry `global`, each service a `service-defaults` entry whose unset fields come from
/// `defaultConfig`, as the platform's controller did.
pub fn from_platform_circuit_breakers(doc: &Value) -> Result<Vec<Value>, BodyError> {
    let root = doc.get("CircuitBreakerConfiguration").unwrap_or(doc);
    let o = Obj::new(root, "CircuitBreakerConfiguration.".into())?;
    o.only(&["defaultconfig", "servicespecific"])?;
    let empty = serde_json::Map::new();
    let default = match o.get(&["defaultconfig"]) {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad(&o.name("defaultConfig"), "must be an object")),
    };
    let mut out = vec![
        serde_json::json!({"Kind": "proxy-defaults", "Name": "global",
        "CircuitBreaker": platform_cb(default, "CircuitBreakerConfiguration.defaultConfig.")?}),
    ];
    match o.get(&["servicespecific"]) {
        None => {}
        Some(Value::Object(services)) => {
            for (name, v) in services {
                let at = format!("CircuitBreakerConfiguration.serviceSpecific.{name}.");
                let own = v
                    .as_object()
                    .ok_or_else(|| bad(at.trim_end_matches('.'), "must be an object"))?;
                let mut merged = default.clone();
                merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
                out.push(serde_json::json!({"Kind": "service-defaults", "Name": name,
                    "CircuitBreaker": platform_cb(&merged, &at)?}));
            }
        }
        Some(_) => return Err(bad(&o.name("serviceSpecific"), "must be an object")),
    }
    Ok(out)
}

fn platform_cb(m: &serde_json::Map<String, Value>, at: &str) -> Result<Value, BodyError> {
    let v = Value::Object(m.clone());
    let o = Obj::new(&v, at.to_owned())?;
    o.only(&[
        "failurethreshold",
        "recoverytimeout",
        "halfopenmaxcalls",
        "successthreshold",
        "timeout",
        "errortypes",
    ])?;
    let mut cb = serde_json::Map::new();
    for (field, alias) in [
        ("FailureThreshold", "failurethreshold"),
        ("HalfOpenMaxCalls", "halfopenmaxcalls"),
        ("SuccessThreshold", "successthreshold"),
    ] {
        if let Some(n) = o.uint(field, &[alias])? {
            cb.insert(field.into(), n.into());
        }
    }
    // Bare numbers: seconds for recoveryTimeout, milliseconds for timeout (the platform's units).
    for (field, alias, unit) in [
        ("RecoveryTimeout", "recoverytimeout", "s"),
        ("Timeout", "timeout", "ms"),
    ] {
        match o.get(&[alias]) {
            None => {}
            Some(Value::Number(n)) => {
                cb.insert(field.into(), format!("{n}{unit}").into());
            }
            Some(Value::String(s)) => {
                cb.insert(field.into(), s.clone().into());
            }
            Some(_) => return Err(bad(&o.name(field), "must be a number or a duration string")),
        }
    }
    if o.get(&["errortypes"]).is_some() {
        cb.insert(
            "ErrorTypes".into(),
            o.strings("errorTypes", &["errortypes"])?.into(),
        );
    }
    Ok(Value::Object(cb))
}

/// Durations as Go-style strings (`"30s"`) in stored and served JSON.
mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
