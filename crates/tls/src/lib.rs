//! lucid-tls: the mesh's identities and PKI (DESIGN §8). A root CA (ECDSA P-256) that the
//! registry keeps in its replicated state, leaf signing from CSRs with every security-relevant
//! field decided here rather than by the CSR, and SPIFFE identities
//! (`spiffe://lucid.internal/plane/<plane>/svc/<service>`); and the rustls configurations
//! sidecars use for mTLS between them ([`mtls`]); and cluster TLS between registry nodes and
//! for the registry's HTTPS API, from operator-provided PEM files ([`cluster`]); the CA key
//! sealed at rest under a cluster secret ([`seal`]).

mod ca;
pub mod cluster;
mod identity;
mod inspect;
pub mod mtls;
pub mod seal;

pub use ca::{CaError, CaMaterial, Leaf, Signer};
pub use identity::{SpiffeId, TRUST_DOMAIN};
pub use inspect::{inspect_pem, CertInfo};

/// SHA-256 of `data`, lower-case hex (fingerprints, hashed ACL secrets).
pub fn sha256_hex(data: &[u8]) -> String {
    ca::hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Compare two secrets (or their hashes) in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
