//! A Python virtual environment under the target directory, with packages from PyPI, for
//! compatibility suites that drive the registry with real Python clients.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context};

use crate::bins::target_dir;

/// The venv's python, with `packages` (pinned specs) installed. Created once, reused after.
pub fn venv_python(packages: &[&str]) -> anyhow::Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = target_dir().join("py-venv");
    let python = dir.join("bin").join("python");
    let marker = dir.join(format!(
        ".installed-{}",
        packages.join("+").replace(['/', '='], "_")
    ));
    if marker.exists() {
        return Ok(python);
    }
    if !python.exists() {
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .context("running python3 -m venv")?;
        if !st.success() {
            bail!("python3 -m venv {} failed: {st}", dir.display());
        }
    }
    let st = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages)
        .status()
        .context("running pip")?;
    if !st.success() {
        bail!("pip install {packages:?} failed: {st}");
    }
    std::fs::write(&marker, b"")?;
    Ok(python)
}
