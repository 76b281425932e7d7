//! The command line: global options and every subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// lucidctl: operate a Lucid Mesh registry cluster.
#[derive(Debug, Parser)]
#[command(name = "lucidctl", version, about, long_about = None)]
pub struct Cli {
    /// Registry HTTP address (else LUCID_REGISTRY, else CONSUL_HTTP_ADDR, else
    /// http://127.0.0.1:8500).
    #[arg(long, global = true)]
    pub registry: Option<String>,
    /// ACL token (else LUCID_TOKEN, else CONSUL_HTTP_TOKEN).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to verify an `https://` registry with (else LUCID_CACERT, else
    /// CONSUL_CACERT).
    #[arg(long, global = true)]
    pub registry_ca: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster membership, status and backups.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The service catalog.
    #[command(subcommand)]
    Services(ServicesCmd),
    /// Mesh certificates.
    #[command(subcommand)]
    Certs(CertsCmd),
    /// Intentions from the platform's planeIsolation policy file.
    #[command(subcommand)]
    Policy(ApplyCmd),
    /// One intention (Consul's `consul intention create|delete`): who may connect to whom.
    #[command(subcommand)]
    Intention(IntentionCmd),
    /// Config entries (service-defaults), including the platform's circuit-breaker file.
    #[command(subcommand)]
    Config(ApplyCmd),
    /// Consul KV.
    #[command(subcommand)]
    Kv(KvCmd),
    /// ACL tokens.
    #[command(subcommand)]
    Acl(AclCmd),
    /// Cluster TLS files for the registries (offline: no registry is called).
    #[command(subcommand)]
    Tls(TlsCmd),
}

#[derive(Debug, Subcommand)]
pub enum IntentionCmd {
    /// Allow (or with --deny, deny) SOURCE to DESTINATION: service names, `plane:<p>` or `*`.
    /// An intention with an Action also opens (or closes) a `tcp` service to raw connections.
    Create {
        source: String,
        destination: String,
        #[arg(long)]
        deny: bool,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete the intention of SOURCE to DESTINATION.
    Delete { source: String, destination: String },
}

#[derive(Debug, Subcommand)]
pub enum TlsCmd {
    /// The cluster CA.
    #[command(subcommand)]
    Ca(TlsCaCmd),
    /// Node certificates.
    #[command(subcommand)]
    Cert(TlsCertCmd),
}

#[derive(Debug, Subcommand)]
pub enum TlsCaCmd {
    /// Write DIR/ca.pem and DIR/ca-key.pem (the key 0600); refuses to overwrite.
    Create {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCertCmd {
    /// Write DIR/NAME.pem and DIR/NAME-key.pem, signed by the CA in --ca DIR, valid as server
    /// and client certificate for the given IPs and DNS names.
    Create {
        /// Directory holding ca.pem and ca-key.pem.
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        node: String,
        /// An IP address peers dial this node at (repeatable).
        #[arg(long)]
        ip: Vec<std::net::IpAddr>,
        /// A DNS name peers dial this node at (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AclCmd {
    /// Create the first management token (once per cluster); prints its secret.
    Bootstrap,
    /// Tokens.
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token: a service token (--service NAME), --management or --read-only.
    Create {
        #[arg(long, conflicts_with_all = ["management", "read_only"])]
        service: Option<String>,
        #[arg(long, conflicts_with = "read_only")]
        management: bool,
        #[arg(long)]
        read_only: bool,
        #[arg(long, default_value = "")]
        description: String,
        /// Expire the token after this long (Consul's ExpirationTTL, 1m to 24h).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Every token (no secrets).
    List,
    /// Delete a token by its AccessorID.
    Delete { accessor: String },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Every node's view: role, term, indexes; and the Raft configuration.
    Status,
    /// Ask the cluster to add a node (it must be running with the same addresses).
    Join {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        raft_addr: String,
        #[arg(long)]
        http_addr: String,
    },
    /// Remove a node by id.
    Remove { id: u64 },
    /// Back up or restore the whole state.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Write a backup to FILE.
    Save { file: PathBuf },
    /// Replace the cluster's state with the backup in FILE.
    Restore { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ServicesCmd {
    /// Services and their tags.
    List,
    /// One service's instances with their health.
    Get { name: String },
}

#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// Every leaf the CA signed.
    List,
    /// Issue a leaf (key generated by the registry); writes <service>.pem and <service>.key.
    Issue {
        service: String,
        #[arg(long)]
        plane: Option<String>,
        /// Directory for the files (default: current directory).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Revoke one serial, or with --service every leaf of a service.
    Revoke {
        serial: Option<String>,
        #[arg(long)]
        service: Option<String>,
    },
    /// Print the root certificate.
    Ca,
}

#[derive(Debug, Subcommand)]
pub enum ApplyCmd {
    /// Apply a YAML or JSON file.
    Apply(ApplyArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Print a value.
    Get { key: String },
    /// Set a value.
    Put { key: String, value: String },
}
