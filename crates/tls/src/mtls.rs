//! rustls configurations for mesh mTLS (ring only): a server that requires a client
//! certificate from the mesh root, refuses revoked serials and certificates without a SPIFFE
//! id; a client that checks the peer is the service it meant to reach; and an [`Identity`]
//! whose certificate can be swapped (rotation) without rebuilding either configuration.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    ServerConfig, SignatureScheme,
};
use x509_parser::prelude::FromDer;

use crate::ca::{hex, CaError};
use crate::identity::SpiffeId;

/// ALPN: HTTP/2 between sidecars, HTTP/1.1 otherwise.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// ALPN of an HTTP/1.1-only connection between sidecars (one that carries an `Upgrade`).
pub const ALPN_H1: &[u8] = b"http/1.1";
/// ALPN of a raw TCP stream between sidecars (a connection from an `--upstream` listener).
pub const ALPN_TCP: &[u8] = b"lucid-tcp/1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn material(e: impl std::fmt::Display) -> CaError {
    CaError::Material(e.to_string())
}

/// This workload's certificate and key, swappable while connections use the old one.
#[derive(Debug)]
pub struct Identity {
    key: ArcSwap<CertifiedKey>,
}

fn certified(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, CaError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(material)?;
    if chain.is_empty() {
        return Err(material("no certificate in the PEM"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(material)?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(material)
}

impl Identity {
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Identity, CaError> {
        Ok(Identity {
            key: ArcSwap::from_pointee(certified(cert_pem, key_pem)?),
        })
    }

    /// Use a new certificate for every handshake from now on.
    pub fn rotate(&self, cert_pem: &str, key_pem: &str) -> Result<(), CaError> {
        self.key.store(Arc::new(certified(cert_pem, key_pem)?));
        Ok(())
    }

    /// The current certificate's serial (lower-case hex).
    pub fn serial(&self) -> Option<String> {
        let k = self.key.load();
        let der = k.cert.first()?;
        let (_, c) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
        Some(hex(c.raw_serial()))
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.load_full())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hints: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.key.load_full())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Revoked serials (lower-case hex), replaced whole when the registry's list changes.
#[derive(Debug, Clone, Default)]
pub struct Revoked(Arc<ArcSwap<HashSet<String>>>);

impl Revoked {
    pub fn replace(&self, serials: impl IntoIterator<Item = String>) {
        self.0.store(Arc::new(serials.into_iter().collect()));
    }

    pub fn contains(&self, serial: &str) -> bool {
        self.0.load().contains(serial)
    }

    pub fn len(&self) -> usize {
        self.0.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.load().is_empty()
    }
}

/// What a peer's certificate says about who it is and how long it may be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    pub id: SpiffeId,
    /// Lower-case hex, as in the revoked list.
    pub serial: String,
    /// Unix seconds; a connection must not outlive it.
    pub not_after: i64,
}

/// The SPIFFE id, serial and expiry of a DER certificate.
pub fn peer_identity(der: &CertificateDer<'_>) -> Option<PeerCert> {
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let san = c.subject_alternative_name().ok()??;
    let id = san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => SpiffeId::parse(u),
        _ => None,
    })?;
    Some(PeerCert {
        id,
        serial: hex(c.raw_serial()),
        not_after: c.validity().not_after.timestamp(),
    })
}

/// Chain check first (webpki), then: a mesh identity, and not revoked.
fn check_peer(der: &CertificateDer<'_>, revoked: &Revoked) -> Result<SpiffeId, Error> {
    let PeerCert { id, serial, .. } = peer_identity(der)
        .ok_or_else(|| Error::General("peer certificate has no mesh identity".into()))?;
    if revoked.contains(&serial) {
        // The typed error sends the peer a `certificate_revoked` alert, so a client can tell
        // "rotate and send again" from any other refusal.
        return Err(Error::InvalidCertificate(CertificateError::Revoked));
    }
    Ok(id)
}

fn roots(roots_pem: &str) -> Result<Arc<RootCertStore>, CaError> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        store.add(cert.map_err(material)?).map_err(material)?;
    }
    if store.is_empty() {
        return Err(material("no root certificate"));
    }
    Ok(Arc::new(store))
}

#[derive(Debug)]
struct MeshClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Revoked,
}

impl ClientCertVerifier for MeshClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_peer(end_entity, &self.revoked)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct MeshServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    service: String,
    revoked: Revoked,
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let id = check_peer(end_entity, &self.revoked)?;
        if id.service != self.service {
            return Err(Error::General(format!(
                "peer is {id}, not the service {} we meant to reach",
                self.service
            )));
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Inbound: TLS 1.3 or 1.2, client certificate from `roots_pem` required, mesh identity,
/// not revoked.
pub fn server_config(
    identity: Arc<Identity>,
    roots_pem: &str,
    revoked: Revoked,
) -> Result<Arc<ServerConfig>, CaError> {
    let inner = WebPkiClientVerifier::builder_with_provider(roots(roots_pem)?, provider())
        .build()
        .map_err(material)?;
    let verifier = Arc::new(MeshClientVerifier { inner, revoked });
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(material)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    cfg.alpn_protocols = ALPN.iter().chain(&[ALPN_TCP]).map(|p| p.to_vec()).collect();
    // No resumption: a resumed session skips the client-certificate check, so a revoked
    // certificate would keep working for as long as its session ticket (a test caught this).
    // Sidecars hold pooled connections, so full handshakes are rare anyway.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// Outbound to `service`: its certificate must chain to `roots_pem`, name
/// `<service>.lucid.internal` (connect with that server name) and carry its SPIFFE id.
pub fn client_config(
    identity: Arc<Identity>,
    roots_pem: &str,
    service: &str,
    revoked: Revoked,
) -> Result<Arc<ClientConfig>, CaError> {
    let inner = WebPkiServerVerifier::builder_with_provider(roots(roots_pem)?, provider())
        .build()
        .map_err(material)?;
    let verifier = Arc::new(MeshServerVerifier {
        inner,
        service: service.to_owned(),
        revoked,
    });
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(material)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(identity);
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The same client configuration offering only `alpn` (the verifier and identity are
/// shared): an HTTP/1.1 connection for an upgrade, or a raw TCP stream.
pub fn with_alpn(cfg: &ClientConfig, alpn: &[u8]) -> Arc<ClientConfig> {
    let mut cfg = cfg.clone();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

#[cfg(test)]
mod tests;
