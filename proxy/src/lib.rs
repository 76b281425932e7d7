//! lucid-proxy: the Lucid Mesh sidecar (DESIGN §11). This is the first slice: identity from
//! the registry's CA, registration with a TTL check, intentions and revocations followed with
//! blocking queries, mTLS inbound (authorised per request) and outbound (round-robin,
//! intended-peer check), and the admin `/ready`. Not yet: circuit breaking, rate limiting,
//! retries, pooling, rotation, `/stats`, `/clusters`, drain.
//!
//! # Layout
//! - [`config`] holds the flags.
//! - [`mesh`]: identity, registration, policy followers.
//! - [`inbound`], [`outbound`], [`admin`]: the three listeners.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod inbound;
pub mod mesh;
pub mod outbound;

use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::ProxyConfig;

/// The bound listeners.
pub struct Listeners {
    pub inbound: TcpListener,
    pub outbound: TcpListener,
    pub admin: TcpListener,
}

/// Run the sidecar until `shutdown`, then deregister.
pub async fn run(
    cfg: ProxyConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let inbound_addr = listeners.inbound.local_addr()?;
    let address = match cfg.address {
        Some(ip) => ip.to_string(),
        None if inbound_addr.ip().is_unspecified() => "127.0.0.1".to_owned(),
        None => inbound_addr.ip().to_string(),
    };
    tracing::info!("listening inbound {inbound_addr}");
    tracing::info!("listening outbound {}", listeners.outbound.local_addr()?);
    tracing::info!("listening admin {}", listeners.admin.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = watch::channel(None);
    let admin = tokio::spawn(admin::run(listeners.admin, ready_rx, stop_rx.clone()));
    let stop_for_signal = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_for_signal.send(true);
    });
    let mesh = match mesh::Mesh::start(cfg, inbound_addr.port(), address, stop_rx.clone()).await {
        Ok(m) => m,
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = admin.await;
            return Err(e);
        }
    };
    mesh.spawn_followers(stop_rx.clone());
    let inbound = tokio::spawn(inbound::run(
        listeners.inbound,
        mesh.clone(),
        stop_rx.clone(),
    ));
    let outbound = tokio::spawn(outbound::run(
        listeners.outbound,
        mesh.clone(),
        stop_rx.clone(),
    ));
    let _ = ready_tx.send(Some(mesh.clone()));
    tracing::info!(identity = %mesh.me, "ready");
    let mut stop = stop_rx.clone();
    let _ = stop.wait_for(|s| *s).await;
    mesh.deregister().await;
    let _ = tokio::join!(inbound, outbound, admin);
    Ok(())
}
