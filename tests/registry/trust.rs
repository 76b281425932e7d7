//! Issue "Trust I": each finding of the audit, done as the attacker did it, against real
//! processes on loopback; each test asserts the refusal *and* that nothing changed.
//!
//! - cluster TLS: Raft refuses plain HTTP, no certificate and another CA's certificate, while
//!   a peer certificate is accepted (the positive control); lucidctl and py-consul over HTTPS;
//! - an ACL node with a plain Raft listener off loopback refuses to start;
//! - a garbage snapshot chunk is refused before openraft sees it, and Raft keeps running;
//! - a service token cannot act for another service through key collisions, nested bodies,
//!   the native API, CSR signing, percent-encoded ids, id or check-id takeover, a chosen plane,
//!   or an HTTP check aimed at the registry (SSRF);
//! - tokens can be deleted; anonymous `/status` shows no addresses.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::api::call;
use lucid_tests::bins::bin;
use lucid_tests::openssl::make_csr;
use lucid_tests::registry::{cluster_lock, wait_ca_root, NodeSpec, RegistryProc};
use lucid_tests::wait;
use serde_json::{json, Value};

use crate::kv::{single_node_with, wait_leader};

const BOOT: &str = "trust-bootstrap-secret-0123456789";

fn lucidctl(args: &[&str]) -> anyhow::Result<(bool, String)> {
    lucid_tests::bins::output(Command::new(bin("lucidctl")).args(args))
}

/// `curl` exactly as an attacker would use it; (exit ok, HTTP status or 0, body).
fn curl(args: &[&str]) -> anyhow::Result<(bool, u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("running curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Ok((
        out.status.success(),
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
    ))
}

fn make_pki(dir: &Path) -> anyhow::Result<()> {
    let d = |p: &str| dir.join(p).display().to_string();
    for (ca, _) in [("ca", ()), ("other-ca", ())] {
        let (ok, out) = lucidctl(&["tls", "ca", "create", "--out", &d(ca)])?;
        assert!(ok, "{out}");
    }
    for n in ["n1", "n2", "n3"] {
        let (ok, out) = lucidctl(&[
            "tls",
            "cert",
            "create",
            "--ca",
            &d("ca"),
            "--node",
            n,
            "--ip",
            "127.0.0.1",
            "--out",
            &d("certs"),
        ])?;
        assert!(ok, "{out}");
    }
    let (ok, out) = lucidctl(&[
        "tls",
        "cert",
        "create",
        "--ca",
        &d("other-ca"),
        "--node",
        "intruder",
        "--ip",
        "127.0.0.1",
        "--out",
        &d("certs"),
    ])?;
    assert!(ok, "{out}");
    // A second `ca create` into the same directory must not replace the CA.
    let (ok, out) = lucidctl(&["tls", "ca", "create", "--out", &d("ca")])?;
    assert!(!ok && out.contains("exists"), "{out}");
    Ok(())
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

fn tls_args(pki: &Path, node: &str) -> Vec<String> {
    let p = |s: &str| pki.join(s).display().to_string();
    vec![
        "--acl-enabled".into(),
        "--acl-bootstrap-token".into(),
        BOOT.into(),
        "--tls-cert-file".into(),
        p(&format!("certs/{node}.pem")),
        "--tls-key-file".into(),
        p(&format!("certs/{node}-key.pem")),
        "--tls-ca-file".into(),
        p("ca/ca.pem"),
        "--https-addr".into(),
        "127.0.0.1:0".into(),
    ]
}

async fn https_of(node: &RegistryProc) -> anyhow::Result<String> {
    wait::until("https listener", Duration::from_secs(10), || async {
        Ok(node.https())
    })
    .await
}

#[tokio::test]
async fn tls_cluster_refuses_raft_without_a_cluster_certificate() -> anyhow::Result<()> {
    let _lock = cluster_lock().await;
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    make_pki(&pki)?;
    #[cfg(unix)]
    {
        assert_eq!(mode(&pki.join("ca/ca-key.pem")), 0o600);
        assert_eq!(mode(&pki.join("certs/n1-key.pem")), 0o600);
    }
    let n1 = RegistryProc::spawn(NodeSpec {
        node_id: 1,
        data_dir: dir.path().join("n1"),
        bootstrap: true,
        extra: tls_args(&pki, "n1"),
        ..Default::default()
    })?;
    wait_leader(&n1).await?;
    let seed = https_of(&n1).await?;
    let mut nodes = vec![n1];
    for id in 2..=3u64 {
        nodes.push(RegistryProc::spawn(NodeSpec {
            node_id: id,
            data_dir: dir.path().join(format!("n{id}")),
            join: vec![seed.clone()],
            extra: tls_args(&pki, &format!("n{id}")),
            ..Default::default()
        })?);
    }
    let mgmt = nodes[0].client().with_token(BOOT);
    wait::until("3 voters over TLS", Duration::from_secs(60), || async {
        let (_, v) = call(
            &mgmt,
            Method::GET,
            "/v1/operator/raft/configuration",
            Value::Null,
        )
        .await?;
        let voters = v["Servers"]
            .as_array()
            .map_or(0, |s| s.iter().filter(|x| x["Voter"] == true).count());
        Ok((voters == 3).then_some(()))
    })
    .await?;

    // lucidctl over HTTPS against a follower (the write is forwarded to the leader over TLS).
    let ca = pki.join("ca/ca.pem").display().to_string();
    let n2_https = format!("https://{}", https_of(&nodes[1]).await?);
    let (ok, out) = lucidctl(&[
        "--registry",
        &n2_https,
        "--registry-ca",
        &ca,
        "--token",
        BOOT,
        "kv",
        "put",
        "greeting",
        "over-tls",
    ])?;
    assert!(ok, "lucidctl kv put over https: {out}");
    let (ok, out) = lucidctl(&[
        "--registry",
        &n2_https,
        "--registry-ca",
        &ca,
        "--token",
        BOOT,
        "kv",
        "get",
        "greeting",
    ])?;
    assert!(
        ok && out.contains("over-tls"),
        "lucidctl kv get over https: {out}"
    );
    // Without the CA, lucidctl refuses the registry's certificate.
    let (ok, out) = lucidctl(&[
        "--registry",
        &n2_https,
        "--token",
        BOOT,
        "kv",
        "get",
        "greeting",
    ])?;
    assert!(!ok, "lucidctl must not trust an unknown CA: {out}");

    // py-consul over HTTPS with verify=<ca.pem>.
    let python =
        tokio::task::spawn_blocking(|| lucid_tests::python::venv_python(&["py-consul==1.8.0"]))
            .await??;
    let (host, port) = https_of(&nodes[2])
        .await?
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.to_owned()))
        .unwrap_or_default();
    let script = format!(
        "import consul\nc = consul.Consul(host='{host}', port={port}, scheme='https', verify='{ca}', token='{BOOT}')\n\
         assert c.kv.put('py', 'consul')\nidx, v = c.kv.get('py')\nassert v['Value'] == b'consul', v\nprint('py-consul over https ok')\n"
    );
    let out = Command::new(&python).arg("-c").arg(&script).output()?;
    assert!(
        out.status.success(),
        "py-consul over https: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A sidecar against an https:// registry, verified with --registry-ca.
    let mut sidecar = Command::new(bin("lucid-proxy"))
        .args(["--service", "web", "--app-port", "9", "--token", BOOT])
        .args(["--registry", &n2_https, "--registry-ca", &ca])
        .args([
            "--inbound-addr",
            "127.0.0.1:0",
            "--outbound-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let ready = async {
        let (addrs, _log) =
            lucid_tests::procs::listeners(&mut sidecar, &["inbound", "outbound", "admin"], "web")?;
        let admin = format!("http://{}/ready", addrs["admin"]);
        let http = lucid_client::HttpClient::new(Duration::from_secs(2));
        wait::until(
            "sidecar ready over an https registry",
            Duration::from_secs(30),
            || async {
                Ok(http
                    .send(Method::GET, &admin, &[], "")
                    .await
                    .ok()
                    .filter(|r| r.status == StatusCode::OK)
                    .map(|_| ()))
            },
        )
        .await
    }
    .await;
    let _ = sidecar.kill();
    let _ = sidecar.wait();
    ready?;
    let (_, web) = call(&mgmt, Method::GET, "/v1/catalog/service/web", Value::Null).await?;
    assert!(
        web.as_array().is_some_and(|a| !a.is_empty()),
        "the sidecar did not register over https: {web}"
    );

    // The attacker's write: a management token through /raft/write, on the leader.
    let st = nodes[0].status().await?;
    let leader_id = st["leader"]["id"].as_u64().unwrap_or(1) as usize;
    let leader = &nodes[leader_id - 1];
    let raft = leader.raft.clone();
    let write = |key: &str| {
        json!({"op": "kv_set", "key": key, "value": "cHduZWQ=", "flags": 0, "cas": null})
            .to_string()
    };
    let certs = pki.join("certs");
    let c = |f: &str| certs.join(f).display().to_string();
    let applied = |st: &Value| st["applied_index"].as_u64().unwrap_or(0);
    let before = applied(&leader.status().await?);
    let attempts: Vec<(&str, Vec<String>)> = vec![
        ("plain HTTP", vec![format!("http://{raft}/raft/write")]),
        (
            "TLS without a client certificate",
            vec![
                "--cacert".into(),
                ca.clone(),
                format!("https://{raft}/raft/write"),
            ],
        ),
        (
            "a certificate from another CA",
            vec![
                "--cacert".into(),
                ca.clone(),
                "--cert".into(),
                c("intruder.pem"),
                "--key".into(),
                c("intruder-key.pem"),
                format!("https://{raft}/raft/write"),
            ],
        ),
    ];
    for (what, args) in &attempts {
        let mut full: Vec<&str> = vec![
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-raw",
        ];
        let body = write("pwned");
        full.push(&body);
        full.extend(args.iter().map(String::as_str));
        let (_, code, body) = curl(&full)?;
        assert!(
            !(200..300).contains(&code),
            "{what}: the Raft port answered {code}: {body}"
        );
    }
    assert_eq!(
        applied(&leader.status().await?),
        before,
        "a refused Raft request changed the applied index"
    );
    let (st, _) = call(&mgmt, Method::GET, "/v1/kv/pwned", Value::Null).await?;
    assert_eq!(st, StatusCode::NOT_FOUND, "the attacker's key was written");
    // Positive control: the same request with a node certificate is accepted, so the refusals
    // above are the TLS layer's and not a malformed request.
    let body = write("control");
    let (_, code, answer) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-raw",
        &body,
        "--cacert",
        &ca,
        "--cert",
        &c("n2.pem"),
        "--key",
        &c("n2-key.pem"),
        &format!("https://{raft}/raft/write"),
    ])?;
    assert_eq!(code, 200, "peer certificate refused: {answer}");
    let (st, _) = call(&mgmt, Method::GET, "/v1/kv/control", Value::Null).await?;
    assert_eq!(
        st,
        StatusCode::OK,
        "the peer's write did not land: {answer}"
    );
    // Data directories are private.
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.path().join("n1")), 0o700);
        for entry in std::fs::read_dir(dir.path().join("n1/raft"))? {
            let p = entry?.path();
            if p.is_file() {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn acl_node_with_plain_raft_off_loopback_refuses_to_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(bin("lucid-registry"))
        .args([
            "--node-id",
            "1",
            "--bootstrap",
            "--acl-enabled",
            "--raft-addr",
            "0.0.0.0:0",
        ])
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
            "--advertise",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("n1"))
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {err}");
    for flag in ["--tls-cert-file", "--insecure-raft"] {
        assert!(err.contains(flag), "the refusal should name {flag}: {err}");
    }
    assert!(
        !dir.path().join("n1").exists(),
        "a refused start left a data directory behind"
    );
    Ok(())
}

#[tokio::test]
async fn garbage_snapshot_chunk_is_refused_and_raft_keeps_running() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = crate::kv::single_node(dir.path()).await?;
    let c = node.client();
    let term = node.status().await?["term"].as_u64().unwrap_or(1);
    // A higher vote than the node's, so openraft would accept and try to install it.
    let chunk = json!({
        "vote": {"leader_id": {"term": term + 5, "node_id": 9}, "committed": true},
        "meta": {
            "last_log_id": {"leader_id": {"term": term + 5, "node_id": 9}, "index": 1000},
            "last_membership": {"log_id": null, "membership": {"configs": [[9]], "nodes": {"9": {"raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:1"}}}},
            "snapshot_id": "evil"
        },
        "offset": 0,
        "data": "Z2FyYmFnZQ==",
        "done": true
    });
    let r = lucid_client::HttpClient::new(Duration::from_secs(10))
        .send(
            Method::POST,
            &format!("http://{}/raft/snapshot", node.raft),
            &[("content-type", "application/json")],
            chunk.to_string(),
        )
        .await?;
    let answer = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.contains("does not decode"), "{answer}");
    assert_eq!(
        node.status().await?["term"].as_u64(),
        Some(term),
        "the term moved"
    );
    assert_eq!(
        c.call(Method::GET, "/health", "").await?.status,
        StatusCode::OK
    );
    let (st, v) = call(&c, Method::PUT, "/v1/kv/after", json!("x")).await?;
    assert_eq!(st, StatusCode::OK, "writes stopped after the chunk: {v}");
    Ok(())
}

async fn token(mgmt: &RegistryClient, service: &str) -> anyhow::Result<(String, String)> {
    let (st, v) = call(
        mgmt,
        Method::PUT,
        "/v1/acl/token",
        json!({"Description": service, "ServiceIdentities": [{"ServiceName": service}]}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    Ok((
        v["SecretID"].as_str().unwrap_or_default().to_owned(),
        v["AccessorID"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// db's instances and checks as (instance id, service, check id, check service id, status).
async fn db_state(mgmt: &RegistryClient) -> anyhow::Result<Vec<String>> {
    let (_, services) = call(mgmt, Method::GET, "/v1/agent/services", Value::Null).await?;
    let (_, checks) = call(mgmt, Method::GET, "/v1/agent/checks", Value::Null).await?;
    let mut out = Vec::new();
    for id in ["db-1", "db-2", "db-3"] {
        out.push(format!("{id}={}", services[id]["Service"]));
        let c = &checks[format!("service:{id}")];
        out.push(format!("service:{id}={}/{}", c["ServiceID"], c["Status"]));
    }
    Ok(out)
}

fn refused((st, v): &(StatusCode, Value), what: &str) {
    assert!(
        st.is_client_error(),
        "{what}: expected a 4xx refusal, got {st}: {v}"
    );
    assert!(
        v["error"]["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("LUCID_ERR_")),
        "{what}: {v}"
    );
}

#[tokio::test]
async fn a_service_token_cannot_act_for_another_service() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node_with(
        &dir.path().join("n1"),
        &["--acl-enabled", "--acl-bootstrap-token", BOOT],
    )
    .await?;
    let mgmt = node.client().with_token(BOOT);
    // The operator's plane map puts nothing in `ops`'s reach for web.
    let (st, v) = call(
        &mgmt,
        Method::PUT,
        "/v1/connect/policy",
        json!({"planeIsolation": {"planes": {"ops": {"allowedClusters": ["monitor"]}, "chain": {"allowedClusters": ["ledger"]}}, "policies": [{"source": "plane:ops", "destination": "plane:chain", "rules": [{"action": "allow"}]}]}}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (db_secret, _) = token(&mgmt, "db").await?;
    let db = node.client().with_token(db_secret);
    for id in ["db-1", "db-2", "db-3"] {
        let (st, v) = call(&db, Method::PUT, "/v1/agent/service/register",
            json!({"Name": "db", "ID": id, "Address": "10.0.0.7", "Port": 5432, "Check": {"TTL": "30s"}})).await?;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, v) = call(
            &db,
            Method::PUT,
            &format!("/v1/agent/check/pass/service:{id}"),
            Value::Null,
        )
        .await?;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (web_secret, web_accessor) = token(&mgmt, "web").await?;
    let web = node.client().with_token(web_secret.clone());
    // Let the start-up writes (the CA root, the bootstrap token) land before counting.
    wait_ca_root(&mgmt).await?;
    let before = db_state(&mgmt).await?;
    let applied = node.status().await?["applied_index"].as_u64();

    let raft_port = node
        .raft
        .rsplit_once(':')
        .map_or("0", |(_, p)| p)
        .to_owned();
    let csr = make_csr(dir.path(), "attacker")?;
    let put = Method::PUT;
    let attacks: Vec<(&str, Method, String, Value)> = vec![
        (
            "Service and name disagree",
            put.clone(),
            "/v1/agent/service/register".into(),
            json!({"Service": "web", "name": "db", "ID": "db-9", "Port": 1}),
        ),
        (
            "Name and _name collide",
            put.clone(),
            "/v1/agent/service/register".into(),
            json!({"Name": "web", "_name": "db", "ID": "db-9", "Port": 1}),
        ),
        (
            "nested catalog Service",
            put.clone(),
            "/v1/catalog/register".into(),
            json!({"Node": "n", "Address": "10.0.0.9", "Service": {"Service": "db", "ID": "db-9", "Port": 1}}),
        ),
        (
            "native register",
            Method::POST,
            "/services/register".into(),
            json!({"name": "db", "id": "db-9", "address": "10.0.0.9", "port": 1}),
        ),
        (
            "CSR for db by key collision",
            Method::POST,
            "/v1/connect/ca/sign".into(),
            json!({"csr": csr, "Service": "web", "service": "db"}),
        ),
        (
            "CSR for db",
            Method::POST,
            "/v1/connect/ca/sign".into(),
            json!({"csr": csr, "service": "db"}),
        ),
        (
            "encoded check id",
            put.clone(),
            "/v1/agent/check/fail/service%3Adb-1".into(),
            Value::Null,
        ),
        (
            "encoded instance id",
            put.clone(),
            "/v1/agent/service/deregister/%64b-2".into(),
            Value::Null,
        ),
        (
            "encoded maintenance id",
            put.clone(),
            "/v1/agent/service/maintenance/%64b-2?enable=true".into(),
            Value::Null,
        ),
        (
            "instance id takeover",
            put.clone(),
            "/v1/agent/service/register".into(),
            json!({"Name": "web", "ID": "db-1", "Address": "10.0.0.9", "Port": 1}),
        ),
        (
            "check id takeover",
            put.clone(),
            "/v1/agent/service/register".into(),
            json!({"Name": "web", "ID": "web-1", "Address": "10.0.0.9", "Port": 1, "Check": {"CheckID": "service:db-3", "TTL": "10s"}}),
        ),
        (
            "SSRF to the Raft port",
            put.clone(),
            "/v1/agent/service/register".into(),
            json!({"Name": "web", "ID": "web-2", "Address": "127.0.0.1", "Port": raft_port.parse::<u16>().unwrap_or(1),
            "Check": {"HTTP": format!("http://127.0.0.1:{raft_port}/raft/write"), "Method": "POST", "Header": {"Content-Type": ["application/json"]},
                      "Body": "{\"op\":\"acl_token_create\"}", "Interval": "1s"}}),
        ),
        (
            "HTTP check at another address",
            put.clone(),
            "/v1/agent/service/register".into(),
            json!({"Name": "web", "ID": "web-3", "Address": "10.0.0.9", "Port": 80,
            "Check": {"HTTP": format!("http://127.0.0.1:{raft_port}/"), "Interval": "10s"}}),
        ),
        (
            "TCP check at the registry's loopback",
            put.clone(),
            "/v1/agent/service/register".into(),
            json!({"Name": "web", "ID": "web-4", "Address": "127.0.0.1", "Port": raft_port.parse::<u16>().unwrap_or(1),
            "Check": {"TCP": format!("127.0.0.1:{raft_port}"), "Interval": "10s"}}),
        ),
        (
            "leaf in a chosen plane",
            Method::GET,
            "/v1/agent/connect/ca/leaf/web?plane=ops".into(),
            Value::Null,
        ),
        (
            "CSR in a chosen plane",
            Method::POST,
            "/v1/connect/ca/sign".into(),
            json!({"csr": csr, "service": "web", "plane": "ops"}),
        ),
    ];
    for (what, m, path, body) in attacks {
        let r = call(&web, m, &path, body).await?;
        refused(&r, what);
        assert_eq!(
            node.status().await?["applied_index"].as_u64(),
            applied,
            "{what}: the refused request was applied"
        );
    }
    assert_eq!(
        db_state(&mgmt).await?,
        before,
        "db's instances or checks changed"
    );
    assert_eq!(
        node.status().await?["applied_index"].as_u64(),
        applied,
        "a refused request was applied"
    );
    let (_, certs) = call(&mgmt, Method::GET, "/certificates", Value::Null).await?;
    assert!(
        !certs.as_array().is_some_and(|a| a
            .iter()
            .any(|c| c["service"] == "db" || c["plane"] == "ops")),
        "a leaf was signed for the attacker: {certs}"
    );

    // Positive controls: the same token does what it may. (A TTL check: an HTTP check on a
    // non-loopback address would be probed, and tests send traffic to loopback only.)
    let (st, v) = call(
        &web,
        put.clone(),
        "/v1/agent/service/register",
        json!({"Name": "web", "ID": "web-1", "Address": "10.0.0.9", "Port": 80,
        "Check": {"TTL": "30s"}}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "web registering itself: {v}");
    let (st, v) = call(
        &web,
        Method::GET,
        "/v1/agent/connect/ca/leaf/web",
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["ServiceURI"],
        "spiffe://lucid.internal/plane/default/svc/web"
    );

    // Anonymous /status shows no addresses; a token sees the peers.
    let (_, anon) = call(&node.client(), Method::GET, "/status", Value::Null).await?;
    assert!(
        anon.get("peers").is_none() && !anon.to_string().contains(&node.raft),
        "{anon}"
    );
    let (_, known) = call(&web, Method::GET, "/status", Value::Null).await?;
    assert!(known.to_string().contains(&node.raft), "{known}");

    // A deleted token stops working at once.
    let (st, v) = call(
        &mgmt,
        Method::DELETE,
        &format!("/v1/acl/token/{web_accessor}"),
        Value::Null,
    )
    .await?;
    assert_eq!((st, v), (StatusCode::OK, json!(true)));
    let r = call(&web, Method::GET, "/v1/kv/x", Value::Null).await?;
    assert_eq!(r.0, StatusCode::FORBIDDEN, "{:?}", r.1);
    let (ok, out) = lucidctl(&[
        "--registry",
        &node.http,
        "--token",
        BOOT,
        "acl",
        "token",
        "delete",
        &web_accessor,
    ])?;
    // Consul's answer: deleting what is gone is done (`true`), and it stays gone.
    assert!(ok, "deleting twice: {out}");
    let r = call(&web, Method::GET, "/v1/kv/x", Value::Null).await?;
    assert_eq!(r.0, StatusCode::FORBIDDEN, "{:?}", r.1);
    Ok(())
}

/// Every file below `dir`, as bytes.
fn files_below(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_ca_key_is_sealed_at_rest_in_backups_and_without_the_secret() -> anyhow::Result<()> {
    let _lock = cluster_lock().await;
    let dir = tempfile::tempdir()?;
    let acl = |secret: Option<&Path>| {
        let mut v: Vec<String> = vec![
            "--acl-enabled".into(),
            "--acl-bootstrap-token".into(),
            BOOT.into(),
        ];
        if let Some(s) = secret {
            v.extend(["--ca-key-secret-file".into(), s.display().to_string()]);
        }
        v
    };
    let n1 = RegistryProc::spawn(NodeSpec {
        node_id: 1,
        data_dir: dir.path().join("n1"),
        bootstrap: true,
        extra: acl(None),
        ..Default::default()
    })?;
    wait_leader(&n1).await?;
    let mgmt = n1.client().with_token(BOOT);
    wait_ca_root(&mgmt).await?;
    let (st, v) = call(&mgmt, Method::POST, "/certificates/web", Value::Null).await?;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // A node whose secret differs replicates the sealed key but cannot open it.
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, "not-the-cluster-secret-0123456789")?;
    let n2 = RegistryProc::spawn(NodeSpec {
        node_id: 2,
        data_dir: dir.path().join("n2"),
        join: vec![n1.http.clone()],
        extra: acl(Some(&wrong)),
        ..Default::default()
    })?;
    let n2c = n2.client().with_token(BOOT);
    let st2 = wait::until(
        "n2 to replicate the root",
        Duration::from_secs(60),
        || async {
            let (_, roots) =
                call(&n2c, Method::GET, "/v1/connect/ca/roots?stale", Value::Null).await?;
            let st = n2.status().await?;
            Ok((roots["ActiveRootID"] != "" && st["role"] == "follower").then_some(st))
        },
    )
    .await?;
    assert_eq!(st2["ca_signing"], false, "{st2}");
    assert!(
        st2["ca_signing_problem"]
            .as_str()
            .is_some_and(|p| p.contains("secret")),
        "{st2}"
    );
    let (st, v) = call(&n2c, Method::POST, "/certificates/web", Value::Null).await?;
    assert_eq!(
        st,
        StatusCode::SERVICE_UNAVAILABLE,
        "signing without the secret: {v}"
    );
    assert_eq!(n1.status().await?["ca_signing"], true);

    // Backups need management and hold only the sealed key.
    let (web, _) = token(&mgmt, "web").await?;
    let r = n1
        .client()
        .with_token(web)
        .call(Method::GET, "/v1/snapshot", "")
        .await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = mgmt.call(Method::GET, "/v1/snapshot", "").await?;
    assert_eq!(r.status, StatusCode::OK);
    let gz = dir.path().join("backup.gz");
    std::fs::write(&gz, &r.body)?;
    let out = Command::new("gzip").arg("-dc").arg(&gz).output()?;
    assert!(out.status.success(), "the backup is not gzip");
    assert!(
        !contains(&out.stdout, b"PRIVATE KEY"),
        "the backup holds the CA key in the clear"
    );
    assert!(
        contains(&out.stdout, b"lucid-sealed-v1:"),
        "the backup lacks the sealed CA key"
    );
    // ... and so does every file of both data directories (the Raft log carries the key
    // to every node; the control shows the greps looked at the files that hold it).
    for n in ["n1", "n2"] {
        let files = files_below(&dir.path().join(n));
        for (p, b) in &files {
            assert!(
                !contains(b, b"PRIVATE KEY"),
                "{} holds a private key in the clear",
                p.display()
            );
        }
        assert!(
            files.iter().any(|(_, b)| contains(b, b"lucid-sealed-v1:")),
            "{n}: no file holds the sealed key, so the check above proves nothing"
        );
    }
    Ok(())
}
