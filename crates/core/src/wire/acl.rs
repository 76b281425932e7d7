//! Consul's ACL objects as the registry shows them and stores their parts (`/v1/acl/*`):
//! tokens, policies, roles, auth methods, binding rules, and the identities and templated
//! policies tokens and roles carry. Field names are Consul's (`api/acl.go`), so py-consul,
//! the `consul` CLI and lucidctl read the same answers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A token as the registry shows it. `SecretID` appears to whoever may write ACLs (Consul's
/// rule), and only when the registry can give it back (see `docs/operators/acl.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenView {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID", skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "Policies", skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyLink>,
    #[serde(rename = "Roles", skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<PolicyLink>,
    #[serde(rename = "ServiceIdentities", skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(rename = "NodeIdentities", skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(rename = "TemplatedPolicies", skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicy>,
    #[serde(rename = "Local")]
    pub local: bool,
    #[serde(rename = "AuthMethod", skip_serializing_if = "String::is_empty")]
    pub auth_method: String,
    /// RFC 3339, for a token created with an `ExpirationTTL` or `ExpirationTime`.
    #[serde(rename = "ExpirationTime", skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// RFC 3339.
    #[serde(rename = "CreateTime", skip_serializing_if = "String::is_empty")]
    pub create_time: String,
    #[serde(rename = "Hash", skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl TokenView {
    /// What the token may do, in one word for a table: its first policy's name, else
    /// `service:<name>` for its first service identity, else `-`.
    pub fn kind(&self) -> String {
        match (self.policies.first(), self.service_identities.first()) {
            (Some(p), _) => p.name.clone(),
            (None, Some(s)) => format!("service:{}", s.service_name),
            (None, None) => "-".into(),
        }
    }
}

/// A policy (or role) named on a token or role: by ID, with the current name filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyLink {
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
}

/// A service identity: the rights of that service and its sidecar proxy (Consul's
/// synthetic policy), optionally only in some datacenters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceIdentity {
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "Datacenters", skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// A node identity: the rights of an agent on that node, in one datacenter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeIdentity {
    #[serde(rename = "NodeName")]
    pub node_name: String,
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
}

/// A templated policy on a token or role. Consul serialises the variable as lower-case
/// `name` (its struct tag), whatever case was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemplatedPolicy {
    #[serde(rename = "TemplateName")]
    pub template_name: String,
    #[serde(rename = "TemplateVariables", skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<TemplateVariables>,
    #[serde(rename = "Datacenters", skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// The variables of a templated policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemplateVariables {
    #[serde(rename = "name", skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A policy as stored and shown (`Rules` verbatim, HCL or JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyView {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "Rules")]
    pub rules: String,
    #[serde(rename = "Datacenters", skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
    #[serde(rename = "Hash", skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

/// A role as stored and shown: policies by ID, identities and templated policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoleView {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "Policies", skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyLink>,
    #[serde(rename = "ServiceIdentities", skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(rename = "NodeIdentities", skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(rename = "TemplatedPolicies", skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicy>,
    #[serde(rename = "Hash", skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

/// An auth method: its `Config` is kept as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthMethodView {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "DisplayName", skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(rename = "Description", skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(rename = "MaxTokenTTL", skip_serializing_if = "String::is_empty")]
    pub max_token_ttl: String,
    #[serde(rename = "TokenLocality", skip_serializing_if = "String::is_empty")]
    pub token_locality: String,
    #[serde(rename = "Config", skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Map<String, Value>>,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

/// A binding rule of an auth method.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BindingRuleView {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "AuthMethod")]
    pub auth_method: String,
    #[serde(rename = "Selector")]
    pub selector: String,
    #[serde(rename = "BindType")]
    pub bind_type: String,
    #[serde(rename = "BindName")]
    pub bind_name: String,
    #[serde(rename = "BindVars", skip_serializing_if = "Option::is_none")]
    pub bind_vars: Option<TemplateVariables>,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

/// Body of `PUT /v1/acl/token` as lucidctl sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenCreate {
    #[serde(rename = "Description")]
    pub description: String,
    /// A Consul duration.
    #[serde(rename = "ExpirationTTL", skip_serializing_if = "Option::is_none")]
    pub expiration_ttl: Option<String>,
    #[serde(rename = "Policies", skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyLink>,
    #[serde(rename = "ServiceIdentities", skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
}
