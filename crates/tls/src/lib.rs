//! lucid-tls: the mesh's identities and PKI (DESIGN §8). A root CA (ECDSA P-256) that the
//! registry keeps in its replicated state, leaf signing from CSRs with every security-relevant
//! field decided here rather than by the CSR, and SPIFFE identities
//! (`spiffe://lucid.internal/plane/<plane>/svc/<service>`); and the rustls configurations
//! sidecars use for mTLS between them ([`mtls`]).

mod ca;
mod identity;
mod inspect;
pub mod mtls;

pub use ca::{CaError, CaMaterial, Leaf, Signer};
pub use identity::{SpiffeId, TRUST_DOMAIN};
pub use inspect::{inspect_pem, CertInfo};

/// SHA-256 of `data`, lower-case hex (fingerprints, hashed ACL secrets).
pub fn sha256_hex(data: &[u8]) -> String {
    ca::hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}
