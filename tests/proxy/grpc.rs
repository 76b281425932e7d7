//! gRPC across two sidecars with real grpcio programs (issue 15): every call shape, large
//! messages, trailers, app statuses and deadlines; `grpc.health.v1` as the sidecar's health
//! check; mesh refusals as gRPC statuses; a retry on UNAVAILABLE; the breaker opening on a
//! failing status that arrives in the trailers.

use std::time::Duration;

use http::Method;
use lucid_client::RegistryClient;
use lucid_tests::wait;
use serde_json::{json, Value};

use crate::py::{self, Server};
use crate::{registry, service_defaults, Sidecar};

/// The statuses of `service`'s instances' checks in the registry.
async fn check_statuses(c: &RegistryClient, service: &str) -> anyhow::Result<Vec<String>> {
    let v: Value = c
        .call(Method::GET, &format!("/v1/health/service/{service}"), "")
        .await?
        .json()?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["Checks"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["ServiceID"] != "")
        .map(|c| c["Status"].as_str().unwrap_or_default().to_owned())
        .collect())
}

async fn wait_checks(
    c: &RegistryClient,
    service: &str,
    want: &str,
    n: usize,
) -> anyhow::Result<()> {
    wait::until(
        &format!("{n} {want} instance(s) of {service}"),
        Duration::from_secs(30),
        || async {
            let s = check_statuses(c, service).await?;
            Ok((s.len() == n && s.iter().all(|x| x == want)).then_some(()))
        },
    )
    .await
}

/// One unary call through `outbound` to `authority`: `(code, details)`.
async fn status(outbound: &str, authority: &str, method: &str) -> anyhow::Result<(String, String)> {
    let v = py::run_json("grpc_client.py", &[outbound, authority, "status", method]).await?;
    Ok((
        v["code"].as_str().unwrap_or_default().to_owned(),
        v["details"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// `n` calls of `Who`: what each answered.
async fn who(outbound: &str, authority: &str, n: usize) -> anyhow::Result<Vec<Value>> {
    let v = py::run_json(
        "grpc_client.py",
        &[outbound, authority, "who", &n.to_string()],
    )
    .await?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// A caller with no app of its own to speak of: its health check is `none`.
async fn caller(reg: &str) -> anyhow::Result<Sidecar> {
    let port = py::free_port()?.to_string();
    Sidecar::spawn(
        reg,
        "web",
        "default",
        port.parse()?,
        &["--health-check", "none"],
    )
    .await
}

#[tokio::test]
async fn grpc_calls_of_every_shape_cross_the_mesh_and_refusals_are_grpc_statuses(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let c = reg.client();
    let app = Server::python("grpc_app.py", "grpc", &["ledger-1"])?;
    let port = app.port.to_string();
    let _b = Sidecar::spawn(
        &reg.http,
        "ledger",
        "default",
        app.port,
        &["--health-check", "grpc"],
    )
    .await?;
    let a = caller(&reg.http).await?;
    let out = a.outbound.as_str();
    let authority = "ledger.lucid.internal";
    wait_checks(&c, "ledger", "passing", 1).await?;

    // Defaults only: the caller's HTTP/2 reaches the grpcio server as HTTP/2.
    let v = py::run_json("grpc_client.py", &[out, authority, "calls"]).await?;
    assert_eq!(v["ok"], true, "{v}");

    // grpc.health.v1 decides the instance's health.
    let app_addr = format!("127.0.0.1:{port}");
    py::run_json("grpc_client.py", &[&app_addr, "x", "control", "Sick"]).await?;
    wait_checks(&c, "ledger", "critical", 1).await?;
    py::run_json("grpc_client.py", &[&app_addr, "x", "control", "Well"]).await?;
    wait_checks(&c, "ledger", "passing", 1).await?;

    // The mesh's refusals as gRPC statuses naming the LUCID_ERR code.
    let (code, details) = status(out, "nosuch.lucid.internal", "Unary").await?;
    assert_eq!(code, "UNAVAILABLE", "{details}");
    assert!(details.starts_with("LUCID_ERR_1104"), "{details}");
    c.call(
        Method::PUT,
        "/v1/connect/intentions/exact?source=web&destination=ledger",
        json!({"Action": "deny"}).to_string(),
    )
    .await?
    .error_for_status()?;
    let denied = wait::until(
        "the deny reaches the sidecar",
        Duration::from_secs(10),
        || async {
            let (code, details) = status(out, authority, "Unary").await?;
            Ok((code == "PERMISSION_DENIED").then_some(details))
        },
    )
    .await?;
    assert!(denied.starts_with("LUCID_ERR_1203"), "{denied}");
    c.call(
        Method::DELETE,
        "/v1/connect/intentions/exact?source=web&destination=ledger",
        "",
    )
    .await?
    .error_for_status()?;
    service_defaults(
        &c,
        json!({"Name": "ledger", "RateLimit": {"RequestsPerSecond": 1, "Burst": 1}}),
    )
    .await?;
    let limited = wait::until(
        "the rate limit applies",
        Duration::from_secs(10),
        || async {
            let (code, details) = status(out, authority, "Unary").await?;
            Ok((code == "RESOURCE_EXHAUSTED").then_some(details))
        },
    )
    .await?;
    assert!(limited.starts_with("LUCID_ERR_1201"), "{limited}");
    Ok(())
}

#[tokio::test]
async fn unavailable_is_retried_elsewhere_and_a_failing_status_in_trailers_opens_the_circuit(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let c = reg.client();
    // ledger: one healthy instance and one answering UNAVAILABLE (Trailers-Only).
    let good = Server::python("grpc_app.py", "grpc", &["good"])?;
    let down = Server::python("grpc_app.py", "grpc", &["down", "--unavailable"])?;
    let grpc_health = ["--health-check", "grpc"];
    let _g = Sidecar::spawn(&reg.http, "ledger", "default", good.port, &grpc_health).await?;
    let _d = Sidecar::spawn(&reg.http, "ledger", "default", down.port, &grpc_health).await?;
    // audit: a single instance that fails after its first message (the status in trailers).
    let failing = Server::python("grpc_app.py", "grpc", &["audit", "--fail-in-trailers"])?;
    let _f = Sidecar::spawn(&reg.http, "audit", "default", failing.port, &grpc_health).await?;
    service_defaults(
        &c,
        // Random balancing: round robin could pick the healthy one first on every call
        // (a retry moves the counter too), and then nothing would be retried.
        json!({"Name": "ledger", "Retry": {"Attempts": 2, "On": ["unavailable"]},
               "CircuitBreaker": {"FailureThreshold": 100}, "LoadBalancer": {"Policy": "random"}}),
    )
    .await?;
    service_defaults(
        &c,
        json!({"Name": "audit", "CircuitBreaker": {"FailureThreshold": 3, "RecoveryTimeout": "60s"}}),
    )
    .await?;
    let a = caller(&reg.http).await?;
    wait_checks(&c, "ledger", "passing", 2).await?;
    wait_checks(&c, "audit", "passing", 1).await?;
    let out = a.outbound.as_str();

    // About half the calls go to the failing instance first; each is retried on the other.
    let answers = who(out, "ledger.lucid.internal", 20).await?;
    assert!(
        answers
            .iter()
            .all(|a| a["code"] == "OK" && a["name"] == "good"),
        "{answers:?}"
    );
    let (_, text) = a.admin(Method::GET, "/clusters?format=json").await?;
    let v: Value = serde_json::from_str(&text)?;
    let ledger = v["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "ledger")
        .cloned()
        .unwrap_or_default();
    assert!(ledger["retries"].as_u64() >= Some(1), "{ledger}");

    // INTERNAL after a message: the breaker hears it from the trailers, opens after three,
    // and then refuses at once with UNAVAILABLE naming LUCID_ERR_1104.
    let answers = who(out, "audit.lucid.internal", 5).await?;
    let codes: Vec<&str> = answers
        .iter()
        .map(|a| a["code"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        codes,
        [
            "INTERNAL",
            "INTERNAL",
            "INTERNAL",
            "UNAVAILABLE",
            "UNAVAILABLE"
        ],
        "{answers:?}"
    );
    assert!(
        answers[4]["details"]
            .as_str()
            .unwrap_or("")
            .starts_with("LUCID_ERR_1104"),
        "{answers:?}"
    );
    let eps = a.endpoints("audit").await?;
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(eps[0]["circuit"], "open", "{eps:?}");
    Ok(())
}
