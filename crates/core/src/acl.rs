//! Consul's ACL rule language and authorizer: a policy's `Rules` text (HCL v1, or JSON when it
//! starts with `{`) parsed and validated as Consul does, several policies merged into one rule
//! set (deny > write > list > read per rule), and that set asked "may this token do X on Y?"
//! with Consul's answers: an exact rule beats the longest prefix rule, no rule falls through
//! to the default policy, and the default `allow` never grants `acl` nor snapshots.
//! Also Consul's built-in and synthetic policies: global-management, global-read-only,
//! service and node identities, and the six built-in templated policies.
//!
//! # Layout
//! - this file: the vocabulary ([`Level`], [`Resource`], [`Access`], [`enum@Default`]) and
//!   [`RulesError`].
//! - `lex` and `hcl`: the HCL v1 subset that Consul's rules use, read into a small tree.
//! - `json`: the JSON form of the rules, read into the same tree.
//! - `policy`: [`Policy`], the tree decoded and validated as `acl.PolicyRules` is.
//! - `authorizer`: [`Authorizer`], Consul's `policyAuthorizer` chained to the default.
//! - `builtin`: built-in policies, identity rules, synthetic policy IDs, name rules.
//! - `templates`: the built-in templated policies and their rendering.

use std::fmt;

mod authorizer;
mod builtin;
mod hcl;
mod json;
mod lex;
mod policy;
mod templates;

pub use authorizer::Authorizer;
pub use builtin::{
    global_management_rules, global_read_only_rules, node_identity_rules, service_identity_rules,
    synthetic_policy_id, valid_identity_name, valid_policy_name, valid_role_name,
    GLOBAL_MANAGEMENT_ID, GLOBAL_READ_ONLY_ID,
};
pub use policy::{parse, Policy};
pub use templates::{render, template, templates, Template};

/// A rule's access level, as written in `policy = "..."` (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Nothing, and no fall-through to a less specific rule or the default.
    Deny,
    /// Read.
    Read,
    /// Read and list (KV only: `key` and `key_prefix` rules).
    List,
    /// Everything: read, list and write.
    Write,
}

/// What a check is about; the name is Consul's (`key:write` in permission errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// ACL management (the `acl` scalar); not granted by the default `allow`.
    Acl,
    /// Agent endpoints, by node name.
    Agent,
    /// User events, by name.
    Event,
    /// Intentions, by destination service; from the `service` rules' intention levels.
    Intention,
    /// KV entries, by key.
    Key,
    /// The gossip keyring (the `keyring` scalar).
    Keyring,
    /// Catalog nodes, by name.
    Node,
    /// Cluster operations (the `operator` scalar).
    Operator,
    /// Mesh configuration (the `mesh` scalar; `operator` when unset).
    Mesh,
    /// Cluster peering (the `peering` scalar; `operator` when unset).
    Peering,
    /// Prepared queries, by name.
    Query,
    /// Catalog services, by name.
    Service,
    /// Sessions, by the name of the node they are on.
    Session,
}

/// What a check asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read.
    Read,
    /// List (KV only; for any other resource it is checked as [`Access::Read`]).
    List,
    /// Write.
    Write,
}

/// The end of the authorizer chain: what is decided when no rule applies (Consul's
/// `acl.default_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Default {
    /// Allow everything except `acl` read/write and snapshots (Consul's `allow`).
    Allow,
    /// Deny everything (Consul's `deny`).
    Deny,
}

/// Rules that could not be used; the text is Consul's where clients may look for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// Not HCL/JSON, or not shaped as rules (a block without a label, `policy` an object...).
    /// Holds the parser's message, with `At line:col:` for HCL.
    #[error("Failed to parse ACL rules: {0}")]
    Parse(String),
    /// A level that is not one of the rule's levels; holds the whole message, e.g.
    /// `Invalid key_prefix policy: "foo/" has policy "wrte"`.
    #[error("{0}")]
    Invalid(String),
    /// A templated policy that cannot be rendered with the variables given; holds the whole
    /// message, e.g. `service identity "Web" has an invalid name. ...`.
    #[error("{0}")]
    Template(String),
}

// === impl Level ===

impl Level {
    /// `deny`, `read`, `list` or `write` in any case (Consul lower-cases before comparing).
    pub fn parse(s: &str) -> Option<Level> {
        [Level::Deny, Level::Read, Level::List, Level::Write]
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Deny => "deny",
            Level::Read => "read",
            Level::List => "list",
            Level::Write => "write",
        }
    }

    /// The level that wins when two rules for the same thing meet (deny > write > list > read).
    pub(crate) fn strongest(self, other: Level) -> Level {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    fn rank(self) -> u8 {
        match self {
            Level::Read => 0,
            Level::List => 1,
            Level::Write => 2,
            Level::Deny => 3,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Resource ===

impl Resource {
    /// Every resource, in Consul's order.
    pub const ALL: [Resource; 13] = [
        Resource::Acl,
        Resource::Agent,
        Resource::Event,
        Resource::Intention,
        Resource::Key,
        Resource::Keyring,
        Resource::Node,
        Resource::Operator,
        Resource::Mesh,
        Resource::Peering,
        Resource::Query,
        Resource::Service,
        Resource::Session,
    ];

    /// Consul's name (`"key"`, `"query"`...), as in `/v1/internal/acl/authorize` bodies.
    pub fn parse(s: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Consul's name, as in `lacks permission 'key:write'`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Acl => "acl",
            Resource::Agent => "agent",
            Resource::Event => "event",
            Resource::Intention => "intention",
            Resource::Key => "key",
            Resource::Keyring => "keyring",
            Resource::Node => "node",
            Resource::Operator => "operator",
            Resource::Mesh => "mesh",
            Resource::Peering => "peering",
            Resource::Query => "query",
            Resource::Service => "service",
            Resource::Session => "session",
        }
    }

    /// Is the resource one scalar rule (`acl = "write"`) rather than named rules? Such
    /// checks ignore the segment.
    pub fn is_scalar(self) -> bool {
        matches!(
            self,
            Resource::Acl
                | Resource::Keyring
                | Resource::Operator
                | Resource::Mesh
                | Resource::Peering
        )
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Access ===

impl Access {
    /// `read`, `list` or `write`, in any case.
    pub fn parse(s: &str) -> Option<Access> {
        [Access::Read, Access::List, Access::Write]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Default ===

impl Default {
    /// `allow` or `deny`, as in `X-Consul-Default-ACL-Policy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Default::Allow => "allow",
            Default::Deny => "deny",
        }
    }
}

#[cfg(test)]
mod tests;
