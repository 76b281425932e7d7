//! What each subcommand does: one or a few registry API calls, then a table or JSON.

use std::path::Path;

use anyhow::{bail, Context};
use http::Method;
use lucid_client::{RegistryClient, Response};
use serde_json::{json, Value};

use crate::cli::{
    AclCmd, ApplyCmd, CertsCmd, Cli, ClusterCmd, Command, KvCmd, ServicesCmd, SnapshotCmd,
    TlsCaCmd, TlsCertCmd, TlsCmd, TokenCmd,
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
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let reason = match (
        body["error"]["code"].as_str(),
        body["error"]["message"].as_str(),
    ) {
        (Some(code), Some(m)) => format!("{code}: {m}"),
        _ => String::from_utf8_lossy(&r.body).trim().to_owned(),
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

async fn get_json(c: &RegistryClient, path: &str, what: &str) -> anyhow::Result<Value> {
    let r = call(c, Method::GET, path, Vec::new(), what).await?;
    serde_json::from_slice(&r.body).with_context(|| format!("{what}: the answer is not JSON"))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
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
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            Ok(if json_out {
                pretty(&v)
            } else {
                format!(
                    "applied {}: {} planes, {} intentions",
                    a.file.display(),
                    s(&v["planes"]),
                    s(&v["intentions"])
                )
            })
        }
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
            let status = get_json(c, "/status", "cluster status").await?;
            let cfg = get_json(c, "/v1/operator/raft/configuration", "cluster status").await?;
            if json_out {
                return Ok(pretty(&json!({"node": status, "configuration": cfg})));
            }
            let rows: Vec<Vec<String>> = cfg["Servers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|sv| {
                            vec![
                                s(&sv["ID"]),
                                s(&sv["Address"]),
                                if sv["Leader"] == true {
                                    "leader".into()
                                } else {
                                    "follower".into()
                                },
                                s(&sv["Voter"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(format!(
                "{}\n\nthis node: id {} role {} term {} commit {} applied {}",
                render(&["ID", "RAFT ADDRESS", "ROLE", "VOTER"], &rows),
                s(&status["node_id"]),
                s(&status["role"]),
                s(&status["term"]),
                s(&status["commit_index"]),
                s(&status["applied_index"])
            ))
        }
        ClusterCmd::Join {
            node_id,
            raft_addr,
            http_addr,
        } => {
            let body = json!({"node_id": node_id, "raft_addr": raft_addr, "http_addr": http_addr});
            call(
                c,
                Method::POST,
                "/v1/operator/raft/join",
                body.to_string().into_bytes(),
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
            let v = get_json(c, "/v1/catalog/services", "services list").await?;
            if json_out {
                return Ok(pretty(&v));
            }
            let rows: Vec<Vec<String>> = v
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, tags)| {
                            vec![
                                k.clone(),
                                tags.as_array()
                                    .map(|t| t.iter().map(s).collect::<Vec<_>>().join(","))
                                    .unwrap_or_default(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(render(&["SERVICE", "TAGS"], &rows))
        }
        ServicesCmd::Get { name } => {
            let v = get_json(c, &format!("/v1/health/service/{name}"), "services get").await?;
            if json_out {
                return Ok(pretty(&v));
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            let checks = e["Checks"].as_array().cloned().unwrap_or_default();
                            let worst = ["critical", "warning"]
                                .into_iter()
                                .find(|w| checks.iter().any(|c| c["Status"] == *w))
                                .unwrap_or("passing");
                            vec![
                                s(&e["Service"]["ID"]),
                                format!(
                                    "{}:{}",
                                    s(&e["Service"]["Address"]),
                                    s(&e["Service"]["Port"])
                                ),
                                worst.to_owned(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(render(&["INSTANCE", "ADDRESS", "HEALTH"], &rows))
        }
    }
}

async fn certs(c: &RegistryClient, cmd: CertsCmd, json_out: bool) -> anyhow::Result<String> {
    match cmd {
        CertsCmd::List => {
            let v = get_json(c, "/certificates", "certs list").await?;
            if json_out {
                return Ok(pretty(&v));
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            vec![
                                s(&x["serial"]),
                                s(&x["service"]),
                                s(&x["plane"]),
                                s(&x["not_after"]),
                                if x["revoked"] == true {
                                    "revoked".into()
                                } else {
                                    "valid".into()
                                },
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
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
                Some(p) => json!({"plane": p}).to_string().into_bytes(),
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
            let v: Value =
                serde_json::from_slice(&r.body).context("certs issue: the answer is not JSON")?;
            let cert = out.join(format!("{service}.pem"));
            let key = out.join(format!("{service}.key"));
            std::fs::write(&cert, s(&v["cert_pem"]))
                .with_context(|| format!("writing {}", cert.display()))?;
            write_private(&key, &s(&v["key_pem"]))?;
            if json_out {
                return Ok(pretty(
                    &json!({"serial": v["serial"], "spiffe_id": v["spiffe_id"], "not_after": v["not_after"],
                    "cert": cert, "key": key}),
                ));
            }
            Ok(format!(
                "issued {} ({}) until {}: {} and {}",
                s(&v["serial"]),
                s(&v["spiffe_id"]),
                s(&v["not_after"]),
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
            let v = get_json(c, "/certificates/ca", "certs ca").await?;
            Ok(if json_out {
                pretty(&v)
            } else {
                s(&v["ca_pem"]).trim_end().to_owned()
            })
        }
    }
}

async fn acl(c: &RegistryClient, cmd: AclCmd, json_out: bool) -> anyhow::Result<String> {
    let token_line = |v: &Value| {
        let kind = if let Some(p) = v["Policies"][0]["Name"].as_str() {
            p.to_owned()
        } else {
            format!("service:{}", s(&v["ServiceIdentities"][0]["ServiceName"]))
        };
        (kind, s(&v["AccessorID"]), s(&v["Description"]))
    };
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
            let v: Value =
                serde_json::from_slice(&r.body).context("acl bootstrap: the answer is not JSON")?;
            Ok(if json_out {
                pretty(&v)
            } else {
                format!(
                    "AccessorID: {}\nSecretID:   {}",
                    s(&v["AccessorID"]),
                    s(&v["SecretID"])
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
            let mut body = json!({"Description": description});
            if let Some(ttl) = ttl {
                body["ExpirationTTL"] = json!(ttl);
            }
            match (service, management, read_only) {
                (Some(name), false, false) => {
                    body["ServiceIdentities"] = json!([{"ServiceName": name}])
                }
                (None, true, false) => body["Policies"] = json!([{"Name": "global-management"}]),
                (None, false, true) => body["Policies"] = json!([{"Name": "read-only"}]),
                _ => {
                    bail!("acl token create: give one of --service NAME, --management, --read-only")
                }
            }
            let r = call(
                c,
                Method::PUT,
                "/v1/acl/token",
                body.to_string().into_bytes(),
                "acl token create",
            )
            .await?;
            let v: Value = serde_json::from_slice(&r.body)
                .context("acl token create: the answer is not JSON")?;
            let (kind, acc, _) = token_line(&v);
            Ok(if json_out {
                pretty(&v)
            } else {
                format!(
                    "AccessorID: {acc}\nSecretID:   {}\nKind:       {kind}",
                    s(&v["SecretID"])
                )
            })
        }
        AclCmd::Token(TokenCmd::List) => {
            let v = get_json(c, "/v1/acl/tokens", "acl token list").await?;
            if json_out {
                return Ok(pretty(&v));
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| {
                            let (k, a, d) = token_line(t);
                            vec![a, k, d]
                        })
                        .collect()
                })
                .unwrap_or_default();
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
    for b in &bodies {
        lucid_core::config_entry::parse_entry(b)
            .with_context(|| format!("{}: entry {}", file.display(), s(&b["Name"])))?;
    }
    let mut rows = Vec::new();
    for b in &bodies {
        let what = format!("config apply {} {}", s(&b["Kind"]), s(&b["Name"]));
        call(
            c,
            Method::PUT,
            "/v1/config",
            b.to_string().into_bytes(),
            &what,
        )
        .await?;
        rows.push(vec![s(&b["Kind"]), s(&b["Name"])]);
    }
    Ok(if json_out {
        pretty(&Value::Array(bodies))
    } else {
        render(&["KIND", "NAME"], &rows)
    })
}
