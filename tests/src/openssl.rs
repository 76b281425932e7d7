//! OpenSSL as an independent implementation: CSRs made by it, certificates checked by it.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// Run `openssl` with `args`; (success, stdout and stderr).
pub fn openssl(args: &[&str]) -> anyhow::Result<(bool, String)> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("running openssl (Debian package openssl): {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// A P-256 key and a CSR for it that asks to be a CA for someone else; the CSR PEM.
pub fn make_csr(dir: &Path, name: &str) -> anyhow::Result<String> {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let (ok, text) = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=evil.example.com",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "subjectAltName=DNS:evil.example.com",
        "-keyout",
        key.to_str().context("non-UTF-8 path")?,
        "-out",
        csr.to_str().context("non-UTF-8 path")?,
    ])?;
    anyhow::ensure!(ok, "openssl req: {text}");
    Ok(std::fs::read_to_string(csr)?)
}
