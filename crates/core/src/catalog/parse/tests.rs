//! What real Consul clients send (shared/notes/consul-api.md), and what must be refused.

use crate::catalog::valid_instance_id;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::catalog::valid_service_name;

fn reg(v: Value) -> Result<Registration, RegistrationError> {
    parse_registration(&v, |name| name.to_owned())
}

fn field_of(e: RegistrationError) -> String {
    match e {
        RegistrationError::Field { field, .. } => field,
        RegistrationError::NotObject => "<body>".into(),
    }
}

#[test]
fn py_consul_lowercase_body_with_several_checks() {
    let r = reg(json!({
        "name": "web", "id": "web-1", "address": "10.0.0.5", "port": 8080,
        "tags": ["v1", "primary"], "meta": {"plane": "ops", "Version": "1.2"},
        "checks": [
            {"http": "http://127.0.0.1:8080/health", "interval": "10s", "timeout": "2s",
             "header": {"X-Probe": ["a", "b"]}, "DeregisterCriticalServiceAfter": "5s"},
            {"tcp": "127.0.0.1:8080", "interval": 5_000_000_000u64},
            {"ttl": "15s"}
        ],
        "weights": {"passing": 3, "warning": 1},
        "enabletagoverride": true
    }))
    .unwrap();
    let i = &r.instance;
    assert_eq!(
        (i.id.as_str(), i.name.as_str(), i.port),
        ("web-1", "web", 8080)
    );
    assert_eq!(i.meta["Version"], "1.2", "meta keys keep their case");
    assert_eq!(
        i.weights,
        Weights {
            passing: 3,
            warning: 1
        }
    );
    assert!(i.enable_tag_override);
    let ids: Vec<_> = r.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        ["service:web-1:1", "service:web-1:2", "service:web-1:3"]
    );
    assert!(
        r.checks.iter().all(|c| c.status == CheckStatus::Critical),
        "checks start critical"
    );
    assert_eq!(r.checks[0].name, "Service 'web' check");
    assert_eq!(r.checks[0].timeout, Duration::from_secs(2));
    assert_eq!(
        r.checks[0].deregister_critical_after,
        Some(Duration::from_secs(60)),
        "raised to Consul's 1m minimum"
    );
    match &r.checks[0].kind {
        CheckKind::Http { method, header, .. } => {
            assert_eq!(method, "GET");
            assert_eq!(header["X-Probe"], ["a", "b"]);
        }
        k => panic!("expected http, got {k:?}"),
    }
    assert_eq!(
        r.checks[1].interval,
        Duration::from_secs(5),
        "integer nanoseconds"
    );
    assert_eq!(r.checks[2].kind, CheckKind::Ttl);
    assert_eq!(r.checks[2].interval, Duration::from_secs(15));
}

#[test]
fn python_consul2_single_check_object_and_pascal_case() {
    let r = reg(json!({"Name": "api", "Port": 9000,
        "Check": {"HTTP": "http://127.0.0.1:9000/", "Interval": "1s", "Method": "post", "Status": "passing"}}))
    .unwrap();
    assert_eq!(r.instance.id, "api", "Consul's default id is the name");
    assert_eq!(r.checks.len(), 1);
    assert_eq!(r.checks[0].id, "service:api");
    assert_eq!(r.checks[0].status, CheckStatus::Passing);
    assert!(matches!(&r.checks[0].kind, CheckKind::Http { method, .. } if method == "POST"));
}

#[test]
fn snake_case_aliases_and_explicit_check_ids() {
    let r = reg(
        json!({"name": "db", "service_id": "db-a", "mesh_port": 15001,
        "checks": [{"check_id": "custom", "ttl": "30s", "deregister_critical_service_after": "2m",
                    "success_before_passing": 2, "failures_before_critical": 3}]}),
    )
    .unwrap();
    assert_eq!(r.instance.id, "db-a");
    assert_eq!(r.instance.mesh_port, Some(15001));
    assert_eq!(r.instance.port, 0, "no port given means none");
    let c = &r.checks[0];
    assert_eq!(
        (
            c.id.as_str(),
            c.success_before_passing,
            c.failures_before_critical
        ),
        ("custom", 2, 3)
    );
    assert_eq!(c.deregister_critical_after, Some(Duration::from_secs(120)));
}

#[test]
fn standalone_check_registration() {
    let c = parse_check(&json!({"name": "disk", "ttl": "10s", "serviceid": "web-1", "notes": "n"}))
        .unwrap();
    assert_eq!(
        (c.id.as_str(), c.service_id.as_str(), c.notes.as_str()),
        ("disk", "web-1", "n")
    );
    assert_eq!(
        field_of(parse_check(&json!({"ttl": "10s"})).unwrap_err()),
        "Name"
    );
}

#[test]
fn bad_registrations_name_the_field() {
    let cases = [
        (json!([1, 2]), "<body>"),
        (json!({"port": 80}), "Name"),
        (json!({"name": "web/1"}), "Name"),
        (json!({"name": "web", "kind": "teleporter"}), "Kind"),
        (json!({"name": "web 1"}), "Name"),
        (json!({"name": "a".repeat(129)}), "Name"),
        (json!({"name": "web", "id": "a/b"}), "ID"),
        (json!({"name": "web", "port": 0}), "Port"),
        (json!({"name": "web", "port": 65536}), "Port"),
        (json!({"name": "web", "port": "80"}), "Port"),
        (json!({"name": "web", "mesh_port": 70000}), "MeshPort"),
        (json!({"name": "web", "tags": "a,b"}), "Tags"),
        (json!({"name": "web", "meta": {"k": 1}}), "Meta"),
        (json!({"name": "web", "weights": {"passing": 0}}), "Weights"),
        (
            json!({"name": "web", "check": {"http": "http://x/", "interval": "soon"}}),
            "Check.Interval",
        ),
        (
            json!({"name": "web", "check": {"http": "http://x/"}}),
            "Check.Interval",
        ),
        (
            json!({"name": "web", "check": {"http": "ftp://x/", "interval": "1s"}}),
            "Check.HTTP",
        ),
        (
            json!({"name": "web", "check": {"tcp": "nohost", "interval": "1s"}}),
            "Check.TCP",
        ),
        (
            json!({"name": "web", "checks": [{"ttl": "5s"}, {"grpc": "x:1", "interval": "1s"}]}),
            "Checks[1].grpc",
        ),
        // Script checks parse (the registry decides whether they may run).
        (
            json!({"name": "web", "checks": [{"args": "/bin/true", "interval": "10s"}]}),
            "Checks[0].Args",
        ),
        (
            json!({"name": "web", "checks": [{"interval": "10s"}]}),
            "Checks[0]",
        ),
        (json!({"name": "web", "check": {"ttl": "0s"}}), "Check.TTL"),
        (
            json!({"name": "web", "check": {"ttl": "5s", "status": "fine"}}),
            "Check.Status",
        ),
        (
            json!({"name": "web", "checks": [{"id": "x", "ttl": "5s"}, {"id": "x", "ttl": "5s"}]}),
            "Checks",
        ),
        (json!({"name": "web", "checks": {"ttl": "5s"}}), "Checks"),
    ];
    for (body, field) in cases {
        let e = reg(body.clone()).expect_err(&format!("{body} should be refused"));
        let msg = e.to_string();
        assert_eq!(field_of(e), field, "{body}: {msg}");
    }
}

#[test]
fn short_intervals_are_raised_like_consul() {
    let r = reg(json!({"name": "w", "check": {"tcp": "h:1", "interval": "100ms"}})).unwrap();
    assert_eq!(r.checks[0].interval, Duration::from_secs(1));
}

#[test]
fn names_and_ids() {
    assert!(valid_service_name("tron-payment"));
    assert!(!valid_service_name(""));
    assert!(!valid_service_name("a.b"));
    assert!(valid_instance_id("Web_1:x"));
    assert!(!valid_instance_id(&"x".repeat(129)));
}

#[test]
fn consuls_names_kinds_proxies_tagged_addresses_and_sidecars_are_kept() {
    // Consul takes names that are no DNS label; the mesh's own names stay strict.
    let r = reg(json!({"name": "app#127.0.0.1#3000"})).unwrap();
    assert_eq!(r.instance.id, "app#127.0.0.1#3000");
    assert!(!valid_service_name("foo_tagged"));
    let r = reg(json!({"name": "foo_tagged", "tagged_addresses": {
        "lan": {"address": "10.10.10.1", "port": 8080}, "wan": {"address": "192.168.1.1", "port": 80}}}))
    .unwrap();
    let t = &r.instance.extras.tagged_addresses;
    assert_eq!(
        (t["lan"].address.as_str(), t["lan"].port),
        ("10.10.10.1", 8080)
    );
    let r = reg(
        json!({"name": "web-sidecar-proxy", "port": 21000, "Kind": "connect-proxy",
        "Proxy": {"destination_service_name": "web", "LocalServicePort": 8080},
        "Locality": {"Region": "us-west-1", "Zone": "us-west-1a"}}),
    )
    .unwrap();
    let x = &r.instance.extras;
    assert_eq!(x.kind, "connect-proxy");
    assert_eq!(x.proxy.as_ref().unwrap()["DestinationServiceName"], "web");
    assert_eq!(x.locality.as_ref().unwrap().zone, "us-west-1a");
    let body = json!({"name": "foo_connect", "port": 8080, "connect": {"sidecar_service": {}}});
    let parent = reg(body.clone()).unwrap();
    let side = parse_sidecar_service(&body, &parent.instance)
        .unwrap()
        .unwrap();
    assert_eq!(side.instance.id, "foo_connect-sidecar-proxy");
    assert_eq!(side.instance.extras.kind, "connect-proxy");
    let p = side.instance.extras.proxy.unwrap();
    assert_eq!(
        (
            p["DestinationServiceName"].as_str(),
            p["LocalServicePort"].as_u64()
        ),
        (Some("foo_connect"), Some(8080))
    );
    assert!(
        parse_sidecar_service(&json!({"name": "x"}), &parent.instance)
            .unwrap()
            .is_none()
    );
}
