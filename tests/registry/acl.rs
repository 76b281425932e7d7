//! ACLs on: anonymous requests refused except /health and status, bootstrap once, service
//! tokens acting only for their own service (register, TTL updates, CSR signing), read-only
//! tokens reading only, the management token doing everything, lucidctl's acl commands, and
//! nothing changed by a refused request.

use std::process::Command;

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::api::call;
use lucid_tests::bins::bin;
use lucid_tests::registry::RegistryProc;
use serde_json::{json, Value};

use crate::kv::single_node_with;

const BOOT: &str = "bootstrap-secret-0123456789";

async fn acl_node(dir: &std::path::Path, bootstrap: Option<&str>) -> anyhow::Result<RegistryProc> {
    let mut extra = vec!["--acl-enabled".to_owned()];
    if let Some(b) = bootstrap {
        extra.extend(["--acl-bootstrap-token".to_owned(), b.to_owned()]);
    }
    let node = single_node_with(&dir.join("n1"), &extra).await?;
    Ok(node)
}

fn assert_denied((st, v): (StatusCode, Value), what: &str) {
    assert_eq!(st, StatusCode::FORBIDDEN, "{what}: {v}");
    assert_eq!(v["error"]["code"], "LUCID_ERR_1203", "{what}: {v}");
}

#[tokio::test]
async fn tokens_decide_who_may_do_what() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = acl_node(dir.path(), None).await?;
    let anon = node.client();
    assert_eq!(
        anon.call(Method::GET, "/health", "").await?.status,
        StatusCode::OK
    );
    assert_denied(
        call(&anon, Method::GET, "/v1/kv/x", Value::Null).await?,
        "anonymous read",
    );
    assert_denied(
        call(
            &anon,
            Method::PUT,
            "/v1/agent/service/register",
            json!({"Name": "web", "Port": 1}),
        )
        .await?,
        "anonymous write",
    );
    assert_denied(
        call(
            &anon.clone().with_token("no-such-token-at-all"),
            Method::GET,
            "/v1/kv/x",
            Value::Null,
        )
        .await?,
        "unknown token",
    );

    // Bootstrap once.
    let (st, boot) = call(&anon, Method::PUT, "/v1/acl/bootstrap", Value::Null).await?;
    assert_eq!(st, StatusCode::OK, "{boot}");
    let mgmt = anon.clone().with_token(boot["SecretID"].as_str().unwrap());
    assert_denied(
        call(&anon, Method::PUT, "/v1/acl/bootstrap", Value::Null).await?,
        "second bootstrap",
    );

    let (st, web) = call(
        &mgmt,
        Method::PUT,
        "/v1/acl/token",
        json!({"Description": "web", "ServiceIdentities": [{"ServiceName": "web"}]}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{web}");
    let web_token = web.clone();
    let web = anon.clone().with_token(web["SecretID"].as_str().unwrap());
    let (_, ro) = call(
        &mgmt,
        Method::PUT,
        "/v1/acl/token",
        json!({"Policies": [{"Name": "read-only"}]}),
    )
    .await?;
    let ro = anon.clone().with_token(ro["SecretID"].as_str().unwrap());
    let (st, v) = call(
        &mgmt,
        Method::PUT,
        "/v1/acl/token",
        json!({"Policies": [{"Name": "god-mode"}]}),
    )
    .await?;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // A service token registers its own service, keeps its TTL check current, signs its own CSR.
    let (st, v) = call(&web, Method::PUT, "/v1/agent/service/register",
        json!({"Name": "web", "ID": "web-1", "Port": 80, "Check": {"CheckID": "web-ttl", "TTL": "60s"}})).await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = call(
        &web,
        Method::PUT,
        "/v1/agent/check/pass/web-ttl",
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::OK);
    let csr = lucid_tests::openssl::make_csr(dir.path(), "web")?;
    let (st, v) = call(
        &web,
        Method::POST,
        "/v1/connect/ca/sign",
        // Its own plane (no plane map: `default`); choosing another is refused (trust.rs).
        json!({"csr": csr, "service": "web", "plane": "default"}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    // ... but nothing else.
    assert_denied(
        call(
            &web,
            Method::PUT,
            "/v1/agent/service/register",
            json!({"Name": "db", "ID": "db-1", "Port": 5432}),
        )
        .await?,
        "other service",
    );
    assert_denied(
        call(
            &web,
            Method::POST,
            "/v1/connect/ca/sign",
            json!({"csr": csr, "service": "db"}),
        )
        .await?,
        "other identity",
    );
    assert_denied(
        call(&web, Method::PUT, "/v1/kv/config", json!("x")).await?,
        "service token KV write",
    );
    assert_denied(
        call(
            &web,
            Method::PUT,
            "/v1/config",
            json!({"Kind": "service-defaults", "Name": "web"}),
        )
        .await?,
        "config write",
    );
    assert_denied(
        call(&web, Method::GET, "/v1/acl/tokens", Value::Null).await?,
        "token list",
    );
    assert_denied(
        call(
            &web,
            Method::GET,
            "/v1/agent/connect/ca/leaf/db",
            Value::Null,
        )
        .await?,
        "another service's leaf",
    );
    // Reads are fine for any token.
    let (st, _) = call(&web, Method::GET, "/v1/health/service/web", Value::Null).await?;
    assert_eq!(st, StatusCode::OK);

    // Read-only reads and never writes.
    let (st, _) = call(&ro, Method::GET, "/v1/catalog/services", Value::Null).await?;
    assert_eq!(st, StatusCode::OK);
    assert_denied(
        call(
            &ro,
            Method::PUT,
            "/v1/agent/check/fail/web-ttl",
            Value::Null,
        )
        .await?,
        "read-only write",
    );
    assert_denied(
        call(
            &ro,
            Method::PUT,
            "/v1/agent/service/register",
            json!({"Name": "web", "Port": 1}),
        )
        .await?,
        "read-only register",
    );

    // Refused requests changed nothing.
    let (_, services) = call(&mgmt, Method::GET, "/v1/catalog/services", Value::Null).await?;
    assert_eq!(services, json!({"consul": [], "web": []}));
    let (st, _) = call(&mgmt, Method::GET, "/v1/kv/config", Value::Null).await?;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, checks) = call(&mgmt, Method::GET, "/v1/health/checks/web", Value::Null).await?;
    assert_eq!(checks[0]["Status"], "passing");

    // The management token does everything; Authorization: Bearer works too.
    let bearer = RegistryClient::new(&node.http);
    let r = lucid_client::HttpClient::new(std::time::Duration::from_secs(5))
        .send(
            Method::PUT,
            &format!("{}/v1/kv/config", bearer.base()),
            &[(
                "authorization",
                &format!("Bearer {}", boot["SecretID"].as_str().unwrap()),
            )],
            "v1",
        )
        .await?;
    assert_eq!(r.status, StatusCode::OK);
    let (st, v) = call(
        &mgmt,
        Method::PUT,
        "/v1/agent/service/register",
        json!({"Name": "db", "ID": "db-1", "Port": 5432}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Bootstrap, web, read-only and Consul's anonymous token; their secrets are shown to
    // management (sealed at rest under the cluster secret), never to a service token.
    let (_, tokens) = call(&mgmt, Method::GET, "/v1/acl/tokens", Value::Null).await?;
    let tokens = tokens.as_array().unwrap();
    assert_eq!(tokens.len(), 4, "{tokens:?}");
    let listed = tokens
        .iter()
        .find(|t| t["AccessorID"] == web_token["AccessorID"])
        .unwrap();
    assert_eq!(listed["SecretID"], web_token["SecretID"]);
    assert_denied(
        call(&web, Method::GET, "/v1/acl/tokens", Value::Null).await?,
        "a service token lists tokens",
    );
    Ok(())
}

#[tokio::test]
async fn the_bootstrap_flag_and_lucidctl() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = acl_node(dir.path(), Some(BOOT)).await?;
    let ctl = |args: &[&str]| -> anyhow::Result<(bool, String, String)> {
        let out = Command::new(bin("lucidctl"))
            .args(["--registry", &node.http])
            .args(args)
            .env_remove("LUCID_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN")
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        ))
    };
    // The flag's secret is the bootstrap management token: bootstrapping again is refused.
    lucid_tests::wait::until(
        "the flag token stored",
        std::time::Duration::from_secs(10),
        || async {
            let (ok, out, _) = ctl(&["--token", BOOT, "acl", "token", "list"])?;
            Ok((ok && out.contains("global-management")).then_some(()))
        },
    )
    .await?;
    let (ok, _, err) = ctl(&["acl", "bootstrap"])?;
    assert!(!ok && err.contains("LUCID_ERR_1203"), "{err}");
    let (ok, _, err) = ctl(&["services", "list"])?;
    assert!(!ok && err.contains("403"), "anonymous: {err}");
    let (ok, out, err) = ctl(&[
        "--token",
        BOOT,
        "acl",
        "token",
        "create",
        "--service",
        "api",
    ])?;
    assert!(ok, "{err}");
    assert!(out.contains("service:api"), "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .unwrap()
        .trim()
        .to_owned();
    let (ok, out, _) = ctl(&["--token", BOOT, "acl", "token", "list"])?;
    assert!(
        ok && out.contains("service:api") && out.contains("global-management"),
        "{out}"
    );
    let (ok, _, err) = ctl(&["--token", &secret, "kv", "put", "k", "v"])?;
    assert!(!ok && err.contains("LUCID_ERR_1203"), "{err}");
    let (ok, _, err) = ctl(&["--token", BOOT, "kv", "put", "k", "v"])?;
    assert!(ok, "{err}");
    // DNS stays open.
    node.client()
        .with_token(BOOT)
        .call(
            Method::PUT,
            "/v1/agent/service/register",
            json!({"Name": "api", "ID": "api-1", "Address": "10.0.0.9", "Port": 1}).to_string(),
        )
        .await?
        .error_for_status()?;
    lucid_tests::wait::until("api in DNS", std::time::Duration::from_secs(5), || async {
        let m = lucid_tests::dns::query(
            &node.dns,
            lucid_tests::dns::Transport::Udp,
            "api.lucid.internal.",
            lucid_tests::dns::proto::rr::RecordType::A,
            None,
        )
        .await?;
        Ok((lucid_tests::dns::addrs(&m) == ["10.0.0.9"]).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_acl_cluster_forms_and_tokens_work_on_every_node() -> anyhow::Result<()> {
    let _g = lucid_tests::registry::cluster_lock().await;
    // Joining nodes present the bootstrap token; without it they could not be added.
    let cluster =
        lucid_tests::registry::Cluster::start(3, &["--acl-enabled", "--acl-bootstrap-token", BOOT])
            .await?;
    let leader = cluster
        .wait_leader(std::time::Duration::from_secs(20))
        .await?;
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    // A token created through one follower (forwarded) works on the other.
    let mgmt = cluster.node(a).client().with_token(BOOT);
    let (st, web) = call(
        &mgmt,
        Method::PUT,
        "/v1/acl/token",
        json!({"ServiceIdentities": [{"ServiceName": "web"}]}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{web}");
    let web = cluster
        .node(b)
        .client()
        .with_token(web["SecretID"].as_str().unwrap());
    lucid_tests::wait::until(
        "the token replicated",
        std::time::Duration::from_secs(10),
        || async {
            let (st, _) =
                call(&web, Method::GET, "/v1/catalog/services?stale", Value::Null).await?;
            Ok((st == StatusCode::OK).then_some(()))
        },
    )
    .await?;
    let (st, v) = call(
        &web,
        Method::PUT,
        "/v1/agent/service/register",
        json!({"Name": "web", "ID": "web-1", "Port": 1}),
    )
    .await?;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_denied(
        call(&web, Method::PUT, "/v1/kv/x", json!("y")).await?,
        "service token on a follower",
    );
    Ok(())
}
