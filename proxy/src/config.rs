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
    /// How the inbound side talks to the app: `auto` in the HTTP version the caller used
    /// (h2c when it spoke HTTP/2), `http1`, `http2` (h2c; also `grpc`), or `tcp` (peers'
    /// connections from `--upstream` listeners are forwarded as bytes). The `Protocol` of
    /// the service's `service-defaults` entry wins when set.
    #[arg(
        long,
        env = "LUCID_PROXY_APP_PROTOCOL",
        value_enum,
        default_value = "auto"
    )]
    pub app_protocol: AppProtocol,
    /// How the app's health is probed to keep the instance's TTL check current: `http` (GET
    /// `--health-path`), `grpc` (`grpc.health.v1.Health/Check` on the app port), `tcp` (a
    /// connection), `none` (passing while the sidecar itself is ready). Default: `http`, or
    /// `tcp` for a service whose protocol is `tcp` (an HTTP GET would only fail there).
    #[arg(long, env = "LUCID_PROXY_HEALTH_CHECK", value_enum)]
    pub health_check: Option<HealthCheck>,
    /// The service name `--health-check grpc` asks about ("" = the server as a whole).
    #[arg(long, env = "LUCID_PROXY_HEALTH_GRPC_SERVICE", default_value = "")]
    pub health_grpc_service: String,
    /// SERVICE=ADDR:PORT (repeatable): listen on ADDR:PORT and forward each connection over
    /// mTLS to a healthy instance of SERVICE (Consul Connect's upstream `LocalBindPort`).
    #[arg(long = "upstream", env = "LUCID_PROXY_UPSTREAM", value_delimiter = ',', value_parser = upstream)]
    pub upstreams: Vec<Upstream>,
    /// A TCP connection (upstream or inbound) with no byte either way for this long is closed.
    #[arg(long, env = "LUCID_PROXY_TCP_IDLE_TIMEOUT", default_value = "1h", value_parser = idle)]
    pub tcp_idle_timeout: Duration,
}

/// `--app-protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AppProtocol {
    Auto,
    Http1,
    Http2,
    Grpc,
    Tcp,
}

impl AppProtocol {
    /// A `service-defaults` `Protocol` (Consul's names), which wins over the flag.
    pub fn from_entry(p: &str) -> Option<AppProtocol> {
        match p {
            "http" => Some(AppProtocol::Http1),
            "http2" => Some(AppProtocol::Http2),
            "grpc" => Some(AppProtocol::Grpc),
            "tcp" => Some(AppProtocol::Tcp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Auto => "auto",
            AppProtocol::Http1 => "http1",
            AppProtocol::Http2 => "http2",
            AppProtocol::Grpc => "grpc",
            AppProtocol::Tcp => "tcp",
        }
    }
}

/// `--health-check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HealthCheck {
    Http,
    Grpc,
    Tcp,
    None,
}

/// One `--upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub service: String,
    pub listen: SocketAddr,
}

fn upstream(s: &str) -> Result<Upstream, String> {
    let (service, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected SERVICE=ADDR:PORT"))?;
    if !lucid_core::catalog::valid_service_name(service) {
        return Err(format!("{service:?} is not a service name"));
    }
    let listen: SocketAddr = addr
        .parse()
        .map_err(|e| format!("{addr:?} is not ADDR:PORT: {e}"))?;
    // Anyone who reaches the listener speaks to SERVICE with this sidecar's identity.
    if !listen.ip().is_loopback() {
        return Err(format!(
            "{listen}: an upstream listens on a loopback address (127.0.0.0/8 or ::1) only"
        ));
    }
    Ok(Upstream {
        service: service.to_owned(),
        listen,
    })
}

fn idle(s: &str) -> Result<Duration, String> {
    let d = lucid_core::duration::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than 0".to_owned());
    }
    Ok(d)
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
        let c = ProxyConfig::load(args(&[
            "--service=web",
            "--app-port=1",
            "--app-protocol=grpc",
            "--health-check=tcp",
            "--upstream=redis=127.0.0.1:6380",
            "--upstream",
            "ledger=[::1]:9000",
            "--tcp-idle-timeout=90s",
        ]))
        .expect("load");
        assert_eq!(c.app_protocol, AppProtocol::Grpc);
        assert_eq!(c.health_check, Some(HealthCheck::Tcp));
        assert_eq!(c.tcp_idle_timeout, Duration::from_secs(90));
        assert_eq!(
            c.upstreams,
            [
                Upstream {
                    service: "redis".into(),
                    listen: "127.0.0.1:6380".parse().unwrap()
                },
                Upstream {
                    service: "ledger".into(),
                    listen: "[::1]:9000".parse().unwrap()
                }
            ]
        );
        for bad in [
            "--upstream=Redis=127.0.0.1:1",
            "--upstream=redis",
            "--upstream=redis=localhost",
            "--upstream=redis=0.0.0.0:6380",
            "--app-protocol=quic",
            "--tcp-idle-timeout=0s",
        ] {
            let err =
                ProxyConfig::load(args(&["--service=web", "--app-port=1", bad])).expect_err(bad);
            assert!(!err.to_string().is_empty());
        }
        std::fs::write(&f, "service = \"web\"\napp_prot = 8080\n").expect("write");
        let err = ProxyConfig::load(args(&["--config", path])).expect_err("unknown key");
        assert!(err.to_string().contains("app_prot"), "{err}");
    }
}
