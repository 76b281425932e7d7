//! What each subcommand does: one or a few registry API calls, then a table or JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use http::Method;
use lucid_client::{RegistryClient, Response};
use lucid_core::catalog::CheckStatus;
use lucid_core::wire::acl::{PolicyLink, ServiceIdentity, TokenCreate, TokenView};
use lucid_core::wire::ca::{CaCert, CertRecord, IssueRequest, SignedLeaf};
use lucid_core::wire::catalog::ServiceEntry;
use lucid_core::wire::operator::{JoinRequest, PolicySummary, RaftConfiguration, Status};
use lucid_core::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{
    AclCmd, ApplyCmd, CertsCmd, Cli, ClusterCmd, Command, IntentionCmd, KvCmd, ServicesCmd,
    SnapshotCmd, TlsCaCmd, TlsCertCmd, TlsCmd, TokenCmd,
};
use crate::table::render;

fn client(cli: &Cli) -> anyhow::Result<RegistryClient> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let base = cli
        .registry
        .clone()
        .or_else(|| env("LUCID_REGISTRY"))
        .or_else(|| env("CONSUL_HTTP_ADDR"))
        .unwrap_or_else(|| "http://127.0.0.1:8500".into());
    let ca = cli
        .registry_ca
        .clone()
        .or_else(|| env("LUCID_CACERT").map(Into::into))
        .or_else(|| env("CONSUL_CACERT").map(Into::into));
    let c = match ca {
        None => RegistryClient::new(&base),
        Some(path) => {
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("reading --registry-ca {}", path.display()))?;
            let tls = lucid_tls::cluster::client_trusting(&pem)
                .with_context(|| format!("--registry-ca {}", path.display()))?;
            RegistryClient::with_http(
                &base,
                lucid_client::HttpClient::with_tls(std::time::Duration::from_secs(15), tls),
            )
        }
    };
    match cli
        .token
        .clone()
        .or_else(|| env("LUCID_TOKEN"))
        .or_else(|| env("CONSUL_HTTP_TOKEN"))
    {
        Some(t) => Ok(c.with_token(t)),
        None => Ok(c),
    }
}

/// A successful response, or an error carrying the server's code and reason.
fn ok(r: Response, what: &str) -> anyhow::Result<Response> {
    if r.status.is_success() {
        return Ok(r);
    }
    let reason = match serde_json::from_slice::<ErrorBody>(&r.body) {
        Ok(b) => format!("{}: {}", b.error.code, b.error.message),
        Err(_) => String::from_utf8_lossy(&r.body).trim().to_owned(),
    };
    bail!("{what}: {} {reason}", r.status)
}

async fn call(
    c: &RegistryClient,
    m: Method,
    path: &str,
    body: Vec<u8>,
    what: &str,
) -> anyhow::Result<Response> {
    let r = c
        .call(m, path, body)
        .await
        .with_context(|| format!("{what}: cannot reach the registry at {}", c.base()))?;
    ok(r, what)
}

/// The answer decoded as `T`, the registry's typed wire struct for `path`.
fn decode<T: DeserializeOwned>(r: &Response, what: &str) -> anyhow::Result<T> {
    serde_json::from_slice(&r.body)
        .with_context(|| format!("{what}: the registry's answer is not what it should send"))
}

async fn get_json<T: DeserializeOwned>(
    c: &RegistryClient,
    path: &str,
    what: &str,
) -> anyhow::Result<T> {
    let r = call(c, Method::GET, path, Vec::new(), what).await?;
    decode(&r, what)
}

fn pretty<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A cell of a table: `-` for nothing.
fn cell(v: &str) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.to_owned()
    }
}

/// `intention create|delete`: `PUT|DELETE /v1/connect/intentions/exact`.
async fn intention(c: &RegistryClient, cmd: IntentionCmd) -> anyhow::Result<String> {
    let exact = |source: &str, destination: &str| {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("source", source)
            .append_pair("destination", destination)
            .finish();
        format!("/v1/connect/intentions/exact?{q}")
    };
    match cmd {
        IntentionCmd::Create {
            source,
            destination,
            deny,
            description,
        } => {
            let action = if deny { "deny" } else { "allow" };
            let body = serde_json::json!({"Action": action, "Description": description});
            let path = exact(&source, &destination);
            call(
                c,
                Method::PUT,
                &path,
                body.to_string().into_bytes(),
                "intention create",
            )
            .await?;
            Ok(format!("{source} -> {destination}: {action}"))
        }
        IntentionCmd::Delete {
            source,
            destination,
        } => {
            let path = exact(&source, &destination);
            call(c, Method::DELETE, &path, Vec::new(), "intention delete").await?;
            Ok(format!("{source} -> {destination}: deleted"))
        }
    }
}

/// A YAML or JSON file as JSON.
fn read_doc(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    yaml_serde::from_str::<Value>(&text)
        .with_context(|| format!("{} is not valid YAML or JSON", path.display()))
}

pub async fn run(cli: Cli) -> anyhow::Result<String> {
    let c = client(&cli)?;
    let json_out = cli.json;
    match cli.command {
        Command::Tls(cmd) => tls(cmd),
        Command::Cluster(cmd) => cluster(&c, cmd, json_out).await,
        Command::Services(cmd) => services(&c, cmd, json_out).await,
        Command::Certs(cmd) => certs(&c, cmd, json_out).await,
        Command::Policy(ApplyCmd::Apply(a)) => {
            let doc = read_doc(&a.file)?;
            let r = call(
                &c,
                Method::PUT,
                "/v1/connect/policy",
                doc.to_string().into_bytes(),
                "policy apply",
            )
            .await?;
            let v: PolicySummary = decode(&r, "policy apply")?;
            Ok(if json_out {
                pretty(&v)
            } else {
                format!(
                    "applied {}: {} planes, {} intentions",
                    a.file.display(),
                    v.planes,
                    v.intentions
                )
            })
        }
        Command::Intention(cmd) => intention(&c, cmd).await,
        Command::Config(ApplyCmd::Apply(a)) => config_apply(&c, &a.file, json_out).await,
        Command::Acl(cmd) => acl(&c, cmd, json_out).await,
        Command::Kv(KvCmd::Get { key }) => {
            let r = call(
                &c,
                Method::GET,
                &format!("/v1/kv/{key}?raw"),
                Vec::new(),
                "kv get",
            )
            .await?;
            Ok(String::from_utf8_lossy(&r.body).into_owned())
        }
        Command::Kv(KvCmd::Put { key, value }) => {
            let r = call(
                &c,
                Method::PUT,
                &format!("/v1/kv/{key}"),
                value.into_bytes(),
                "kv put",
            )
            .await?;
            let ok = String::from_utf8_lossy(&r.body).trim() == "true";
            if !ok {
                bail!(
                    "kv put: the registry answered {}",
                    String::from_utf8_lossy(&r.body)
                );
            }
            Ok(String::new())
        }
    }
}

async fn cluster(c: &RegistryClient, cmd: ClusterCmd, json_out: bool) -> anyhow::Result<String> {
    match cmd {
        ClusterCmd::Status => {
            let status: Status = get_json(c, "/status", "cluster status").await?;
            let cfg: RaftConfiguration =
                get_json(c, "/v1/operator/raft/configuration", "cluster status").await?;
            if json_out {
                return Ok(pretty(&json!({"node": status, "configuration": cfg})));
            }
            let rows: Vec<Vec<String>> = cfg
                .servers
                .iter()
                .map(|sv| {
                    let role = if sv.leader { "leader" } else { "follower" };
                    vec![
                        cell(&sv.id),
                        cell(&sv.address),
                        role.into(),
                        sv.voter.to_string(),
                    ]
                })
                .collect();
            Ok(format!(
                "{}\n\nthis node: id {} role {} term {} commit {} applied {}",
                render(&["ID", "RAFT ADDRESS", "ROLE", "VOTER"], &rows),
                status.node_id,
                status.role,
                status.term,
                status.commit_index,
                status.applied_index
            ))
        }
        ClusterCmd::Join {
            node_id,
            raft_addr,
            http_addr,
        } => {
            let body = JoinRequest {
                node_id,
                raft_addr,
                http_addr,
            };
            call(
                c,
                Method::POST,
                "/v1/operator/raft/join",
                serde_json::to_vec(&body)?,
                "cluster join",
            )
            .await?;
            Ok(format!("node {node_id} is joining"))
        }
        ClusterCmd::Remove { id } => {
            call(
                c,
                Method::DELETE,
                &format!("/v1/operator/raft/peer?id={id}"),
                Vec::new(),
                "cluster remove",
            )
            .await?;
            Ok(format!("removed node {id}"))
        }
        ClusterCmd::Snapshot(SnapshotCmd::Save { file }) => {
            let r = call(c, Method::GET, "/v1/snapshot", Vec::new(), "snapshot save").await?;
            let tmp = file.with_extension("partial");
            std::fs::write(&tmp, &r.body).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))?;
            Ok(format!(
                "saved {} bytes to {} (index {})",
                r.body.len(),
                file.display(),
                r.consul_index().unwrap_or(0)
            ))
        }
        ClusterCmd::Snapshot(SnapshotCmd::Restore { file }) => {
            let blob =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            call(c, Method::PUT, "/v1/snapshot", blob, "snapshot restore").await?;
            Ok(format!("restored {}", file.display()))
        }
    }
}

async fn services(c: &RegistryClient, cmd: ServicesCmd, json_out: bool) -> anyhow::Result<String> {
    match cmd {
        ServicesCmd::List => {
            let v: BTreeMap<String, Vec<String>> =
                get_json(c, "/v1/catalog/services", "services list").await?;
            if json_out {
                return Ok(pretty(&v));
            }
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|(name, tags)| vec![name.clone(), tags.join(",")])
                .collect();
            Ok(render(&["SERVICE", "TAGS"], &rows))
        }
        ServicesCmd::Get { name } => {
            let v: Vec<ServiceEntry> =
                get_json(c, &format!("/v1/health/service/{name}"), "services get").await?;
            if json_out {
                return Ok(pretty(&v));
            }
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|e| {
                    let worst = e.checks.iter().map(|c| c.status).max();
                    vec![
                        cell(&e.service.id),
                        format!("{}:{}", cell(&e.service.address), e.service.port),
                        worst.unwrap_or(CheckStatus::Passing).as_str().to_owned(),
                    ]
                })
                .collect();
            Ok(render(&["INSTANCE", "ADDRESS", "HEALTH"], &rows))
        }
    }
}

async fn certs(c: &RegistryClient, cmd: CertsCmd, json_out: bool) -> anyhow::Result<String> {
    match cmd {
        CertsCmd::List => {
            let v: Vec<CertRecord> = get_json(c, "/certificates", "certs list").await?;
            if json_out {
                return Ok(pretty(&v));
            }
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|x| {
                    let state = if x.revoked { "revoked" } else { "valid" };
                    vec![
                        cell(&x.serial),
                        cell(&x.service),
                        cell(&x.plane),
                        cell(&x.not_after),
                        state.into(),
                    ]
                })
                .collect();
            Ok(render(
                &["SERIAL", "SERVICE", "PLANE", "NOT AFTER", "STATE"],
                &rows,
            ))
        }
        CertsCmd::Issue {
            service,
            plane,
            out,
        } => {
            let body = match plane {
                Some(p) => serde_json::to_vec(&IssueRequest { plane: Some(p) })?,
                None => Vec::new(),
            };
            let r = call(
                c,
                Method::POST,
                &format!("/certificates/{service}"),
                body,
                "certs issue",
            )
            .await?;
            let v: SignedLeaf = decode(&r, "certs issue")?;
            let Some(key_pem) = v.key_pem.as_deref() else {
                bail!("certs issue: the registry sent no key");
            };
            let spiffe_id = v.spiffe_id.as_deref().unwrap_or("-");
            let cert = out.join(format!("{service}.pem"));
            let key = out.join(format!("{service}.key"));
            std::fs::write(&cert, &v.cert_pem)
                .with_context(|| format!("writing {}", cert.display()))?;
            write_private(&key, key_pem)?;
            if json_out {
                return Ok(pretty(
                    &json!({"serial": v.serial, "spiffe_id": spiffe_id, "not_after": v.not_after,
                    "cert": cert, "key": key}),
                ));
            }
            Ok(format!(
                "issued {} ({spiffe_id}) until {}: {} and {}",
                v.serial,
                v.not_after,
                cert.display(),
                key.display()
            ))
        }
        CertsCmd::Revoke { serial, service } => match (serial, service) {
            (Some(serial), None) => {
                call(
                    c,
                    Method::DELETE,
                    &format!("/v1/connect/ca/certs/{serial}"),
                    Vec::new(),
                    "certs revoke",
                )
                .await?;
                Ok(format!("revoked {serial}"))
            }
            (None, Some(service)) => {
                call(
                    c,
                    Method::DELETE,
                    &format!("/certificates/{service}"),
                    Vec::new(),
                    "certs revoke",
                )
                .await?;
                Ok(format!("revoked every certificate of {service}"))
            }
            _ => bail!("certs revoke: give a SERIAL or --service NAME (not both)"),
        },
        CertsCmd::Ca => {
            let v: CaCert = get_json(c, "/certificates/ca", "certs ca").await?;
            Ok(if json_out {
                pretty(&v)
            } else {
                v.ca_pem.trim_end().to_owned()
            })
        }
    }
}

async fn acl(c: &RegistryClient, cmd: AclCmd, json_out: bool) -> anyhow::Result<String> {
    match cmd {
        AclCmd::Bootstrap => {
            let r = call(
                c,
                Method::PUT,
                "/v1/acl/bootstrap",
                Vec::new(),
                "acl bootstrap",
            )
            .await?;
            let v: TokenView = decode(&r, "acl bootstrap")?;
            Ok(if json_out {
                pretty(&v)
            } else {
                format!(
                    "AccessorID: {}\nSecretID:   {}",
                    v.accessor_id,
                    v.secret_id.as_deref().unwrap_or("-")
                )
            })
        }
        AclCmd::Token(TokenCmd::Create {
            service,
            management,
            read_only,
            description,
            ttl,
        }) => {
            let policy = |name: &str| {
                vec![PolicyLink {
                    name: name.to_owned(),
                    ..PolicyLink::default()
                }]
            };
            let mut body = TokenCreate {
                description,
                expiration_ttl: ttl,
                ..TokenCreate::default()
            };
            match (service, management, read_only) {
                (Some(service_name), false, false) => {
                    body.service_identities = vec![ServiceIdentity {
                        service_name,
                        ..ServiceIdentity::default()
                    }]
                }
                (None, true, false) => body.policies = policy("global-management"),
                (None, false, true) => body.policies = policy("read-only"),
                _ => {
                    bail!("acl token create: give one of --service NAME, --management, --read-only")
                }
            }
            let r = call(
                c,
                Method::PUT,
                "/v1/acl/token",
                serde_json::to_vec(&body)?,
                "acl token create",
            )
            .await?;
            let v: TokenView = decode(&r, "acl token create")?;
            Ok(if json_out {
                pretty(&v)
            } else {
                format!(
                    "AccessorID: {}\nSecretID:   {}\nKind:       {}",
                    v.accessor_id,
                    v.secret_id.as_deref().unwrap_or("-"),
                    v.kind()
                )
            })
        }
        AclCmd::Token(TokenCmd::List) => {
            let v: Vec<TokenView> = get_json(c, "/v1/acl/tokens", "acl token list").await?;
            if json_out {
                return Ok(pretty(&v));
            }
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|t| vec![cell(&t.accessor_id), t.kind(), cell(&t.description)])
                .collect();
            Ok(render(&["ACCESSOR", "KIND", "DESCRIPTION"], &rows))
        }
        AclCmd::Token(TokenCmd::Delete { accessor }) => {
            call(
                c,
                Method::DELETE,
                &format!("/v1/acl/token/{accessor}"),
                Vec::new(),
                "acl token delete",
            )
            .await?;
            Ok(if json_out {
                "true".into()
            } else {
                format!("deleted token {accessor}")
            })
        }
    }
}

fn now() -> i64 {
    lucid_core::unix_now()
}

/// Refuse to overwrite an existing file: a second `tls ca create` must not silently replace
/// the CA every node trusts.
fn fresh(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{} exists; not overwriting it", path.display());
    }
    Ok(())
}

fn tls(cmd: TlsCmd) -> anyhow::Result<String> {
    match cmd {
        TlsCmd::Ca(TlsCaCmd::Create { out }) => {
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let (cert, key) = (out.join("ca.pem"), out.join("ca-key.pem"));
            fresh(&cert)?;
            fresh(&key)?;
            let ca = lucid_tls::cluster::generate_cluster_ca(now())?;
            write_private(&key, &ca.key_pem)?;
            std::fs::write(&cert, &ca.cert_pem)
                .with_context(|| format!("writing {}", cert.display()))?;
            Ok(format!("wrote {} and {}", cert.display(), key.display()))
        }
        TlsCmd::Cert(TlsCertCmd::Create {
            ca,
            node,
            ip,
            dns,
            out,
        }) => {
            if node.is_empty()
                || !node
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            {
                bail!(
                    "--node {node:?}: letters, digits, '-', '.' and '_' only (it names the files)"
                );
            }
            let read = |name: &str| {
                let p = ca.join(name);
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
            };
            let pair = lucid_tls::cluster::PemPair {
                cert_pem: read("ca.pem")?,
                key_pem: read("ca-key.pem")?,
            };
            let leaf = lucid_tls::cluster::issue_node_cert(&pair, &node, &ip, &dns, now())?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let (cert, key) = (
                out.join(format!("{node}.pem")),
                out.join(format!("{node}-key.pem")),
            );
            fresh(&cert)?;
            fresh(&key)?;
            write_private(&key, &leaf.key_pem)?;
            std::fs::write(&cert, &leaf.cert_pem)
                .with_context(|| format!("writing {}", cert.display()))?;
            Ok(format!("wrote {} and {}", cert.display(), key.display()))
        }
    }
}

/// Write a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(pem.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A config file: the platform's circuit-breaker file, one Consul-style entry, or a list.
async fn config_apply(c: &RegistryClient, file: &Path, json_out: bool) -> anyhow::Result<String> {
    let doc = read_doc(file)?;
    let bodies: Vec<Value> = if doc.get("CircuitBreakerConfiguration").is_some() {
        lucid_core::config_entry::from_platform_circuit_breakers(&doc)
            .with_context(|| format!("{}", file.display()))?
    } else if let Value::Array(list) = doc {
        list
    } else {
        vec![doc]
    };
    // Validate everything before writing anything.
    let mut entries = Vec::new();
    for (n, b) in bodies.iter().enumerate() {
        // The user's own document, not a registry answer: name the entry as it was written.
        let label = b
            .get("Name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("#{}", n + 1), str::to_owned);
        let e = lucid_core::config_entry::parse_entry(b)
            .with_context(|| format!("{}: entry {label}", file.display()))?;
        entries.push(e);
    }
    let mut rows = Vec::new();
    for (b, e) in bodies.iter().zip(&entries) {
        let what = format!("config apply {} {}", e.kind.as_str(), e.name);
        call(
            c,
            Method::PUT,
            "/v1/config",
            b.to_string().into_bytes(),
            &what,
        )
        .await?;
        rows.push(vec![e.kind.as_str().to_owned(), e.name.clone()]);
    }
    Ok(if json_out {
        pretty(&Value::Array(bodies))
    } else {
        render(&["KIND", "NAME"], &rows)
    })
}
