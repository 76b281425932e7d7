use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::*;
use crate::inspect::inspect_pem;

const NOW: i64 = 1_790_000_000;

fn csr(is_ca: bool, sans: &[&str]) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if is_ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    (p.serialize_request(&key).unwrap().pem().unwrap(), key)
}

#[test]
fn root_is_a_ten_year_ca() {
    let m = CaMaterial::generate(NOW).unwrap();
    let info = inspect_pem(&m.cert_pem).unwrap();
    assert!(info.is_ca);
    assert_eq!(info.not_after - NOW, 3650 * 86400);
    assert!(
        format!("{m:?}").find("PRIVATE").is_none(),
        "Debug must not print the key"
    );
    Signer::new(&m).unwrap();
}

#[test]
fn csr_gets_our_identity_never_its_own_wishes() {
    let m = CaMaterial::generate(NOW).unwrap();
    let s = Signer::new(&m).unwrap();
    let id = SpiffeId::new("ops", "chain").unwrap();
    // The CSR asks to be a CA for another name.
    let (pem, _) = csr(true, &["evil.example.com"]);
    let leaf = s.sign_csr(&pem, &id, Duration::hours(72), NOW).unwrap();
    let info = inspect_pem(&leaf.cert_pem).unwrap();
    assert!(!info.is_ca);
    assert_eq!(info.uris, ["spiffe://lucid.internal/plane/ops/svc/chain"]);
    assert_eq!(info.dns_names, ["chain", "chain.lucid.internal"]);
    assert!(info.server_auth && info.client_auth);
    assert_eq!(info.common_name.as_deref(), Some("chain"));
    assert_eq!(info.not_after, NOW + 72 * 3600);
    assert_eq!(info.not_before, NOW - 60);
    assert_eq!(
        (leaf.not_before, leaf.not_after),
        (info.not_before, info.not_after)
    );
    assert_eq!(info.serial, leaf.serial);
    assert_eq!(leaf.serial.len(), 32, "16 bytes");
    let again = s.sign_csr(&pem, &id, Duration::hours(72), NOW).unwrap();
    assert_ne!(again.serial, leaf.serial, "serials are random");
}

#[test]
fn bad_csrs_are_refused() {
    let m = CaMaterial::generate(NOW).unwrap();
    let s = Signer::new(&m).unwrap();
    let id = SpiffeId::new("ops", "chain").unwrap();
    let (pem, _) = csr(false, &["a"]);
    // Flip one base64 character inside the signature area: the signature no longer verifies
    // (or the DER no longer parses).
    let mut lines: Vec<String> = pem.lines().map(str::to_owned).collect();
    let n = lines.len() - 2;
    let mut chars: Vec<char> = lines[n].chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    lines[n] = chars.into_iter().collect();
    let tampered = lines.join("\n");
    for bad in ["", "garbage", &m.cert_pem, &tampered] {
        match s.sign_csr(bad, &id, Duration::hours(1), NOW) {
            Err(CaError::Csr(_)) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn server_side_keys_match_their_certificates() {
    let m = CaMaterial::generate(NOW).unwrap();
    let s = Signer::new(&m).unwrap();
    let id = SpiffeId::new("default", "web").unwrap();
    let leaf = s.issue(&id, Duration::hours(1), NOW).unwrap();
    let key = KeyPair::from_pem(leaf.key_pem.as_deref().unwrap()).unwrap();
    let info = inspect_pem(&leaf.cert_pem).unwrap();
    assert_eq!(info.uris, ["spiffe://lucid.internal/plane/default/svc/web"]);
    let cert = x509_parser::pem::parse_x509_pem(leaf.cert_pem.as_bytes())
        .unwrap()
        .1;
    let parsed = cert.parse_x509().unwrap();
    assert_eq!(
        parsed.public_key().subject_public_key.data.as_ref(),
        rcgen::PublicKeyData::der_bytes(&key)
    );
}
