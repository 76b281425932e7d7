//! ACL objects in the state tree, all under `g:`:
//! - `g:t:<accessor>`: a token (its secret as a SHA-256 hash, and sealed when the registry
//!   has `--ca-key-secret-file`, so an `acl:write` reader can be shown it as Consul does);
//!   `g:h:<secret hash>` → accessor, for lookups by secret; `g:bootstrapped`, set once.
//! - `g:p:<id>` a policy, `g:pn:<name>` → its id; `g:r:<id>` a role, `g:rn:<name>` → its id;
//!   `g:am:<name>` an auth method; `g:br:<id>` a binding rule.
//!
//! IDs are UUIDs compared without case (Consul's UUID index), so keys hold them lower-case
//! while records keep the case they were given. Uniqueness (accessor, secret, names) is
//! decided here, on the applied state, so two nodes creating the same name at once cannot
//! both win. Secrets in the clear never reach the log or the disk.

use serde::{Deserialize, Serialize};

use lucid_core::wire::acl::{
    AuthMethodView, BindingRuleView, NodeIdentity, PolicyView, RoleView, ServiceIdentity,
    TemplatedPolicy,
};

use super::state::{StateBatch, StateError, StateReader};

pub(crate) const ACL_PREFIX: &[u8] = b"g:";
pub(crate) const TOKEN_PREFIX: &[u8] = b"g:t:";
pub(crate) const HASH_PREFIX: &[u8] = b"g:h:";
pub(crate) const BOOTSTRAPPED: &[u8] = b"g:bootstrapped";
const POLICY_PREFIX: &[u8] = b"g:p:";
const POLICY_NAME_PREFIX: &[u8] = b"g:pn:";
const ROLE_PREFIX: &[u8] = b"g:r:";
const ROLE_NAME_PREFIX: &[u8] = b"g:rn:";
const METHOD_PREFIX: &[u8] = b"g:am:";
const RULE_PREFIX: &[u8] = b"g:br:";

/// The built-in policies' IDs and names: never stored, never taken by a stored policy.
pub const BUILTIN_POLICIES: [(&str, &str); 2] = [
    (lucid_core::acl::GLOBAL_MANAGEMENT_ID, "global-management"),
    (
        lucid_core::acl::GLOBAL_READ_ONLY_ID,
        "builtin/global-read-only",
    ),
];

/// The name lucid's read-only tokens linked before Consul's policies existed; it still
/// names the built-in read-only policy, so no stored policy may take it.
pub const LEGACY_READ_ONLY: &str = "read-only";

/// What a token stored before policies existed could do; read back as the built-in policy
/// or service identity it became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenKind {
    Management,
    Service { name: String },
    ReadOnly,
}

/// A token as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    pub accessor_id: String,
    /// SHA-256 of the secret, lower-case hex.
    pub secret_hash: String,
    /// The secret sealed under the cluster secret (`lucid_tls::seal`), if the node that
    /// created it could seal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sealed: Option<String>,
    pub description: String,
    /// Only in records written before policies existed; [`decode`] turns it into links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TokenKind>,
    /// Policy IDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Role IDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicy>,
    #[serde(default)]
    pub local: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_method: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
    /// Unix seconds.
    #[serde(default)]
    pub create_time: i64,
    /// Unix seconds after which the token no longer authenticates (Consul's
    /// `ExpirationTime`); `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl AclToken {
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Does the token link `policy` (an ID) directly?
    pub fn links_policy(&self, policy: &str) -> bool {
        self.policies.iter().any(|p| p.eq_ignore_ascii_case(policy))
    }
}

/// One ACL object, for [`set`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "object", rename_all = "snake_case")]
pub enum AclObject {
    Token(AclToken),
    Policy(PolicyView),
    Role(RoleView),
    AuthMethod(AuthMethodView),
    BindingRule(BindingRuleView),
}

/// Which kind of ACL object, for [`delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclKind {
    Token,
    Policy,
    Role,
    AuthMethod,
    BindingRule,
}

fn key(prefix: &[u8], s: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(s.to_ascii_lowercase().as_bytes());
    k
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt(format!("ACL {what}: {e}"))
}

/// A stored token, with a pre-policy `kind` read as what it became.
fn decode(raw: &[u8]) -> Result<AclToken, StateError> {
    let mut t: AclToken = serde_json::from_slice(raw).map_err(|e| corrupt("token", e))?;
    match t.kind.take() {
        None => {}
        Some(TokenKind::Management) => t.policies = vec![BUILTIN_POLICIES[0].0.to_owned()],
        Some(TokenKind::ReadOnly) => t.policies = vec![BUILTIN_POLICIES[1].0.to_owned()],
        Some(TokenKind::Service { name }) => {
            t.service_identities = vec![ServiceIdentity {
                service_name: name,
                datacenters: Vec::new(),
            }]
        }
    }
    Ok(t)
}

fn read<T: serde::de::DeserializeOwned>(raw: &[u8], what: &str) -> Result<T, StateError> {
    serde_json::from_slice(raw).map_err(|e| corrupt(what, e))
}

fn write<T: Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(v).map_err(|e| corrupt("record", e))
}

pub(crate) fn is_acl_key(k: &[u8]) -> bool {
    k.starts_with(ACL_PREFIX)
}

pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    if k.starts_with(TOKEN_PREFIX) {
        decode(v).map(|_| ())
    } else if k.starts_with(POLICY_NAME_PREFIX) || k.starts_with(ROLE_NAME_PREFIX) {
        std::str::from_utf8(v)
            .map(|_| ())
            .map_err(|e| corrupt("name index", e))
    } else if k.starts_with(POLICY_PREFIX) {
        read::<PolicyView>(v, "policy").map(|_| ())
    } else if k.starts_with(ROLE_PREFIX) {
        read::<RoleView>(v, "role").map(|_| ())
    } else if k.starts_with(METHOD_PREFIX) {
        read::<AuthMethodView>(v, "auth method").map(|_| ())
    } else if k.starts_with(RULE_PREFIX) {
        read::<BindingRuleView>(v, "binding rule").map(|_| ())
    } else {
        Ok(())
    }
}

/// Store a new token (refused when its accessor or secret is taken).
pub(crate) fn create(
    batch: &mut StateBatch<'_>,
    t: AclToken,
    index: u64,
) -> Result<bool, StateError> {
    Ok(set(batch, AclObject::Token(t), true, index)?.is_ok())
}

/// Create (`create`) or replace an ACL object. `Ok(Err(why))` is a refusal decided on the
/// applied state, in Consul's words; nothing was changed.
pub(crate) fn set(
    batch: &mut StateBatch<'_>,
    object: AclObject,
    create: bool,
    index: u64,
) -> Result<Result<(), String>, StateError> {
    match object {
        AclObject::Token(t) => set_token(batch, t, create, index),
        AclObject::Policy(p) => set_policy(batch, p, create, index),
        AclObject::Role(r) => set_role(batch, r, create, index),
        AclObject::AuthMethod(m) => set_method(batch, m, index),
        AclObject::BindingRule(r) => set_rule(batch, r, create, index),
    }
}

fn set_token(
    batch: &mut StateBatch<'_>,
    mut t: AclToken,
    create: bool,
    index: u64,
) -> Result<Result<(), String>, StateError> {
    let k = key(TOKEN_PREFIX, &t.accessor_id);
    let h = [HASH_PREFIX, t.secret_hash.as_bytes()].concat();
    let old = batch.get(&k)?.map(|raw| decode(&raw)).transpose()?;
    match (create, old) {
        (true, Some(_)) => return Ok(Err("Invalid Token: AccessorID is already in use".into())),
        (true, None) => {
            if batch.get(&h)?.is_some() {
                return Ok(Err("Invalid Token: SecretID is already in use".into()));
            }
            t.create_index = index;
        }
        (false, None) => return Ok(Err(format!("Cannot find token {:?}", t.accessor_id))),
        (false, Some(old)) => {
            if old.secret_hash != t.secret_hash {
                return Ok(Err("Changing a tokens SecretID is not permitted".into()));
            }
            t.create_index = old.create_index;
            t.create_time = old.create_time;
            t.secret_sealed = t.secret_sealed.or(old.secret_sealed);
        }
    }
    t.modify_index = index;
    batch.insert(h, t.accessor_id.to_ascii_lowercase().into_bytes());
    batch.insert(k, write(&t)?);
    Ok(Ok(()))
}

/// The id a name index points at, if any.
fn named(batch: &StateBatch<'_>, prefix: &[u8], name: &str) -> Result<Option<String>, StateError> {
    let k = [prefix, name.as_bytes()].concat();
    Ok(batch
        .get(&k)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Common to policies and roles: the record under `id`, unique `name`.
#[allow(clippy::too_many_arguments)]
fn set_named<T: Serialize + serde::de::DeserializeOwned>(
    batch: &mut StateBatch<'_>,
    (prefix, name_prefix, what): (&[u8], &[u8], &str),
    id: &str,
    name: &str,
    create: bool,
    record: impl FnOnce(Option<&T>) -> T,
    name_of: impl Fn(&T) -> &str,
) -> Result<Result<(), String>, StateError> {
    let k = key(prefix, id);
    let old: Option<T> = batch.get(&k)?.map(|raw| read(&raw, what)).transpose()?;
    let owner = named(batch, name_prefix, name)?;
    let title = |s: &str| {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    match (&old, create) {
        (Some(_), true) => {
            return Ok(Err(format!(
                "Invalid {}: ID {id:?} is already in use",
                title(what)
            )))
        }
        (None, false) => return Ok(Err(format!("cannot find {what} {id}"))),
        _ => {}
    }
    let reserved = what == "policy"
        && (BUILTIN_POLICIES.iter().any(|(_, n)| *n == name) || name == LEGACY_READ_ONLY);
    if owner
        .as_deref()
        .is_some_and(|o| !o.eq_ignore_ascii_case(id))
        || reserved
    {
        return Ok(Err(format!(
            "Invalid {}: A {} with Name {name:?} already exists",
            title(what),
            title(what)
        )));
    }
    if let Some(o) = &old {
        let old_name = name_of(o).to_owned();
        if old_name != name {
            batch.remove([name_prefix, old_name.as_bytes()].concat());
        }
    }
    let new = record(old.as_ref());
    batch.insert(
        [name_prefix, name.as_bytes()].concat(),
        id.to_ascii_lowercase().into_bytes(),
    );
    batch.insert(k, write(&new)?);
    Ok(Ok(()))
}

fn set_policy(
    batch: &mut StateBatch<'_>,
    mut p: PolicyView,
    create: bool,
    index: u64,
) -> Result<Result<(), String>, StateError> {
    if BUILTIN_POLICIES
        .iter()
        .any(|(id, _)| id.eq_ignore_ascii_case(&p.id))
    {
        return Ok(Err(format!(
            "the builtin policy {:?} cannot be changed",
            p.id
        )));
    }
    let (id, name) = (p.id.clone(), p.name.clone());
    set_named::<PolicyView>(
        batch,
        (POLICY_PREFIX, POLICY_NAME_PREFIX, "policy"),
        &id,
        &name,
        create,
        |old| {
            p.create_index = old.map_or(index, |o| o.create_index);
            p.modify_index = index;
            p
        },
        |o| &o.name,
    )
}

fn set_role(
    batch: &mut StateBatch<'_>,
    mut r: RoleView,
    create: bool,
    index: u64,
) -> Result<Result<(), String>, StateError> {
    let (id, name) = (r.id.clone(), r.name.clone());
    set_named::<RoleView>(
        batch,
        (ROLE_PREFIX, ROLE_NAME_PREFIX, "role"),
        &id,
        &name,
        create,
        |old| {
            r.create_index = old.map_or(index, |o| o.create_index);
            r.modify_index = index;
            r
        },
        |o| &o.name,
    )
}

fn set_method(
    batch: &mut StateBatch<'_>,
    mut m: AuthMethodView,
    index: u64,
) -> Result<Result<(), String>, StateError> {
    let k = [METHOD_PREFIX, m.name.as_bytes()].concat();
    let old: Option<AuthMethodView> = batch
        .get(&k)?
        .map(|raw| read(&raw, "auth method"))
        .transpose()?;
    if let Some(o) = &old {
        if o.kind != m.kind {
            return Ok(Err("the Type field of an Auth Method is immutable".into()));
        }
    }
    m.create_index = old.map_or(index, |o| o.create_index);
    m.modify_index = index;
    batch.insert(k, write(&m)?);
    Ok(Ok(()))
}

fn set_rule(
    batch: &mut StateBatch<'_>,
    mut r: BindingRuleView,
    create: bool,
    index: u64,
) -> Result<Result<(), String>, StateError> {
    if batch
        .get(&[METHOD_PREFIX, r.auth_method.as_bytes()].concat())?
        .is_none()
    {
        return Ok(Err(format!(
            "cannot find auth method with name {:?}",
            r.auth_method
        )));
    }
    let k = key(RULE_PREFIX, &r.id);
    let old: Option<BindingRuleView> = batch
        .get(&k)?
        .map(|raw| read(&raw, "binding rule"))
        .transpose()?;
    match (&old, create) {
        (Some(_), true) => return Ok(Err(format!("Binding Rule ID {:?} is already in use", r.id))),
        (None, false) => return Ok(Err(format!("cannot find binding rule {}", r.id))),
        (Some(o), false) if o.auth_method != r.auth_method => {
            return Ok(Err(
                "the AuthMethod field of an Binding Rule is immutable".into()
            ))
        }
        _ => {}
    }
    r.create_index = old.map_or(index, |o| o.create_index);
    r.modify_index = index;
    batch.insert(k, write(&r)?);
    Ok(Ok(()))
}

/// Delete an ACL object; `false` when there is none. Deleting an auth method deletes its
/// binding rules and the tokens it issued, as Consul does.
pub(crate) fn delete(
    batch: &mut StateBatch<'_>,
    kind: AclKind,
    id: &str,
) -> Result<bool, StateError> {
    match kind {
        AclKind::Token => delete_token(batch, id),
        AclKind::Policy => {
            delete_named::<PolicyView>(batch, POLICY_PREFIX, POLICY_NAME_PREFIX, id, |p| {
                p.name.clone()
            })
        }
        AclKind::Role => {
            delete_named::<RoleView>(batch, ROLE_PREFIX, ROLE_NAME_PREFIX, id, |r| r.name.clone())
        }
        AclKind::BindingRule => {
            let k = key(RULE_PREFIX, id);
            let found = batch.get(&k)?.is_some();
            batch.remove(k);
            Ok(found)
        }
        AclKind::AuthMethod => {
            let k = [METHOD_PREFIX, id.as_bytes()].concat();
            if batch.get(&k)?.is_none() {
                return Ok(false);
            }
            batch.remove(k);
            for k in batch.keys_with_prefix(RULE_PREFIX)? {
                let Some(v) = batch.get(&k)? else { continue };
                if read::<BindingRuleView>(&v, "binding rule")?.auth_method == id {
                    batch.remove(k);
                }
            }
            for k in batch.keys_with_prefix(TOKEN_PREFIX)? {
                let Some(v) = batch.get(&k)? else { continue };
                let t = decode(&v)?;
                if t.auth_method == id {
                    delete_token(batch, &t.accessor_id)?;
                }
            }
            Ok(true)
        }
    }
}

fn delete_token(batch: &mut StateBatch<'_>, accessor_id: &str) -> Result<bool, StateError> {
    let k = key(TOKEN_PREFIX, accessor_id);
    let Some(raw) = batch.get(&k)? else {
        return Ok(false);
    };
    let t = decode(&raw)?;
    batch.remove([HASH_PREFIX, t.secret_hash.as_bytes()].concat());
    batch.remove(k);
    Ok(true)
}

fn delete_named<T: serde::de::DeserializeOwned>(
    batch: &mut StateBatch<'_>,
    prefix: &[u8],
    name_prefix: &[u8],
    id: &str,
    name_of: impl Fn(&T) -> String,
) -> Result<bool, StateError> {
    let k = key(prefix, id);
    let Some(raw) = batch.get(&k)? else {
        return Ok(false);
    };
    let old: T = read(&raw, "record")?;
    batch.remove([name_prefix, name_of(&old).as_bytes()].concat());
    batch.remove(k);
    Ok(true)
}

/// The first management token; `false` once bootstrapping has happened.
pub(crate) fn bootstrap(
    batch: &mut StateBatch<'_>,
    t: AclToken,
    index: u64,
) -> Result<bool, StateError> {
    if batch.get(BOOTSTRAPPED)?.is_some() {
        return Ok(false);
    }
    if !create(batch, t, index)? {
        return Ok(false);
    }
    batch.insert(BOOTSTRAPPED.to_vec(), index.to_be_bytes().to_vec());
    Ok(true)
}

// === impl StateReader: ACL reads ===

impl StateReader {
    fn acl_scan<T>(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8]) -> Result<T, StateError>,
    ) -> Result<Vec<T>, StateError> {
        let mut out = Vec::new();
        for item in self.tree().scan_prefix(prefix) {
            let (_, v) = item?;
            out.push(f(&v)?);
        }
        Ok(out)
    }

    fn acl_get<T>(
        &self,
        k: Vec<u8>,
        f: impl FnOnce(&[u8]) -> Result<T, StateError>,
    ) -> Result<Option<T>, StateError> {
        self.tree().get(k)?.map(|raw| f(&raw)).transpose()
    }

    /// The token whose secret hashes to `hash`.
    pub fn acl_token_by_hash(&self, hash: &str) -> Result<Option<AclToken>, StateError> {
        let Some(acc) = self.tree().get([HASH_PREFIX, hash.as_bytes()].concat())? else {
            return Ok(None);
        };
        let acc = String::from_utf8_lossy(&acc).into_owned();
        self.acl_token(&acc)
    }

    pub fn acl_token(&self, accessor_id: &str) -> Result<Option<AclToken>, StateError> {
        self.acl_get(key(TOKEN_PREFIX, accessor_id), decode)
    }

    pub fn acl_tokens(&self) -> Result<Vec<AclToken>, StateError> {
        self.acl_scan(TOKEN_PREFIX, decode)
    }

    pub fn acl_bootstrapped(&self) -> Result<bool, StateError> {
        Ok(self.tree().get(BOOTSTRAPPED)?.is_some())
    }

    pub fn acl_policy(&self, id: &str) -> Result<Option<PolicyView>, StateError> {
        self.acl_get(key(POLICY_PREFIX, id), |v| read(v, "policy"))
    }

    pub fn acl_policy_id(&self, name: &str) -> Result<Option<String>, StateError> {
        self.acl_get([POLICY_NAME_PREFIX, name.as_bytes()].concat(), |v| {
            Ok(String::from_utf8_lossy(v).into_owned())
        })
    }

    pub fn acl_policies(&self) -> Result<Vec<PolicyView>, StateError> {
        self.acl_scan(POLICY_PREFIX, |v| read(v, "policy"))
    }

    pub fn acl_role(&self, id: &str) -> Result<Option<RoleView>, StateError> {
        self.acl_get(key(ROLE_PREFIX, id), |v| read(v, "role"))
    }

    pub fn acl_role_id(&self, name: &str) -> Result<Option<String>, StateError> {
        self.acl_get([ROLE_NAME_PREFIX, name.as_bytes()].concat(), |v| {
            Ok(String::from_utf8_lossy(v).into_owned())
        })
    }

    pub fn acl_roles(&self) -> Result<Vec<RoleView>, StateError> {
        self.acl_scan(ROLE_PREFIX, |v| read(v, "role"))
    }

    pub fn acl_auth_method(&self, name: &str) -> Result<Option<AuthMethodView>, StateError> {
        self.acl_get([METHOD_PREFIX, name.as_bytes()].concat(), |v| {
            read(v, "auth method")
        })
    }

    pub fn acl_auth_methods(&self) -> Result<Vec<AuthMethodView>, StateError> {
        self.acl_scan(METHOD_PREFIX, |v| read(v, "auth method"))
    }

    pub fn acl_binding_rule(&self, id: &str) -> Result<Option<BindingRuleView>, StateError> {
        self.acl_get(key(RULE_PREFIX, id), |v| read(v, "binding rule"))
    }

    pub fn acl_binding_rules(&self) -> Result<Vec<BindingRuleView>, StateError> {
        self.acl_scan(RULE_PREFIX, |v| read(v, "binding rule"))
    }
}
