//! From a request's secret to what it may do (Consul's `ResolveToken`): the token (the
//! anonymous one when none is sent, the `--acl-bootstrap-token` one by its secret), then every
//! policy that applies to it — linked policies (the two built-ins by ID), its roles' policies,
//! the synthetic policies of its service and node identities and templated policies, those
//! scoped to other datacenters dropped — merged into one [`Authorizer`] over lucid's default
//! of deny. Also how tokens and links are shown back (names filled in from the current
//! policies and roles, the secret only to who may write ACLs).

use lucid_core::acl::{self as rules, Authorizer};
use lucid_core::wire::acl::{PolicyLink, PolicyView, TokenView};

use super::agent::DATACENTER;
use super::error::ApiError;
use super::ApiState;
use crate::store::acl::{AclToken, BUILTIN_POLICIES};

/// Consul's anonymous token: what a request without a token may do.
pub const ANONYMOUS_ID: &str = "00000000-0000-0000-0000-000000000002";
pub const ANONYMOUS_SECRET: &str = "anonymous";
/// The description Consul gives the token of `acl.tokens.initial_management`.
pub const INITIAL_MANAGEMENT: &str = "Initial Management Token";

/// The anonymous token: the stored one if an operator gave it policies, else Consul's.
pub(crate) fn anonymous(api: &ApiState) -> Result<AclToken, ApiError> {
    Ok(api
        .node
        .state
        .acl_token(ANONYMOUS_ID)?
        .unwrap_or_else(|| AclToken {
            accessor_id: ANONYMOUS_ID.into(),
            secret_hash: super::acl::hash(ANONYMOUS_SECRET),
            description: "Anonymous Token".into(),
            ..AclToken::default()
        }))
}

/// The live token whose secret is `secret`, if any.
pub(crate) fn by_secret(api: &ApiState, secret: &str) -> Result<Option<AclToken>, ApiError> {
    if secret == ANONYMOUS_SECRET {
        return anonymous(api).map(Some);
    }
    let hashed = super::acl::hash(secret);
    let now = lucid_core::unix_now();
    if let Some(t) = api
        .node
        .state
        .acl_token_by_hash(&hashed)?
        .filter(|t| !t.expired(now))
    {
        return Ok(Some(t));
    }
    // The flag's secret works before the leader has stored its token.
    let boot = api.acl.bootstrap_secret.as_deref().map(super::acl::hash);
    if boot.is_some_and(|b| lucid_tls::constant_time_eq(b.as_bytes(), hashed.as_bytes())) {
        return Ok(Some(initial_management(&hashed)));
    }
    Ok(None)
}

/// The token `--acl-bootstrap-token` stands for (its accessor is made when it is stored).
pub(crate) fn initial_management(secret_hash: &str) -> AclToken {
    AclToken {
        accessor_id: super::acl::new_id(),
        secret_hash: secret_hash.to_owned(),
        description: INITIAL_MANAGEMENT.into(),
        policies: vec![rules::GLOBAL_MANAGEMENT_ID.into()],
        create_time: lucid_core::unix_now(),
        ..AclToken::default()
    }
}

/// What a service identity adds to Consul's rules in lucid.
const SERVICE_KV_READ: &str = "key_prefix \"\" {\n\tpolicy = \"read\"\n}";

/// The rules text of a built-in policy.
fn builtin_rules(id: &str) -> Option<String> {
    if id.eq_ignore_ascii_case(rules::GLOBAL_MANAGEMENT_ID) {
        Some(rules::global_management_rules().to_owned())
    } else if id.eq_ignore_ascii_case(rules::GLOBAL_READ_ONLY_ID) {
        Some(rules::global_read_only_rules().to_owned())
    } else {
        None
    }
}

/// The built-in policies, as shown.
pub(crate) fn builtin_policies() -> Vec<PolicyView> {
    BUILTIN_POLICIES
        .iter()
        .map(|(id, name)| PolicyView {
            id: (*id).into(),
            name: (*name).into(),
            description: if *id == rules::GLOBAL_MANAGEMENT_ID {
                "Builtin Policy that grants unlimited access".into()
            } else {
                "Builtin Policy that grants unlimited read-only access to all components".into()
            },
            rules: builtin_rules(id).unwrap_or_default(),
            ..PolicyView::default()
        })
        .collect()
}

/// A policy by ID, built-in or stored.
pub(crate) fn policy(api: &ApiState, id: &str) -> Result<Option<PolicyView>, ApiError> {
    if let Some(b) = builtin_policies()
        .into_iter()
        .find(|p| p.id.eq_ignore_ascii_case(id))
    {
        return Ok(Some(b));
    }
    Ok(api.node.state.acl_policy(id)?)
}

/// A policy's ID by name. `read-only` is the name lucid's tokens used for the built-in
/// read-only policy before Consul's policies existed; it still names it.
pub(crate) fn policy_id(api: &ApiState, name: &str) -> Result<Option<String>, ApiError> {
    if name == crate::store::acl::LEGACY_READ_ONLY {
        return Ok(Some(rules::GLOBAL_READ_ONLY_ID.into()));
    }
    if let Some((id, _)) = BUILTIN_POLICIES.iter().find(|(_, n)| *n == name) {
        return Ok(Some((*id).into()));
    }
    Ok(api.node.state.acl_policy_id(name)?)
}

fn applies_here(datacenters: &[String]) -> bool {
    datacenters.is_empty() || datacenters.iter().any(|d| d == DATACENTER)
}

/// Every rules text that applies to `t` here.
fn rules_of(api: &ApiState, t: &AclToken) -> Result<Vec<String>, ApiError> {
    let st = &api.node.state;
    let mut ids = t.policies.clone();
    let mut services = t.service_identities.clone();
    let mut nodes = t.node_identities.clone();
    let mut templated = t.templated_policies.clone();
    for r in &t.roles {
        // A link to a deleted role or policy is skipped, as Consul does.
        if let Some(role) = st.acl_role(r)? {
            ids.extend(role.policies.into_iter().map(|l| l.id));
            services.extend(role.service_identities);
            nodes.extend(role.node_identities);
            templated.extend(role.templated_policies);
        }
    }
    let mut out = Vec::new();
    for id in ids {
        match builtin_rules(&id) {
            Some(r) => out.push(r),
            None => {
                if let Some(p) = st.acl_policy(&id)? {
                    if applies_here(&p.datacenters) {
                        out.push(p.rules);
                    }
                }
            }
        }
    }
    let mut serves = false;
    for s in services.iter().filter(|s| applies_here(&s.datacenters)) {
        out.push(rules::service_identity_rules(&s.service_name));
        serves = true;
    }
    // Lucid's service tokens have always read KV (DESIGN §9) and deployments rely on it;
    // Consul's service identities do not. Kept, so existing tokens keep working.
    if serves {
        out.push(SERVICE_KV_READ.to_owned());
    }
    for n in nodes.iter().filter(|n| n.datacenter == DATACENTER) {
        out.push(rules::node_identity_rules(&n.node_name));
    }
    for tp in templated.iter().filter(|t| applies_here(&t.datacenters)) {
        let name = tp.template_variables.as_ref().map(|v| v.name.as_str());
        if let Some(r) =
            rules::template(&tp.template_name).and_then(|t| rules::render(t, name).ok())
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// What `t` may do here.
pub(crate) fn authorizer(api: &ApiState, t: &AclToken) -> Result<Authorizer, ApiError> {
    let mut policies = Vec::new();
    for text in rules_of(api, t)? {
        match rules::parse(&text) {
            Ok(p) => policies.push(p),
            // Rules are checked when written; one that no longer parses grants nothing.
            Err(e) => {
                tracing::warn!(token = %t.accessor_id, error = %e, "skipping ACL rules that do not parse")
            }
        }
    }
    Ok(Authorizer::new(&policies, rules::Default::Deny))
}

/// The secret of `t`, when this node can give it back: the two whose secrets it knows, or a
/// secret sealed under the cluster secret.
pub(crate) fn secret(api: &ApiState, t: &AclToken) -> Option<String> {
    if t.accessor_id.eq_ignore_ascii_case(ANONYMOUS_ID) {
        return Some(ANONYMOUS_SECRET.into());
    }
    if let Some(b) = &api.acl.bootstrap_secret {
        if super::acl::hash(b) == t.secret_hash {
            return Some(b.clone());
        }
    }
    let sealed = t.secret_sealed.as_deref()?;
    let sealer = api.acl.sealer.as_ref()?;
    sealer
        .open_text(t.accessor_id.to_ascii_lowercase().as_bytes(), sealed)
        .map_err(|e| tracing::warn!(token = %t.accessor_id, error = %e, "cannot open a token's sealed secret"))
        .ok()
}

/// Seal `secret` for the token `accessor`, if this node can seal.
pub(crate) fn seal(api: &ApiState, accessor: &str, secret: &str) -> Option<String> {
    let sealer = api.acl.sealer.as_ref()?;
    sealer
        .seal_text(accessor.to_ascii_lowercase().as_bytes(), secret)
        .map_err(|e| tracing::warn!(error = %e, "cannot seal a token's secret"))
        .ok()
}

/// Links by ID, with the names policies (or roles) have now; links to deleted ones dropped.
pub(crate) fn policy_links(api: &ApiState, ids: &[String]) -> Result<Vec<PolicyLink>, ApiError> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(p) = policy(api, id)? {
            out.push(PolicyLink {
                id: p.id,
                name: p.name,
            });
        }
    }
    Ok(out)
}

pub(crate) fn role_links(api: &ApiState, ids: &[String]) -> Result<Vec<PolicyLink>, ApiError> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(r) = api.node.state.acl_role(id)? {
            out.push(PolicyLink {
                id: r.id,
                name: r.name,
            });
        }
    }
    Ok(out)
}

/// `t` as shown; `with_secret` when the reader may write ACLs (or is the token itself).
pub(crate) fn view(api: &ApiState, t: &AclToken, with_secret: bool) -> Result<TokenView, ApiError> {
    Ok(TokenView {
        accessor_id: t.accessor_id.clone(),
        secret_id: if with_secret { secret(api, t) } else { None },
        description: t.description.clone(),
        policies: policy_links(api, &t.policies)?,
        roles: role_links(api, &t.roles)?,
        service_identities: t.service_identities.clone(),
        node_identities: t.node_identities.clone(),
        templated_policies: t.templated_policies.clone(),
        local: t.local,
        auth_method: t.auth_method.clone(),
        expiration_time: t.expires_at.map(super::ca::rfc3339),
        create_time: if t.create_time > 0 {
            super::ca::rfc3339(t.create_time)
        } else {
            String::new()
        },
        hash: String::new(),
        create_index: t.create_index,
        modify_index: t.modify_index,
    })
}
