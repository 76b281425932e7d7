//! ACL token answers (`/v1/acl/bootstrap`, `/v1/acl/token`, `/v1/acl/tokens`) and the body
//! `lucidctl acl token create` sends.

use serde::{Deserialize, Serialize};

/// A token as the registry shows it. The secret only appears in the answer that created it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenView {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "Description")]
    pub description: String,
    /// RFC 3339, for a token created with an `ExpirationTTL`.
    #[serde(rename = "ExpirationTime", skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    #[serde(rename = "Policies", skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyLink>,
    #[serde(rename = "SecretID", skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    #[serde(rename = "ServiceIdentities", skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
}

impl TokenView {
    /// `global-management`, `read-only` or `service:<name>`: what the token may do.
    pub fn kind(&self) -> String {
        match (self.policies.first(), self.service_identities.first()) {
            (Some(p), _) => p.name.clone(),
            (None, Some(s)) => format!("service:{}", s.service_name),
            (None, None) => "-".into(),
        }
    }
}

/// A policy named on a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyLink {
    #[serde(rename = "Name")]
    pub name: String,
}

/// A service identity on a token: the rights of that service's sidecar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceIdentity {
    #[serde(rename = "ServiceName")]
    pub service_name: String,
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
