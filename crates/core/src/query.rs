//! Consul's prepared queries (`/v1/query`): the definition, parsed once with Consul's key
//! rules and checked as Consul checks it; the lookup of a name the way Consul resolves it (an
//! ID, then an exact name, then the longest `name_prefix_match` template, rendered for the
//! name asked); and the one test an instance passes to be in an answer, shared by the HTTP
//! `execute` and DNS (`<query>.query.<domain>`).
//!
//! The struct is also the stored record and the JSON answer (Consul's field names), so what is
//! stored is what is shown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::CheckStatus;
use crate::obj::{bad, BodyError, Obj};

/// What Consul shows instead of a query's token to readers without `acl:write`; refused as
/// a token on write, since it means a definition was read back and resubmitted.
pub const REDACTED: &str = "<hidden>";

/// The only template type Consul has.
pub const NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// A prepared query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PreparedQuery {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    /// A session the query lives and dies with ("" for none).
    pub session: String,
    /// The token the query runs with ("" for the caller's).
    pub token: String,
    pub service: ServiceQuery,
    #[serde(rename = "DNS")]
    pub dns: QueryDns,
    pub template: QueryTemplate,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What a query selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ServiceQuery {
    pub service: String,
    pub failover: Failover,
    /// Checks that do not count against an instance's health.
    #[serde(rename = "IgnoreCheckIDs")]
    pub ignore_check_ids: Vec<String>,
    /// Leave out `warning` instances too (`critical` ones are always left out).
    pub only_passing: bool,
    pub near: String,
    /// Each must be on the instance, case-insensitively; `!tag` must not be.
    pub tags: Vec<String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
    /// Answer the service's mesh endpoints (its sidecars) instead of its instances.
    pub connect: bool,
    pub peer: String,
}

/// Where to look when the local datacenter has no healthy instance. Kept as given: this
/// cluster is one datacenter, so there is nowhere else to look (`Failovers` is always 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Failover {
    #[serde(rename = "NearestN")]
    pub nearest_n: u64,
    pub datacenters: Vec<String>,
    pub targets: Vec<FailoverTarget>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct FailoverTarget {
    pub peer: String,
    pub datacenter: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryDns {
    /// As given (`"10s"`); "" for the DNS server's own TTL.
    #[serde(rename = "TTL")]
    pub ttl: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct QueryTemplate {
    /// "" (not a template) or `name_prefix_match`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub regexp: String,
    pub remove_empty_tags: bool,
}

/// Why a template could not be rendered for a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(String);

impl PreparedQuery {
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }

    /// The DNS TTL it asks for, in seconds (`None`: the server's).
    pub fn dns_ttl_secs(&self) -> Option<u32> {
        if self.dns.ttl.is_empty() {
            return None;
        }
        crate::duration::parse_duration(&self.dns.ttl)
            .ok()
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
    }

    /// This query as it runs for `asked` (the name or ID it was looked up by): a template has
    /// `${name.full}`, `${name.prefix}`, `${name.suffix}`, `${match(N)}` and
    /// `${agent.segment}` replaced in its service fields, and empty tags dropped when it says
    /// so. Anything else is returned as it is.
    pub fn render(&self, asked: &str) -> Result<PreparedQuery, RenderError> {
        self.render_with(asked, self.regex()?.as_ref())
    }

    /// The template's compiled `Regexp`, if it has one.
    fn regex(&self) -> Result<Option<regex::Regex>, RenderError> {
        if !self.is_template() || self.template.regexp.is_empty() {
            return Ok(None);
        }
        regex::Regex::new(&self.template.regexp)
            .map(Some)
            .map_err(|e| RenderError(format!("Bad Regexp: {e}")))
    }

    fn render_with(
        &self,
        asked: &str,
        re: Option<&regex::Regex>,
    ) -> Result<PreparedQuery, RenderError> {
        if !self.is_template() {
            return Ok(self.clone());
        }
        let caps: Vec<String> = re
            .and_then(|re| re.captures(asked))
            .map(|c| {
                c.iter()
                    .map(|m| m.map_or_else(String::new, |m| m.as_str().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        // The prefix is the query's name as far as it matched, in the asker's spelling.
        let cut = self.name.len().min(asked.len());
        let (prefix, suffix) = match (asked.get(..cut), asked.get(cut..)) {
            (Some(p), Some(s)) if p.eq_ignore_ascii_case(&self.name) => (p, s),
            _ => (asked, ""),
        };
        let eval = |s: &str| interpolate(s, asked, prefix, suffix, &caps);
        let mut q = self.clone();
        let svc = &mut q.service;
        svc.service = eval(&svc.service)?;
        svc.near = eval(&svc.near)?;
        svc.peer = eval(&svc.peer)?;
        for list in [
            &mut svc.tags,
            &mut svc.ignore_check_ids,
            &mut svc.failover.datacenters,
        ] {
            for item in list.iter_mut() {
                *item = eval(item)?;
            }
        }
        if q.template.remove_empty_tags {
            svc.tags.retain(|t| !t.is_empty());
        }
        for map in [&mut svc.node_meta, &mut svc.service_meta] {
            for v in map.values_mut() {
                *v = eval(v)?;
            }
        }
        Ok(q)
    }
}

/// Replace each `${...}` in `s`.
fn interpolate(
    s: &str,
    full: &str,
    prefix: &str,
    suffix: &str,
    caps: &[String],
) -> Result<String, RenderError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| RenderError(format!("Bad format: unclosed \"${{\" in {s:?}")))?;
        let expr = after[..end].trim();
        let value = match expr {
            "name.full" => full,
            "name.prefix" => prefix,
            "name.suffix" => suffix,
            "agent.segment" => "",
            _ => {
                let n = expr
                    .strip_prefix("match(")
                    .and_then(|e| e.strip_suffix(')'))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .ok_or_else(|| {
                        RenderError(format!("Bad format: unknown variable accessed: {expr}"))
                    })?;
                caps.get(n).map_or("", String::as_str)
            }
        };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ServiceQuery {
    /// Do an instance's tags and meta let it into the answer?
    pub fn admits(&self, tags: &[String], meta: &BTreeMap<String, String>) -> bool {
        let has = |t: &str| tags.iter().any(|x| x.eq_ignore_ascii_case(t));
        let tags_ok = self.tags.iter().all(|t| match t.strip_prefix('!') {
            Some(absent) => !has(absent),
            None => has(t),
        });
        tags_ok
            && self
                .service_meta
                .iter()
                .all(|(k, v)| meta.get(k) == Some(v))
    }

    /// Does the node's meta let its instances in?
    pub fn admits_node(&self, meta: &BTreeMap<String, String>) -> bool {
        self.node_meta.iter().all(|(k, v)| meta.get(k) == Some(v))
    }

    /// Is an instance whose checks are these (id, status) healthy enough? The checks in
    /// `IgnoreCheckIDs` do not count.
    pub fn healthy<'a>(&self, checks: impl IntoIterator<Item = (&'a str, CheckStatus)>) -> bool {
        let worst = checks
            .into_iter()
            .filter(|(id, _)| !self.ignore_check_ids.iter().any(|i| i == id))
            .map(|(_, s)| s)
            .max()
            .unwrap_or(CheckStatus::Passing);
        self.status_ok(worst)
    }

    /// Is an instance whose worst check is `worst` healthy enough?
    pub fn status_ok(&self, worst: CheckStatus) -> bool {
        match worst {
            CheckStatus::Passing => true,
            CheckStatus::Warning => !self.only_passing,
            CheckStatus::Critical => false,
        }
    }
}

/// Parse a create or update body (the ID as given; the indexes are the store's). Consul's checks and
/// words: a Service name is required, an unnamed query must be a template or bound to a
/// session, NearestN is not negative, the DNS TTL parses, a template has a known type, a
/// compiling Regexp and only known variables, and the redacted token is not a token.
pub fn parse(body: &Value) -> Result<PreparedQuery, BodyError> {
    let o = Obj::new(body, String::new())?;
    o.only(&[
        "id",
        "name",
        "session",
        "token",
        "service",
        "dns",
        "template",
        "namespace",
        "partition",
        "createindex",
        "modifyindex",
    ])?;
    let mut q = PreparedQuery {
        id: o.string("ID", &["id"])?.unwrap_or_default(),
        name: o.string("Name", &["name"])?.unwrap_or_default(),
        session: o.string("Session", &["session"])?.unwrap_or_default(),
        token: o.string("Token", &["token"])?.unwrap_or_default(),
        ..PreparedQuery::default()
    };
    if q.token == REDACTED {
        return Err(bad(
            "Token",
            format!("Bad Token '{REDACTED}', it looks like a query definition with a redacted token was submitted"),
        ));
    }
    if let Some(t) = o.get(&["template"]) {
        let t = Obj::new(t, "Template.".into())?;
        t.only(&["type", "regexp", "removeemptytags"])?;
        q.template = QueryTemplate {
            kind: t.string("Type", &["type"])?.unwrap_or_default(),
            regexp: t.string("Regexp", &["regexp"])?.unwrap_or_default(),
            remove_empty_tags: t.boolean("RemoveEmptyTags", &["removeemptytags"])?,
        };
        match q.template.kind.as_str() {
            NAME_PREFIX_MATCH => {}
            "" if q.template.regexp.is_empty() && !q.template.remove_empty_tags => {}
            other => return Err(bad("Template", format!("Bad Template.Type '{other}'"))),
        }
    }
    let s = o
        .get(&["service"])
        .ok_or_else(|| bad("Service", "Must provide a Service name to query"))?;
    q.service = parse_service(&Obj::new(s, "Service.".into())?)?;
    if let Some(d) = o.get(&["dns"]) {
        let d = Obj::new(d, "DNS.".into())?;
        d.only(&["ttl"])?;
        q.dns.ttl = d.string("TTL", &["ttl"])?.unwrap_or_default();
        if !q.dns.ttl.is_empty() {
            crate::duration::parse_duration(&q.dns.ttl)
                .map_err(|e| bad("DNS.TTL", format!("Bad DNS TTL '{}': {e}", q.dns.ttl)))?;
        }
    }
    if q.name.is_empty() && !q.is_template() && q.session.is_empty() {
        return Err(bad("Session", "Must be bound to a session"));
    }
    // A template that cannot render for its own name cannot render for any.
    q.render(&q.name)
        .map_err(|e| bad("Template", e.to_string()))?;
    Ok(q)
}

fn parse_service(s: &Obj<'_>) -> Result<ServiceQuery, BodyError> {
    s.only(&[
        "service",
        "failover",
        "ignorecheckids",
        "onlypassing",
        "near",
        "tags",
        "nodemeta",
        "servicemeta",
        "connect",
        "peer",
        "namespace",
        "partition",
        "samenessgroup",
    ])?;
    let service = s
        .string("Service", &["service"])?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("Service.Service", "Must provide a Service name to query"))?;
    let mut failover = Failover::default();
    if let Some(f) = s.get(&["failover"]) {
        let f = Obj::new(f, "Service.Failover.".into())?;
        f.only(&["nearestn", "datacenters", "targets"])?;
        failover.nearest_n = match f.get(&["nearestn"]) {
            None => 0,
            Some(v) => match (v.as_u64(), v.as_i64()) {
                (Some(n), _) => n,
                (None, Some(n)) => {
                    return Err(bad(
                        "Service.Failover.NearestN",
                        format!("Bad NearestN '{n}', must be >= 0"),
                    ))
                }
                _ => return Err(bad("Service.Failover.NearestN", "must be an integer")),
            },
        };
        failover.datacenters = f.strings("Datacenters", &["datacenters"])?;
        if let Some(Value::Array(items)) = f.get(&["targets"]) {
            for (n, item) in items.iter().enumerate() {
                let t = Obj::new(item, format!("Service.Failover.Targets[{n}]."))?;
                t.only(&["peer", "datacenter", "namespace", "partition"])?;
                failover.targets.push(FailoverTarget {
                    peer: t.string("Peer", &["peer"])?.unwrap_or_default(),
                    datacenter: t.string("Datacenter", &["datacenter"])?.unwrap_or_default(),
                });
            }
        } else if f.has("targets") {
            return Err(bad("Service.Failover.Targets", "must be a list"));
        }
    }
    Ok(ServiceQuery {
        service,
        failover,
        ignore_check_ids: s.strings("IgnoreCheckIDs", &["ignorecheckids"])?,
        only_passing: s.boolean("OnlyPassing", &["onlypassing"])?,
        near: s.string("Near", &["near"])?.unwrap_or_default(),
        tags: s.strings("Tags", &["tags"])?,
        node_meta: s.string_map("NodeMeta", &["nodemeta"])?,
        service_meta: s.string_map("ServiceMeta", &["servicemeta"])?,
        connect: s.boolean("Connect", &["connect"])?,
        peer: s.string("Peer", &["peer"])?.unwrap_or_default(),
    })
}

/// A template's compiled `Regexp` (`None`: it has none), or why it does not compile.
type Compiled = Result<Option<regex::Regex>, RenderError>;

/// Every query, for looking names up. A template's expression is compiled the first time
/// the template is used and kept (DNS resolves through one table for every `.query.`
/// question; an HTTP execute compiles only the query it runs).
#[derive(Debug, Default)]
pub struct QueryTable {
    queries: Vec<PreparedQuery>,
    regexes: Vec<std::sync::OnceLock<Compiled>>,
}

impl QueryTable {
    pub fn new(queries: Vec<PreparedQuery>) -> QueryTable {
        let regexes = queries.iter().map(|_| std::sync::OnceLock::new()).collect();
        QueryTable { queries, regexes }
    }

    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// The query `asked` names, as Consul resolves it: by ID, then by exact name (without
    /// case), then the template with the longest name that prefixes it (an unnamed template
    /// catches every name).
    pub fn find(&self, asked: &str) -> Option<&PreparedQuery> {
        self.position(asked).and_then(|i| self.queries.get(i))
    }

    fn position(&self, asked: &str) -> Option<usize> {
        let qs = &self.queries;
        qs.iter()
            .position(|q| q.id == asked)
            .or_else(|| {
                qs.iter()
                    .position(|q| !q.name.is_empty() && q.name.eq_ignore_ascii_case(asked))
            })
            .or_else(|| {
                qs.iter()
                    .enumerate()
                    .filter(|(_, q)| q.is_template() && starts_with_ignore_case(asked, &q.name))
                    .max_by_key(|(_, q)| q.name.len())
                    .map(|(i, _)| i)
            })
    }

    /// [`QueryTable::find`], rendered for `asked`. A template asked for by its ID is refused,
    /// as Consul refuses it: there is no name to render it for.
    pub fn resolve(&self, asked: &str) -> Option<Result<PreparedQuery, RenderError>> {
        let i = self.position(asked)?;
        let (q, re) = (self.queries.get(i)?, self.regexes.get(i)?);
        if q.is_template() && q.id == asked {
            return Some(Err(RenderError(
                "prepared query templates can only be resolved up by name, not by ID".into(),
            )));
        }
        Some(match re.get_or_init(|| q.regex()) {
            Ok(re) => q.render_with(asked, re.as_ref()),
            Err(e) => Err(e.clone()),
        })
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests;
