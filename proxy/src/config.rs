//! `lucid-proxy` flags (DESIGN §3), each also `LUCID_PROXY_<FLAG>`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Log output format (DESIGN §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// lucid-proxy: the Lucid Mesh sidecar.
#[derive(Debug, Clone, Parser)]
#[command(name = "lucid-proxy", version, about, long_about = None,
    after_help = "`lucid-proxy health [ADMIN_ADDR]` probes a running sidecar's /ready (default LUCID_PROXY_ADMIN_ADDR or 127.0.0.1:15000); exit 0 when ready.")]
pub struct ProxyConfig {
    /// This workload's service name.
    #[arg(long, env = "LUCID_PROXY_SERVICE")]
    pub service: String,
    /// The plane the service belongs to.
    #[arg(long, env = "LUCID_PROXY_PLANE", default_value = "default")]
    pub plane: String,
    /// The local application's port on 127.0.0.1.
    #[arg(long, env = "LUCID_PROXY_APP_PORT")]
    pub app_port: u16,
    /// The address peers reach this sidecar at (default: the inbound listener's IP, or when
    /// that is 0.0.0.0 the local IP that routes to the registry).
    #[arg(long, env = "LUCID_PROXY_ADDRESS")]
    pub address: Option<IpAddr>,
    /// Registry HTTP address (repeatable; tried in order).
    #[arg(
        long,
        env = "LUCID_PROXY_REGISTRY",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8500"
    )]
    pub registry: Vec<String>,
    /// ACL token (a service token for this service).
    #[arg(long, env = "LUCID_PROXY_TOKEN")]
    pub token: Option<String>,
    #[arg(
        long,
        env = "LUCID_PROXY_INBOUND_ADDR",
        default_value = "0.0.0.0:15001"
    )]
    pub inbound_addr: SocketAddr,
    #[arg(
        long,
        env = "LUCID_PROXY_OUTBOUND_ADDR",
        default_value = "127.0.0.1:15002"
    )]
    pub outbound_addr: SocketAddr,
    #[arg(
        long,
        env = "LUCID_PROXY_ADMIN_ADDR",
        default_value = "127.0.0.1:15000"
    )]
    pub admin_addr: SocketAddr,
    /// The application's health path, probed to keep the TTL check current.
    #[arg(long, env = "LUCID_PROXY_HEALTH_PATH", default_value = "/health")]
    pub health_path: String,
    #[arg(long = "tag", env = "LUCID_PROXY_TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// K=V (repeatable).
    #[arg(long = "meta", env = "LUCID_PROXY_META", value_delimiter = ',')]
    pub meta: Vec<String>,
    /// Runtime threads: 1 runs everything on one thread (no cross-thread wake-ups; the
    /// lowest latency and CPU per request on a small host), more spreads connections.
    #[arg(long, env = "LUCID_PROXY_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    #[arg(
        long,
        env = "LUCID_PROXY_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// On SIGTERM or `POST /drain`: how long in-flight requests get to finish.
    #[arg(long, env = "LUCID_PROXY_DRAIN_GRACE", default_value = "10s", value_parser = grace)]
    pub drain_grace: Duration,
}

fn grace(s: &str) -> Result<Duration, String> {
    let d = lucid_core::duration::parse_duration(s).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(3600) {
        return Err("at most 1h".to_owned());
    }
    Ok(d)
}
