//! Traffic policy from config entries, end to end: the inbound rate limit, the outbound
//! circuit breaker through all its states, and retries (GET on another endpoint, never POST).

use std::time::Duration;

use http::{Method, StatusCode};
use lucid_tests::wait;
use serde_json::{json, Value};

use crate::{pair, registry, service_defaults, via, App, Pair, Sidecar};

/// Wait until `sc` has read the entry for `service` (its `/config_dump` shows it).
async fn sees_entry(sc: &Sidecar, service: &str, field: &str) -> anyhow::Result<()> {
    wait::until(
        "the config entry at the sidecar",
        Duration::from_secs(10),
        || async {
            let (_, dump) = sc.admin(Method::GET, "/config_dump").await?;
            let v: Value = serde_json::from_str(&dump)?;
            Ok(v["config_entries"]["service_defaults"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["Name"] == service && !e[field].is_null())
                .then_some(()))
        },
    )
    .await
}

#[tokio::test]
async fn the_inbound_rate_limit_answers_429_beyond_the_burst() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let Pair {
        app_a: _app_a,
        app_b,
        a,
        b,
    } = pair(&reg.http).await?;
    service_defaults(
        &reg.client(),
        json!({"Name": "ledger", "RateLimit": {"RequestsPerSecond": 2, "Burst": 10}}),
    )
    .await?;
    sees_entry(&b, "ledger", "RateLimit").await?;
    let (ok, limited) = {
        let calls = (0..40).map(|_| via(&a, Method::GET, "ledger", "/"));
        let answers = futures_util::future::join_all(calls).await;
        let mut ok = 0;
        let mut limited = 0;
        for r in answers {
            let r = r?;
            match r.status {
                StatusCode::OK => ok += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert_eq!(r.code(), Some("LUCID_ERR_1201"));
                    limited += 1
                }
                s => anyhow::bail!("unexpected {s}: {}", r.body),
            }
        }
        (ok, limited)
    };
    // The burst (10) plus what refilled during the run (2/s).
    assert!((10..=14).contains(&ok), "{ok} admitted, {limited} limited");
    assert_eq!(ok + limited, 40);
    assert_eq!(app_b.requests().await?, ok);
    let (_, stats) = b.admin(Method::GET, "/stats").await?;
    assert!(
        stats.contains(&format!("inbound.rq_rate_limited: {limited}")),
        "{stats}"
    );
    let (_, prom) = b.admin(Method::GET, "/stats/prometheus").await?;
    assert!(
        prom.contains(&format!("lucid_proxy_rate_limited_total {limited}")),
        "{prom}"
    );
    // Admitted requests keep flowing at the configured rate.
    wait::until("a token again", Duration::from_secs(5), || async {
        Ok((via(&a, Method::GET, "ledger", "/").await?.status == StatusCode::OK).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_circuit_opens_fails_fast_half_opens_and_closes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let Pair {
        app_a: _app_a,
        app_b,
        a,
        b: _b,
    } = pair(&reg.http).await?;
    service_defaults(
        &reg.client(),
        json!({"Name": "ledger",
            "CircuitBreaker": {"FailureThreshold": 3, "RecoveryTimeout": "2s", "HalfOpenMaxCalls": 2,
                "SuccessThreshold": 2, "Timeout": "5s", "ErrorTypes": ["5xx"]},
            "Retry": {"Attempts": 0}}),
    )
    .await?;
    sees_entry(&a, "ledger", "CircuitBreaker").await?;
    let circuit = || async {
        let eps = a.endpoints("ledger").await?;
        anyhow::Ok(eps[0]["circuit"].as_str().unwrap_or_default().to_owned())
    };

    assert_eq!(
        via(&a, Method::GET, "ledger", "/").await?.status,
        StatusCode::OK
    );
    assert_eq!(circuit().await?, "closed");
    // B fails: three 5xx in a row open the circuit.
    app_b.control(json!({"status": 500})).await?;
    for i in 0..3 {
        let r = via(&a, Method::GET, "ledger", "/").await?;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "try {i}");
        assert_eq!(r.code(), None, "the app's own answer is passed on");
    }
    assert_eq!(circuit().await?, "open");
    // Open: refused by the caller's sidecar at once; B never sees it.
    let before = app_b.requests().await?;
    for _ in 0..5 {
        let r = via(&a, Method::GET, "ledger", "/").await?;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("LUCID_ERR_1104")),
            "{}",
            r.body
        );
    }
    assert_eq!(app_b.requests().await?, before);
    // After RecoveryTimeout: half-open, exactly HalfOpenMaxCalls probes go through. Nothing
    // reads /clusters meanwhile: the step to half-open is taken by the requests themselves,
    // and must be counted all the same.
    app_b.control(json!({"delay_ms": 1000})).await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let answers =
        futures_util::future::join_all((0..4).map(|_| via(&a, Method::GET, "ledger", "/slow")))
            .await;
    let statuses: Vec<StatusCode> = answers
        .into_iter()
        .map(|r| r.map(|r| r.status))
        .collect::<anyhow::Result<_>>()?;
    let through = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!((through, refused), (2, 2), "{statuses:?}");
    // Both probes succeeded (SuccessThreshold 2): closed again.
    assert_eq!(circuit().await?, "closed");
    assert_eq!(
        via(&a, Method::GET, "ledger", "/").await?.status,
        StatusCode::OK
    );
    let (_, prom) = a.admin(Method::GET, "/stats/prometheus").await?;
    for to in ["open", "half_open", "closed"] {
        assert!(
            prom.contains(&format!("to=\"{to}\"")),
            "transition to {to} not counted:\n{prom}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_failed_get_is_retried_on_another_endpoint_and_a_post_is_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let app_a = App::spawn("a")?;
    let (b1, b2) = (App::spawn("b1")?, App::spawn("b2")?);
    let a = Sidecar::spawn(&reg.http, "web", "default", app_a.port, &[]).await?;
    let _s1 = Sidecar::spawn(&reg.http, "ledger", "default", b1.port, &[]).await?;
    let _s2 = Sidecar::spawn(&reg.http, "ledger", "default", b2.port, &[]).await?;
    // Keep the breaker out of the way: this is about retries.
    service_defaults(
        &reg.client(),
        json!({"Name": "ledger", "CircuitBreaker": {"FailureThreshold": 1000},
            "Retry": {"Attempts": 1, "On": ["5xx", "connect-failure"]}}),
    )
    .await?;
    sees_entry(&a, "ledger", "Retry").await?;
    wait::until("both endpoints known", Duration::from_secs(10), || async {
        via(&a, Method::GET, "ledger", "/").await?;
        Ok((a.endpoints("ledger").await?.len() == 2).then_some(()))
    })
    .await?;
    b1.control(json!({"status": 503})).await?;
    let before = b1.requests().await?;
    for i in 0..10 {
        let r = via(&a, Method::GET, "ledger", &format!("/get/{i}")).await?;
        assert_eq!(r.status, StatusCode::OK, "GET {i}: {}", r.body);
        assert_eq!(r.body["app"], "b2");
    }
    let failed_on_b1 = b1.requests().await? - before;
    assert!(
        failed_on_b1 >= 3,
        "round-robin sent GETs to b1 first: {failed_on_b1}"
    );
    let (_, stats) = a.admin(Method::GET, "/stats").await?;
    assert!(
        stats.contains(&format!("cluster.ledger.upstream_rq_retry: {failed_on_b1}")),
        "{stats}"
    );
    // POSTs are not retried: those that land on b1 come back as b1's 503.
    let before = b1.requests().await?;
    let mut failed = 0;
    for i in 0..10 {
        let r = via(&a, Method::POST, "ledger", &format!("/post/{i}")).await?;
        match r.status {
            StatusCode::OK => assert_eq!(r.body["app"], "b2"),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.code(), None, "b1's own answer: {}", r.body);
                failed += 1;
            }
            s => anyhow::bail!("POST {i}: {s} {}", r.body),
        }
    }
    assert!(failed >= 3, "{failed}");
    assert_eq!(
        b1.requests().await? - before,
        failed,
        "each failed POST was sent once"
    );
    Ok(())
}

#[tokio::test]
async fn a_request_past_its_timeout_gets_504_and_the_app_can_flag_its_own_errors(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let Pair {
        app_a: _app_a,
        app_b: _app_b,
        a,
        b: _b,
    } = pair(&reg.http).await?;
    service_defaults(
        &reg.client(),
        json!({"Name": "ledger",
            "CircuitBreaker": {"FailureThreshold": 2, "RecoveryTimeout": "60s", "Timeout": "1s",
                "ErrorTypes": ["timeout", "payment-error"]},
            "Retry": {"Attempts": 0}}),
    )
    .await?;
    sees_entry(&a, "ledger", "CircuitBreaker").await?;
    let r = via(&a, Method::GET, "ledger", "/?delay_ms=3000").await?;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::GATEWAY_TIMEOUT, Some("LUCID_ERR_1305")),
        "{}",
        r.body
    );
    // 5xx is not among this service's ErrorTypes: the circuit stays closed.
    for _ in 0..3 {
        let r = via(&a, Method::GET, "ledger", "/?status=500").await?;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(a.endpoints("ledger").await?[0]["circuit"], "closed");
    // The app flags a payment error (x-lucid-error-type), then another timeout: two
    // failures in a row under this service's ErrorTypes open the circuit.
    let r = via(
        &a,
        Method::GET,
        "ledger",
        "/?status=402&error_type=payment-error",
    )
    .await?;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(a.endpoints("ledger").await?[0]["circuit"], "closed");
    let r = via(&a, Method::GET, "ledger", "/?delay_ms=3000").await?;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(a.endpoints("ledger").await?[0]["circuit"], "open");
    Ok(())
}
