//! Consul's ACL policy model (issue 16): a policy's rules decide what a token may do, key by
//! key; an exact rule beats a prefix, a deny under a prefix stops a recursive delete, a
//! transaction is refused whole when one operation is not allowed; roles carry policies;
//! deleting a policy takes its rights away at once; bad rules are 400 and stored nowhere;
//! the anonymous token can be given rights and never deleted; secrets are shown back only
//! to who may write ACLs.

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::api::call;
use serde_json::{json, Value};

use crate::kv::single_node_with;

const BOOT: &str = "policy-test-bootstrap-0123456789";

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

#[tokio::test]
async fn policies_decide_key_by_key_and_take_effect_at_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let secret_file = dir.path().join("ca.secret");
    std::fs::write(&secret_file, "a-cluster-secret-of-enough-length")?;
    let node = single_node_with(
        &dir.path().join("n1"),
        &[
            "--acl-enabled",
            "--acl-bootstrap-token",
            BOOT,
            "--ca-key-secret-file",
            secret_file.to_str().unwrap(),
        ],
    )
    .await?;
    let mgmt = node.client().with_token(BOOT);
    lucid_tests::wait::until(
        "the flag token stored",
        std::time::Duration::from_secs(10),
        || async {
            let (st, v) = call(&mgmt, Method::GET, "/v1/acl/token/self", Value::Null).await?;
            Ok((st == StatusCode::OK && v["AccessorID"].as_str().is_some()).then_some(()))
        },
    )
    .await?;
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
