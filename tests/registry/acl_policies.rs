//! Consul's ACL policy model (issue 16): a policy's rules decide what a token may do, key by
//! key; an exact rule beats a prefix, a deny under a prefix stops a recursive delete, a
//! transaction is refused whole when one operation is not allowed; roles carry policies;
//! deleting a policy takes its rights away at once; bad rules are 400 and stored nowhere;
//! the anonymous token can be given rights and never deleted; secrets are shown back only
//! to who may write ACLs.

use std::time::Duration;

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::api::call;
use serde_json::{json, Value};

use crate::kv::single_node_with;

pub(crate) const BOOT: &str = "policy-test-bootstrap-0123456789";

fn denied((st, v): (StatusCode, Value), what: &str) {
    assert_eq!(st, StatusCode::FORBIDDEN, "{what}: {v}");
    assert_eq!(v["error"]["code"], "LUCID_ERR_1203", "{what}: {v}");
}

fn ok((st, v): (StatusCode, Value), what: &str) -> Value {
    assert_eq!(st, StatusCode::OK, "{what}: {v}");
    v
}

async fn token(mgmt: &RegistryClient, body: Value) -> anyhow::Result<(String, RegistryClient)> {
    let v = ok(
        call(mgmt, Method::PUT, "/v1/acl/token", body).await?,
        "token",
    );
    let secret = v["SecretID"].as_str().unwrap_or_default().to_owned();
    Ok((
        v["AccessorID"].as_str().unwrap_or_default().to_owned(),
        mgmt.clone().with_token(&secret),
    ))
}

async fn policy(mgmt: &RegistryClient, name: &str, rules: &str) -> anyhow::Result<String> {
    let v = ok(
        call(
            mgmt,
            Method::PUT,
            "/v1/acl/policy",
            json!({"Name": name, "Rules": rules}),
        )
        .await?,
        name,
    );
    Ok(v["ID"].as_str().unwrap_or_default().to_owned())
}

/// A single node with ACLs on and [`BOOT`] as its bootstrap token, once that token works; with
/// `sealing`, also a cluster secret, so secrets can be shown back. The node and a management
/// client.
pub(crate) async fn acl_node(
    dir: &std::path::Path,
    sealing: bool,
) -> anyhow::Result<(lucid_tests::registry::RegistryProc, RegistryClient)> {
    let secret_file = dir.join("ca.secret");
    std::fs::write(&secret_file, "a-cluster-secret-of-enough-length")?;
    let mut flags = vec!["--acl-enabled", "--acl-bootstrap-token", BOOT];
    if sealing {
        flags.extend([
            "--ca-key-secret-file",
            secret_file.to_str().unwrap_or_default(),
        ]);
    }
    let node = single_node_with(&dir.join("n1"), &flags).await?;
    let mgmt = node.client().with_token(BOOT);
    lucid_tests::wait::until("the flag token stored", Duration::from_secs(10), || async {
        let (st, _) = call(&mgmt, Method::GET, "/v1/acl/token/self", Value::Null).await?;
        Ok((st == StatusCode::OK).then_some(()))
    })
    .await?;
    Ok((node, mgmt))
}

#[tokio::test]
async fn policies_decide_key_by_key_and_take_effect_at_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (node, mgmt) = acl_node(dir.path(), true).await?;
    for (k, v) in [("app/x", "1"), ("app/secret", "s"), ("other", "o")] {
        ok(
            call(&mgmt, Method::PUT, &format!("/v1/kv/{k}"), json!(v)).await?,
            k,
        );
    }

    // Bad rules are refused and stored nowhere.
    for (rules, what) in [
        ("key_prefix \"x\" { policy = \"wrte\" }", "a bad level"),
        ("service \"x\" { policy = \"list\" }", "list on a service"),
        (
            "key_prefix \"x\" { policy = \"read\"",
            "an unterminated block",
        ),
        ("{\"key_prefix\": ", "truncated JSON"),
    ] {
        let (st, v) = call(
            &mgmt,
            Method::PUT,
            "/v1/acl/policy",
            json!({"Name": "bad", "Rules": rules}),
        )
        .await?;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert!(
            v["error"]["code"]
                .as_str()
                .unwrap()
                .starts_with("LUCID_ERR_"),
            "{v}"
        );
    }
    let (_, list) = call(&mgmt, Method::GET, "/v1/acl/policies", Value::Null).await?;
    assert!(!list.to_string().contains("\"bad\""), "{list}");

    let app = policy(
        &mgmt,
        "app",
        "key_prefix \"app/\" { policy = \"write\" }\nkey \"app/secret\" { policy = \"deny\" }",
    )
    .await?;
    let (accessor, t) = token(&mgmt, json!({"Policies": [{"ID": app}]})).await?;

    ok(
        call(&t, Method::PUT, "/v1/kv/app/y", json!("2")).await?,
        "write under the prefix",
    );
    denied(
        call(&t, Method::PUT, "/v1/kv/other", json!("x")).await?,
        "write outside",
    );
    denied(
        call(&t, Method::GET, "/v1/kv/app/secret", Value::Null).await?,
        "an exact deny",
    );
    denied(
        call(&t, Method::GET, "/v1/kv/nothing-here", Value::Null).await?,
        "a missing key outside",
    );
    let v = ok(
        call(&t, Method::GET, "/v1/kv/app/?recurse", Value::Null).await?,
        "a listing",
    );
    let keys: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["Key"].as_str())
        .collect();
    assert_eq!(keys, ["app/x", "app/y"], "the denied key is left out");
    denied(
        call(&t, Method::DELETE, "/v1/kv/app/?recurse", Value::Null).await?,
        "a recursive delete over a deny",
    );
    // A transaction with one operation outside the policy is refused whole.
    let txn = json!([
        {"KV": {"Verb": "set", "Key": "app/z", "Value": "MQ=="}},
        {"KV": {"Verb": "set", "Key": "other", "Value": "MQ=="}},
    ]);
    denied(
        call(&t, Method::PUT, "/v1/txn", txn).await?,
        "a mixed transaction",
    );
    // Nothing refused changed anything.
    let (st, _) = call(&mgmt, Method::GET, "/v1/kv/app/z", Value::Null).await?;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let v = ok(
        call(&mgmt, Method::GET, "/v1/kv/other", Value::Null).await?,
        "other",
    );
    assert_eq!(v[0]["Value"], "Im8i", "still \"o\"");
    let v = ok(
        call(&mgmt, Method::GET, "/v1/kv/app/secret", Value::Null).await?,
        "secret",
    );
    assert!(v[0]["Value"].is_string());
    // Catalog reads need service reads; this policy has none.
    denied(
        call(&t, Method::GET, "/v1/catalog/services", Value::Null).await?,
        "catalog",
    );

    // Through a role, the same rights.
    let role = ok(
        call(
            &mgmt,
            Method::PUT,
            "/v1/acl/role",
            json!({"Name": "app-role", "Policies": [{"Name": "app"}]}),
        )
        .await?,
        "role",
    );
    let (_, via_role) = token(&mgmt, json!({"Roles": [{"ID": role["ID"]}]})).await?;
    ok(
        call(&via_role, Method::PUT, "/v1/kv/app/r", json!("r")).await?,
        "via the role",
    );

    // Rights follow the policy as it is now: an update narrows them, a delete removes them.
    ok(
        call(
            &mgmt,
            Method::PUT,
            &format!("/v1/acl/policy/{app}"),
            json!({"Name": "app", "Rules": "key_prefix \"app/\" { policy = \"read\" }"}),
        )
        .await?,
        "narrow",
    );
    denied(
        call(&t, Method::PUT, "/v1/kv/app/y", json!("3")).await?,
        "after narrowing",
    );
    ok(
        call(&t, Method::GET, "/v1/kv/app/y", Value::Null).await?,
        "still readable",
    );
    ok(
        call(
            &mgmt,
            Method::DELETE,
            &format!("/v1/acl/policy/{app}"),
            Value::Null,
        )
        .await?,
        "delete",
    );
    denied(
        call(&t, Method::GET, "/v1/kv/app/y", Value::Null).await?,
        "after the delete",
    );
    denied(
        call(&via_role, Method::GET, "/v1/kv/app/y", Value::Null).await?,
        "the role's link is dead too",
    );
    let v = ok(
        call(
            &mgmt,
            Method::GET,
            &format!("/v1/acl/token/{accessor}"),
            Value::Null,
        )
        .await?,
        "read",
    );
    assert!(v.get("Policies").is_none(), "a dead link is not shown: {v}");

    // Operator rules.
    let op = policy(&mgmt, "op-read", "operator = \"read\"").await?;
    let (_, o) = token(&mgmt, json!({"Policies": [{"ID": op}]})).await?;
    ok(
        call(
            &o,
            Method::GET,
            "/v1/operator/raft/configuration",
            Value::Null,
        )
        .await?,
        "operator read",
    );
    denied(
        call(
            &o,
            Method::PUT,
            "/v1/operator/autopilot/configuration",
            json!({"CleanupDeadServers": false}),
        )
        .await?,
        "operator write",
    );
    denied(
        call(&o, Method::GET, "/v1/acl/tokens", Value::Null).await?,
        "acl read",
    );

    // Secrets: shown to management (sealed under the cluster secret), never to acl:read.
    let (_, tokens) = call(&mgmt, Method::GET, "/v1/acl/tokens", Value::Null).await?;
    let mine = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["AccessorID"] == accessor)
        .cloned()
        .unwrap();
    let shown = mine["SecretID"].as_str().unwrap().to_owned();
    let again = RegistryClient::new(&node.http).with_token(&shown);
    let me = ok(
        call(&again, Method::GET, "/v1/acl/token/self", Value::Null).await?,
        "self",
    );
    assert_eq!(me["AccessorID"], accessor);
    let reader = policy(&mgmt, "acl-read", "acl = \"read\"").await?;
    let (_, r) = token(&mgmt, json!({"Policies": [{"ID": reader}]})).await?;
    let (_, tokens) = call(&r, Method::GET, "/v1/acl/tokens", Value::Null).await?;
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("SecretID").is_none()),
        "{tokens}"
    );

    // The anonymous token: given a policy, anonymous requests get it; never deleted.
    let anon = RegistryClient::new(&node.http);
    denied(
        call(&anon, Method::GET, "/v1/catalog/services", Value::Null).await?,
        "anonymous",
    );
    let reads = policy(
        &mgmt,
        "catalog-read",
        "service_prefix \"\" { policy = \"read\" }",
    )
    .await?;
    ok(
        call(
            &mgmt,
            Method::PUT,
            "/v1/acl/token/00000000-0000-0000-0000-000000000002",
            json!({"Policies": [{"ID": reads}]}),
        )
        .await?,
        "give anonymous a policy",
    );
    ok(
        call(&anon, Method::GET, "/v1/catalog/services", Value::Null).await?,
        "anonymous now",
    );
    denied(
        call(&anon, Method::PUT, "/v1/kv/app/x", json!("x")).await?,
        "anonymous write",
    );
    let (st, _) = call(
        &mgmt,
        Method::DELETE,
        "/v1/acl/token/00000000-0000-0000-0000-000000000002",
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // IDs that are not UUIDs are errors, a valid UUID naming nothing is not found.
    let (st, _) = call(&mgmt, Method::GET, "/v1/acl/policy/unknown", Value::Null).await?;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = call(
        &mgmt,
        Method::GET,
        &format!("/v1/acl/policy/{app}"),
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::NOT_FOUND);
    Ok(())
}

/// Findings of the ACL review, each reproduced as the attacker sent it: a service token
/// holds only its own service through every door (transactions, proxies, sidecars,
/// deregistration), denied keys stay hidden from transactions, a stored policy cannot shadow
/// a built-in name, event lists are filtered, per-service reads need only that service.
#[tokio::test]
async fn every_door_holds_a_service_token_to_its_own_service() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (node, mgmt) = acl_node(dir.path(), true).await?;
    let reg = |c: &RegistryClient, body: Value| {
        let c = c.clone();
        async move { call(&c, Method::PUT, "/v1/agent/service/register", body).await }
    };
    ok(
        reg(
            &mgmt,
            json!({"ID": "db-1", "Name": "db", "Address": "10.0.0.5", "Port": 5432}),
        )
        .await?,
        "db",
    );
    ok(
        reg(
            &mgmt,
            json!({"ID": "dbx-sidecar-proxy", "Name": "db-sidecar-proxy", "Kind": "connect-proxy",
            "Address": "10.0.0.8", "Port": 21000, "Proxy": {"DestinationServiceName": "db"}}),
        )
        .await?,
        "db's proxy",
    );
    let (_, web) = token(
        &mgmt,
        json!({"ServiceIdentities": [{"ServiceName": "web"}]}),
    )
    .await?;

    // Transactions: no takeover of db-1, no check aimed at the registry's loopback.
    let takeover = json!([{"Service": {"Verb": "set", "Service": {"ID": "db-1", "Service": "web", "Address": "10.0.0.7", "Port": 1}}}]);
    let (st, v) = call(&web, Method::PUT, "/v1/txn", takeover).await?;
    assert!(st.is_client_error(), "txn takeover: {st} {v}");
    let forged = json!([{"Service": {"Verb": "set", "Service": {"ID": "web-10", "Service": "web", "Address": "10.0.0.7", "Port": 1,
        "Checks": [{"CheckID": "c10", "HTTP": "http://127.0.0.1:1/admin", "Method": "DELETE", "Interval": "10s"}]}}}]);
    let (st, v) = call(&web, Method::PUT, "/v1/txn", forged).await?;
    assert!(st.is_client_error(), "txn check forgery: {st} {v}");
    // A proxy for db, alone or as a sidecar, is db's to register; nothing is left behind.
    denied(
        reg(&web, json!({"ID": "evil-proxy", "Name": "web", "Kind": "connect-proxy", "Address": "10.0.0.66",
            "Port": 21000, "Proxy": {"DestinationServiceName": "db"}})).await?,
        "a proxy for db",
    );
    denied(
        reg(
            &web,
            json!({"ID": "web-2", "Name": "web", "Address": "10.0.0.67", "Port": 80,
            "Connect": {"SidecarService": {"Proxy": {"DestinationServiceName": "db"}}}}),
        )
        .await?,
        "a sidecar for db",
    );
    // Deregistering its own instance does not take db's proxy with it.
    ok(
        reg(
            &web,
            json!({"ID": "dbx", "Name": "web", "Address": "10.0.0.9", "Port": 80}),
        )
        .await?,
        "web dbx",
    );
    ok(
        call(
            &web,
            Method::PUT,
            "/v1/agent/service/deregister/dbx",
            Value::Null,
        )
        .await?,
        "deregister",
    );
    let services = ok(
        call(&mgmt, Method::GET, "/v1/agent/services", Value::Null).await?,
        "services",
    );
    let ids: Vec<&String> = services.as_object().unwrap().keys().collect();
    assert_eq!(ids, ["db-1", "dbx-sidecar-proxy"], "{services}");
    assert_eq!(services["db-1"]["Service"], "db");
    let (_, connect) = call(&mgmt, Method::GET, "/v1/health/connect/db", Value::Null).await?;
    assert_eq!(
        connect.as_array().map(Vec::len),
        Some(1),
        "only db's own proxy: {connect}"
    );

    // A get-tree leaves out what a deny covers.
    for k in ["app/a", "app/secret"] {
        ok(
            call(&mgmt, Method::PUT, &format!("/v1/kv/{k}"), json!(k)).await?,
            k,
        );
    }
    let kv = policy(
        &mgmt,
        "kv",
        "key_prefix \"app/\" { policy = \"write\" }\nkey \"app/secret\" { policy = \"deny\" }",
    )
    .await?;
    let (_, kvt) = token(&mgmt, json!({"Policies": [{"ID": kv}]})).await?;
    let v = ok(
        call(
            &kvt,
            Method::PUT,
            "/v1/txn",
            json!([{"KV": {"Verb": "get-tree", "Key": "app/"}}]),
        )
        .await?,
        "get-tree",
    );
    let keys: Vec<&str> = v["Results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["KV"]["Key"].as_str())
        .collect();
    assert_eq!(keys, ["app/a"], "{v}");

    // A stored policy cannot take the name that means the built-in read-only policy.
    let (st, v) = call(
        &mgmt,
        Method::PUT,
        "/v1/acl/policy",
        json!({"Name": "read-only", "Rules": "key_prefix \"public/\" { policy = \"read\" }"}),
    )
    .await?;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // Events: a deny hides one by name; a prefix-scoped token lists its own.
    for e in ["x-deploy", "secret-deploy"] {
        ok(
            call(
                &mgmt,
                Method::PUT,
                &format!("/v1/event/fire/{e}"),
                Value::Null,
            )
            .await?,
            e,
        );
    }
    let ev = policy(
        &mgmt,
        "ev",
        "event_prefix \"\" { policy = \"read\" }\nevent \"secret-deploy\" { policy = \"deny\" }",
    )
    .await?;
    let (_, evt) = token(&mgmt, json!({"Policies": [{"ID": ev}]})).await?;
    let v = ok(
        call(&evt, Method::GET, "/v1/event/list", Value::Null).await?,
        "events",
    );
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["Name"].as_str())
        .collect();
    assert_eq!(names, ["x-deploy"]);

    // One service's reader reads that service (not the whole catalog).
    let one = policy(&mgmt, "db-read", "service \"db\" { policy = \"read\" }").await?;
    let (_, dbr) = token(&mgmt, json!({"Policies": [{"ID": one}]})).await?;
    ok(
        call(&dbr, Method::GET, "/v1/health/service/db", Value::Null).await?,
        "db's health",
    );
    denied(
        call(&dbr, Method::GET, "/v1/health/service/web", Value::Null).await?,
        "web's health",
    );

    // The anonymous token updated the way the consul CLI does (the whole token sent back).
    let v = ok(
        call(
            &mgmt,
            Method::PUT,
            "/v1/acl/token/00000000-0000-0000-0000-000000000002",
            json!({"AccessorID": "00000000-0000-0000-0000-000000000002", "SecretID": "anonymous",
                   "Description": "Anonymous Token", "Policies": [{"ID": one}]}),
        )
        .await?,
        "anonymous update",
    );
    assert_eq!(v["Policies"][0]["Name"], "db-read");

    // A UUID secret is one secret whatever its case.
    let (_, _) = token(
        &mgmt,
        json!({"SecretID": "abcdef01-2345-6789-abcd-ef0123456789", "Policies": [{"ID": one}]}),
    )
    .await?;
    let upper = RegistryClient::new(&node.http).with_token("ABCDEF01-2345-6789-ABCD-EF0123456789");
    ok(
        call(&upper, Method::GET, "/v1/health/service/db", Value::Null).await?,
        "upper-case secret",
    );
    let (st, v) = call(
        &mgmt,
        Method::PUT,
        "/v1/acl/token",
        json!({"SecretID": "ABCDEF01-2345-6789-ABCD-EF0123456789"}),
    )
    .await?;
    assert_eq!(st, StatusCode::BAD_REQUEST, "the same secret twice: {v}");
    Ok(())
}

/// Consul's rules for checks, catalog deregistration and coordinates: a service token
/// registers, deregisters and removes checks and instances of its own service only (a new
/// check vetted like a registration's: no probe of the registry's host, no other instance's
/// check id), node-level checks stay management's, and a coordinate needs `node:write` on its
/// node. Each of the allowed calls was refused before (acl:write only).
#[tokio::test]
async fn checks_and_deregistration_need_write_on_their_own_service() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_node, mgmt) = acl_node(dir.path(), false).await?;
    for body in [
        json!({"ID": "db-1", "Name": "db", "Address": "10.0.0.5", "Port": 5432}),
        json!({"ID": "web-1", "Name": "web", "Address": "10.0.0.7", "Port": 80}),
        json!({"ID": "web-2", "Name": "web", "Address": "10.0.0.8", "Port": 80}),
    ] {
        ok(
            call(&mgmt, Method::PUT, "/v1/agent/service/register", body).await?,
            "register",
        );
    }
    ok(
        call(
            &mgmt,
            Method::PUT,
            "/v1/agent/check/register",
            json!({"CheckID": "db-ttl", "Name": "db", "ServiceID": "db-1", "TTL": "60s"}),
        )
        .await?,
        "db's check",
    );
    let (_, web) = token(
        &mgmt,
        json!({"ServiceIdentities": [{"ServiceName": "web"}]}),
    )
    .await?;
    let put = |c: &RegistryClient, path: &str, body: Value| {
        let (c, path) = (c.clone(), path.to_owned());
        async move { call(&c, Method::PUT, &path, body).await }
    };

    // Checks: its own instance's, vetted; nobody else's; no node-level ones.
    ok(
        put(
            &web,
            "/v1/agent/check/register",
            json!({"CheckID": "web-ttl", "Name": "t", "ServiceID": "web-1", "TTL": "60s"}),
        )
        .await?,
        "a TTL check on its own instance",
    );
    ok(
        put(
            &web,
            "/v1/agent/check/register",
            json!({"CheckID": "web-http", "Name": "h",
            "ServiceID": "web-1", "HTTP": "http://10.0.0.7:80/health", "Interval": "30s"}),
        )
        .await?,
        "an HTTP check on its own instance's address",
    );
    for (body, what) in [
        (
            json!({"CheckID": "w-ssrf", "Name": "h", "ServiceID": "web-1",
            "HTTP": "http://127.0.0.1:1/admin", "Interval": "30s"}),
            "a probe of the registry's host",
        ),
        (
            json!({"CheckID": "w-db", "Name": "t", "ServiceID": "db-1", "TTL": "60s"}),
            "a check on db",
        ),
        (
            json!({"CheckID": "w-node", "Name": "t", "TTL": "60s"}),
            "a node-level check",
        ),
        (
            json!({"CheckID": "w-none", "Name": "t", "ServiceID": "web-404", "TTL": "60s"}),
            "no such instance",
        ),
    ] {
        denied(put(&web, "/v1/agent/check/register", body).await?, what);
    }
    let (st, v) = put(
        &web,
        "/v1/agent/check/register",
        json!({"CheckID": "db-ttl", "Name": "t", "ServiceID": "web-1", "TTL": "60s"}),
    )
    .await?;
    assert_eq!(st, StatusCode::CONFLICT, "db's check id: {v}");
    ok(
        put(&web, "/v1/agent/check/deregister/web-http", Value::Null).await?,
        "its own check away",
    );
    denied(
        put(&web, "/v1/agent/check/deregister/db-ttl", Value::Null).await?,
        "db's check away",
    );

    // Catalog deregistration: its own instance and check only.
    for (body, what) in [
        (json!({"Node": "lucid", "CheckID": "db-ttl"}), "db's check"),
        (
            json!({"Node": "lucid", "ServiceID": "db-1"}),
            "db's instance",
        ),
    ] {
        denied(put(&web, "/v1/catalog/deregister", body).await?, what);
    }
    ok(
        put(
            &web,
            "/v1/catalog/deregister",
            json!({"Node": "lucid", "CheckID": "web-ttl"}),
        )
        .await?,
        "its own check",
    );
    ok(
        put(
            &web,
            "/v1/catalog/deregister",
            json!({"Node": "lucid", "ServiceID": "web-2"}),
        )
        .await?,
        "its own instance",
    );
    let services = ok(
        call(&mgmt, Method::GET, "/v1/agent/services", Value::Null).await?,
        "s",
    );
    let mut ids: Vec<&String> = services
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    ids.sort();
    assert_eq!(ids, ["db-1", "web-1"]);
    let checks = ok(
        call(&mgmt, Method::GET, "/v1/agent/checks", Value::Null).await?,
        "c",
    );
    let ids: Vec<&String> = checks
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(ids, ["db-ttl"], "{checks}");

    // Coordinates: node:write on the node.
    let coord = |n: &str| json!({"Node": n, "Coord": {"Vec": [0.1, 0.2], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}});
    denied(
        put(&web, "/v1/coordinate/update", coord("n9")).await?,
        "web on n9",
    );
    let p = policy(&mgmt, "n9", "node \"n9\" { policy = \"write\" }").await?;
    let (_, n9) = token(&mgmt, json!({"Policies": [{"ID": p}]})).await?;
    ok(
        put(&n9, "/v1/coordinate/update", coord("n9")).await?,
        "n9 on n9",
    );
    denied(
        put(&n9, "/v1/coordinate/update", coord("n8")).await?,
        "n9 on n8",
    );
    Ok(())
}

/// An expired token is refused from its expiry on, and the leader reaps it soon after: it
/// leaves the listing and its secret may be used again (before, the secret stayed "in use"
/// for ever).
#[tokio::test]
async fn expired_tokens_are_refused_then_reaped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (node, mgmt) = acl_node(dir.path(), false).await?;
    let secret = "6e1f3c2a-1111-4222-8333-944455556666";
    let body = json!({"SecretID": secret, "ExpirationTTL": "1m",
        "ServiceIdentities": [{"ServiceName": "web"}]});
    let t = ok(
        call(&mgmt, Method::PUT, "/v1/acl/token", body.clone()).await?,
        "token",
    );
    let accessor = t["AccessorID"].as_str().unwrap_or_default().to_owned();
    let own = node.client().with_token(secret);
    ok(
        call(&own, Method::GET, "/v1/acl/token/self", Value::Null).await?,
        "live",
    );
    let (st, _) = call(&mgmt, Method::PUT, "/v1/acl/token", body.clone()).await?;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "the secret is in use while the token lives"
    );
    lucid_tests::wait::until("the token to expire", Duration::from_secs(90), || async {
        let (st, _) = call(&own, Method::GET, "/v1/acl/token/self", Value::Null).await?;
        Ok((st == StatusCode::FORBIDDEN).then_some(()))
    })
    .await?;
    // Listings leave an expired token out from its expiry; the reaper frees its secret.
    let list = ok(
        call(&mgmt, Method::GET, "/v1/acl/tokens", Value::Null).await?,
        "list",
    );
    assert!(list
        .as_array()
        .is_some_and(|l| l.iter().all(|x| x["AccessorID"] != accessor.as_str())));
    let body = json!({"SecretID": secret, "ServiceIdentities": [{"ServiceName": "web"}]});
    lucid_tests::wait::until(
        "the token to be reaped",
        Duration::from_secs(40),
        || async {
            let (st, v) = call(&mgmt, Method::PUT, "/v1/acl/token", body.clone()).await?;
            if st == StatusCode::OK {
                return Ok(Some(()));
            }
            anyhow::ensure!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("SecretID is already in use")),
                "{st} {v}"
            );
            Ok(None)
        },
    )
    .await?;
    ok(
        call(&own, Method::GET, "/v1/acl/token/self", Value::Null).await?,
        "the new token",
    );
    Ok(())
}
