//! WebSocket (HTTP/1.1 Upgrade) across two sidecars with the real `websockets` library
//! (issue 15): many echoes, a 1 MiB frame, ping/pong, the app's close code, and an intention
//! that denies the caller at the upgrade request.

use http::Method;
use serde_json::json;

use crate::py::{self, Server};
use crate::{registry, Sidecar};

#[tokio::test]
async fn websockets_cross_the_mesh_until_the_app_closes_and_intentions_apply() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let reg = registry(dir.path(), &[]).await?;
    let c = reg.client();
    let app = Server::python("ws_app.py", "ws", &["chat-1"])?;
    let b = Sidecar::spawn(&reg.http, "chat", "default", app.port, &[]).await?;
    let caller_port = py::free_port()?;
    let a = Sidecar::spawn(
        &reg.http,
        "web",
        "default",
        caller_port,
        &["--health-check", "none"],
    )
    .await?;

    let v = py::run_json("ws_client.py", &[&a.outbound, "chat", "echo"]).await?;
    assert_eq!(v["ok"], true, "{v}");
    // Both sidecars counted the upgrade.
    for sc in [&a, &b] {
        let (_, text) = sc.admin(Method::GET, "/stats/prometheus").await?;
        assert!(
            text.lines()
                .any(|l| l.starts_with("lucid_proxy_upgrades_total{") && l.ends_with(" 1")),
            "{text}"
        );
    }

    c.call(
        Method::PUT,
        "/v1/connect/intentions/exact?source=web&destination=chat",
        json!({"Action": "deny"}).to_string(),
    )
    .await?
    .error_for_status()?;
    let refused = lucid_tests::wait::until(
        "the deny reaches the sidecar",
        std::time::Duration::from_secs(10),
        || async {
            let v = py::run_json("ws_client.py", &[&a.outbound, "chat", "denied"]).await?;
            Ok((v["status"] == 403).then_some(v))
        },
    )
    .await?;
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("LUCID_ERR_1203"),
        "{refused}"
    );
    Ok(())
}
