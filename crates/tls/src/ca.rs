//! The mesh CA: the root (ECDSA P-256, 10 years), leaves signed from CSRs, and leaves issued
//! with a key generated here (Consul's agent leaf endpoint). Whatever a CSR asks for, the CA
//! decides the subject, the SANs, the validity, the serial, the key usages and that the leaf
//! is not a CA: only the CSR's public key is taken from it.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::identity::{SpiffeId, TRUST_DOMAIN};

/// How long the root is valid.
const ROOT_VALIDITY: Duration = Duration::days(3650);
/// Leaves start this long in the past, so a peer whose clock is slightly behind accepts them.
const BACKDATE: Duration = Duration::minutes(1);

/// Why the CA could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("invalid CSR: {0}")]
    Csr(String),
    #[error("CA material is unusable: {0}")]
    Material(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// The root certificate and its private key, both PEM, as kept in the replicated state.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaMaterial {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CaMaterial")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A signed leaf.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    /// Only for leaves whose key was generated here.
    pub key_pem: Option<String>,
    /// Lower-case hex, no separators.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

fn at(unix: i64) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| CaError::Sign(e.to_string()))
}

impl CaMaterial {
    /// A new root valid from `now` (unix seconds) for ten years.
    pub fn generate(now: i64) -> Result<CaMaterial, CaError> {
        let mut p = ca_params("Lucid Mesh root CA", now, ROOT_VALIDITY)?;
        p.distinguished_name
            .push(DnType::OrganizationName, TRUST_DOMAIN);
        p.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{TRUST_DOMAIN}")
                .try_into()
                .map_err(|e: rcgen::Error| CaError::Sign(e.to_string()))?,
        )];
        p.serial_number = Some(random_serial());
        self_sign(&p)
    }
}

/// A CA certificate's parameters (P-256 key usages, the name, valid from a minute before
/// `now` for `validity`): the mesh root and the operator's cluster CA share them.
pub(crate) fn ca_params(
    common_name: &str,
    now: i64,
    validity: Duration,
) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name.push(DnType::CommonName, common_name);
    let now = at(now)?;
    p.not_before = now - BACKDATE;
    p.not_after = now + validity;
    Ok(p)
}

/// Self-sign `p` with a new key: the certificate and key, PEM.
pub(crate) fn self_sign(p: &CertificateParams) -> Result<CaMaterial, CaError> {
    let key = KeyPair::generate().map_err(|e| CaError::Sign(e.to_string()))?;
    let cert = p
        .self_signed(&key)
        .map_err(|e| CaError::Sign(e.to_string()))?;
    Ok(CaMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Signs leaves with one root. Build it once per root: parsing the key is not free.
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(m: &CaMaterial) -> Result<Signer, CaError> {
        let key = KeyPair::from_pem(&m.key_pem).map_err(|e| CaError::Material(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(&m.cert_pem, key)
            .map_err(|e| CaError::Material(e.to_string()))?;
        Ok(Signer {
            issuer,
            root_pem: m.cert_pem.clone(),
        })
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Sign `csr_pem` (its signature is checked) for `id`, valid `ttl` from `now`. Only the
    /// CSR's public key is used; its subject and extensions, whatever they are, are ignored.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
        ttl: Duration,
        now: i64,
    ) -> Result<Leaf, CaError> {
        let spki = csr_public_key(csr_pem)?;
        let mut params = CertificateParams::default();
        let (serial, not_before, not_after) = leaf_params(&mut params, id, ttl, now)?;
        let cert = params
            .signed_by(&spki, &self.issuer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: None,
            serial,
            not_before,
            not_after,
        })
    }

    /// Issue a leaf for `id` with a key generated here.
    pub fn issue(&self, id: &SpiffeId, ttl: Duration, now: i64) -> Result<Leaf, CaError> {
        let key = KeyPair::generate().map_err(|e| CaError::Sign(e.to_string()))?;
        let mut params = CertificateParams::default();
        let (serial, not_before, not_after) = leaf_params(&mut params, id, ttl, now)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: Some(key.serialize_pem()),
            serial,
            not_before,
            not_after,
        })
    }
}

/// The public key of a PEM CSR whose self-signature verifies.
fn csr_public_key(csr_pem: &str) -> Result<SubjectPublicKeyInfo, CaError> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::prelude::FromDer;
    let bad = |m: &str| CaError::Csr(m.to_owned());
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.trim_start().as_bytes())
        .map_err(|_| bad("not PEM"))?;
    if pem.label != "CERTIFICATE REQUEST" && pem.label != "NEW CERTIFICATE REQUEST" {
        return Err(bad(&format!(
            "PEM block is {:?}, not CERTIFICATE REQUEST",
            pem.label
        )));
    }
    let (rest, csr) =
        X509CertificationRequest::from_der(&pem.contents).map_err(|_| bad("not a DER CSR"))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the CSR"));
    }
    csr.verify_signature()
        .map_err(|_| bad("the CSR's signature does not verify"))?;
    SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| CaError::Csr(format!("unsupported public key: {e}")))
}

/// Everything but the public key; returns (serial hex, not_before, not_after).
fn leaf_params(
    p: &mut CertificateParams,
    id: &SpiffeId,
    ttl: Duration,
    now: i64,
) -> Result<(String, i64, i64), CaError> {
    let san = |e: rcgen::Error| CaError::Sign(e.to_string());
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, id.service.as_str());
    p.subject_alt_names = vec![
        SanType::URI(id.to_string().try_into().map_err(san)?),
        SanType::DnsName(id.service.clone().try_into().map_err(san)?),
        SanType::DnsName(
            format!("{}.{TRUST_DOMAIN}", id.service)
                .try_into()
                .map_err(san)?,
        ),
    ];
    p.custom_extensions.clear();
    p.name_constraints = None;
    p.crl_distribution_points.clear();
    p.use_authority_key_identifier_extension = true;
    let start = at(now)?;
    p.not_before = start - BACKDATE;
    p.not_after = start + ttl;
    let serial = random_serial();
    let hex = hex(serial.as_ref());
    p.serial_number = Some(serial);
    Ok((
        hex,
        p.not_before.unix_timestamp(),
        p.not_after.unix_timestamp(),
    ))
}

/// 16 random bytes, top bit clear so the DER INTEGER is positive without padding.
fn random_serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f;
    if b[0] == 0 {
        b[0] = 1;
    }
    SerialNumber::from_slice(&b)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
