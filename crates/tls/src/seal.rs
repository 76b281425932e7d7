//! The mesh CA's private key at rest: sealed with AES-256-GCM under a key derived (HKDF-
//! SHA-256) from a cluster secret the operator provides (`--ca-key-secret-file`), so the Raft
//! log, the state machine, snapshots and backups only ever hold ciphertext. A node without
//! the secret still replicates the sealed key but cannot sign.
//!
//! Sealed form: `lucid-sealed-v1:` followed by base64 of nonce (12 bytes) ‖ ciphertext ‖ tag.
//! The root certificate's PEM is the associated data, so a sealed key moved next to another
//! root does not open.

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::ca::{CaError, CaMaterial};

const PREFIX: &str = "lucid-sealed-v1:";
const SALT: &[u8] = b"lucid-mesh ca-key seal v1";
/// A secret shorter than this is refused (it would be guessable).
pub const MIN_SECRET: usize = 16;

/// Seals and opens CA keys with one cluster secret.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

fn err(m: &str) -> CaError {
    CaError::Material(m.to_owned())
}

impl Sealer {
    /// Derive the sealing key from the secret's bytes (surrounding whitespace ignored, so a
    /// trailing newline in the file does not matter).
    pub fn from_secret(secret: &[u8]) -> Result<Sealer, CaError> {
        let secret = secret.trim_ascii();
        if secret.len() < MIN_SECRET {
            return Err(err(&format!(
                "the CA key secret must be at least {MIN_SECRET} bytes"
            )));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
        let okm = prk
            .expand(&[b"aes-256-gcm"], &AES_256_GCM)
            .map_err(|_| err("key derivation failed"))?;
        let key = UnboundKey::from(okm);
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    /// The root with its key sealed.
    pub fn seal(&self, m: &CaMaterial) -> Result<CaMaterial, CaError> {
        Ok(CaMaterial {
            cert_pem: m.cert_pem.clone(),
            key_pem: self.seal_text(m.cert_pem.as_bytes(), &m.key_pem)?,
        })
    }

    /// The root with its key in the clear (for the signer, in memory only).
    pub fn open(&self, m: &CaMaterial) -> Result<CaMaterial, CaError> {
        Ok(CaMaterial {
            cert_pem: m.cert_pem.clone(),
            key_pem: self.open_text(m.cert_pem.as_bytes(), &m.key_pem)?,
        })
    }

    /// Seal any short secret (an ACL token's SecretID) bound to `aad`, which must be given
    /// again to open it: a sealed value moved to another record does not open.
    pub fn seal_text(&self, aad: &[u8], plain: &str) -> Result<String, CaError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| err("no randomness"))?;
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut data,
            )
            .map_err(|_| err("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Open what [`Sealer::seal_text`] sealed with the same `aad`.
    pub fn open_text(&self, aad: &[u8], sealed: &str) -> Result<String, CaError> {
        let Some(b64) = sealed.strip_prefix(PREFIX) else {
            return Err(err("the value is not sealed"));
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| err("sealed value is not base64"))?;
        if raw.len() < NONCE_LEN {
            return Err(err("sealed value is truncated"));
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| err("bad nonce"))?;
        let mut data = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut data)
            .map_err(|_| {
                err("the sealed value does not open with this secret (wrong --ca-key-secret-file?)")
            })?;
        String::from_utf8(plain.to_vec()).map_err(|_| err("sealed value is not text"))
    }
}

/// Check a stored root without the secret: its certificate parses, and its key is either a
/// well-formed sealed blob or (a root stored before sealing) a usable PEM key.
pub fn check_stored(m: &CaMaterial) -> Result<(), CaError> {
    let Some(b64) = m.key_pem.strip_prefix(PREFIX) else {
        return crate::Signer::new(m).map(|_| ());
    };
    crate::inspect_pem(&m.cert_pem)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| err("sealed CA key is not base64"))?;
    // Nonce, at least one byte of key, and the tag.
    if raw.len() <= NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(err("sealed CA key is truncated"));
    }
    Ok(())
}

/// Is this root's key sealed (rather than a legacy plaintext PEM)?
pub fn is_sealed(m: &CaMaterial) -> bool {
    m.key_pem.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_the_wrong_secret_or_root() {
        let m = CaMaterial::generate(1_700_000_000).unwrap();
        let s = Sealer::from_secret(b"a-cluster-secret-of-some-length\n").unwrap();
        let sealed = s.seal(&m).unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.key_pem.contains("PRIVATE KEY"));
        assert_eq!(s.open(&sealed).unwrap(), m);
        // Trailing whitespace does not change the key.
        let same = Sealer::from_secret(b"a-cluster-secret-of-some-length").unwrap();
        assert_eq!(same.open(&sealed).unwrap(), m);
        let other = Sealer::from_secret(b"another-cluster-secret-000").unwrap();
        assert!(other.open(&sealed).is_err());
        let moved = CaMaterial {
            cert_pem: CaMaterial::generate(1_700_000_000).unwrap().cert_pem,
            key_pem: sealed.key_pem.clone(),
        };
        assert!(
            s.open(&moved).is_err(),
            "a sealed key must not open next to another root"
        );
        assert!(Sealer::from_secret(b"short").is_err());
        check_stored(&sealed).unwrap();
        check_stored(&m).unwrap();
        let cut = CaMaterial {
            cert_pem: m.cert_pem.clone(),
            key_pem: format!("{PREFIX}AAAA"),
        };
        assert!(check_stored(&cut).is_err());
    }
}
