//! Prepared queries (issue 16) against a live registry: created, read, executed by ID, by
//! name and through a template, over HTTP and over DNS (`<name>.query.<domain>`, asked with
//! hickory's client); refused when malformed or when the name is taken; gone with their
//! session; and held to `query` rules with ACLs on.

use std::time::Duration;

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use lucid_tests::api::call;
use lucid_tests::dns::proto::op::ResponseCode;
use lucid_tests::dns::proto::rr::RecordType;
use lucid_tests::dns::{self, addrs, Transport};
use lucid_tests::wait;
use serde_json::{json, Value};

use crate::kv::single_node;

fn ok((st, v): (StatusCode, Value), what: &str) -> Value {
    assert_eq!(st, StatusCode::OK, "{what}: {v}");
    v
}

fn bad((st, v): (StatusCode, Value), what: &str, says: &str) {
    assert_eq!(st, StatusCode::BAD_REQUEST, "{what}: {v}");
    assert!(
        v["error"]["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("LUCID_ERR_")),
        "{what}: {v}"
    );
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(says), "{what}: {msg:?} should say {says:?}");
}

async fn register(c: &RegistryClient, body: Value) -> anyhow::Result<()> {
    ok(
        call(c, Method::PUT, "/v1/agent/service/register", body).await?,
        "register",
    );
    Ok(())
}

/// Poll DNS until `name` answers `want` (an empty `want`: NXDOMAIN).
pub(crate) async fn dns_answers(server: &str, name: &str, want: &[&str]) -> anyhow::Result<()> {
    wait::until(
        &format!("{name} = {want:?}"),
        Duration::from_secs(5),
        || async {
            let m = dns::query(server, Transport::Udp, name, RecordType::A, Some(1232)).await?;
            let got = addrs(&m);
            let nx = m.metadata.response_code == ResponseCode::NXDomain;
            if got == want && (nx == want.is_empty()) {
                Ok(Some(()))
            } else {
                anyhow::bail!("last answer {:?} {got:?}", m.metadata.response_code)
            }
        },
    )
    .await
}

fn node_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v["Nodes"]
        .as_array()
        .map(|n| {
            n.iter()
                .map(|e| e["Service"]["ID"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn queries_answer_over_http_and_dns_and_refuse_bad_definitions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    register(
        &c,
        json!({"Name": "web", "ID": "web-1", "Address": "10.2.0.1", "Port": 80,
        "Tags": ["v1"], "Meta": {"tier": "gold"}}),
    )
    .await?;
    register(
        &c,
        json!({"Name": "web", "ID": "web-2", "Address": "10.2.0.2", "Port": 80,
        "Tags": ["v2"]}),
    )
    .await?;
    // A TTL check starts critical: web-3 is never in an answer.
    register(
        &c,
        json!({"Name": "web", "ID": "web-3", "Address": "10.2.0.3", "Port": 80,
        "Tags": ["v1"], "Check": {"TTL": "60s"}}),
    )
    .await?;

    let v1 = ok(
        call(
            &c,
            Method::POST,
            "/v1/query",
            json!({"Name": "web-v1",
            "Service": {"Service": "web", "Tags": ["v1"]}, "DNS": {"TTL": "7s"}}),
        )
        .await?,
        "create web-v1",
    );
    let id = v1["ID"].as_str().unwrap_or_default().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {v1}");
    ok(
        call(
            &c,
            Method::POST,
            "/v1/query",
            json!({"Name": "svc-",
            "Template": {"Type": "name_prefix_match"},
            "Service": {"Service": "${name.suffix}", "Tags": ["!v1"]}}),
        )
        .await?,
        "create the template",
    );

    let got = ok(
        call(&c, Method::GET, &format!("/v1/query/{id}"), Value::Null).await?,
        "get",
    );
    assert_eq!(got[0]["Name"], "web-v1");
    assert_eq!(got[0]["Service"]["Tags"], json!(["v1"]));
    assert_eq!(got[0]["DNS"]["TTL"], "7s");
    let list = ok(
        call(&c, Method::GET, "/v1/query", Value::Null).await?,
        "list",
    );
    assert_eq!(list.as_array().map(Vec::len), Some(2));

    for asked in [id.as_str(), "web-v1", "WEB-V1"] {
        let r = ok(
            call(
                &c,
                Method::GET,
                &format!("/v1/query/{asked}/execute"),
                Value::Null,
            )
            .await?,
            asked,
        );
        assert_eq!(node_ids(&r), ["web-1"], "{asked}: tag v1, healthy only");
        assert_eq!(
            (r["Service"].as_str(), r["Failovers"].as_u64()),
            (Some("web"), Some(0))
        );
        assert_eq!(r["DNS"]["TTL"], "7s");
        assert_eq!(r["Nodes"][0]["Checks"][0]["CheckID"], "serfHealth");
    }
    let r = ok(
        call(&c, Method::GET, "/v1/query/svc-web/execute", Value::Null).await?,
        "tpl",
    );
    assert_eq!(
        node_ids(&r),
        ["web-2"],
        "the template renders web and excludes v1"
    );
    let r = ok(
        call(&c, Method::GET, "/v1/query/svc-web/explain", Value::Null).await?,
        "explain",
    );
    assert_eq!(r["Query"]["Service"]["Service"], "web");
    let r = ok(
        call(
            &c,
            Method::GET,
            "/v1/query/web-v1/execute?limit=1",
            Value::Null,
        )
        .await?,
        "limit",
    );
    assert_eq!(node_ids(&r).len(), 1);
    let r = ok(
        call(
            &c,
            Method::GET,
            "/v1/query/svc-web/execute?limit=0",
            Value::Null,
        )
        .await?,
        "limit 0",
    );
    assert_eq!(
        node_ids(&r),
        ["web-2"],
        "a limit of 0 is no limit, as in Consul"
    );
    let tpl = list
        .as_array()
        .into_iter()
        .flatten()
        .find(|q| q["Name"] == "svc-")
        .and_then(|q| q["ID"].as_str())
        .unwrap_or_default()
        .to_owned();
    bad(
        call(
            &c,
            Method::GET,
            &format!("/v1/query/{tpl}/execute"),
            Value::Null,
        )
        .await?,
        "a template by ID",
        "only be resolved up by name",
    );

    // DNS answers the same names, with the query's TTL.
    dns_answers(&node.dns, "web-v1.query.lucid.internal.", &["10.2.0.1"]).await?;
    dns_answers(&node.dns, &format!("{id}.query.consul."), &["10.2.0.1"]).await?;
    dns_answers(&node.dns, "svc-web.query.lucid.internal.", &["10.2.0.2"]).await?;
    let m = dns::query(
        &node.dns,
        Transport::Tcp,
        "web-v1.query.lucid.internal.",
        RecordType::A,
        None,
    )
    .await?;
    assert!(m.answers.iter().all(|r| r.ttl == 7), "{m:?}");

    // Updates and deletes reach DNS too.
    ok(
        call(
            &c,
            Method::PUT,
            &format!("/v1/query/{id}"),
            json!({"Name": "web-v1",
            "Service": {"Service": "web", "Tags": ["v2"]}}),
        )
        .await?,
        "update",
    );
    dns_answers(&node.dns, "web-v1.query.lucid.internal.", &["10.2.0.2"]).await?;
    ok(
        call(&c, Method::DELETE, &format!("/v1/query/{id}"), Value::Null).await?,
        "delete",
    );
    dns_answers(&node.dns, "web-v1.query.lucid.internal.", &[]).await?;
    let (st, _) = call(&c, Method::GET, "/v1/query/web-v1/execute", Value::Null).await?;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&c, Method::GET, &format!("/v1/query/{id}"), Value::Null).await?;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Bad definitions: 400 with Consul's reason, and nothing stored.
    for (body, says) in [
        (json!({"Name": "x"}), "Must provide a Service name to query"),
        (
            json!({"Service": {"Service": "web"}}),
            "Must be bound to a session",
        ),
        (
            json!({"Name": "x", "Service": {"Service": "web"}, "DNS": {"TTL": "soon"}}),
            "Bad DNS TTL",
        ),
        (
            json!({"Name": "x", "Service": {"Service": "web", "Failover": {"NearestN": -2}}}),
            "Bad NearestN '-2', must be >= 0",
        ),
        (
            json!({"Name": "x", "Template": {"Type": "name_prefix_match", "Regexp": "(["},
            "Service": {"Service": "web"}}),
            "Bad Regexp",
        ),
        (
            json!({"Name": "x", "Template": {"Type": "name_prefix_match"},
            "Service": {"Service": "${nope}"}}),
            "unknown variable",
        ),
        (
            json!({"Name": "svc-", "Service": {"Service": "web"}}),
            "aliases an existing query name",
        ),
        (
            json!({"Name": "x", "Session": "no-such-session", "Service": {"Service": "web"}}),
            "invalid session",
        ),
        (
            json!({"ID": "chosen", "Name": "x", "Service": {"Service": "web"}}),
            "ID must be empty",
        ),
        (json!([1, 2]), "JSON object"),
    ] {
        bad(
            call(&c, Method::POST, "/v1/query", body.clone()).await?,
            &body.to_string(),
            says,
        );
    }
    let list = ok(
        call(&c, Method::GET, "/v1/query", Value::Null).await?,
        "list",
    );
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "only the template: {list}"
    );
    let (st, _) = call(
        &c,
        Method::PUT,
        "/v1/query/no-such-id",
        json!({"Name": "y",
        "Service": {"Service": "web"}}),
    )
    .await?;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // An unnamed query lives as long as its session.
    let s = ok(
        call(&c, Method::PUT, "/v1/session/create", json!({"Name": "q"})).await?,
        "session",
    );
    let sid = s["ID"].as_str().unwrap_or_default().to_owned();
    let q = ok(
        call(
            &c,
            Method::POST,
            "/v1/query",
            json!({"Session": sid, "Service": {"Service": "web"}}),
        )
        .await?,
        "session-bound",
    );
    let qid = q["ID"].as_str().unwrap_or_default().to_owned();
    let r = ok(
        call(
            &c,
            Method::GET,
            &format!("/v1/query/{qid}/execute"),
            Value::Null,
        )
        .await?,
        "x",
    );
    assert_eq!(node_ids(&r), ["web-1", "web-2"]);
    ok(
        call(
            &c,
            Method::PUT,
            &format!("/v1/session/destroy/{sid}"),
            Value::Null,
        )
        .await?,
        "destroy",
    );
    let (st, _) = call(&c, Method::GET, &format!("/v1/query/{qid}"), Value::Null).await?;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "the session took its query with it"
    );
    Ok(())
}

#[tokio::test]
async fn query_rules_decide_who_writes_reads_and_what_an_execute_sees() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // With a cluster secret, so management can be shown a query's token back.
    let (node, mgmt) = crate::acl_policies::acl_node(dir.path(), true).await?;
    register(
        &mgmt,
        json!({"Name": "web", "ID": "web-1", "Address": "10.3.0.1", "Port": 80}),
    )
    .await?;
    register(
        &mgmt,
        json!({"Name": "db", "ID": "db-1", "Address": "10.3.0.2", "Port": 5432}),
    )
    .await?;
    let mut tokens = Vec::new();
    for rules in [
        r#"query_prefix "team-" { policy = "write" } service "web" { policy = "read" }"#,
        r#"service "db" { policy = "read" }"#,
        r#"query_prefix "" { policy = "read" }"#,
        r#"query_prefix "TEAM-" { policy = "write" }"#,
    ] {
        let p = ok(
            call(
                &mgmt,
                Method::PUT,
                "/v1/acl/policy",
                json!({"Name": format!("p{}", tokens.len()),
                "Rules": rules}),
            )
            .await?,
            "policy",
        );
        let t = ok(
            call(
                &mgmt,
                Method::PUT,
                "/v1/acl/token",
                json!({"Policies": [{"ID": p["ID"]}]}),
            )
            .await?,
            "token",
        );
        tokens.push(t["SecretID"].as_str().unwrap_or_default().to_owned());
    }
    let team = node.client().with_token(&tokens[0]);
    let dbonly = tokens[1].clone();

    // Writes need query:write on the name.
    let (st, v) = call(
        &team,
        Method::POST,
        "/v1/query",
        json!({"Name": "other",
        "Service": {"Service": "web"}}),
    )
    .await?;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "LUCID_ERR_1203");
    let mine = ok(
        call(
            &team,
            Method::POST,
            "/v1/query",
            json!({"Name": "team-web",
            "Service": {"Service": "web"}}),
        )
        .await?,
        "team-web",
    );
    // A query that runs with the db-only token: it may not read web.
    let theirs = ok(
        call(
            &mgmt,
            Method::POST,
            "/v1/query",
            json!({"Name": "ops-web", "Token": dbonly,
            "Service": {"Service": "web"}}),
        )
        .await?,
        "ops-web",
    );
    // Reads: the team sees its own query only; the token is shown to management alone.
    let list = ok(
        call(&team, Method::GET, "/v1/query", Value::Null).await?,
        "team list",
    );
    let names: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q["Name"].as_str())
        .collect();
    assert_eq!(names, ["team-web"]);
    let (st, _) = call(
        &team,
        Method::GET,
        &format!("/v1/query/{}", theirs["ID"].as_str().unwrap_or_default()),
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let all = ok(
        call(&mgmt, Method::GET, "/v1/query", Value::Null).await?,
        "mgmt list",
    );
    assert!(all
        .as_array()
        .into_iter()
        .flatten()
        .any(|q| q["Token"] == dbonly.as_str()));
    let (st, _) = call(
        &team,
        Method::DELETE,
        &format!("/v1/query/{}", theirs["ID"].as_str().unwrap_or_default()),
        Value::Null,
    )
    .await?;
    assert_eq!(st, StatusCode::FORBIDDEN, "not the team's query");
    // The query's token is kept by accessor: its secret is nowhere in a backup.
    let backup = mgmt
        .call(Method::GET, "/v1/snapshot", String::new())
        .await?;
    assert_eq!(backup.status, StatusCode::OK);
    let mut blob = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&backup.body[..]),
        &mut blob,
    )?;
    let has = |needle: &str| blob.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        has("ops-web"),
        "the backup holds the query (so the next check means something)"
    );
    assert!(!has(&dbonly), "the query's secret is in the backup");
    // Names are looked up without case, so a name needs write on its lower-case spelling too:
    // a token ruled `query_prefix "TEAM-"` cannot take "TEAM-x", which answers for "team-x".
    let squatter = node.client().with_token(&tokens[3]);
    let (st, _) = call(
        &squatter,
        Method::POST,
        "/v1/query",
        json!({"Name": "TEAM-x", "Service": {"Service": "web"}}),
    )
    .await?;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // An unnamed query is listed to management only, and read by whoever holds its ID.
    let s = ok(
        call(&mgmt, Method::PUT, "/v1/session/create", json!({})).await?,
        "session",
    );
    let unnamed = ok(
        call(
            &mgmt,
            Method::POST,
            "/v1/query",
            json!({"Session": s["ID"], "Service": {"Service": "web"}}),
        )
        .await?,
        "unnamed",
    );
    let uid = unnamed["ID"].as_str().unwrap_or_default();
    let reader = node.client().with_token(&tokens[2]);
    let list = ok(
        call(&reader, Method::GET, "/v1/query", Value::Null).await?,
        "reader list",
    );
    assert!(
        list.as_array()
            .into_iter()
            .flatten()
            .all(|q| q["ID"] != uid),
        "an unnamed query is not listed to query_prefix \"\" read: {list}"
    );
    assert!(
        list.as_array().is_some_and(|l| l.len() == 2),
        "the named ones are: {list}"
    );
    let got = ok(
        call(
            &reader,
            Method::GET,
            &format!("/v1/query/{uid}"),
            Value::Null,
        )
        .await?,
        "by ID",
    );
    assert_eq!(got[0]["ID"], uid);
    let all = ok(
        call(&mgmt, Method::GET, "/v1/query", Value::Null).await?,
        "mgmt list",
    );
    assert!(all.as_array().into_iter().flatten().any(|q| q["ID"] == uid));

    // Execute needs no query rule; the answer is what the query's token (else the caller's)
    // may read.
    let r = ok(
        call(
            &team,
            Method::GET,
            "/v1/query/team-web/execute",
            Value::Null,
        )
        .await?,
        "x",
    );
    assert_eq!(node_ids(&r), ["web-1"]);
    let r = ok(
        call(&team, Method::GET, "/v1/query/ops-web/execute", Value::Null).await?,
        "x",
    );
    assert_eq!(
        node_ids(&r),
        Vec::<String>::new(),
        "its own token cannot read web"
    );
    let anon = node.client();
    let r = ok(
        call(
            &anon,
            Method::GET,
            "/v1/query/team-web/execute",
            Value::Null,
        )
        .await?,
        "x",
    );
    assert_eq!(
        node_ids(&r),
        Vec::<String>::new(),
        "the anonymous token reads nothing"
    );
    ok(
        call(
            &team,
            Method::DELETE,
            &format!("/v1/query/{}", mine["ID"].as_str().unwrap_or_default()),
            Value::Null,
        )
        .await?,
        "delete own",
    );
    Ok(())
}
