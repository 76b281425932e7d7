//! `lucid-proxy` flags (DESIGN §3), each also `LUCID_PROXY_<FLAG>`, and `--config FILE`: the
//! same settings as TOML keys (`app_port = 8080`, `registry = ["http://..."]`), read by
//! `lucid_runtime::config`. Precedence: flags, then environment, then the file, then
//! defaults. Unknown keys are an error.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
pub use lucid_runtime::config::ConfigError;
use lucid_runtime::logging::LogFormat;

/// lucid-proxy: the Lucid Mesh sidecar.
#[derive(Debug, Clone, Parser)]
#[command(name = "lucid-proxy", version, about, long_about = None, args_override_self = true,
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
    /// CA certificate (PEM) that `https://` registries' certificates must chain to (else
    /// LUCID_CACERT).
    #[arg(long, env = "LUCID_PROXY_REGISTRY_CA")]
    pub registry_ca: Option<PathBuf>,
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
    /// A TOML file with any of these settings (keys are the flag names with `_`).
    #[arg(long, env = "LUCID_PROXY_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(
        long,
        env = "LUCID_PROXY_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// A secret that admin write endpoints (`POST /drain`) require over TCP, as
    /// `Authorization: Bearer <token>` or `X-Lucid-Admin-Token`. Without it (and without
    /// `--admin-socket`) they are refused; prefer the environment or the file to a flag,
    /// which other local users can read in the process list.
    #[arg(long, env = "LUCID_PROXY_ADMIN_TOKEN", hide_env_values = true, value_parser = admin_token)]
    pub admin_token: Option<String>,
    /// Also serve the admin endpoints on this unix socket, created mode 0600: its file
    /// permission is the credential, so writes over it need no token.
    #[arg(long, env = "LUCID_PROXY_ADMIN_SOCKET")]
    pub admin_socket: Option<PathBuf>,
    /// Connections each listener (inbound, outbound, admin) holds at once; past it a new one
    /// is closed at once, logged and counted. Default: half the file descriptors left after
    /// a reserve of 256 (the soft limit is raised to the hard one first).
    #[arg(long, env = "LUCID_PROXY_MAX_CONNECTIONS", value_parser = lucid_runtime::config::positive_count)]
    pub max_connections: Option<usize>,
    /// ... of which from one peer address (default 256).
    #[arg(long, env = "LUCID_PROXY_MAX_CONNECTIONS_PER_IP", value_parser = lucid_runtime::config::positive_count)]
    pub max_connections_per_ip: Option<usize>,
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

fn admin_token(s: &str) -> Result<String, String> {
    // An empty or blank token would be matched by an empty `Authorization: Bearer `.
    if s.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(s.to_owned())
}

impl ProxyConfig {
    /// Parse flags, environment and `--config FILE` (`lucid_runtime::config`).
    pub fn load(args: Vec<OsString>) -> Result<ProxyConfig, ConfigError> {
        lucid_runtime::config::load(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("lucid-proxy")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn a_file_supplies_settings_and_flags_override_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("p.toml");
        std::fs::write(
            &f,
            "service = \"web\"\napp_port = 8080\nregistry = [\"http://a:8500\", \"http://b:8500\"]\ndrain_grace = \"3s\"\n",
        )
        .expect("write");
        let path = f.to_str().expect("utf-8");
        let c = ProxyConfig::load(args(&["--config", path, "--app-port", "9090"])).expect("load");
        assert_eq!(c.service, "web");
        assert_eq!(c.app_port, 9090, "the flag wins");
        assert_eq!(c.registry, ["http://a:8500", "http://b:8500"]);
        let c =
            ProxyConfig::load(args(&["--config", path, "--registry=http://c:8500"])).expect("load");
        assert_eq!(
            c.registry,
            ["http://c:8500"],
            "a list flag replaces the file's list"
        );
        assert_eq!(c.drain_grace, Duration::from_secs(3));
        std::fs::write(
            &f,
            "service = \"web\"\napp_port = 1\nadmin_token = \"t0k\"\nadmin_socket = \"/run/a.sock\"\n",
        )
        .expect("write");
        let c = ProxyConfig::load(args(&["--config", path])).expect("load");
        assert_eq!(c.admin_token.as_deref(), Some("t0k"));
        assert_eq!(c.admin_socket, Some(PathBuf::from("/run/a.sock")));
        let err = ProxyConfig::load(args(&["--service=web", "--app-port=1", "--admin-token="]))
            .expect_err("empty token");
        assert!(err.to_string().contains("admin-token"), "{err}");
        std::fs::write(&f, "service = \"web\"\napp_prot = 8080\n").expect("write");
        let err = ProxyConfig::load(args(&["--config", path])).expect_err("unknown key");
        assert!(err.to_string().contains("app_prot"), "{err}");
    }
}
