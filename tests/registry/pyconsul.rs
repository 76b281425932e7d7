//! The real py-consul client (PyPI, installed into a venv by the test, not vendored) against
//! a live registry: tests/compat/py_consul_check.py.

use std::process::Command;

use lucid_tests::python::venv_python;

use crate::kv::single_node;

#[tokio::test]
async fn py_consul_drives_a_live_registry() -> anyhow::Result<()> {
    let python = tokio::task::spawn_blocking(|| venv_python(&["py-consul==1.8.0"])).await??;
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let (host, port) = node.http.rsplit_once(':').expect("host:port");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/py_consul_check.py");
    let (host, port) = (host.to_owned(), port.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("LUCID_HOST", host)
            .env("LUCID_PORT", port)
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "py-consul suite failed:\n{stdout}\n{stderr}\nregistry log:\n{}",
        node.log()
    );
    assert!(stdout.contains("py-consul: all expectations met"));
    Ok(())
}
