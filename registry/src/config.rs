//! Command-line flags, `LUCID_*` environment variables and `--config FILE` (the same keys as
//! TOML, read by `lucid_runtime::config` as defaults under the flags, so every value gets
//! clap's checks), resolved into one [`RegistryConfig`]: the settings that depend on each
//! other (`--dev`, ACLs, TLS) are settled here. Precedence: flag, then env, then file, then
//! default.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
pub use lucid_runtime::logging::LogFormat;

/// lucid-registry: a Raft-replicated service registry with a Consul-compatible API.
#[derive(Debug, Parser)]
#[command(name = "lucid-registry", version, about, long_about = None, args_override_self = true,
    after_help = "`lucid-registry health [ADDR]` probes a running node's /health (default LUCID_HTTP_ADDR or 127.0.0.1:8500); exit 0 when healthy.")]
pub struct Args {
    /// Single-node development mode: bootstraps itself, data in ./lucid-data.
    #[arg(long, env = "LUCID_DEV")]
    pub dev: bool,
    /// This node's Raft id (a positive integer unique in the cluster).
    #[arg(long, env = "LUCID_NODE_ID")]
    pub node_id: Option<u64>,
    /// Where the sled database lives.
    #[arg(long, env = "LUCID_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP API listen address (port 0 picks one).
    #[arg(long, env = "LUCID_HTTP_ADDR", default_value = "127.0.0.1:8500")]
    pub http_addr: SocketAddr,
    /// Raft RPC listen address.
    #[arg(long, env = "LUCID_RAFT_ADDR", default_value = "127.0.0.1:8300")]
    pub raft_addr: SocketAddr,
    /// The IP peers use to reach this node (needed when listening on 0.0.0.0).
    #[arg(long, env = "LUCID_ADVERTISE")]
    pub advertise: Option<IpAddr>,
    /// Start a new cluster with this node as its only voter (ignored when it has state).
    #[arg(long, env = "LUCID_BOOTSTRAP")]
    pub bootstrap: bool,
    /// HTTP address of an existing member to ask to be added (repeatable).
    #[arg(long, env = "LUCID_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// TOML configuration file (unknown keys are rejected).
    #[arg(long, env = "LUCID_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format; the level comes from RUST_LOG.
    #[arg(long, env = "LUCID_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Snapshot (and compact the log) after this many entries.
    #[arg(long, env = "LUCID_SNAPSHOT_THRESHOLD", default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_threshold: u64,
    /// sled page cache bound in MiB.
    #[arg(long, env = "LUCID_CACHE_MB", default_value_t = 16,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_mb: u64,
    /// Raft heartbeat interval in ms; elections time out after 4-8 heartbeats.
    #[arg(long, env = "LUCID_HEARTBEAT_MS", default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(10..=5000))]
    pub heartbeat_ms: u64,
    /// DNS listen address, UDP and TCP (port 0 picks one).
    #[arg(long, env = "LUCID_DNS_ADDR", default_value = "127.0.0.1:8600")]
    pub dns_addr: SocketAddr,
    /// The DNS zone served.
    #[arg(long, env = "LUCID_DNS_DOMAIN", default_value = "lucid.internal")]
    pub dns_domain: String,
    /// Forward names outside the zone to this resolver (otherwise they are REFUSED).
    #[arg(long, env = "LUCID_DNS_RECURSOR")]
    pub dns_recursor: Option<SocketAddr>,
    /// TTL of DNS answers in seconds.
    #[arg(long, env = "LUCID_DNS_TTL", default_value_t = 0)]
    pub dns_ttl: u32,
    /// Leave instances whose health is `warning` out of DNS answers too.
    #[arg(long, env = "LUCID_DNS_ONLY_PASSING")]
    pub dns_only_passing: bool,
    /// Source networks DNS answers at all (CIDRs, comma-separated). Default: everyone, or
    /// only loopback and private networks when ACLs are on.
    #[arg(long, env = "LUCID_DNS_ACL", value_delimiter = ',')]
    pub dns_acl: Option<Vec<lucid_dns::IpNet>>,
    /// Source networks the recursor relays for (default loopback and private networks).
    #[arg(long, env = "LUCID_DNS_RECURSOR_ALLOW", value_delimiter = ',')]
    pub dns_recursor_allow: Option<Vec<lucid_dns::IpNet>>,
    /// UDP answers per second to one source address (0 turns the limit off).
    #[arg(long, env = "LUCID_DNS_RRL_RATE", default_value_t = 200)]
    pub dns_rrl_rate: u32,
    /// Of the answers over the rate, every Nth goes out empty with TC set (0: drop them all).
    #[arg(long, env = "LUCID_DNS_RRL_SLIP", default_value_t = 2)]
    pub dns_rrl_slip: u32,
    /// Source networks the rate limit never applies to.
    #[arg(long, env = "LUCID_DNS_RRL_EXEMPT", value_delimiter = ',',
        default_value = lucid_dns::LOOPBACK_NETWORKS)]
    pub dns_rrl_exempt: Vec<lucid_dns::IpNet>,
    /// Meta keys published as TXT records (comma-separated). Default: all with ACLs off,
    /// none with ACLs on.
    #[arg(long, env = "LUCID_DNS_TXT_META", value_delimiter = ',')]
    pub dns_txt_meta: Option<Vec<String>>,
    /// Validity of the leaf certificates the mesh CA signs (default 72h; 1m to 8760h). When
    /// unset, the platform's CERT_VALIDITY_DAYS is honoured.
    #[arg(long, env = "LUCID_LEAF_TTL")]
    pub leaf_ttl: Option<String>,
    /// Certificates one token (or, without one, one client address) may have signed per
    /// second; past it and the burst, 429.
    #[arg(long, env = "LUCID_CA_SIGN_RATE", default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub ca_sign_rate: u32,
    /// Signings allowed at once above the rate.
    #[arg(long, env = "LUCID_CA_SIGN_BURST", default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub ca_sign_burst: u32,
    /// Blocking queries one token may have waiting at once; past it, 429.
    #[arg(long, env = "LUCID_MAX_BLOCKING_PER_TOKEN",
        default_value_t = crate::api::limits::BLOCKING_PER_TOKEN,
        value_parser = lucid_runtime::config::positive_count)]
    pub max_blocking_per_token: usize,
    /// Blocking queries one client address may have waiting at once; past it, 429.
    #[arg(long, env = "LUCID_MAX_BLOCKING_PER_IP",
        default_value_t = crate::api::limits::BLOCKING_PER_IP,
        value_parser = lucid_runtime::config::positive_count)]
    pub max_blocking_per_ip: usize,
    /// Connections each listener (HTTP, HTTPS, Raft) holds at once; past it a new one is
    /// closed at once, logged and counted. Default: half the file descriptors left after a
    /// reserve of 256 (the soft limit is raised to the hard one first).
    #[arg(long, env = "LUCID_MAX_CONNECTIONS",
        value_parser = lucid_runtime::config::positive_count)]
    pub max_connections: Option<usize>,
    /// ... of which from one client address (default 256).
    #[arg(long, env = "LUCID_MAX_CONNECTIONS_PER_IP",
        value_parser = lucid_runtime::config::positive_count)]
    pub max_connections_per_ip: Option<usize>,
    /// What intentions decide when none matches (default allow; deny with ACLs on).
    #[arg(long, env = "LUCID_INTENTIONS_DEFAULT", value_parser = ["allow", "deny"])]
    pub intentions_default: Option<String>,
    /// Require ACL tokens (off in --dev unless given).
    #[arg(long, env = "LUCID_ACL_ENABLED")]
    pub acl_enabled: bool,
    /// Accept and run script checks (`Args`, `Script`), Consul's `enable_script_checks`. Off
    /// by default: whoever may register a check could run a command on the leader; service
    /// tokens never may.
    #[arg(long, env = "LUCID_ENABLE_SCRIPT_CHECKS")]
    pub enable_script_checks: bool,
    /// The initial management token's secret (else PUT /v1/acl/bootstrap makes one, once).
    /// Nodes joining an ACL cluster present it.
    #[arg(long, env = "LUCID_ACL_BOOTSTRAP_TOKEN")]
    pub acl_bootstrap_token: Option<String>,
    /// This node's certificate (PEM) for cluster TLS: Raft, join, forwarding and HTTPS.
    #[arg(long, env = "LUCID_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert-file.
    #[arg(long, env = "LUCID_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// The cluster CA (PEM): Raft peers must present a certificate chained to it.
    #[arg(long, env = "LUCID_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Serve the HTTP API over TLS here too (8501 by convention; needs the TLS files).
    #[arg(long, env = "LUCID_HTTPS_ADDR")]
    pub https_addr: Option<SocketAddr>,
    /// UNSAFE: allow a plain-text Raft listener off loopback with ACLs on. Anyone who can
    /// reach it can rewrite the cluster's state.
    #[arg(long, env = "LUCID_INSECURE_RAFT")]
    pub insecure_raft: bool,
    /// File holding the cluster secret (at least 16 bytes) the mesh CA key is sealed under
    /// at rest; the same file on every node. Without it a node replicates but cannot sign.
    /// In --dev one is created in the data directory.
    #[arg(long, env = "LUCID_CA_KEY_SECRET_FILE")]
    pub ca_key_secret_file: Option<PathBuf>,
}

/// The three PEM files of cluster TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub dev: bool,
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    pub advertise: Option<IpAddr>,
    pub bootstrap: bool,
    pub join: Vec<String>,
    pub log_format: LogFormat,
    pub snapshot_threshold: u64,
    pub cache_mb: u64,
    pub heartbeat_ms: u64,
    pub dns_addr: SocketAddr,
    /// The zone settings, validated.
    pub dns_zone: lucid_dns::ZoneConfig,
    pub dns_recursor: Option<SocketAddr>,
    /// Who DNS answers (empty: everyone), who the recursor serves.
    pub dns_acl: Vec<lucid_dns::IpNet>,
    pub dns_recursor_allow: Vec<lucid_dns::IpNet>,
    /// UDP answers per second per source (0: unlimited) and the slip ratio.
    pub dns_rrl_rate: u32,
    pub dns_rrl_slip: u32,
    pub dns_rrl_exempt: Vec<lucid_dns::IpNet>,
    pub leaf_ttl: Duration,
    /// Signings per second per token, and the burst above it.
    pub ca_sign_rate: u32,
    pub ca_sign_burst: u32,
    /// Blocking queries waiting at once per token and per client address.
    pub max_blocking_per_token: usize,
    pub max_blocking_per_ip: usize,
    /// Connections per listener, in total and per client address.
    pub conn_limits: lucid_core::conn_limit::ConnLimits,
    pub intentions_default: lucid_core::intention::Action,
    pub acl_enabled: bool,
    pub enable_script_checks: bool,
    pub acl_bootstrap_token: Option<String>,
    /// Cluster TLS; with it every peer call is `https` and Raft requires client certificates.
    pub tls: Option<TlsFiles>,
    /// The HTTPS API listener (requires `tls`; required with it).
    pub https_addr: Option<SocketAddr>,
    /// The CA key's sealing secret; `generate` when --dev may create it.
    pub ca_key_secret: Option<SecretFile>,
}

/// Where the CA key secret comes from.
#[derive(Debug, Clone)]
pub struct SecretFile {
    pub path: PathBuf,
    /// Create it (random) when absent: only --dev's default, in the data directory.
    pub generate: bool,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Flags, environment or file refused by the parser.
    #[error(transparent)]
    Load(#[from] lucid_runtime::config::ConfigError),
    #[error("{0}")]
    Invalid(String),
}

impl Args {
    /// Parse flags, environment and `--config FILE`.
    pub fn load(args: Vec<OsString>) -> Result<Args, ConfigError> {
        Ok(lucid_runtime::config::load(args)?)
    }

    /// Settle the settings that depend on each other into a validated configuration.
    pub fn resolve(self) -> Result<RegistryConfig, ConfigError> {
        let dev = self.dev;
        let bootstrap = dev || self.bootstrap;
        let join = self.join;
        let node_id = match self.node_id {
            Some(0) => {
                return Err(ConfigError::Invalid(
                    "--node-id must be a positive integer".into(),
                ))
            }
            Some(id) => id,
            None if dev => 1,
            None => {
                return Err(ConfigError::Invalid(
                    "--node-id is required (or use --dev)".into(),
                ))
            }
        };
        let data_dir = match self.data_dir {
            Some(d) => d,
            None if dev => PathBuf::from("lucid-data"),
            None => {
                return Err(ConfigError::Invalid(
                    "--data-dir is required (or use --dev)".into(),
                ))
            }
        };
        if bootstrap && !join.is_empty() {
            return Err(ConfigError::Invalid(
                "--bootstrap (or --dev) and --join are exclusive: a node starts a cluster or joins one".into(),
            ));
        }
        let acl_enabled = self.acl_enabled;
        let dns_zone =
            lucid_dns::ZoneConfig::new(&self.dns_domain, self.dns_ttl, self.dns_only_passing)
                .map_err(|e| ConfigError::Invalid(format!("--dns-domain: {e}")))?
                .with_txt_meta(self.dns_txt_meta.or_else(|| acl_enabled.then(Vec::new)));
        let dns_acl = self.dns_acl.unwrap_or_else(|| {
            if acl_enabled {
                lucid_dns::private_networks()
            } else {
                Vec::new()
            }
        });
        let dns_recursor_allow = self
            .dns_recursor_allow
            .unwrap_or_else(lucid_dns::private_networks);
        let leaf_ttl = resolve_leaf_ttl(self.leaf_ttl, std::env::var("CERT_VALIDITY_DAYS").ok())?;
        let acl_bootstrap_token = self.acl_bootstrap_token;
        if acl_bootstrap_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::Invalid(
                "--acl-bootstrap-token must be at least 16 characters".into(),
            ));
        }
        let intentions_default = match self.intentions_default.as_deref() {
            None if acl_enabled => lucid_core::intention::Action::Deny,
            None | Some("allow") => lucid_core::intention::Action::Allow,
            Some("deny") => lucid_core::intention::Action::Deny,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "--intentions-default {other:?}: allow or deny"
                )))
            }
        };
        let raft_addr = self.raft_addr;
        let tls = tls_files(self.tls_cert_file, self.tls_key_file, self.tls_ca_file)?;
        let https_addr = self.https_addr;
        match (&tls, https_addr) {
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "--https-addr needs --tls-cert-file, --tls-key-file and --tls-ca-file".into(),
                ))
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "with cluster TLS, set --https-addr (8501 by convention): peers join and forward over HTTPS".into(),
                ))
            }
            _ => {}
        }
        let insecure_raft = self.insecure_raft;
        if acl_enabled && tls.is_none() && !raft_addr.ip().is_loopback() && !insecure_raft {
            return Err(ConfigError::Invalid(format!(
                "refusing to start: ACLs are enabled but the Raft listener {raft_addr} is off loopback \
                 without TLS, so anyone who reaches it could rewrite the cluster's state. Set \
                 --tls-cert-file, --tls-key-file and --tls-ca-file (see `lucidctl tls`), bind \
                 --raft-addr to loopback, or pass --insecure-raft (unsafe)"
            )));
        }
        let ca_key_secret = match self.ca_key_secret_file {
            Some(path) => Some(SecretFile {
                path,
                generate: false,
            }),
            None if dev => Some(SecretFile {
                path: data_dir.join("ca-key.secret"),
                generate: true,
            }),
            None => None,
        };
        Ok(RegistryConfig {
            ca_key_secret,
            dev,
            node_id,
            data_dir,
            http_addr: self.http_addr,
            raft_addr,
            advertise: self.advertise,
            bootstrap,
            join,
            log_format: self.log_format,
            snapshot_threshold: self.snapshot_threshold,
            cache_mb: self.cache_mb,
            heartbeat_ms: self.heartbeat_ms,
            dns_addr: self.dns_addr,
            dns_zone,
            dns_recursor: self.dns_recursor,
            dns_acl,
            dns_recursor_allow,
            dns_rrl_rate: self.dns_rrl_rate,
            dns_rrl_slip: self.dns_rrl_slip,
            dns_rrl_exempt: self.dns_rrl_exempt,
            leaf_ttl,
            ca_sign_rate: self.ca_sign_rate,
            ca_sign_burst: self.ca_sign_burst,
            max_blocking_per_token: self.max_blocking_per_token,
            max_blocking_per_ip: self.max_blocking_per_ip,
            conn_limits: lucid_core::conn_limit::ConnLimits::from_fd_limit()
                .with(self.max_connections, self.max_connections_per_ip),
            intentions_default,
            acl_enabled,
            enable_script_checks: self.enable_script_checks,
            acl_bootstrap_token,
            tls,
            https_addr,
        })
    }
}

/// All three TLS files or none.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
        _ => Err(ConfigError::Invalid(
            "cluster TLS needs all of --tls-cert-file, --tls-key-file and --tls-ca-file".into(),
        )),
    }
}

/// `--leaf-ttl` (a duration), else the platform's `CERT_VALIDITY_DAYS` (whole days), else 72h.
fn resolve_leaf_ttl(flag: Option<String>, days: Option<String>) -> Result<Duration, ConfigError> {
    let ttl = match (flag, days) {
        (Some(s), _) => lucid_core::duration::parse_duration(&s)
            .map_err(|e| ConfigError::Invalid(format!("--leaf-ttl {s:?}: {e}")))?,
        (None, Some(d)) => {
            let n: u64 = d.trim().parse().map_err(|_| {
                ConfigError::Invalid(format!("CERT_VALIDITY_DAYS {d:?} is not a whole number"))
            })?;
            Duration::from_secs(n.saturating_mul(86_400))
        }
        (None, None) => Duration::from_secs(72 * 3600),
    };
    if ttl < Duration::from_secs(60) || ttl > Duration::from_secs(8760 * 3600) {
        return Err(ConfigError::Invalid(format!(
            "leaf certificate validity {ttl:?} is outside 1m..8760h"
        )));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        let mut v = vec!["lucid-registry"];
        v.extend_from_slice(list);
        Args::parse_from(v)
    }

    #[test]
    fn dev_defaults() {
        let c = args(&["--dev"]).resolve().unwrap();
        assert!(c.bootstrap);
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("lucid-data"));
        assert_eq!(c.http_addr.port(), 8500);
        assert_eq!(c.dns_addr.port(), 8600);
        assert_eq!(c.dns_zone.domain.to_ascii(), "lucid.internal.");
        assert_eq!(c.dns_zone.ttl, 0);
    }

    #[test]
    fn leaf_ttl_sources() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(resolve_leaf_ttl(None, None).unwrap(), h(72));
        assert_eq!(
            resolve_leaf_ttl(Some("24h".into()), Some("9".into())).unwrap(),
            h(24)
        );
        assert_eq!(resolve_leaf_ttl(None, Some("3".into())).unwrap(), h(72));
        for (flag, days) in [
            (Some("1s"), None),
            (Some("9000h"), None),
            (Some("x"), None),
            (None, Some("two")),
        ] {
            assert!(resolve_leaf_ttl(flag.map(String::from), days.map(String::from)).is_err());
        }
    }

    #[test]
    fn dns_settings() {
        let c = args(&["--dev", "--dns-domain", "Mesh.Example.", "--dns-ttl", "5"])
            .resolve()
            .unwrap();
        assert_eq!(c.dns_zone.domain.to_ascii(), "mesh.example.");
        assert_eq!(c.dns_zone.ttl, 5);
        for bad in [".", "", "a..b", &"x".repeat(64)] {
            let e = args(&["--dev", "--dns-domain", bad]).resolve().unwrap_err();
            assert!(e.to_string().contains("--dns-domain"), "{bad}: {e}");
        }
    }

    #[test]
    fn non_dev_needs_id_and_dir() {
        assert!(args(&["--bootstrap"]).resolve().is_err());
        assert!(args(&["--node-id", "2"]).resolve().is_err());
        assert!(args(&["--node-id", "0", "--data-dir", "x"])
            .resolve()
            .is_err());
        assert!(
            args(&["--node-id", "2", "--data-dir", "x", "--join", "127.0.0.1:1"])
                .resolve()
                .is_ok()
        );
    }

    #[test]
    fn bootstrap_and_join_are_exclusive() {
        let e = args(&["--dev", "--join", "127.0.0.1:8500"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("exclusive"));
    }

    #[test]
    fn acl_node_with_plain_raft_off_loopback_refuses_to_start() {
        let base = ["--node-id", "1", "--data-dir", "x", "--acl-enabled"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            args(&v).resolve()
        };
        let e = with(&["--raft-addr", "0.0.0.0:8300"]).unwrap_err();
        for flag in ["--tls-cert-file", "--insecure-raft"] {
            assert!(e.to_string().contains(flag), "{e}");
        }
        assert!(with(&["--raft-addr", "127.0.0.1:8300"]).is_ok());
        assert!(with(&["--raft-addr", "0.0.0.0:8300", "--insecure-raft"]).is_ok());
        let tls = [
            "--raft-addr",
            "0.0.0.0:8300",
            "--tls-cert-file",
            "c",
            "--tls-key-file",
            "k",
            "--tls-ca-file",
            "ca",
        ];
        let e = with(&tls).unwrap_err();
        assert!(e.to_string().contains("--https-addr"), "{e}");
        let mut full = tls.to_vec();
        full.extend_from_slice(&["--https-addr", "0.0.0.0:8501"]);
        assert!(with(&full).is_ok());
        let e = with(&["--tls-cert-file", "c"]).unwrap_err();
        assert!(e.to_string().contains("all of"), "{e}");
    }

    #[test]
    fn a_file_gives_defaults_that_get_the_flags_checks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.toml");
        let path = f.to_str().unwrap();
        let load = |extra: &[&str]| {
            let mut v = vec!["lucid-registry", "--config", path];
            v.extend_from_slice(extra);
            Args::load(v.into_iter().map(OsString::from).collect()).and_then(Args::resolve)
        };
        std::fs::write(
            &f,
            "node_id = 3\ndata_dir = \"d\"\njoin = [\"127.0.0.1:8500\"]\ndns_only_passing = true\n\
             dns_domain = \"x.test\"\nheartbeat_ms = 250\nlog_format = \"json\"\n",
        )
        .unwrap();
        let c = load(&[]).unwrap();
        assert_eq!((c.node_id, c.heartbeat_ms), (3, 250));
        assert_eq!(c.join, ["127.0.0.1:8500"]);
        assert!(c.dns_zone.only_passing);
        assert_eq!(c.dns_zone.domain.to_ascii(), "x.test.");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(load(&["--heartbeat-ms", "300"]).unwrap().heartbeat_ms, 300);
        for (text, needle) in [
            ("node_id = 3\nbogus = true\n", "bogus"),
            (
                "node_id = 3\ndata_dir = \"d\"\nheartbeat_ms = 1\n",
                "--heartbeat-ms",
            ),
            (
                "node_id = 3\ndata_dir = \"d\"\nsnapshot_threshold = 0\n",
                "--snapshot-threshold",
            ),
            (
                "node_id = 3\ndata_dir = \"d\"\nintentions_default = \"maybe\"\n",
                "maybe",
            ),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = load(&[]).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }
}
