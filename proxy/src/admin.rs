//! Admin (127.0.0.1:15000): `/ready` (200 once the identity, registration and policy are in
//! place), `/live`, `/certs` (serial and identity, never the key).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::mesh::Mesh;

/// What the admin port can see: the mesh once started.
pub type Ready = watch::Receiver<Option<Arc<Mesh>>>;

pub async fn run(
    listener: TcpListener,
    ready: Ready,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/live", get(|| async { "live" }))
        .route(
            "/ready",
            get(|State(r): State<Ready>| async move {
                match r.borrow().as_ref() {
                    Some(_) => (StatusCode::OK, "ready"),
                    None => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
                }
            }),
        )
        .route(
            "/certs",
            get(|State(r): State<Ready>| async move {
                let m = r.borrow().clone();
                match m {
                    Some(m) => (
                        StatusCode::OK,
                        Json(json!({"identity": m.me.to_string(), "serial": m.identity.serial()})),
                    ),
                    None => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(json!({"identity": null})),
                    ),
                }
            }),
        )
        .with_state(ready);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await?;
    Ok(())
}
