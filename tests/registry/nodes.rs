//! External nodes and ingress gateways (issue 16): `/v1/catalog/register` for another node
//! puts the node, its services and its status-only checks in the catalog, where every read
//! shows them on their own node; a node-level check decides its services' health; ACLs ask
//! `node:write` for the node and `service:write` for each service; an `ingress-gateway`
//! entry answers `/v1/catalog/gateway-services` and `/v1/health/ingress`.

use std::time::Duration;

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::api::call;
use serde_json::{json, Value};

use crate::acl_policies::acl_node;
use crate::kv::single_node;
use crate::query::dns_answers;

async fn ok(c: &RegistryClient, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
    let (st, v) = call(c, method, path, body).await?;
    anyhow::ensure!(st == StatusCode::OK, "{path}: {st} {v}");
    Ok(v)
}

fn nodes_of(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e["Node"]
                        .as_str()
                        .or_else(|| e["Node"]["Node"].as_str())
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn external_nodes_are_in_every_read_on_their_own_node() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let reg = |body: Value| ok(&c, Method::PUT, "/v1/catalog/register", body);
    reg(json!({"Node": "n1", "Address": "10.1.10.11",
        "TaggedAddresses": {"lan": "10.1.10.11", "wan": "10.1.10.21"}, "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "db", "ID": "db-1", "Port": 5432, "Tags": ["primary"]},
        "Checks": [{"Name": "db-up", "ServiceID": "db-1", "Status": "passing"},
                   {"CheckID": "disk", "Name": "disk", "Status": "passing"}]}))
    .await?;
    reg(json!({"Node": "n2", "Address": "10.1.10.12",
        "Service": {"Service": "db", "ID": "db-1", "Port": 5432}, "Check": {"Name": "db-up", "ServiceID": "db-1", "Status": "passing"}}))
    .await?;
    // In DNS at their nodes' addresses (neither service has one of its own), and by node.
    dns_answers(
        &node.dns,
        "db.lucid.internal.",
        &["10.1.10.11", "10.1.10.12"],
    )
    .await?;
    dns_answers(
        &node.dns,
        "db-1.n2.node.instance.lucid.internal.",
        &["10.1.10.12"],
    )
    .await?;
    // The same service ID on two nodes: two instances.
    let v = ok(&c, Method::GET, "/v1/catalog/service/db", Value::Null).await?;
    assert_eq!(nodes_of(&v), ["n1", "n2"]);
    let n1 = v
        .as_array()
        .and_then(|a| a.iter().find(|e| e["Node"] == "n1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (
            &n1["Address"],
            &n1["TaggedAddresses"]["wan"],
            &n1["NodeMeta"]["rack"]
        ),
        (&json!("10.1.10.11"), &json!("10.1.10.21"), &json!("r1"))
    );
    let v = ok(&c, Method::GET, "/v1/catalog/nodes", Value::Null).await?;
    assert_eq!(nodes_of(&v), ["lucid", "n1", "n2"]);
    let v = ok(
        &c,
        Method::GET,
        "/v1/catalog/nodes?filter=Meta.rack%20%3D%3D%20%22r1%22",
        Value::Null,
    )
    .await?;
    assert_eq!(nodes_of(&v), ["n1"]);
    let v = ok(&c, Method::GET, "/v1/catalog/services", Value::Null).await?;
    assert_eq!(v, json!({"consul": [], "db": ["primary"]}));
    let v = ok(&c, Method::GET, "/v1/catalog/node/n1", Value::Null).await?;
    assert_eq!(v["Node"]["TaggedAddresses"]["lan"], "10.1.10.11");
    assert_eq!(v["Services"]["db-1"]["Port"], 5432);
    // No agent runs there, so no serfHealth: the node's own check and the service's.
    let v = ok(&c, Method::GET, "/v1/health/node/n1", Value::Null).await?;
    let mut checks: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["CheckID"].as_str()).collect())
        .unwrap_or_default();
    checks.sort();
    assert_eq!(checks, ["db-up", "disk"]);
    // The agent's view is the registry's own node only.
    let v = ok(&c, Method::GET, "/v1/agent/services", Value::Null).await?;
    assert_eq!(v, json!({}));

    // A node-level check going critical takes every service on the node out of `?passing`,
    // and wakes a blocking reader of the service.
    let (_, idx) = {
        let r = c
            .call(Method::GET, "/v1/health/service/db?passing", "")
            .await?;
        (r.status, r.consul_index().unwrap_or(0))
    };
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move {
            let r = c
                .call(
                    Method::GET,
                    &format!("/v1/health/service/db?passing&index={idx}&wait=20s"),
                    "",
                )
                .await?;
            anyhow::Ok(r.json::<Value>()?)
        })
    };
    // In flight: the blocking read has not answered yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the blocking read answered at once");
    reg(
        json!({"Node": "n1", "Address": "10.1.10.11", "SkipNodeUpdate": true,
        "Check": {"CheckID": "disk", "Name": "disk", "Status": "critical", "Output": "full"}}),
    )
    .await?;
    let woke = tokio::time::timeout(Duration::from_secs(10), waiter).await???;
    assert_eq!(nodes_of(&woke), ["n2"]);
    // DNS answers healthy instances only: n1's went with its node's check.
    dns_answers(&node.dns, "db.lucid.internal.", &["10.1.10.12"]).await?;
    let v = ok(&c, Method::GET, "/v1/health/state/critical", Value::Null).await?;
    assert_eq!(v[0]["CheckID"], "disk");
    assert_eq!(v[0]["Node"], "n1");
    // SkipNodeUpdate kept the tagged addresses.
    let v = ok(&c, Method::GET, "/v1/catalog/node/n1", Value::Null).await?;
    assert_eq!(v["Node"]["TaggedAddresses"]["wan"], "10.1.10.21");

    // Bad input: 4xx with a reason, nothing written.
    for (body, why) in [
        (
            json!({"Node": "n3", "Service": {"Service": "x"}}),
            "Must provide address",
        ),
        (
            json!({"Node": "n3", "Address": "10.0.0.3", "Check": {"Name": "c", "ServiceID": "ghost"}}),
            "Unknown service ID",
        ),
        (
            json!({"Node": "n3", "Address": "10.0.0.3", "Check": {"Name": "c", "Status": "sunny"}}),
            "is not passing, warning or critical",
        ),
        (
            json!({"Node": "n3", "Address": "10.0.0.3", "Datacenter": "dc2"}),
            "No path to datacenter",
        ),
        (
            json!({"Node": "bad node!", "Address": "10.0.0.3"}),
            "must be 1-128 characters",
        ),
    ] {
        let (st, v) = call(&c, Method::PUT, "/v1/catalog/register", body).await?;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{why}: {v}");
        assert!(v.to_string().contains(why), "{why}: {v}");
        assert!(v["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .starts_with("LUCID_ERR_"));
    }
    let v = ok(&c, Method::GET, "/v1/catalog/nodes", Value::Null).await?;
    assert_eq!(nodes_of(&v), ["lucid", "n1", "n2"]);

    // Deregistration: a service takes its checks; the node takes everything; unknown is 404;
    // the registry's own node cannot go.
    ok(
        &c,
        Method::PUT,
        "/v1/catalog/deregister",
        json!({"Node": "n2", "ServiceID": "db-1"}),
    )
    .await?;
    let v = ok(&c, Method::GET, "/v1/health/node/n2", Value::Null).await?;
    assert_eq!(v, json!([]));
    ok(
        &c,
        Method::PUT,
        "/v1/catalog/deregister",
        json!({"Node": "n1"}),
    )
    .await?;
    let v = ok(&c, Method::GET, "/v1/catalog/service/db", Value::Null).await?;
    assert_eq!(v, json!([]));
    dns_answers(&node.dns, "db.lucid.internal.", &[]).await?;
    let v = ok(&c, Method::GET, "/v1/catalog/node/n1", Value::Null).await?;
    assert_eq!(v, Value::Null);
    let (st, _) = call(
        &c,
        Method::PUT,
        "/v1/catalog/deregister",
        json!({"Node": "n1"}),
    )
    .await?;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(
        &c,
        Method::PUT,
        "/v1/catalog/deregister",
        json!({"Node": "lucid"}),
    )
    .await?;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let v = ok(&c, Method::GET, "/v1/catalog/nodes", Value::Null).await?;
    assert_eq!(nodes_of(&v), ["lucid", "n2"]);
    Ok(())
}

#[tokio::test]
async fn external_nodes_need_node_write_and_service_write() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_node, mgmt) = acl_node(dir.path(), false).await?;
    let with_rules = |rules: &'static str| {
        let mgmt = mgmt.clone();
        async move {
            let name = format!("p-{}", rules.len());
            ok(
                &mgmt,
                Method::PUT,
                "/v1/acl/policy",
                json!({"Name": name, "Rules": rules}),
            )
            .await?;
            let v = ok(
                &mgmt,
                Method::PUT,
                "/v1/acl/token",
                json!({"Policies": [{"Name": name}]}),
            )
            .await?;
            anyhow::Ok(mgmt.with_token(v["SecretID"].as_str().unwrap_or_default()))
        }
    };
    let db_only = with_rules(r#"service "db" { policy = "write" }"#).await?;
    let n1_only = with_rules(r#"node "n1" { policy = "write" }"#).await?;
    let both = with_rules(
        r#"node "n1" { policy = "write" }
           service "db" { policy = "write" }"#,
    )
    .await?;
    let reg = json!({"Node": "n1", "Address": "10.1.10.11",
        "Service": {"Service": "db", "ID": "db-1"},
        "Check": {"Name": "db-up", "ServiceID": "db-1", "Status": "passing"}});
    let denied = |st: StatusCode, what: &str| assert_eq!(st, StatusCode::FORBIDDEN, "{what}");
    let (st, _) = call(&db_only, Method::PUT, "/v1/catalog/register", reg.clone()).await?;
    denied(st, "service:write without node:write");
    let (st, _) = call(&n1_only, Method::PUT, "/v1/catalog/register", reg.clone()).await?;
    denied(st, "node:write without service:write");
    let (st, _) = call(
        &n1_only,
        Method::PUT,
        "/v1/catalog/register",
        json!({"Node": "n2", "Address": "10.1.10.12"}),
    )
    .await?;
    denied(st, "node:write on another node");
    // Nothing was written by the refusals.
    let v = ok(&mgmt, Method::GET, "/v1/catalog/nodes", Value::Null).await?;
    assert_eq!(nodes_of(&v), ["lucid"]);
    ok(&both, Method::PUT, "/v1/catalog/register", reg.clone()).await?;
    // A node-level check is the node's: node:write is enough, service:write is not.
    ok(
        &n1_only,
        Method::PUT,
        "/v1/catalog/register",
        json!({"Node": "n1", "Address": "10.1.10.11", "Check": {"Name": "disk", "Status": "passing"}}),
    )
    .await?;
    // A service check on the node needs write on its service, even with node:write; the
    // refusal does not name that service.
    let (st, v) = call(
        &n1_only,
        Method::PUT,
        "/v1/catalog/register",
        json!({"Node": "n1", "SkipNodeUpdate": true, "Check": {"Name": "db-2", "ServiceID": "db-1"}}),
    )
    .await?;
    denied(st, "a service check with node:write only");
    assert!(!v.to_string().contains("\"db\""), "{v}");
    // The registry's own node in another case is no external node.
    let (st, _) = call(
        &mgmt,
        Method::PUT,
        "/v1/catalog/register",
        json!({"Node": "LUCID", "Address": "10.1.10.99"}),
    )
    .await?;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Deregistration: service:write on the service removes its instance or check; the node
    // needs node:write. A refusal is the same, word for word, whether the target is another
    // service's or does not exist: it names no service.
    ok(
        &mgmt,
        Method::PUT,
        "/v1/catalog/register",
        json!({"Node": "n1", "SkipNodeUpdate": true, "Service": {"Service": "secret-svc", "ID": "s-1"}}),
    )
    .await?;
    let mut refusals = Vec::new();
    for (body, what) in [
        (json!({"Node": "n1"}), "the node with service:write only"),
        (
            json!({"Node": "n1", "CheckID": "disk"}),
            "a node check with service:write only",
        ),
        (
            json!({"Node": "n1", "ServiceID": "s-1"}),
            "another service's instance",
        ),
        (
            json!({"Node": "n1", "ServiceID": "ghost"}),
            "an unknown service",
        ),
        (
            json!({"Node": "n9", "ServiceID": "ghost"}),
            "an unknown node's unknown service",
        ),
    ] {
        let (st, v) = call(&db_only, Method::PUT, "/v1/catalog/deregister", body).await?;
        denied(st, what);
        assert!(!v.to_string().contains("secret-svc"), "{what}: {v}");
        refusals.push(v["error"]["message"].to_string().replace("n9", "n1"));
    }
    refusals.dedup();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    // The same on the registry's own node: another service's instance and an unknown one.
    ok(
        &mgmt,
        Method::PUT,
        "/v1/agent/service/register",
        json!({"Name": "secret-svc", "ID": "own-1", "Port": 1}),
    )
    .await?;
    let mut refusals = Vec::new();
    for id in ["own-1", "ghost"] {
        let (st, v) = call(
            &db_only,
            Method::PUT,
            &format!("/v1/agent/service/deregister/{id}"),
            Value::Null,
        )
        .await?;
        denied(st, id);
        refusals.push(v["error"]["message"].clone());
    }
    assert_eq!(refusals[0], refusals[1]);
    // No instance may take an external instance's DNS name (`<id>.<node>.node`).
    let (st, v) = call(
        &db_only,
        Method::PUT,
        "/v1/agent/service/register",
        json!({"Name": "db", "ID": "DB-1.n1.node", "Port": 1}),
    )
    .await?;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    for (who, body) in [
        (&db_only, json!({"Node": "n1", "CheckID": "db-up"})),
        (&db_only, json!({"Node": "n1", "ServiceID": "db-1"})),
        (&n1_only, json!({"Node": "n1"})),
    ] {
        ok(who, Method::PUT, "/v1/catalog/deregister", body).await?;
    }
    let v = ok(&mgmt, Method::GET, "/v1/catalog/nodes", Value::Null).await?;
    assert_eq!(nodes_of(&v), ["lucid"]);
    Ok(())
}

#[tokio::test]
async fn an_ingress_gateway_entry_lists_what_the_gateway_exposes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    let v = ok(
        &c,
        Method::GET,
        "/v1/catalog/gateway-services/gw",
        Value::Null,
    )
    .await?;
    assert_eq!(v, json!([]));
    for service in [
        json!({"Service": "gw", "Kind": "ingress-gateway", "Port": 8443}),
        json!({"Service": "web", "Port": 80}),
        json!({"Service": "api", "Port": 81}),
    ] {
        ok(
            &c,
            Method::PUT,
            "/v1/catalog/register",
            json!({"Node": "edge", "Address": "10.0.0.5", "Service": service}),
        )
        .await?;
    }
    // Consul's rules for listeners: 400 and nothing stored.
    for (listeners, why) in [
        (
            json!([{"Port": 80, "Services": [{"Name": "web"}, {"Name": "api"}]}]),
            "exactly one service",
        ),
        (
            json!([{"Port": 80, "Protocol": "tcp", "Services": [{"Name": "*"}]}]),
            "wildcard",
        ),
        (
            json!([{"Port": 80, "Protocol": "http", "Services": [{"Name": "web"}]},
                   {"Port": 80, "Protocol": "http", "Services": [{"Name": "api"}]}]),
            "declared twice",
        ),
        (json!([{"Port": 80, "Services": []}]), "at least one"),
        (
            json!([{"Port": 80, "Protocol": "udp", "Services": [{"Name": "web"}]}]),
            "is not http",
        ),
    ] {
        let (st, v) = call(
            &c,
            Method::PUT,
            "/v1/config",
            json!({"Kind": "ingress-gateway", "Name": "gw", "Listeners": listeners}),
        )
        .await?;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{why}: {v}");
        assert!(v.to_string().contains(why), "{why}: {v}");
    }
    let (st, _) = call(
        &c,
        Method::GET,
        "/v1/config/ingress-gateway/gw",
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::NOT_FOUND);
    ok(
        &c,
        Method::PUT,
        "/v1/config",
        json!({"Kind": "ingress-gateway", "Name": "gw", "Listeners": [
            {"Port": 9000, "Services": [{"Name": "api"}]},
            {"Port": 8080, "Protocol": "http", "Services": [{"Name": "*"}]}]}),
    )
    .await?;
    let v = ok(
        &c,
        Method::GET,
        "/v1/catalog/gateway-services/gw",
        Value::Null,
    )
    .await?;
    let rows: Vec<(String, u64, bool)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| {
                    assert_eq!(g["Gateway"]["Name"], "gw");
                    assert_eq!(g["GatewayKind"], "ingress-gateway");
                    (
                        g["Service"]["Name"].as_str().unwrap_or_default().to_owned(),
                        g["Port"].as_u64().unwrap_or_default(),
                        g["FromWildcard"].as_bool().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // The wildcard is every plain service: not the gateway itself, nor `consul`.
    assert_eq!(
        rows,
        [
            ("api".to_owned(), 9000, false),
            ("api".to_owned(), 8080, true),
            ("web".to_owned(), 8080, true)
        ]
    );
    let v = ok(&c, Method::GET, "/v1/health/ingress/api", Value::Null).await?;
    assert_eq!(v[0]["Service"]["Service"], "gw");
    assert_eq!(v[0]["Node"]["Node"], "edge");
    let v = ok(&c, Method::GET, "/v1/health/ingress/nothing", Value::Null).await?;
    assert_eq!(v, json!([]));
    Ok(())
}
