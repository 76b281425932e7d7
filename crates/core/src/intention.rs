//! Intentions (DESIGN §10): who may call whom. A source (a service, `plane:<p>`, or `*`) and a
//! destination (a service or `plane:<p>`, or `*`) with an action, or with L7 permissions
//! (methods, exact path or path prefix) evaluated in order. The most specific intention wins:
//! destination first, then source; a service is more specific than a plane, a plane than `*`.
//! An L7 intention denies what none of its permissions matches. With no intention at all, the
//! default action decides. Also: the platform's `planeIsolation` policy document, turned into
//! a plane map and intentions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::valid_service_name;
use crate::obj::{bad, BodyError, Obj};

/// One side of an intention.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Party {
    Any,
    Plane(String),
    Service(String),
}

impl Party {
    pub fn parse(s: &str) -> Option<Party> {
        if s == "*" {
            return Some(Party::Any);
        }
        match s.strip_prefix("plane:") {
            Some(p) if valid_service_name(p) => Some(Party::Plane(p.to_owned())),
            Some(_) => None,
            None => valid_service_name(s).then(|| Party::Service(s.to_owned())),
        }
    }

    /// 3 for a service, 2 for a plane, 1 for `*`.
    fn specificity(&self) -> u8 {
        match self {
            Party::Service(_) => 3,
            Party::Plane(_) => 2,
            Party::Any => 1,
        }
    }

    fn matches(&self, service: &str, plane: Option<&str>) -> bool {
        match self {
            Party::Any => true,
            Party::Plane(p) => plane == Some(p.as_str()),
            Party::Service(s) => s == service,
        }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Any => f.write_str("*"),
            Party::Plane(p) => write!(f, "plane:{p}"),
            Party::Service(s) => f.write_str(s),
        }
    }
}

impl Serialize for Party {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Party {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Party::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad party {s:?}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        match s.to_ascii_lowercase().as_str() {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            _ => None,
        }
    }
}

/// One L7 rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Permission {
    pub action: Action,
    /// Upper-case; empty means any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

impl Permission {
    fn matches(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.path_exact.as_deref().is_none_or(|p| p == path)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

/// An intention as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Intention {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "SourceName")]
    pub source: Party,
    #[serde(rename = "DestinationName")]
    pub destination: Party,
    /// The action of an L4 intention (ignored when there are permissions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub description: String,
}

impl Intention {
    /// Higher wins: destination specificity, then source specificity.
    pub fn precedence(&self) -> u8 {
        self.destination.specificity() * 10 + self.source.specificity()
    }

    /// The decision for one request; `None` method/path means a connection-level (L4) check,
    /// which an L7 intention allows when any of its permissions allows.
    pub fn decide(&self, request: Option<(&str, &str)>) -> Action {
        if self.permissions.is_empty() {
            return self.action.unwrap_or(Action::Deny);
        }
        match request {
            Some((method, path)) => self
                .permissions
                .iter()
                .find(|p| p.matches(method, path))
                .map_or(Action::Deny, |p| p.action),
            None => {
                if self.permissions.iter().any(|p| p.action == Action::Allow) {
                    Action::Allow
                } else {
                    Action::Deny
                }
            }
        }
    }
}

/// Who is asking: a service and, when known, its plane.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub service: &'a str,
    pub plane: Option<&'a str>,
}

/// The intention that governs `source` -> `destination`, if any.
pub fn governing<'i>(
    intentions: &'i [Intention],
    source: Caller<'_>,
    destination: Caller<'_>,
) -> Option<&'i Intention> {
    intentions
        .iter()
        .filter(|i| {
            i.source.matches(source.service, source.plane)
                && i.destination
                    .matches(destination.service, destination.plane)
        })
        .max_by_key(|i| i.precedence())
}

/// Is the request allowed? `default` decides when no intention matches.
pub fn allowed<'i>(
    intentions: &'i [Intention],
    source: Caller<'_>,
    destination: Caller<'_>,
    request: Option<(&str, &str)>,
    default: Action,
) -> (bool, Option<&'i Intention>) {
    let gov = governing(intentions, source, destination);
    let action = gov.map_or(default, |i| i.decide(request));
    (action == Action::Allow, gov)
}

/// Parse an intention body (Consul's fields: `SourceName`, `DestinationName`, `Action`,
/// `Permissions`, `Description`); `id` is assigned by the caller.
pub fn parse_intention(v: &Value, id: String) -> Result<Intention, BodyError> {
    let o = Obj::new(v, String::new())?;
    o.only(&[
        "sourcename",
        "destinationname",
        "action",
        "permissions",
        "description",
        "id",
        "sourcetype",
        "sourcens",
        "destinationns",
        "meta",
    ])?;
    let party = |field: &str, alias: &str| -> Result<Party, BodyError> {
        let s = o
            .string(field, &[alias])?
            .ok_or_else(|| bad(field, "is required"))?;
        Party::parse(&s).ok_or_else(|| {
            bad(
                field,
                format!("{s:?} is not a service name, plane:<plane> or *"),
            )
        })
    };
    let source = party("SourceName", "sourcename")?;
    let destination = party("DestinationName", "destinationname")?;
    let action = match o.string("Action", &["action"])? {
        None => None,
        Some(a) => Some(
            Action::parse(&a)
                .ok_or_else(|| bad("Action", format!("{a:?} is not allow or deny")))?,
        ),
    };
    let mut permissions = Vec::new();
    if let Some(list) = o.get(&["permissions"]) {
        let items = list
            .as_array()
            .ok_or_else(|| bad("Permissions", "must be a list"))?;
        for (n, item) in items.iter().enumerate() {
            permissions.push(parse_permission(item, n)?);
        }
    }
    match (&action, permissions.is_empty()) {
        (None, true) => return Err(bad("Action", "is required (or give Permissions)")),
        (Some(_), false) => return Err(bad("Action", "cannot be combined with Permissions")),
        _ => {}
    }
    Ok(Intention {
        id,
        source,
        destination,
        action,
        permissions,
        description: o
            .string("Description", &["description"])?
            .unwrap_or_default(),
    })
}

fn parse_permission(v: &Value, n: usize) -> Result<Permission, BodyError> {
    let o = Obj::new(v, format!("Permissions[{n}]."))?;
    o.only(&["action", "http", "methods", "pathexact", "pathprefix"])?;
    let a = o
        .string("Action", &["action"])?
        .ok_or_else(|| bad(&o.name("Action"), "is required"))?;
    let action = Action::parse(&a)
        .ok_or_else(|| bad(&o.name("Action"), format!("{a:?} is not allow or deny")))?;
    // Consul nests the match under `HTTP`; a flat form is accepted too.
    let http = match o.get(&["http"]) {
        Some(h) => Obj::new(h, format!("Permissions[{n}].HTTP."))?,
        None => Obj::new(v, format!("Permissions[{n}]."))?,
    };
    let methods: Vec<String> = http
        .strings("Methods", &["methods"])?
        .iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    const METHODS: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    if let Some(m) = methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
        return Err(bad(
            &http.name("Methods"),
            format!("{m:?} is not an HTTP method"),
        ));
    }
    let path = |field: &str, alias: &str| -> Result<Option<String>, BodyError> {
        match http.string(field, &[alias])? {
            Some(p) if !p.starts_with('/') => Err(bad(&http.name(field), "must start with /")),
            other => Ok(other),
        }
    };
    let path_exact = path("PathExact", "pathexact")?;
    let path_prefix = path("PathPrefix", "pathprefix")?;
    if path_exact.is_some() && path_prefix.is_some() {
        return Err(bad(
            &http.name("PathExact"),
            "cannot be combined with PathPrefix",
        ));
    }
    Ok(Permission {
        action,
        methods,
        path_exact,
        path_prefix,
    })
}

/// The platform's `planeIsolation` document as intentions (without ids) and a plane map.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanePolicy {
    /// plane -> its services.
    pub planes: BTreeMap<String, Vec<String>>,
    pub intentions: Vec<Intention>,
}

/// Convert `planeIsolation` (`planes.<p>.allowedClusters`, `policies: [{name, source,
/// destination, rules: [{action, methods, paths, except: [{source, methods, paths}]}]}]`).
/// Sources and destinations naming a plane become `plane:<p>`; `*` stays `*`; other names are
/// services. A rule with methods or paths becomes an L7 permission; `paths` ending in `*` are
/// prefixes. An `except` becomes a more specific intention from that source doing the
/// opposite for those methods and paths.
pub fn from_plane_isolation(doc: &Value) -> Result<PlanePolicy, BodyError> {
    let o = Obj::new(doc, "planeIsolation.".into())?;
    let mut out = PlanePolicy::default();
    if let Some(Value::Object(planes)) = o.get(&["planes"]) {
        for (plane, v) in planes {
            if !valid_service_name(plane) {
                return Err(bad(
                    &format!("planeIsolation.planes.{plane}"),
                    "is not a valid plane name",
                ));
            }
            let p = Obj::new(v, format!("planeIsolation.planes.{plane}."))?;
            let services = p.strings("allowedClusters", &["allowedclusters"])?;
            if let Some(s) = services.iter().find(|s| !valid_service_name(s)) {
                return Err(bad(
                    &p.name("allowedClusters"),
                    format!("{s:?} is not a service name"),
                ));
            }
            out.planes.insert(plane.clone(), services);
        }
    }
    let party = |name: &str, field: &str| -> Result<Party, BodyError> {
        if name == "*" {
            Ok(Party::Any)
        } else if out.planes.contains_key(name) {
            Ok(Party::Plane(name.to_owned()))
        } else {
            Party::parse(name)
                .ok_or_else(|| bad(field, format!("{name:?} is not a plane, a service or *")))
        }
    };
    let policies = match o.get(&["policies"]) {
        None => Vec::new(),
        Some(Value::Array(p)) => p.clone(),
        Some(_) => return Err(bad("planeIsolation.policies", "must be a list")),
    };
    for (n, pol) in policies.iter().enumerate() {
        let at = format!("planeIsolation.policies[{n}].");
        let p = Obj::new(pol, at.clone())?;
        let name = p
            .string("name", &["name"])?
            .unwrap_or_else(|| format!("policy-{n}"));
        let src_s = p
            .string("source", &["source"])?
            .ok_or_else(|| bad(&p.name("source"), "is required"))?;
        let dst_s = p
            .string("destination", &["destination"])?
            .ok_or_else(|| bad(&p.name("destination"), "is required"))?;
        let source = party(&src_s, &p.name("source"))?;
        let destination = party(&dst_s, &p.name("destination"))?;
        let rules = match p.get(&["rules"]) {
            Some(Value::Array(r)) if !r.is_empty() => r.clone(),
            _ => return Err(bad(&p.name("rules"), "must be a non-empty list")),
        };
        let mut permissions = Vec::new();
        let mut l4: Option<Action> = None;
        for (m, rule) in rules.iter().enumerate() {
            let r = Obj::new(rule, format!("{at}rules[{m}]."))?;
            let a = r
                .string("action", &["action"])?
                .ok_or_else(|| bad(&r.name("action"), "is required"))?;
            let action = Action::parse(&a)
                .ok_or_else(|| bad(&r.name("action"), format!("{a:?} is not allow or deny")))?;
            let methods = r.strings("methods", &["methods"])?;
            let paths = r.strings("paths", &["paths"])?;
            if methods.is_empty() && paths.is_empty() {
                l4 = Some(action);
            } else {
                permissions.extend(permissions_for(action, &methods, &paths));
            }
            if let Some(Value::Array(excepts)) = r.get(&["except"]) {
                for (k, ex) in excepts.iter().enumerate() {
                    let e = Obj::new(ex, format!("{at}rules[{m}].except[{k}]."))?;
                    let who = e
                        .string("source", &["source"])?
                        .ok_or_else(|| bad(&e.name("source"), "is required"))?;
                    let opposite = if action == Action::Allow {
                        Action::Deny
                    } else {
                        Action::Allow
                    };
                    let ex_methods = e.strings("methods", &["methods"])?;
                    let ex_paths = e.strings("paths", &["paths"])?;
                    let ex_source = party(&who, &e.name("source"))?;
                    let (action, permissions) = if ex_methods.is_empty() && ex_paths.is_empty() {
                        (Some(opposite), Vec::new())
                    } else {
                        (None, permissions_for(opposite, &ex_methods, &ex_paths))
                    };
                    out.intentions.push(Intention {
                        id: String::new(),
                        source: ex_source,
                        destination: destination.clone(),
                        action,
                        permissions,
                        description: format!("{name} (exception)"),
                    });
                }
            }
        }
        let (action, permissions) = if permissions.is_empty() {
            (Some(l4.unwrap_or(Action::Deny)), Vec::new())
        } else {
            (None, permissions)
        };
        out.intentions.push(Intention {
            id: String::new(),
            source,
            destination,
            action,
            permissions,
            description: name,
        });
    }
    Ok(out)
}

fn permissions_for(action: Action, methods: &[String], paths: &[String]) -> Vec<Permission> {
    let methods: Vec<String> = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
    if paths.is_empty() {
        return vec![Permission {
            action,
            methods,
            path_exact: None,
            path_prefix: None,
        }];
    }
    paths
        .iter()
        .map(|p| match p.strip_suffix('*') {
            Some(prefix) => Permission {
                action,
                methods: methods.clone(),
                path_exact: None,
                path_prefix: Some(prefix.to_owned()),
            },
            None => Permission {
                action,
                methods: methods.clone(),
                path_exact: Some(p.clone()),
                path_prefix: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests;
