//! Real clients and servers of the traffic the mesh carries besides plain HTTP: grpcio and
//! `websockets` programs from PyPI (in a venv under the target directory), Debian's
//! `redis-server` and `redis-cli`. Servers run in their own process group, killed on Drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Context;
use lucid_tests::procs::{self, Group};
use serde_json::Value;

/// The pinned packages the traffic tests drive.
const PACKAGES: [&str; 2] = ["grpcio==1.85.4", "websockets==17.4"];

/// The venv's python, with grpcio and websockets.
pub fn python() -> anyhow::Result<PathBuf> {
    lucid_tests::python::venv_python(&PACKAGES)
}

/// A test program under `tests/proxy/py/`.
pub fn script(name: &str) -> String {
    format!("{}/proxy/py/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A server child that logs `listening <kind> <addr>`; its process group is killed on Drop.
pub struct Server {
    _group: Group,
    pub port: u16,
}

impl Server {
    fn spawn(mut cmd: Command, kind: &'static str, tag: &str) -> anyhow::Result<Server> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut group = Group::spawn(&mut cmd).with_context(|| format!("spawning {tag}"))?;
        let (addrs, _log) = procs::listeners(&mut group, &[kind], tag)?;
        let port = addrs[kind]
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .context("port")?;
        Ok(Server {
            _group: group,
            port,
        })
    }

    /// `tests/proxy/py/<script> <args>`, reporting `listening <kind> <addr>`.
    pub fn python(script_name: &str, kind: &'static str, args: &[&str]) -> anyhow::Result<Server> {
        let mut cmd = Command::new(python()?);
        cmd.arg(script(script_name)).args(args);
        Self::spawn(cmd, kind, script_name)
    }

    /// Debian's `redis-server` on a free port, without persistence.
    pub fn redis() -> anyhow::Result<Server> {
        let port = free_port()?;
        // redis logs its port in its own words; a tiny wrapper says it our way once it answers.
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null 2>&1 &
             for _ in $(seq 1 200); do redis-cli -p {port} ping >/dev/null 2>&1 && break; sleep 0.05; done
             echo 'listening redis 127.0.0.1:{port}' >&2; wait"
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]);
        Self::spawn(cmd, "redis", "redis")
    }
}

/// A port nobody listens on now (for servers that cannot take port 0 and tell).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Run `tests/proxy/py/<script> <args>` to its end: its stdout, or an error with its stderr.
pub async fn run(script_name: &str, args: &[&str]) -> anyhow::Result<String> {
    let python = python()?;
    let script = script(script_name);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(&script)
            .args(&args)
            .stdin(Stdio::null())
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "{script_name} failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// [`run`], its stdout's last line as JSON.
pub async fn run_json(script_name: &str, args: &[&str]) -> anyhow::Result<Value> {
    let out = run(script_name, args).await?;
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{script_name}: not JSON: {out}"))
}

/// `redis-cli -p PORT <args>`: (success, stdout + stderr).
pub async fn redis_cli(port: u16, args: &[&str]) -> anyhow::Result<(bool, String)> {
    redis_cli_with(port, args, Vec::new()).await
}

/// [`redis_cli`] with `stdin` (the value of `-x`).
pub async fn redis_cli_with(
    port: u16,
    args: &[&str],
    stdin: Vec<u8>,
) -> anyhow::Result<(bool, String)> {
    use std::io::Write;
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running redis-cli (Debian's redis-tools)")?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(&stdin)?;
        }
        let out = child.wait_with_output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success() && !text.starts_with("Error"), text))
    })
    .await?
}
