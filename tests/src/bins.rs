//! Locate the workspace binaries. `CARGO_BIN_EXE_*` exists only for a package's own
//! binaries, so this builds them once per test process with the cargo that runs the tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The cargo target directory the tests were built in.
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// Path to a workspace binary, built (debug profile) on first use.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            // Every binary of the workspace, so a new one cannot be missing from this list.
            .args(["build", "--quiet", "--workspace", "--bins"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .map_err(|e| format!("cannot run cargo build: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("cargo build of the binaries failed: {status}"))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    target_dir().join("debug").join(name)
}

/// Run a command to completion: (exit success, stdout then stderr as text).
pub fn output(cmd: &mut Command) -> anyhow::Result<(bool, String)> {
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("running {:?}: {e}", cmd.get_program()))?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}
