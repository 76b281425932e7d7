//! py-consul's own test suite (its sdist on PyPI, 168 tests its maintainers run against real
//! Consul agents) against `lucid-registry --dev`: `py_consul_suite.py` swaps the sdist's
//! Docker conftest for `conftest_lucid.py` and fails when a test fails that
//! `expected_failures.txt` does not list (docs/COMPATIBILITY.md says why each one is there).
//! A test binary of its own, so it runs alone: several of the suite's tests are about time
//! (TTLs, blocking queries) and a busy machine would make them lie.

use std::process::Command;

use lucid_tests::bins::{bin, target_dir};
use lucid_tests::python::venv_python;

/// py-consul's test dependencies, pinned.
const PACKAGES: [&str; 6] = [
    "py-consul==1.8.0",
    "pytest==9.2.0",
    "pytest-asyncio==1.5.0",
    "pytest-timeout==2.4.0",
    "aiohttp==3.14.5",
    "packaging==26.4",
];

#[test]
fn py_consuls_own_suite_passes_but_for_the_listed_tests() -> anyhow::Result<()> {
    let python = venv_python(&PACKAGES)?;
    let registry = bin("lucid-registry");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/py_consul_suite.py");
    let workdir = target_dir().join("py-consul-suite");
    let out = Command::new(python)
        .arg(script)
        .arg("--registry-bin")
        .arg(&registry)
        .arg("--workdir")
        .arg(&workdir)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The summary (and, on failure, every unexpected failure) is at the end.
    let tail: Vec<&str> = stdout.lines().rev().take(80).collect();
    eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    assert!(out.status.success(), "py-consul's suite:\n{stderr}");
    Ok(())
}
