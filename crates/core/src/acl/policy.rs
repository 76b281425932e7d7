//! [`Policy`]: one `Rules` text decoded as HCL v1 decodes into Consul's `acl.PolicyRules`
//! (keys matched case-insensitively, unknown keys ignored, a repeated scalar's last value
//! kept, repeated labels all kept) and validated as `PolicyRules.Validate` does, in the same
//! order, so the first bad level reported is the one Consul reports.
//!
//! Rules for the same (kind, exact or prefix, label) are merged as they are read, with the
//! precedence Consul's policy merger uses between policies (deny > write > list > read): the
//! answer is the same whether the repeats are in one policy or several.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::hcl::{self, Item, Node};
use super::lex::Pos;
use super::{json, Level, Resource, RulesError};

/// Named rules of one kind: exact names and prefixes, each with its level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Rules {
    pub(super) exact: BTreeMap<String, Level>,
    pub(super) prefix: BTreeMap<String, Level>,
}

/// One policy's rules, validated, with repeats merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `acl`, `keyring`, `operator`, `mesh`, `peering`: set ones only.
    pub(super) scalars: BTreeMap<Resource, Level>,
    /// `agent`, `event`, `key`, `node`, `query`, `service`, `session` rules; under
    /// [`Resource::Intention`], the `intentions` levels written in `service` rules (the ones
    /// derived from a rule's `policy` are added by the authorizer, after merging).
    pub(super) rules: BTreeMap<Resource, Rules>,
}

/// A labelled rule kind: its HCL key, what it is about, and whether its label is a prefix.
struct Block {
    key: &'static str,
    resource: Resource,
    prefix: bool,
}

const fn block(key: &'static str, resource: Resource, prefix: bool) -> Block {
    Block {
        key,
        resource,
        prefix,
    }
}

/// In the order of `PolicyRules`' fields: the order Consul decodes and validates them.
const BLOCKS: [Block; 14] = [
    block("agent", Resource::Agent, false),
    block("agent_prefix", Resource::Agent, true),
    block("key", Resource::Key, false),
    block("key_prefix", Resource::Key, true),
    block("node", Resource::Node, false),
    block("node_prefix", Resource::Node, true),
    block("service", Resource::Service, false),
    block("service_prefix", Resource::Service, true),
    block("session", Resource::Session, false),
    block("session_prefix", Resource::Session, true),
    block("event", Resource::Event, false),
    block("event_prefix", Resource::Event, true),
    block("query", Resource::Query, false),
    block("query_prefix", Resource::Query, true),
];

/// The scalars after the blocks, in `PolicyRules`' order (`acl` comes before the blocks).
const TAIL_SCALARS: [Resource; 4] = [
    Resource::Keyring,
    Resource::Operator,
    Resource::Mesh,
    Resource::Peering,
];

/// One labelled rule as written, levels still text.
struct RawRule {
    label: String,
    policy: String,
    intentions: Option<String>,
}

/// Parse and validate one policy's `Rules`: HCL v1, or JSON when the first non-blank
/// character is `{`. Blank text is the empty policy.
pub fn parse(rules: &str) -> Result<Policy, RulesError> {
    let items = if rules.trim_start().starts_with('{') {
        json::parse(rules)
    } else {
        hcl::parse(rules)
    }
    .map_err(RulesError::Parse)?;

    // Decode everything first: a shape error anywhere wins over a bad level, as in Consul.
    let acl = scalar(&items, "acl", "")?;
    let mut blocks = Vec::with_capacity(BLOCKS.len());
    for b in &BLOCKS {
        blocks.push(block_rules(&items, b)?);
    }
    let mut tail = Vec::with_capacity(TAIL_SCALARS.len());
    for r in TAIL_SCALARS {
        tail.push(scalar(&items, r.as_str(), "")?);
    }

    let mut p = Policy::default();
    p.set_scalar(Resource::Acl, acl)?;
    for (b, raws) in BLOCKS.iter().zip(blocks) {
        for raw in raws {
            p.add_rule(b, raw)?;
        }
    }
    for (r, value) in TAIL_SCALARS.into_iter().zip(tail) {
        p.set_scalar(r, value)?;
    }
    Ok(p)
}

// === impl Policy ===

impl Policy {
    /// No rule at all (blank rules, or only comments and unknown keys).
    pub fn is_empty(&self) -> bool {
        self.scalars.is_empty() && self.rules.is_empty()
    }

    /// The level of a scalar rule (`acl`, `keyring`, `operator`, `mesh`, `peering`), if set.
    pub fn scalar(&self, r: Resource) -> Option<Level> {
        self.scalars.get(&r).copied()
    }

    /// The level of the exact rule for `name` (`key "name" { ... }`). For
    /// [`Resource::Intention`], the `intentions` written in `service "name"`.
    pub fn exact(&self, r: Resource, name: &str) -> Option<Level> {
        self.rules.get(&r)?.exact.get(name).copied()
    }

    /// The level of the prefix rule for exactly `prefix` (`key_prefix "prefix" { ... }`).
    /// For [`Resource::Intention`], the `intentions` written in `service_prefix "prefix"`.
    pub fn prefix(&self, r: Resource, prefix: &str) -> Option<Level> {
        self.rules.get(&r)?.prefix.get(prefix).copied()
    }

    /// Merge `other` into this policy as Consul merges a token's policies: for each scalar
    /// and each (kind, exact or prefix, label), the strongest level wins
    /// (deny > write > list > read); a service's `policy` and `intentions` merge apart.
    pub fn merge(&mut self, other: &Policy) {
        for (r, l) in &other.scalars {
            self.merge_scalar(*r, *l);
        }
        for (r, rules) in &other.rules {
            let mine = self.rules.entry(*r).or_default();
            for (label, l) in &rules.exact {
                mine.add(false, label, *l);
            }
            for (label, l) in &rules.prefix {
                mine.add(true, label, *l);
            }
        }
    }

    fn merge_scalar(&mut self, r: Resource, l: Level) {
        self.scalars
            .entry(r)
            .and_modify(|have| *have = have.strongest(l))
            .or_insert(l);
    }

    /// A scalar as written (`None`: absent; `""` is allowed and means unset, as in Consul).
    fn set_scalar(&mut self, r: Resource, value: Option<String>) -> Result<(), RulesError> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(());
        };
        match Level::parse(&value) {
            Some(l) if l != Level::List => {
                self.merge_scalar(r, l);
                Ok(())
            }
            _ => Err(RulesError::Invalid(format!(
                "Invalid {} policy: {value:?}",
                r.as_str()
            ))),
        }
    }

    fn add_rule(&mut self, b: &Block, raw: RawRule) -> Result<(), RulesError> {
        let level = Level::parse(&raw.policy)
            .filter(|l| *l != Level::List || b.resource == Resource::Key)
            .ok_or_else(|| {
                RulesError::Invalid(format!(
                    "Invalid {} policy: {:?} has policy {:?}",
                    b.key, raw.label, raw.policy
                ))
            })?;
        if let Some(i) = &raw.intentions {
            let intentions = Level::parse(i)
                .filter(|l| *l != Level::List)
                .ok_or_else(|| {
                    RulesError::Invalid(format!(
                        "Invalid {} intentions policy: {:?} has intentions {i:?}",
                        b.key, raw.label
                    ))
                })?;
            self.rules
                .entry(Resource::Intention)
                .or_default()
                .add(b.prefix, &raw.label, intentions);
        }
        self.rules
            .entry(b.resource)
            .or_default()
            .add(b.prefix, &raw.label, level);
        Ok(())
    }
}

impl FromStr for Policy {
    type Err = RulesError;

    fn from_str(rules: &str) -> Result<Policy, RulesError> {
        parse(rules)
    }
}

// === impl Rules ===

impl Rules {
    /// Add a rule, keeping the stronger level if the label already has one.
    fn add(&mut self, prefix: bool, label: &str, level: Level) {
        let map = if prefix {
            &mut self.prefix
        } else {
            &mut self.exact
        };
        map.entry(label.to_owned())
            .and_modify(|have| *have = have.strongest(level))
            .or_insert(level);
    }
}

// === decoding the tree ===

/// The items whose first key is `key`, in any case (HCL v1 matches struct fields so).
fn matching<'a>(items: &'a [Item], key: &'a str) -> impl Iterator<Item = &'a Item> + 'a {
    items
        .iter()
        .filter(move |i| i.keys.first().is_some_and(|k| k.eq_ignore_ascii_case(key)))
}

fn shape_error(at: Option<Pos>, msg: String) -> RulesError {
    RulesError::Parse(match at {
        Some(at) => format!("At {at}: {msg}"),
        None => msg,
    })
}

/// A string field (`acl = "write"`, or `policy` inside a rule): the last value written wins;
/// `context` names the enclosing rule in errors.
fn scalar(items: &[Item], key: &str, context: &str) -> Result<Option<String>, RulesError> {
    if let Some(it) = matching(items, key).find(|i| i.keys.len() > 1) {
        let msg = format!("{context}{key}: expected a string, got a labelled block");
        return Err(shape_error(it.at, msg));
    }
    let mut out = None;
    for it in matching(items, key) {
        match &it.val {
            Node::Scalar(s) => out = Some(s.clone()),
            other => {
                let msg = format!(
                    "{context}{key}: expected a string, got {}",
                    other.describe()
                );
                return Err(shape_error(it.at, msg));
            }
        }
    }
    Ok(out)
}

/// Every rule of one kind, from `key "label" { ... }` items and from `key = { "label" = {
/// ... } }` / JSON `{"key": {"label": {...}}}` items.
fn block_rules(items: &[Item], b: &Block) -> Result<Vec<RawRule>, RulesError> {
    let mut out = Vec::new();
    for it in matching(items, b.key) {
        match it.keys.as_slice() {
            [_, label] => out.push(rule(b, label, &it.val, it.at)?),
            // `key "a" "b" { ... }` would be a rule on `a` for a reader who skims; Consul
            // refuses it, so say so rather than guess.
            [_, label, extra, ..] => {
                let msg = format!(
                    "{} {label:?} {extra:?}: a rule takes one label, as in {} \"<name>\" {{ policy = \"read\" }}",
                    b.key, b.key
                );
                return Err(shape_error(it.at, msg));
            }
            _ => {}
        }
    }
    for it in matching(items, b.key).filter(|i| i.keys.len() == 1) {
        match &it.val {
            Node::Object(inner) => {
                for sub in inner {
                    if let Some(label) = sub.keys.first() {
                        out.push(rule(b, label, &sub.val, sub.at)?);
                    }
                }
            }
            // An empty list decodes to no rules in HCL v1.
            Node::List(l) if l.is_empty() => {}
            other => {
                let (key, got) = (b.key, other.describe());
                let msg = format!(
                    "{key}: expected labelled rules, as in \
                     {key} \"<name>\" {{ policy = \"read\" }}, got {got}"
                );
                return Err(shape_error(it.at, msg));
            }
        }
    }
    Ok(out)
}

/// One rule's body: `policy`, and for services `intentions`; other attributes are ignored.
fn rule(b: &Block, label: &str, body: &Node, at: Option<Pos>) -> Result<RawRule, RulesError> {
    let Node::Object(body) = body else {
        let msg = format!(
            "{} {label:?}: expected a {{ ... }} block, got {} (is the label missing? a rule is \
             written {} \"<name>\" {{ policy = \"read\" }})",
            b.key,
            body.describe(),
            b.key
        );
        return Err(shape_error(at, msg));
    };
    let context = format!("{} {label:?}: ", b.key);
    let policy = scalar(body, "policy", &context)?.unwrap_or_default();
    let intentions = if b.resource == Resource::Service {
        scalar(body, "intentions", &context)?.filter(|i| !i.is_empty())
    } else {
        None
    };
    Ok(RawRule {
        label: label.to_owned(),
        policy,
        intentions,
    })
}
