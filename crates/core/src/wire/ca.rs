//! Mesh CA answers: leaf signing (`/v1/connect/ca/sign`, `/certificates/<service>`), the
//! certificate list and revocations, the roots in Consul's shape, and the agent leaf.

use serde::{Deserialize, Serialize};

/// Body of `POST /v1/connect/ca/sign`: a CSR for `service`'s identity in `plane`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    pub csr: String,
    pub service: String,
    #[serde(default)]
    pub plane: Option<String>,
}

/// Optional body of `POST /certificates/<service>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRequest {
    #[serde(default)]
    pub plane: Option<String>,
}

/// A signed leaf. `/certificates/<service>` generates the key itself and adds it, with the
/// service and its SPIFFE id; `/v1/connect/ca/sign` (the caller kept its key) does not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignedLeaf {
    pub cert_pem: String,
    /// The root that signed it.
    pub chain_pem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
    /// RFC 3339.
    pub not_after: String,
    /// Lower-case hex.
    pub serial: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
}

/// A leaf the CA signed, as `/certificates` and `/v1/connect/ca/revoked` list it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertRecord {
    /// RFC 3339.
    pub not_after: String,
    /// Unix seconds: until when a revocation must be remembered.
    pub not_after_unix: i64,
    pub plane: String,
    pub revoked: bool,
    /// The log index it was revoked at.
    pub revoked_index: Option<u64>,
    pub serial: String,
    pub service: String,
}

/// `DELETE /v1/connect/ca/certs/<serial>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Revoked {
    pub index: u64,
    pub revoked: Vec<String>,
}

/// `DELETE /certificates/<service>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RevokedService {
    pub index: u64,
    pub service: String,
}

/// `GET /certificates/ca`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaCert {
    pub ca_pem: String,
    pub trust_domain: String,
}

/// `GET /v1/connect/ca/roots`, Consul's shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaRoots {
    #[serde(rename = "ActiveRootID")]
    pub active_root_id: String,
    #[serde(rename = "Roots")]
    pub roots: Vec<CaRoot>,
    #[serde(rename = "TrustDomain")]
    pub trust_domain: String,
}

/// One root of [`CaRoots`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaRoot {
    #[serde(rename = "Active")]
    pub active: bool,
    /// The certificate's SHA-256 fingerprint.
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "IntermediateCerts")]
    pub intermediate_certs: Vec<String>,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "NotAfter")]
    pub not_after: String,
    #[serde(rename = "NotBefore")]
    pub not_before: String,
    #[serde(rename = "PrivateKeyBits")]
    pub private_key_bits: u32,
    #[serde(rename = "PrivateKeyType")]
    pub private_key_type: String,
    #[serde(rename = "RootCert")]
    pub root_cert: String,
    #[serde(rename = "SerialNumber")]
    pub serial_number: String,
    #[serde(rename = "SigningKeyID")]
    pub signing_key_id: String,
    #[serde(rename = "TrustDomain")]
    pub trust_domain: String,
}

/// `GET /v1/agent/connect/ca/leaf/<service>`, Consul's shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentLeaf {
    #[serde(rename = "CertPEM")]
    pub cert_pem: String,
    /// `null` only if the registry could not hand out the key it generated.
    #[serde(rename = "PrivateKeyPEM")]
    pub private_key_pem: Option<String>,
    #[serde(rename = "SerialNumber")]
    pub serial_number: String,
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "ServiceURI")]
    pub service_uri: String,
    #[serde(rename = "ValidAfter")]
    pub valid_after: String,
    #[serde(rename = "ValidBefore")]
    pub valid_before: String,
}
