//! Reading certificates back: serial, validity, SANs, CA flag, fingerprint. Used for the roots
//! endpoint and by tests that check what the CA signed.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::ca::{hex, CaError};

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Lower-case hex, no separators.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    pub common_name: Option<String>,
    pub uris: Vec<String>,
    pub dns_names: Vec<String>,
    pub server_auth: bool,
    pub client_auth: bool,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: String,
}

/// Parse the first certificate of a PEM text.
pub fn inspect_pem(pem_text: &str) -> Result<CertInfo, CaError> {
    let bad = |m: String| CaError::Material(m);
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.trim_start().as_bytes())
        .map_err(|e| bad(format!("not PEM: {e}")))?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&pem.contents)
        .map_err(|e| bad(format!("not a certificate: {e}")))?;
    let mut info = CertInfo {
        serial: hex(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        uris: Vec::new(),
        dns_names: Vec::new(),
        server_auth: false,
        client_auth: false,
        sha256: hex(ring::digest::digest(&ring::digest::SHA256, &pem.contents).as_ref()),
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => info.uris.push((*u).to_owned()),
                GeneralName::DNSName(d) => info.dns_names.push((*d).to_owned()),
                _ => {}
            }
        }
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        info.server_auth = eku.value.server_auth;
        info.client_auth = eku.value.client_auth;
    }
    Ok(info)
}
