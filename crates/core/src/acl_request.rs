//! Consul's ACL request bodies, each parsed once with Consul's key rules (case and `_`
//! ignored, unknown keys refused, every refusal naming its field): tokens, policies, roles,
//! auth methods and binding rules. What a body links to (policies and roles by ID or name) is
//! resolved by the registry against its state; everything that can be checked on the body
//! alone is checked here, with Consul's words where clients look for them.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::acl::{template, valid_identity_name, valid_policy_name, valid_role_name};
use crate::obj::{bad, BodyError, Obj};
use crate::wire::acl::{NodeIdentity, ServiceIdentity, TemplateVariables, TemplatedPolicy};

/// IDs with this prefix are Consul's (built-in policies and tokens); nobody may choose one.
pub const RESERVED_PREFIX: &str = "00000000-0000-0000-0000-0000000000";

/// Is `s` shaped like a UUID (8-4-4-4-12 hex digits, either case)? Consul's ACL IDs are
/// UUID-indexed: anything else is an error, not "not found".
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// How a request names a policy or role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Id(String),
    Name(String),
}

/// A parsed `PUT /v1/acl/token[/<accessor>]` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    pub accessor_id: Option<String>,
    pub secret_id: Option<String>,
    pub description: String,
    pub policies: Vec<Link>,
    pub roles: Vec<Link>,
    pub service_identities: Vec<ServiceIdentity>,
    pub node_identities: Vec<NodeIdentity>,
    pub templated_policies: Vec<TemplatedPolicy>,
    pub local: bool,
    /// RFC 3339, as given.
    pub expiration_time: Option<String>,
    pub expiration_ttl: Option<Duration>,
}

/// A parsed `PUT /v1/acl/policy[/<id>]` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRequest {
    pub id: Option<String>,
    pub name: String,
    pub description: String,
    /// Verbatim; checked with [`crate::acl::parse`].
    pub rules: String,
    pub datacenters: Vec<String>,
}

/// A parsed `PUT /v1/acl/role[/<id>]` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleRequest {
    pub id: Option<String>,
    pub name: String,
    pub description: String,
    pub policies: Vec<Link>,
    pub service_identities: Vec<ServiceIdentity>,
    pub node_identities: Vec<NodeIdentity>,
    pub templated_policies: Vec<TemplatedPolicy>,
}

/// A parsed `PUT /v1/acl/auth-method[/<name>]` body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthMethodRequest {
    pub name: String,
    pub kind: String,
    pub display_name: String,
    pub description: String,
    pub max_token_ttl: Option<Duration>,
    pub token_locality: String,
    pub config: Map<String, Value>,
}

/// A parsed `PUT /v1/acl/binding-rule[/<id>]` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingRuleRequest {
    pub id: Option<String>,
    pub description: String,
    pub auth_method: String,
    pub selector: String,
    pub bind_type: String,
    pub bind_name: String,
    pub bind_vars: Option<TemplateVariables>,
}

/// The auth method types Consul knows; lucid stores any of them (login is not served).
pub const AUTH_METHOD_TYPES: [&str; 4] = ["kubernetes", "jwt", "oidc", "aws-iam"];
/// Binding rule kinds.
pub const BIND_TYPES: [&str; 5] = ["service", "node", "role", "policy", "templated-policy"];

fn objects<'a>(o: &Obj<'a>, field: &str, alias: &str) -> Result<Vec<Obj<'a>>, BodyError> {
    match o.get(&[alias]) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| Obj::new(v, format!("{}[{i}].", o.name(field))))
            .collect(),
        Some(_) => Err(bad(&o.name(field), "must be a list of objects")),
    }
}

fn string(o: &Obj<'_>, field: &str) -> Result<String, BodyError> {
    Ok(o.string(field, &[&crate::obj::norm(field)])?
        .unwrap_or_default())
}

/// An optional ID: absent and `""` are the same.
fn id(o: &Obj<'_>, field: &str) -> Result<Option<String>, BodyError> {
    let v = string(o, field)?;
    if v.is_empty() {
        return Ok(None);
    }
    if !is_uuid(&v) {
        return Err(bad(&o.name(field), format!("{v:?} is not a valid UUID")));
    }
    Ok(Some(v))
}

fn links(o: &Obj<'_>, field: &str) -> Result<Vec<Link>, BodyError> {
    objects(o, field, &crate::obj::norm(field))?
        .into_iter()
        .map(|l| {
            l.only(&["id", "name"])?;
            match (id(&l, "ID")?, string(&l, "Name")?) {
                (Some(i), _) => Ok(Link::Id(i)),
                (None, n) if !n.is_empty() => Ok(Link::Name(n)),
                _ => Err(bad(l.at.trim_end_matches('.'), "give an ID or a Name")),
            }
        })
        .collect()
}

fn service_identities(o: &Obj<'_>) -> Result<Vec<ServiceIdentity>, BodyError> {
    let mut out: Vec<ServiceIdentity> = Vec::new();
    for s in objects(o, "ServiceIdentities", "serviceidentities")? {
        s.only(&["servicename", "datacenters"])?;
        let name = string(&s, "ServiceName")?;
        if name.is_empty() {
            return Err(bad(
                &s.name("ServiceName"),
                "Service identity is missing the service name field",
            ));
        }
        if !valid_identity_name(&name) {
            return Err(bad(&s.name("ServiceName"), format!("Service identity {name:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed")));
        }
        let dcs = s.strings("Datacenters", &["datacenters"])?;
        // Consul merges repeats of one service, its datacenters united.
        match out.iter_mut().find(|x| x.service_name == name) {
            Some(x) => {
                x.datacenters.extend(dcs);
                x.datacenters.sort();
                x.datacenters.dedup();
            }
            None => out.push(ServiceIdentity {
                service_name: name,
                datacenters: dcs,
            }),
        }
    }
    Ok(out)
}

fn node_identities(o: &Obj<'_>) -> Result<Vec<NodeIdentity>, BodyError> {
    let mut out: Vec<NodeIdentity> = Vec::new();
    for n in objects(o, "NodeIdentities", "nodeidentities")? {
        n.only(&["nodename", "datacenter"])?;
        let name = string(&n, "NodeName")?;
        let dc = string(&n, "Datacenter")?;
        if name.is_empty() {
            return Err(bad(
                &n.name("NodeName"),
                "Node identity is missing the node name field",
            ));
        }
        if dc.is_empty() {
            return Err(bad(
                &n.name("Datacenter"),
                "Node identity is missing the datacenter field",
            ));
        }
        if !valid_identity_name(&name) {
            return Err(bad(&n.name("NodeName"), "Node identity has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"));
        }
        let ident = NodeIdentity {
            node_name: name,
            datacenter: dc,
        };
        if !out.contains(&ident) {
            out.push(ident);
        }
    }
    Ok(out)
}

fn templated_policies(o: &Obj<'_>) -> Result<Vec<TemplatedPolicy>, BodyError> {
    let mut out: Vec<TemplatedPolicy> = Vec::new();
    for t in objects(o, "TemplatedPolicies", "templatedpolicies")? {
        t.only(&[
            "templatename",
            "templatevariables",
            "templateid",
            "datacenters",
        ])?;
        let name = string(&t, "TemplateName")?;
        let Some(tpl) = template(&name) else {
            return Err(bad(
                &t.name("TemplateName"),
                format!("templated policy {name:?} does not exist"),
            ));
        };
        let variables = match t.get(&["templatevariables"]) {
            None => None,
            Some(v) => {
                let vars = Obj::new(v, t.name("TemplateVariables."))?;
                vars.only(&["name"])?;
                Some(string(&vars, "Name")?)
            }
        };
        crate::acl::render(tpl, variables.as_deref())
            .map_err(|e| bad(&t.name("TemplateVariables"), e.to_string()))?;
        let entry = TemplatedPolicy {
            template_name: name,
            template_variables: variables
                .filter(|n| tpl.needs_name && !n.is_empty())
                .map(|name| TemplateVariables { name }),
            datacenters: t.strings("Datacenters", &["datacenters"])?,
        };
        if !out.iter().any(|x| {
            x.template_name == entry.template_name
                && x.template_variables == entry.template_variables
        }) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Parse a token body. Checks on the body alone: a new token's IDs (`creating`) are UUIDs
/// and not reserved, a local token names no datacenters for its service identities, at most
/// one of `ExpirationTime` and `ExpirationTTL`, and a TTL above zero. An update may repeat
/// the token's own IDs whatever they are (the anonymous token's secret is `anonymous`, the
/// initial management token's whatever the operator chose): the registry compares them
/// with the stored token.
pub fn token(body: &Value, creating: bool) -> Result<TokenRequest, BodyError> {
    let o = Obj::new(body, String::new())?;
    o.only(&[
        "accessorid",
        "secretid",
        "description",
        "policies",
        "roles",
        "serviceidentities",
        "nodeidentities",
        "templatedpolicies",
        "local",
        "expirationtime",
        "expirationttl",
        "createindex",
        "modifyindex",
        "createtime",
        "hash",
        "authmethod",
        "namespace",
        "partition",
    ])?;
    if !string(&o, "AuthMethod")?.is_empty() {
        return Err(bad(
            "AuthMethod",
            "AuthMethod field is disallowed outside of Login",
        ));
    }
    let chosen = |f: &str| -> Result<Option<String>, BodyError> {
        if !creating {
            return Ok(Some(string(&o, f)?).filter(|v| !v.is_empty()));
        }
        let v = id(&o, f)?;
        if v.as_ref()
            .is_some_and(|v| v.to_ascii_lowercase().starts_with(RESERVED_PREFIX))
        {
            return Err(bad(
                f,
                format!("UUIDs with the prefix {RESERVED_PREFIX:?} are reserved"),
            ));
        }
        Ok(v)
    };
    let req = TokenRequest {
        accessor_id: chosen("AccessorID")?,
        secret_id: chosen("SecretID")?,
        description: string(&o, "Description")?,
        policies: links(&o, "Policies")?,
        roles: links(&o, "Roles")?,
        service_identities: service_identities(&o)?,
        node_identities: node_identities(&o)?,
        templated_policies: templated_policies(&o)?,
        local: o.boolean("Local", &["local"])?,
        expiration_time: o
            .string("ExpirationTime", &["expirationtime"])?
            .filter(|t| !t.is_empty()),
        expiration_ttl: o.duration("ExpirationTTL", &["expirationttl"])?,
    };
    if req.local {
        if let Some(s) = req
            .service_identities
            .iter()
            .find(|s| !s.datacenters.is_empty())
        {
            return Err(bad(
                "ServiceIdentities",
                format!(
                    "Service identity {:?} cannot specify a list of datacenters on a local token",
                    s.service_name
                ),
            ));
        }
    }
    if req.expiration_ttl == Some(Duration::ZERO) {
        return Err(bad("ExpirationTTL", "Token Expiration TTL should be > 0"));
    }
    if req.expiration_time.is_some() && req.expiration_ttl.is_some() {
        return Err(bad(
            "ExpirationTTL",
            "Token Expiration TTL and Expiration Time cannot both be set",
        ));
    }
    Ok(req)
}

/// Parse a policy body (its rules are checked by the caller, which knows the grammar's
/// error texts belong in the answer).
pub fn policy(body: &Value) -> Result<PolicyRequest, BodyError> {
    let o = Obj::new(body, String::new())?;
    o.only(&[
        "id",
        "name",
        "description",
        "rules",
        "datacenters",
        "hash",
        "createindex",
        "modifyindex",
        "namespace",
        "partition",
    ])?;
    let name = object_name(&o, "Policy", valid_policy_name)?;
    Ok(PolicyRequest {
        id: id(&o, "ID")?,
        name,
        description: string(&o, "Description")?,
        rules: string(&o, "Rules")?,
        datacenters: o.strings("Datacenters", &["datacenters"])?,
    })
}

/// A policy's or role's `Name`, refused in Consul's words when missing or malformed.
fn object_name(o: &Obj<'_>, what: &str, valid: fn(&str) -> bool) -> Result<String, BodyError> {
    let name = string(o, "Name")?;
    if name.is_empty() {
        return Err(bad("Name", format!("Invalid {what}: no Name is set")));
    }
    if !valid(&name) {
        return Err(bad(
            "Name",
            format!("Invalid {what}: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"),
        ));
    }
    Ok(name)
}

/// Parse a role body.
pub fn role(body: &Value) -> Result<RoleRequest, BodyError> {
    let o = Obj::new(body, String::new())?;
    o.only(&[
        "id",
        "name",
        "description",
        "policies",
        "serviceidentities",
        "nodeidentities",
        "templatedpolicies",
        "hash",
        "createindex",
        "modifyindex",
        "namespace",
        "partition",
    ])?;
    let name = object_name(&o, "Role", valid_role_name)?;
    Ok(RoleRequest {
        id: id(&o, "ID")?,
        name,
        description: string(&o, "Description")?,
        policies: links(&o, "Policies")?,
        service_identities: service_identities(&o)?,
        node_identities: node_identities(&o)?,
        templated_policies: templated_policies(&o)?,
    })
}

/// Parse an auth method body.
pub fn auth_method(body: &Value) -> Result<AuthMethodRequest, BodyError> {
    let o = Obj::new(body, String::new())?;
    o.only(&[
        "name",
        "type",
        "displayname",
        "description",
        "maxtokenttl",
        "tokenlocality",
        "config",
        "createindex",
        "modifyindex",
        "namespacerules",
        "namespace",
        "partition",
    ])?;
    let name = string(&o, "Name")?;
    if name.is_empty() {
        return Err(bad("Name", "Invalid Auth Method: no Name is set"));
    }
    if !valid_policy_name(&name) {
        return Err(bad("Name", "Invalid Auth Method: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"));
    }
    let kind = string(&o, "Type")?;
    if !AUTH_METHOD_TYPES.contains(&kind.as_str()) {
        return Err(bad(
            "Type",
            format!("Invalid Auth Method: Type should be one of: {AUTH_METHOD_TYPES:?}"),
        ));
    }
    let token_locality = string(&o, "TokenLocality")?;
    if !matches!(token_locality.as_str(), "" | "local" | "global") {
        return Err(bad(
            "TokenLocality",
            "Invalid Auth Method: TokenLocality should be one of 'local' or 'global'",
        ));
    }
    let max_token_ttl = o.duration("MaxTokenTTL", &["maxtokenttl"])?;
    if let Some(d) = max_token_ttl {
        if !(Duration::from_secs(60)..=Duration::from_secs(24 * 3600)).contains(&d) {
            return Err(bad("MaxTokenTTL", "MaxTokenTTL must be between 1m and 24h"));
        }
    }
    let config = match o.get(&["config"]) {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(bad("Config", "must be an object")),
    };
    if kind == "jwt" {
        check_jwt_config(&config)?;
    }
    Ok(AuthMethodRequest {
        name,
        kind,
        display_name: string(&o, "DisplayName")?,
        description: string(&o, "Description")?,
        max_token_ttl,
        token_locality,
        config,
    })
}

/// A jwt method needs one way to check signatures (Consul's validator): static PEM keys, a
/// JWKS URL, or OIDC discovery.
fn check_jwt_config(config: &Map<String, Value>) -> Result<(), BodyError> {
    let has = |k: &str| {
        config
            .iter()
            .any(|(key, v)| crate::obj::norm(key) == k && !v.is_null())
    };
    let ways = ["jwtvalidationpubkeys", "jwksurl", "oidcdiscoveryurl"]
        .iter()
        .filter(|k| has(k))
        .count();
    if ways != 1 {
        return Err(bad("Config", "exactly one of JWTValidationPubKeys, JWKSURL, or OIDCDiscoveryURL must be set for type \"jwt\""));
    }
    if let Some((_, keys)) = config
        .iter()
        .find(|(k, _)| crate::obj::norm(k) == "jwtvalidationpubkeys")
    {
        let ok = keys.as_array().is_some_and(|a| {
            a.iter().all(|k| {
                k.as_str()
                    .is_some_and(|p| p.trim_start().starts_with("-----BEGIN "))
            })
        });
        if !ok {
            return Err(bad(
                "Config.JWTValidationPubKeys",
                "must be a list of PEM public keys",
            ));
        }
    }
    Ok(())
}

/// Parse a binding rule body. The selector is a go-bexpr expression over the method's
/// identity (`value.<claim>`, `list.<claim>` for jwt); the caller checks it.
pub fn binding_rule(body: &Value) -> Result<BindingRuleRequest, BodyError> {
    let o = Obj::new(body, String::new())?;
    o.only(&[
        "id",
        "description",
        "authmethod",
        "selector",
        "bindtype",
        "bindname",
        "bindvars",
        "createindex",
        "modifyindex",
        "namespace",
        "partition",
    ])?;
    let auth_method = string(&o, "AuthMethod")?;
    if auth_method.is_empty() {
        return Err(bad(
            "AuthMethod",
            "Invalid Binding Rule: no AuthMethod is set",
        ));
    }
    let bind_type = string(&o, "BindType")?;
    if bind_type.is_empty() {
        return Err(bad("BindType", "Invalid Binding Rule: no BindType is set"));
    }
    if !BIND_TYPES.contains(&bind_type.as_str()) {
        return Err(bad(
            "BindType",
            format!("Invalid Binding Rule: unknown BindType {bind_type:?}"),
        ));
    }
    let bind_name = string(&o, "BindName")?;
    if bind_name.is_empty() {
        return Err(bad("BindName", "Invalid Binding Rule: no BindName is set"));
    }
    let bind_vars = match o.get(&["bindvars"]) {
        None => None,
        Some(v) => {
            let vars = Obj::new(v, "BindVars.".into())?;
            vars.only(&["name"])?;
            Some(TemplateVariables {
                name: string(&vars, "Name")?,
            })
        }
    };
    Ok(BindingRuleRequest {
        id: id(&o, "ID")?,
        description: string(&o, "Description")?,
        auth_method,
        selector: string(&o, "Selector")?,
        bind_type,
        bind_name,
        bind_vars,
    })
}

#[cfg(test)]
mod tests;
