use serde_json::json;

use super::*;

fn q(body: Value) -> PreparedQuery {
    parse(&body).unwrap()
}

fn err(body: Value) -> String {
    parse(&body).unwrap_err().to_string()
}

#[test]
fn parses_consuls_shape_with_any_key_spelling() {
    let p = q(json!({
        "Name": "redis-primary",
        "service": {"Service": "redis", "only_passing": true, "Tags": ["primary", "!old"],
                    "Failover": {"NearestN": 3, "Datacenters": ["dc2"]},
                    "ServiceMeta": {"tier": "a"}, "IgnoreCheckIDs": ["c1"]},
        "DNS": {"TTL": "10s"}
    }));
    assert_eq!(p.name, "redis-primary");
    assert_eq!(p.service.service, "redis");
    assert!(p.service.only_passing);
    assert_eq!(p.service.tags, ["primary", "!old"]);
    assert_eq!(p.service.failover.nearest_n, 3);
    assert_eq!(p.dns_ttl_secs(), Some(10));
    // The JSON answer uses Consul's names.
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["Service"]["OnlyPassing"], true);
    assert_eq!(v["Service"]["IgnoreCheckIDs"][0], "c1");
    assert_eq!(v["Service"]["Failover"]["NearestN"], 3);
    assert_eq!(v["DNS"]["TTL"], "10s");
    assert_eq!(v["Template"]["Type"], "");
    let back: PreparedQuery = serde_json::from_value(v).unwrap();
    assert_eq!(back, p);
}

#[test]
fn refuses_what_consul_refuses() {
    assert!(err(json!({"Name": "a"})).contains("Must provide a Service name to query"));
    assert!(err(json!({"Name": "a", "Service": {"Service": ""}}))
        .contains("Must provide a Service name to query"));
    assert!(err(json!({"Service": {"Service": "s"}})).contains("Must be bound to a session"));
    assert!(
        err(json!({"Name": "a", "Service": {"Service": "s", "Failover": {"NearestN": -1}}}))
            .contains("Bad NearestN '-1', must be >= 0")
    );
    assert!(
        err(json!({"Name": "a", "Service": {"Service": "s"}, "DNS": {"TTL": "soon"}}))
            .contains("Bad DNS TTL 'soon'")
    );
    assert!(
        err(json!({"Name": "a", "Service": {"Service": "s"}, "Template": {"Type": "glob"}}))
            .contains("Bad Template.Type 'glob'")
    );
    assert!(err(json!({"Name": "a", "Service": {"Service": "s"},
                       "Template": {"Type": "name_prefix_match", "Regexp": "("}}))
    .contains("Bad Regexp"));
    assert!(
        err(json!({"Name": "a", "Service": {"Service": "${name.nope}"},
                       "Template": {"Type": "name_prefix_match"}}))
        .contains("unknown variable accessed: name.nope")
    );
    assert!(
        err(json!({"Name": "a", "Token": "<hidden>", "Service": {"Service": "s"}}))
            .contains("redacted token")
    );
    assert!(err(json!({"Name": "a", "Service": {"Service": "s", "Bogus": 1}})).contains("bogus"));
    // An empty Type is no template at all; a Regexp without a Type is a mistake.
    assert!(
        !q(json!({"Name": "a", "Service": {"Service": "s"}, "Template": {"Type": ""}}))
            .is_template()
    );
    assert!(
        err(json!({"Name": "a", "Service": {"Service": "s"}, "Template": {"Regexp": "x"}}))
            .contains("Bad Template.Type ''")
    );
    // An unnamed template and an unnamed query bound to a session are fine.
    q(json!({"Service": {"Service": "${name.full}"}, "Template": {"Type": "name_prefix_match"}}));
    q(json!({"Session": "s1", "Service": {"Service": "web"}}));
}

#[test]
fn templates_render_for_the_name_asked() {
    let t = q(json!({
        "Name": "geo-db-",
        "Template": {"Type": "name_prefix_match", "Regexp": "^geo-db-(.*?)-([^\\-]+?)$",
                     "RemoveEmptyTags": true},
        "Service": {"Service": "mysql-${match(1)}", "Tags": ["${match(2)}", "${match(7)}", "x-${name.suffix}"],
                    "ServiceMeta": {"full": "${name.full}", "prefix": "${name.prefix}"}}
    }));
    let r = t.render("geo-db-customer-primary").unwrap();
    assert_eq!(r.service.service, "mysql-customer");
    // match(7) does not exist: empty, and dropped.
    assert_eq!(r.service.tags, ["primary", "x-customer-primary"]);
    assert_eq!(r.service.service_meta["full"], "geo-db-customer-primary");
    assert_eq!(r.service.service_meta["prefix"], "geo-db-");
    // The stored definition keeps its variables.
    assert_eq!(t.service.service, "mysql-${match(1)}");
}

#[test]
fn lookup_order_is_id_then_name_then_longest_template() {
    let mk = |id: &str, name: &str, service: &str, template: bool| PreparedQuery {
        id: id.into(),
        name: name.into(),
        service: ServiceQuery {
            service: service.into(),
            ..ServiceQuery::default()
        },
        template: QueryTemplate {
            kind: if template {
                NAME_PREFIX_MATCH.into()
            } else {
                String::new()
            },
            ..QueryTemplate::default()
        },
        ..PreparedQuery::default()
    };
    let table = QueryTable::new(vec![
        mk("id-catch", "", "${name.full}", true),
        mk("id-web", "web-", "web-${name.suffix}", true),
        mk("id-webx", "web-x", "exact", false),
        mk("id-other", "Other", "other", false),
    ]);
    assert_eq!(table.find("id-web").unwrap().id, "id-web");
    let by_id = table.resolve("id-web").unwrap().unwrap_err().to_string();
    assert!(by_id.contains("only be resolved up by name"), "{by_id}");
    assert_eq!(table.resolve("id-webx").unwrap().unwrap().id, "id-webx");
    assert_eq!(table.find("WEB-X").unwrap().id, "id-webx");
    assert_eq!(table.find("other").unwrap().id, "id-other");
    let r = table.resolve("web-east").unwrap().unwrap();
    assert_eq!(r.service.service, "web-east");
    let r = table.resolve("anything").unwrap().unwrap();
    assert_eq!(
        (r.id.as_str(), r.service.service.as_str()),
        ("id-catch", "anything")
    );
    assert!(QueryTable::new(vec![mk("i", "web-", "s", true)])
        .find("db")
        .is_none());
}

#[test]
fn admits_by_tags_meta_and_health() {
    let s = ServiceQuery {
        service: "redis".into(),
        tags: vec!["Primary".into(), "!old".into()],
        service_meta: [("tier".to_owned(), "a".to_owned())].into(),
        ignore_check_ids: vec!["flaky".into()],
        only_passing: true,
        ..ServiceQuery::default()
    };
    let meta: BTreeMap<String, String> = [("tier".to_owned(), "a".to_owned())].into();
    assert!(s.admits(&["primary".into()], &meta));
    assert!(!s.admits(&["primary".into(), "OLD".into()], &meta));
    assert!(!s.admits(&[], &meta));
    assert!(!s.admits(&["primary".into()], &BTreeMap::new()));
    assert!(s.healthy([
        ("flaky", CheckStatus::Critical),
        ("c", CheckStatus::Passing)
    ]));
    assert!(!s.healthy([("c", CheckStatus::Warning)]));
    let lax = ServiceQuery {
        only_passing: false,
        ..s
    };
    assert!(lax.healthy([("c", CheckStatus::Warning)]));
    assert!(!lax.healthy([("c", CheckStatus::Critical)]));
}
