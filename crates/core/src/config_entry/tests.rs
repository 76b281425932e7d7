use serde_json::json;

use super::*;

#[test]
fn partial_blocks_are_completed_with_defaults() {
    let e = parse_entry(
        &json!({"Kind": "service-defaults", "Name": "blockchain-core",
        "CircuitBreaker": {"FailureThreshold": 3, "RecoveryTimeout": "60s", "Timeout": "10s",
                           "ErrorTypes": ["5xx", "timeout"]}}),
    )
    .unwrap();
    let cb = e.circuit_breaker.clone().unwrap();
    assert_eq!(cb.failure_threshold, 3);
    assert_eq!(cb.recovery_timeout, Duration::from_secs(60));
    assert_eq!(cb.half_open_max_calls, 3);
    assert_eq!(cb.success_threshold, 3);
    assert_eq!(cb.error_types, ["5xx", "timeout"]);
    // Stored form round-trips, durations as strings.
    let stored = serde_json::to_value(&e).unwrap();
    assert_eq!(stored["CircuitBreaker"]["RecoveryTimeout"], "1m");
    assert_eq!(serde_json::from_value::<ConfigEntry>(stored).unwrap(), e);
}

#[test]
fn keys_follow_consul_rules_and_platform_error_kinds_are_kept() {
    let e = parse_entry(&json!({"kind": "service-defaults", "name": "tron-payment",
        "circuit_breaker": {"failure_threshold": 10, "timeout": 15_000_000_000u64,
                            "error_types": ["5xx", "timeout", "payment-error"]},
        "rate_limit": {"requests_per_second": 50, "burst": 100},
        "load_balancer": {"policy": "least-request"}}))
    .unwrap();
    let cb = e.circuit_breaker.unwrap();
    assert_eq!(cb.timeout, Duration::from_secs(15));
    assert_eq!(cb.error_types, ["5xx", "timeout", "payment-error"]);
    assert_eq!(e.rate_limit.unwrap().burst, 100);
    assert_eq!(e.load_balancer.unwrap().policy, LbPolicy::LeastRequest);
}

#[test]
fn bad_circuit_breakers_are_1202_and_other_traffic_settings_1201() {
    let cb = |v: serde_json::Value| {
        parse_entry(&json!({"Kind": "service-defaults", "Name": "web", "CircuitBreaker": v}))
    };
    for v in [
        json!({"FailureThreshold": 0}),
        json!({"HalfOpenMaxCalls": 0}),
        json!({"RecoveryTimeout": "0s"}),
        json!({"Timeout": "2h"}),
        json!({"ErrorTypes": []}),
        json!({"ErrorTypes": ["Bad Type"]}),
        json!({"SuccessThreshold": 5, "HalfOpenMaxCalls": 2}),
        json!({"Unknown": 1}),
    ] {
        assert!(
            matches!(cb(v.clone()), Err(EntryError::CircuitBreaker(_))),
            "{v}"
        );
    }
    // Wrong JSON types are malformed input rather than a bad breaker.
    assert!(matches!(
        cb(json!({"FailureThreshold": "x"})),
        Err(EntryError::Invalid(_))
    ));
    let entry = |k: &str, v: serde_json::Value| {
        parse_entry(&json!({"Kind": "service-defaults", "Name": "web", k: v}))
    };
    for (k, v) in [
        ("RateLimit", json!({"RequestsPerSecond": 0})),
        ("RateLimit", json!({"Burst": 0})),
        ("Retry", json!({"Attempts": 11})),
        ("Retry", json!({"On": ["sometimes"]})),
        ("LoadBalancer", json!({"Policy": "fastest"})),
    ] {
        assert!(
            matches!(entry(k, v.clone()), Err(EntryError::Traffic(_))),
            "{k} {v}"
        );
    }
}

#[test]
fn kinds_names_and_unknown_fields() {
    for v in [
        json!({"Kind": "service-router", "Name": "web"}),
        json!({"Kind": "service-defaults"}),
        json!({"Kind": "service-defaults", "Name": "Web"}),
        json!({"Kind": "proxy-defaults", "Name": "web"}),
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "udp"}),
        json!({"Kind": "service-defaults", "Name": "web", "Bogus": true}),
        json!([1]),
    ] {
        assert!(
            matches!(parse_entry(&v), Err(EntryError::Invalid(_))),
            "{v}"
        );
    }
    assert!(parse_entry(&json!({"Kind": "proxy-defaults", "Name": "global"})).is_ok());
}

#[test]
fn resolution_prefers_the_service_then_global_then_defaults() {
    let global = parse_entry(&json!({"Kind": "proxy-defaults", "Name": "global",
        "CircuitBreaker": {"FailureThreshold": 7}, "Retry": {"Attempts": 3}}))
    .unwrap();
    let svc = parse_entry(&json!({"Kind": "service-defaults", "Name": "web",
        "CircuitBreaker": {"FailureThreshold": 2}}))
    .unwrap();
    let r = Resolved::of(Some(&svc), Some(&global));
    assert_eq!(r.circuit_breaker.failure_threshold, 2);
    assert_eq!(r.retry.attempts, 3);
    assert_eq!(r.rate_limit, RateLimit::default());
    let r = Resolved::of(None, None);
    assert_eq!(r, Resolved::default());
}

#[test]
fn the_platform_circuit_breaker_file_becomes_valid_entries() {
    // shared/fixtures/circuit_breaker.yaml, as JSON.
    let doc = json!({"CircuitBreakerConfiguration": {
        "defaultConfig": {"failureThreshold": 5, "recoveryTimeout": 30, "halfOpenMaxCalls": 3,
            "successThreshold": 3, "timeout": 5000, "errorTypes": ["5xx", "timeout", "connection-error"]},
        "serviceSpecific": {
            "blockchain-core": {"failureThreshold": 3, "recoveryTimeout": 60, "timeout": 10000, "errorTypes": ["5xx", "timeout"]},
            "tron-payment-service": {"failureThreshold": 10, "recoveryTimeout": 30, "timeout": 15000,
                "errorTypes": ["5xx", "timeout", "payment-error"]},
            "session-recorder": {"failureThreshold": 5, "recoveryTimeout": 45, "timeout": 8000}}}});
    let bodies = from_platform_circuit_breakers(&doc).unwrap();
    assert_eq!(bodies.len(), 4);
    let entries: Vec<ConfigEntry> = bodies.iter().map(|b| parse_entry(b).unwrap()).collect();
    assert_eq!(entries[0].kind, ConfigKind::ProxyDefaults);
    assert_eq!(entries[0].circuit_breaker, Some(CircuitBreaker::default()));
    let core = entries
        .iter()
        .find(|e| e.name == "blockchain-core")
        .unwrap()
        .circuit_breaker
        .clone()
        .unwrap();
    assert_eq!(core.failure_threshold, 3);
    assert_eq!(core.recovery_timeout, Duration::from_secs(60));
    assert_eq!(core.timeout, Duration::from_secs(10));
    assert_eq!(core.half_open_max_calls, 3, "from defaultConfig");
    let rec = entries
        .iter()
        .find(|e| e.name == "session-recorder")
        .unwrap()
        .circuit_breaker
        .clone()
        .unwrap();
    assert_eq!(
        rec.error_types,
        ["5xx", "timeout", "connection-error"],
        "from defaultConfig"
    );
    assert!(from_platform_circuit_breakers(&json!({"defaultConfig": {"bogus": 1}})).is_err());
}
