//! Cluster TLS between registry nodes and for the registry's HTTPS API (etcd's peer TLS,
//! Consul's `tls` stanza): an operator CA that is *not* the mesh CA, node certificates that
//! serve as both server and client certificate, and the rustls configurations built from the
//! three PEM files `--tls-cert-file`, `--tls-key-file` and `--tls-ca-file`.
//!
//! The Raft listener requires a client certificate chained to the cluster CA; the HTTPS API
//! does not (clients authenticate with ACL tokens there, as with Consul's `verify_incoming =
//! false`); outgoing calls verify the peer's certificate against the cluster CA by the IP or
//! DNS name dialled, and present the node's own certificate.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use time::{Duration, OffsetDateTime};

use crate::ca::CaError;

/// Validity of the operator CA `lucidctl tls ca create` makes.
const CLUSTER_CA_VALIDITY: Duration = Duration::days(3650);
/// Validity of a node certificate `lucidctl tls cert create` makes.
const NODE_CERT_VALIDITY: Duration = Duration::days(825);

fn material(e: impl std::fmt::Display) -> CaError {
    CaError::Material(e.to_string())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and its key, both PEM.
#[derive(Clone)]
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemPair").finish_non_exhaustive()
    }
}

/// The rustls configurations of one registry node.
#[derive(Clone)]
pub struct ClusterTls {
    /// The Raft listener: client certificate from the cluster CA required.
    pub raft_server: Arc<ServerConfig>,
    /// The HTTPS API: server certificate only.
    pub https_server: Arc<ServerConfig>,
    /// Outgoing peer calls (Raft, join, forwarding): verifies the peer, presents ours.
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").finish_non_exhaustive()
    }
}

fn read(path: &Path, what: &str) -> Result<String, CaError> {
    std::fs::read_to_string(path)
        .map_err(|e| CaError::Material(format!("cannot read {what} {}: {e}", path.display())))
}

fn chain(cert_pem: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(material)?;
    if chain.is_empty() {
        return Err(material("no certificate in the PEM"));
    }
    Ok(chain)
}

/// Trust anchors from a PEM bundle (at least one).
pub fn root_store(ca_pem: &str) -> Result<Arc<rustls::RootCertStore>, CaError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        store.add(cert.map_err(material)?).map_err(material)?;
    }
    if store.is_empty() {
        return Err(material("no CA certificate in the PEM"));
    }
    Ok(Arc::new(store))
}

impl ClusterTls {
    /// Load the node's certificate, key and the cluster CA from PEM files.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<ClusterTls, CaError> {
        let pair = PemPair {
            cert_pem: read(cert, "--tls-cert-file")?,
            key_pem: read(key, "--tls-key-file")?,
        };
        Self::from_pem(&pair, &read(ca, "--tls-ca-file")?)
    }

    /// Build the three configurations from PEM text.
    pub fn from_pem(node: &PemPair, ca_pem: &str) -> Result<ClusterTls, CaError> {
        let roots = root_store(ca_pem)?;
        let certs = chain(&node.cert_pem)?;
        let key = || PrivateKeyDer::from_pem_slice(node.key_pem.as_bytes()).map_err(material);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(material)?;
        let mut raft_server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(material)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key()?)
            .map_err(material)?;
        raft_server.alpn_protocols = vec![b"http/1.1".to_vec()];
        // A resumed session skips the client-certificate check; peers hold pooled
        // connections, so full handshakes are rare anyway.
        raft_server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        raft_server.send_tls13_tickets = 0;
        let mut https_server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(material)?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key()?)
            .map_err(material)?;
        https_server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(material)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key()?)
            .map_err(material)?;
        Ok(ClusterTls {
            raft_server: Arc::new(raft_server),
            https_server: Arc::new(https_server),
            client: Arc::new(client),
        })
    }
}

/// A client that trusts `ca_pem` and presents no certificate (lucidctl and sidecars calling
/// an `https://` registry with `--registry-ca`).
pub fn client_trusting(ca_pem: &str) -> Result<Arc<ClientConfig>, CaError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(material)?
        .with_root_certificates(root_store(ca_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn at(unix: i64) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| CaError::Sign(e.to_string()))
}

fn sign_err(e: rcgen::Error) -> CaError {
    CaError::Sign(e.to_string())
}

/// A new operator CA for cluster TLS (ECDSA P-256, ten years from `now`).
pub fn generate_cluster_ca(now: i64) -> Result<PemPair, CaError> {
    let p = crate::ca::ca_params("Lucid Mesh cluster CA", now, CLUSTER_CA_VALIDITY)?;
    let m = crate::ca::self_sign(&p)?;
    Ok(PemPair {
        cert_pem: m.cert_pem,
        key_pem: m.key_pem,
    })
}

/// A node certificate signed by `ca`, valid as server and client certificate, for the
/// given IPs and DNS names (a peer verifies the name it dialled against these).
pub fn issue_node_cert(
    ca: &PemPair,
    node: &str,
    ips: &[IpAddr],
    dns: &[String],
    now: i64,
) -> Result<PemPair, CaError> {
    if ips.is_empty() && dns.is_empty() {
        return Err(CaError::Sign(
            "a node certificate needs at least one --ip or --dns".into(),
        ));
    }
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(material)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(material)?;
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.distinguished_name.push(DnType::CommonName, node);
    let mut sans: Vec<SanType> = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
    for d in dns {
        sans.push(SanType::DnsName(d.clone().try_into().map_err(sign_err)?));
    }
    p.subject_alt_names = sans;
    p.use_authority_key_identifier_extension = true;
    let now = at(now)?;
    p.not_before = now - Duration::minutes(1);
    p.not_after = now + NODE_CERT_VALIDITY;
    let key = KeyPair::generate().map_err(sign_err)?;
    let cert = p.signed_by(&key, &issuer).map_err(sign_err)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certs_build_every_config() {
        let ca = generate_cluster_ca(lucid_now()).unwrap();
        let node = issue_node_cert(
            &ca,
            "n1",
            &["127.0.0.1".parse().unwrap()],
            &["n1.example".into()],
            lucid_now(),
        )
        .unwrap();
        ClusterTls::from_pem(&node, &ca.cert_pem).unwrap();
        client_trusting(&ca.cert_pem).unwrap();
        assert!(issue_node_cert(&ca, "n1", &[], &[], lucid_now()).is_err());
        // A key that does not match the certificate is refused.
        let other = issue_node_cert(&ca, "n2", &["::1".parse().unwrap()], &[], 0).unwrap();
        let mixed = PemPair {
            cert_pem: node.cert_pem.clone(),
            key_pem: other.key_pem,
        };
        assert!(ClusterTls::from_pem(&mixed, &ca.cert_pem).is_err());
    }

    fn lucid_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }
}
