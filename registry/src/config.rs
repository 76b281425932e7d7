//! Command-line flags, `LUCID_*` environment variables and the optional TOML file, resolved
//! into one [`RegistryConfig`]. Precedence: flag or env, then file, then default.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// lucid-registry: a Raft-replicated service registry with a Consul-compatible API.
#[derive(Debug, Parser)]
#[command(name = "lucid-registry", version, about, long_about = None,
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
    /// HTTP API listen address (default 127.0.0.1:8500; port 0 picks one).
    #[arg(long, env = "LUCID_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Raft RPC listen address (default 127.0.0.1:8300).
    #[arg(long, env = "LUCID_RAFT_ADDR")]
    pub raft_addr: Option<SocketAddr>,
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
    #[arg(long, env = "LUCID_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Snapshot (and compact the log) after this many entries.
    #[arg(long, env = "LUCID_SNAPSHOT_THRESHOLD")]
    pub snapshot_threshold: Option<u64>,
    /// sled page cache bound in MiB.
    #[arg(long, env = "LUCID_CACHE_MB")]
    pub cache_mb: Option<u64>,
    /// Raft heartbeat interval in ms; elections time out after 4-8 heartbeats.
    #[arg(long, env = "LUCID_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// DNS listen address, UDP and TCP (default 127.0.0.1:8600; port 0 picks one).
    #[arg(long, env = "LUCID_DNS_ADDR")]
    pub dns_addr: Option<SocketAddr>,
    /// The DNS zone served (default lucid.internal).
    #[arg(long, env = "LUCID_DNS_DOMAIN")]
    pub dns_domain: Option<String>,
    /// Forward names outside the zone to this resolver (otherwise they are REFUSED).
    #[arg(long, env = "LUCID_DNS_RECURSOR")]
    pub dns_recursor: Option<SocketAddr>,
    /// TTL of DNS answers in seconds (default 0).
    #[arg(long, env = "LUCID_DNS_TTL")]
    pub dns_ttl: Option<u32>,
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
    /// UDP answers per second to one source address (default 200; 0 turns the limit off).
    #[arg(long, env = "LUCID_DNS_RRL_RATE")]
    pub dns_rrl_rate: Option<u32>,
    /// Of the answers over the rate, every Nth goes out empty with TC set (default 2; 0:
    /// drop them all).
    #[arg(long, env = "LUCID_DNS_RRL_SLIP")]
    pub dns_rrl_slip: Option<u32>,
    /// Source networks the rate limit never applies to (default loopback).
    #[arg(long, env = "LUCID_DNS_RRL_EXEMPT", value_delimiter = ',')]
    pub dns_rrl_exempt: Option<Vec<lucid_dns::IpNet>>,
    /// Meta keys published as TXT records (comma-separated). Default: all with ACLs off,
    /// none with ACLs on.
    #[arg(long, env = "LUCID_DNS_TXT_META", value_delimiter = ',')]
    pub dns_txt_meta: Option<Vec<String>>,
    /// Validity of the leaf certificates the mesh CA signs (default 72h; 1m to 8760h). When
    /// unset, the platform's CERT_VALIDITY_DAYS is honoured.
    #[arg(long, env = "LUCID_LEAF_TTL")]
    pub leaf_ttl: Option<String>,
    /// Certificates one token (or, without one, one client address) may have signed per
    /// second (default 10); past it and the burst, 429.
    #[arg(long, env = "LUCID_CA_SIGN_RATE", value_parser = clap::value_parser!(u32).range(1..))]
    pub ca_sign_rate: Option<u32>,
    /// Signings allowed at once above the rate (default 20).
    #[arg(long, env = "LUCID_CA_SIGN_BURST", value_parser = clap::value_parser!(u32).range(1..))]
    pub ca_sign_burst: Option<u32>,
    /// What intentions decide when none matches: allow or deny (default allow; deny with
    /// ACLs on).
    #[arg(long, env = "LUCID_INTENTIONS_DEFAULT")]
    pub intentions_default: Option<String>,
    /// Require ACL tokens (off in --dev unless given).
    #[arg(long, env = "LUCID_ACL_ENABLED")]
    pub acl_enabled: bool,
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

/// The same settings as a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub dev: Option<bool>,
    pub node_id: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub raft_addr: Option<SocketAddr>,
    pub advertise: Option<IpAddr>,
    pub bootstrap: Option<bool>,
    pub join: Option<Vec<String>>,
    pub log_format: Option<LogFormat>,
    pub snapshot_threshold: Option<u64>,
    pub cache_mb: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub dns_addr: Option<SocketAddr>,
    pub dns_domain: Option<String>,
    pub dns_recursor: Option<SocketAddr>,
    pub dns_ttl: Option<u32>,
    pub dns_only_passing: Option<bool>,
    pub dns_acl: Option<Vec<lucid_dns::IpNet>>,
    pub dns_recursor_allow: Option<Vec<lucid_dns::IpNet>>,
    pub dns_rrl_rate: Option<u32>,
    pub dns_rrl_slip: Option<u32>,
    pub dns_rrl_exempt: Option<Vec<lucid_dns::IpNet>>,
    pub dns_txt_meta: Option<Vec<String>>,
    pub leaf_ttl: Option<String>,
    pub ca_sign_rate: Option<u32>,
    pub ca_sign_burst: Option<u32>,
    pub intentions_default: Option<String>,
    pub acl_enabled: Option<bool>,
    pub acl_bootstrap_token: Option<String>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub https_addr: Option<SocketAddr>,
    pub insecure_raft: Option<bool>,
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
    pub intentions_default: lucid_core::intention::Action,
    pub acl_enabled: bool,
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
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

impl Args {
    /// Merge flags, env and file into a validated configuration.
    pub fn resolve(self) -> Result<RegistryConfig, ConfigError> {
        let file = match &self.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let dev = self.dev || file.dev.unwrap_or(false);
        let bootstrap = dev || self.bootstrap || file.bootstrap.unwrap_or(false);
        let join = if self.join.is_empty() {
            file.join.unwrap_or_default()
        } else {
            self.join
        };
        let node_id = match self.node_id.or(file.node_id) {
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
        let data_dir = match self.data_dir.or(file.data_dir) {
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
        let heartbeat_ms = self.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(100);
        if !(10..=5000).contains(&heartbeat_ms) {
            return Err(ConfigError::Invalid(
                "--heartbeat-ms must be between 10 and 5000".into(),
            ));
        }
        let snapshot_threshold = self
            .snapshot_threshold
            .or(file.snapshot_threshold)
            .unwrap_or(5000);
        if snapshot_threshold == 0 {
            return Err(ConfigError::Invalid(
                "--snapshot-threshold must be at least 1".into(),
            ));
        }
        let cache_mb = self.cache_mb.or(file.cache_mb).unwrap_or(16);
        if cache_mb == 0 {
            return Err(ConfigError::Invalid("--cache-mb must be at least 1".into()));
        }
        let dns_domain = self
            .dns_domain
            .or(file.dns_domain)
            .unwrap_or_else(|| "lucid.internal".to_owned());
        let acl_on = self.acl_enabled || file.acl_enabled.unwrap_or(false);
        let dns_zone = lucid_dns::ZoneConfig::new(
            &dns_domain,
            self.dns_ttl.or(file.dns_ttl).unwrap_or(0),
            self.dns_only_passing || file.dns_only_passing.unwrap_or(false),
        )
        .map_err(|e| ConfigError::Invalid(format!("--dns-domain: {e}")))?
        .with_txt_meta(
            self.dns_txt_meta
                .clone()
                .or(file.dns_txt_meta.clone())
                .or_else(|| acl_on.then(Vec::new)),
        );
        let dns_acl = self
            .dns_acl
            .clone()
            .or(file.dns_acl.clone())
            .unwrap_or_else(|| {
                if acl_on {
                    lucid_dns::private_networks()
                } else {
                    Vec::new()
                }
            });
        let dns_recursor_allow = self
            .dns_recursor_allow
            .clone()
            .or(file.dns_recursor_allow.clone())
            .unwrap_or_else(lucid_dns::private_networks);
        let leaf_ttl = resolve_leaf_ttl(
            self.leaf_ttl.or(file.leaf_ttl),
            std::env::var("CERT_VALIDITY_DAYS").ok(),
        )?;
        let acl_enabled = self.acl_enabled || file.acl_enabled.unwrap_or(false);
        let acl_bootstrap_token = self.acl_bootstrap_token.or(file.acl_bootstrap_token);
        if acl_bootstrap_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::Invalid(
                "--acl-bootstrap-token must be at least 16 characters".into(),
            ));
        }
        let intentions_default = match self
            .intentions_default
            .or(file.intentions_default)
            .as_deref()
        {
            None if acl_enabled => lucid_core::intention::Action::Deny,
            None | Some("allow") => lucid_core::intention::Action::Allow,
            Some("deny") => lucid_core::intention::Action::Deny,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "--intentions-default {other:?}: allow or deny"
                )))
            }
        };
        let default_dns: SocketAddr = ([127, 0, 0, 1], 8600).into();
        let default_http: SocketAddr = ([127, 0, 0, 1], 8500).into();
        let default_raft: SocketAddr = ([127, 0, 0, 1], 8300).into();
        let raft_addr = self.raft_addr.or(file.raft_addr).unwrap_or(default_raft);
        let tls = tls_files(
            self.tls_cert_file.or(file.tls_cert_file),
            self.tls_key_file.or(file.tls_key_file),
            self.tls_ca_file.or(file.tls_ca_file),
        )?;
        let https_addr = self.https_addr.or(file.https_addr);
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
        let insecure_raft = self.insecure_raft || file.insecure_raft.unwrap_or(false);
        if acl_enabled && tls.is_none() && !raft_addr.ip().is_loopback() && !insecure_raft {
            return Err(ConfigError::Invalid(format!(
                "refusing to start: ACLs are enabled but the Raft listener {raft_addr} is off loopback \
                 without TLS, so anyone who reaches it could rewrite the cluster's state. Set \
                 --tls-cert-file, --tls-key-file and --tls-ca-file (see `lucidctl tls`), bind \
                 --raft-addr to loopback, or pass --insecure-raft (unsafe)"
            )));
        }
        let ca_key_secret = match self.ca_key_secret_file.or(file.ca_key_secret_file) {
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
            http_addr: self.http_addr.or(file.http_addr).unwrap_or(default_http),
            raft_addr,
            advertise: self.advertise.or(file.advertise),
            bootstrap,
            join,
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            snapshot_threshold,
            cache_mb,
            heartbeat_ms,
            dns_addr: self.dns_addr.or(file.dns_addr).unwrap_or(default_dns),
            dns_zone,
            dns_recursor: self.dns_recursor.or(file.dns_recursor),
            dns_acl,
            dns_recursor_allow,
            dns_rrl_rate: self.dns_rrl_rate.or(file.dns_rrl_rate).unwrap_or(200),
            dns_rrl_slip: self.dns_rrl_slip.or(file.dns_rrl_slip).unwrap_or(2),
            dns_rrl_exempt: self
                .dns_rrl_exempt
                .or(file.dns_rrl_exempt)
                .unwrap_or_else(lucid_dns::loopback_networks),
            leaf_ttl,
            ca_sign_rate: self.ca_sign_rate.or(file.ca_sign_rate).unwrap_or(10).max(1),
            ca_sign_burst: self
                .ca_sign_burst
                .or(file.ca_sign_burst)
                .unwrap_or(20)
                .max(1),
            intentions_default,
            acl_enabled,
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
        let f = FileConfig::parse("dns_only_passing = true\ndns_domain = \"x.test\"\n").unwrap();
        assert_eq!(f.dns_only_passing, Some(true));
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
    fn file_rejects_unknown_keys() {
        let e = FileConfig::parse("node_id = 1\nbogus = true\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let ok = FileConfig::parse("node_id = 3\njoin = [\"127.0.0.1:8500\"]\n").unwrap();
        assert_eq!(ok.node_id, Some(3));
    }
}
