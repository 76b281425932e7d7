use serde_json::json;

use super::*;

/// The platform's `planeIsolation` section (shared/fixtures/service-mesh-config.yaml) as JSON.
fn fixture() -> Value {
    json!({"enabled": true,
        "planes": {
            "ops": {"allowedClusters": ["api-gateway", "admin-interface", "session-management", "rdp-services", "node-management"]},
            "chain": {"allowedClusters": ["blockchain-core", "storage-database"]},
            "wallet": {"allowedClusters": ["tron-payment"]}},
        "policies": [
            {"name": "ops-to-chain-readonly", "source": "ops", "destination": "chain",
             "rules": [{"action": "allow", "methods": ["GET"]}]},
            {"name": "wallet-isolation", "source": "*", "destination": "wallet",
             "rules": [{"action": "deny", "except": [
                 {"source": "api-gateway", "methods": ["POST"], "paths": ["/api/v1/payments/*"]}]}]}]})
}

fn caller<'a>(policy: &'a PlanePolicy, service: &'a str) -> Caller<'a> {
    let plane = policy
        .planes
        .iter()
        .find(|(_, s)| s.iter().any(|x| x == service))
        .map(|(p, _)| p.as_str());
    Caller { service, plane }
}

#[test]
fn the_platform_policy_decides_as_the_platform_expects() {
    let p = from_plane_isolation(&fixture()).unwrap();
    assert_eq!(p.planes["chain"], ["blockchain-core", "storage-database"]);
    assert_eq!(p.intentions.len(), 3);
    let ok = |src: &str, dst: &str, m: &str, path: &str| {
        allowed(
            &p.intentions,
            caller(&p, src),
            caller(&p, dst),
            Some((m, path)),
            Action::Allow,
        )
        .0
    };
    assert!(ok("api-gateway", "blockchain-core", "GET", "/blocks/1"));
    assert!(!ok("api-gateway", "blockchain-core", "POST", "/blocks"));
    assert!(ok("admin-interface", "storage-database", "GET", "/"));
    assert!(ok(
        "api-gateway",
        "tron-payment",
        "POST",
        "/api/v1/payments/42"
    ));
    assert!(!ok(
        "api-gateway",
        "tron-payment",
        "GET",
        "/api/v1/payments/42"
    ));
    assert!(!ok(
        "api-gateway",
        "tron-payment",
        "POST",
        "/api/v1/refunds"
    ));
    assert!(!ok(
        "admin-interface",
        "tron-payment",
        "POST",
        "/api/v1/payments/42"
    ));
    assert!(!ok("blockchain-core", "tron-payment", "GET", "/"));
    // Not covered by any policy: the default decides.
    assert!(ok("blockchain-core", "api-gateway", "GET", "/"));
    assert!(
        !allowed(
            &p.intentions,
            caller(&p, "blockchain-core"),
            caller(&p, "api-gateway"),
            None,
            Action::Deny
        )
        .0
    );
}

#[test]
fn most_specific_wins() {
    let i = |src: &str, dst: &str, a: Action| Intention {
        id: String::new(),
        source: Party::parse(src).unwrap(),
        destination: Party::parse(dst).unwrap(),
        action: Some(a),
        permissions: vec![],
        description: String::new(),
    };
    let list = vec![
        i("*", "web", Action::Deny),
        i("plane:ops", "web", Action::Allow),
        i("api", "web", Action::Deny),
        i("*", "*", Action::Allow),
    ];
    let c = |s| Caller {
        service: s,
        plane: Some("ops"),
    };
    assert!(
        !allowed(&list, c("api"), c("web"), None, Action::Allow).0,
        "service beats plane"
    );
    assert!(
        allowed(&list, c("admin"), c("web"), None, Action::Deny).0,
        "plane beats *"
    );
    let other = Caller {
        service: "x",
        plane: Some("chain"),
    };
    assert!(
        !allowed(&list, other, c("web"), None, Action::Allow).0,
        "* -> web beats * -> *"
    );
    assert!(allowed(&list, other, c("db"), None, Action::Deny).0);
}

#[test]
fn bodies_are_validated() {
    let ok = parse_intention(
        &json!({"SourceName": "web", "DestinationName": "plane:chain",
        "Permissions": [{"Action": "allow", "HTTP": {"Methods": ["get"], "PathPrefix": "/api/"}}]}),
        "1".into(),
    )
    .unwrap();
    assert_eq!(ok.permissions[0].methods, ["GET"]);
    for v in [
        json!({"SourceName": "web"}),
        json!({"SourceName": "web", "DestinationName": "db"}),
        json!({"SourceName": "Web!", "DestinationName": "db", "Action": "allow"}),
        json!({"SourceName": "web", "DestinationName": "plane:", "Action": "allow"}),
        json!({"SourceName": "web", "DestinationName": "db", "Action": "maybe"}),
        json!({"SourceName": "web", "DestinationName": "db", "Action": "allow", "Permissions": [{"Action": "deny"}]}),
        json!({"SourceName": "web", "DestinationName": "db", "Permissions": [{"Action": "allow", "HTTP": {"Methods": ["FETCH"]}}]}),
        json!({"SourceName": "web", "DestinationName": "db", "Permissions": [{"Action": "allow", "HTTP": {"PathExact": "x"}}]}),
        json!({"SourceName": "web", "DestinationName": "db", "Action": "allow", "Bogus": 1}),
    ] {
        assert!(parse_intention(&v, "1".into()).is_err(), "{v}");
    }
    assert!(from_plane_isolation(&json!({"policies": [{"source": "nowhere!", "destination": "*", "rules": [{"action": "allow"}]}]})).is_err());
    assert!(from_plane_isolation(
        &json!({"policies": [{"source": "*", "destination": "*", "rules": []}]})
    )
    .is_err());
}
