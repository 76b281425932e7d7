//! A sidecar's life: starting while the registry is down, serving from its last known state
//! when the registry goes away, rotating its certificate (on schedule and at once when
//! revoked, its own or its caller's) under load, and draining (POST /drain, SIGTERM) under load without failures.

use std::time::Duration;

use http::{Method, StatusCode};
use lucid_tests::registry::RegistryProc;
use lucid_tests::wait;
use serde_json::Value;

use crate::{pair, registry, via, wait_root, App, Load, Pair, Sidecar};

#[tokio::test]
async fn a_sidecar_waits_for_the_registry_and_survives_losing_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut reg = registry(dir.path(), &[]).await?;
    let (app_a, app_b) = (App::spawn("a")?, App::spawn("b")?);
    let _b = Sidecar::spawn(&reg.http, "ledger", "default", app_b.port, &[]).await?;
    // The registry goes away before A starts: A keeps trying and is not ready.
    let spec = reg.restart_spec();
    reg.kill9();
    let a = Sidecar::start(&reg.http, "web", "default", app_a.port, &[])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (st, body) = a.admin(Method::GET, "/ready").await?;
    assert_eq!(
        (st, body.trim()),
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    );
    // Back on the same address: A becomes ready and reaches B.
    let reg = RegistryProc::spawn(spec)?;
    wait_root(&reg.client()).await?;
    a.wait_ready(Duration::from_secs(30)).await?;
    let r = via(&a, Method::GET, "ledger", "/").await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Gone again: both sidecars keep serving from what they know.
    drop(reg);
    for i in 0..5 {
        let r = via(&a, Method::GET, "ledger", &format!("/{i}")).await?;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let (st, _) = a.admin(Method::GET, "/ready").await?;
    assert_eq!(st, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn certificates_rotate_under_load_without_a_failed_request() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // One-minute leaves (the shortest allowed): due for rotation 12-48 s after issue.
    let reg = registry(dir.path(), &["--leaf-ttl", "1m"]).await?;
    let Pair {
        app_a: _app_a,
        app_b: _app_b,
        a,
        b,
    } = pair(&reg.http).await?;
    let (a_serial, _) = a.cert().await?;
    let (b_serial, _) = b.cert().await?;
    let load = Load::start(&a.outbound, "ledger", "/", 4, Duration::from_millis(10));
    wait::until("both sidecars rotated", Duration::from_secs(70), || async {
        Ok((a.cert().await?.1 >= 1 && b.cert().await?.1 >= 1).then_some(()))
    })
    .await?;
    assert_ne!(a.cert().await?.0, a_serial);
    assert_ne!(b.cert().await?.0, b_serial);
    // Revoking A's current certificate makes it rotate at once.
    revoke_and_wait_for_rotation(&reg, &a, "A rotated after revocation").await?;
    // New connections use the new certificate: B accepts them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed, first) = load.finish().await;
    assert_eq!(failed, 0, "{failed} failed of {}: {first:?}", ok + failed);
    assert!(ok > 100, "{ok}");
    let v: Value = serde_json::from_str(&a.admin(Method::GET, "/certs").await?.1)?;
    assert!(v["expires_in_seconds"].as_i64().unwrap() > 0);
    Ok(())
}

#[tokio::test]
async fn draining_under_load_fails_no_request() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let c = reg.client();
    let app_a = App::spawn("a")?;
    let (app_b1, app_b2) = (App::spawn("b1")?, App::spawn("b2")?);
    // Every answer takes 50 ms, so requests are always in flight.
    app_b1.control(serde_json::json!({"delay_ms": 50})).await?;
    app_b2.control(serde_json::json!({"delay_ms": 50})).await?;
    let mut a = Sidecar::spawn(&reg.http, "web", "default", app_a.port, &[]).await?;
    let mut b1 = Sidecar::spawn(&reg.http, "ledger", "default", app_b1.port, &[]).await?;
    let b2 = Sidecar::spawn(
        &reg.http,
        "ledger",
        "default",
        app_b2.port,
        &["--admin-token", "lifecycle-drain"],
    )
    .await?;
    let instances = || async {
        let v: Vec<Value> = c
            .call(Method::GET, "/v1/health/service/ledger", "")
            .await?
            .json()?;
        anyhow::Ok(v.len())
    };
    wait::until("A knows both", Duration::from_secs(10), || async {
        via(&a, Method::GET, "ledger", "/").await?;
        Ok((a.endpoints("ledger").await?.len() == 2).then_some(()))
    })
    .await?;

    // SIGTERM to one of two instances under load.
    let load = Load::start(&a.outbound, "ledger", "/", 8, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b1_before = app_b1.requests().await?;
    b1.sigterm()?;
    let st = tokio::task::spawn_blocking(move || {
        let st = b1.wait_exit(Duration::from_secs(15));
        (b1, st)
    })
    .await?;
    let (b1, status) = st;
    assert!(status?.success(), "exit 0 after draining:\n{}", b1.log());
    assert!(b1.log().contains("deregistered"), "{}", b1.log());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed, first) = load.finish().await;
    assert_eq!(failed, 0, "{failed} failed of {}: {first:?}", ok + failed);
    assert!(b1_before > 0, "b1 was in rotation when it got SIGTERM");
    assert_eq!(instances().await?, 1);

    // POST /drain on the other: not ready, deregistered, listeners closed; process stays.
    let (st, _) = b2
        .admin_with(
            Method::POST,
            "/drain",
            &[("authorization", "Bearer lifecycle-drain")],
        )
        .await?;
    assert_eq!(st, StatusCode::ACCEPTED);
    wait::until("b2 deregistered", Duration::from_secs(10), || async {
        Ok((instances().await? == 0).then_some(()))
    })
    .await?;
    // Drained, not merely unstarted (which also answers 503, with "starting").
    let (st, body) = b2.admin(Method::GET, "/ready").await?;
    assert_eq!(
        (st, body.trim()),
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    );
    assert_eq!(b2.admin(Method::GET, "/live").await?.0, StatusCode::OK);
    wait::until("b2's inbound closed", Duration::from_secs(10), || async {
        Ok(tokio::net::TcpStream::connect(&b2.inbound)
            .await
            .is_err()
            .then_some(()))
    })
    .await?;

    // SIGTERM to the caller's sidecar with slow requests in flight: they finish.
    app_b1.control(serde_json::json!({"delay_ms": 0})).await?;
    let _b3 = Sidecar::spawn(&reg.http, "ledger", "default", app_b1.port, &[]).await?;
    wait::until(
        "A sees the new instance",
        Duration::from_secs(10),
        || async {
            Ok((via(&a, Method::GET, "ledger", "/").await?.status == StatusCode::OK).then_some(()))
        },
    )
    .await?;
    app_b1
        .control(serde_json::json!({"delay_ms": 1500}))
        .await?;
    let slow: Vec<_> = (0..5)
        .map(|i| {
            let out = a.outbound.clone();
            tokio::spawn(async move {
                crate::via_addr(&out, Method::GET, "ledger", &format!("/slow/{i}")).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.sigterm()?;
    for s in slow {
        let r = s.await??;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let status =
        tokio::task::spawn_blocking(move || a.wait_exit(Duration::from_secs(15))).await??;
    assert!(status.success());
    Ok(())
}

/// Revoking the caller's certificate makes the callee close its connections (GOAWAY) and
/// refuse the revoked certificate; the caller re-dials, often before its own rotation is done.
/// In TLS 1.3 such a request is sent before the refusal arrives: it must be sent again after
/// the rotation, not failed.
#[tokio::test]
async fn revoking_the_callers_certificate_under_load_fails_no_request() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let Pair {
        app_a: _app_a,
        app_b: _app_b,
        a,
        b: _b,
    } = pair(&reg.http).await?;
    let load = Load::start(&a.outbound, "ledger", "/", 8, Duration::ZERO);
    for round in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        revoke_and_wait_for_rotation(&reg, &a, &format!("A rotated after revocation {round}"))
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed, first) = load.finish().await;
    assert_eq!(failed, 0, "{failed} failed of {}: {first:?}", ok + failed);
    assert!(ok > 100, "{ok}");
    Ok(())
}

/// Revoke the sidecar's current certificate and wait until it has rotated to a new one.
async fn revoke_and_wait_for_rotation(
    reg: &RegistryProc,
    sidecar: &Sidecar,
    what: &str,
) -> anyhow::Result<()> {
    let (current, rotations) = sidecar.cert().await?;
    reg.client()
        .call(
            Method::DELETE,
            &format!("/v1/connect/ca/certs/{current}"),
            "",
        )
        .await?
        .error_for_status()?;
    wait::until(what, Duration::from_secs(10), || async {
        Ok((sidecar.cert().await?.1 > rotations).then_some(()))
    })
    .await
}
