//! Raft type configuration: what goes into the log ([`Command`]), what applying it answers
//! ([`CommandResult`]), and how members are addressed ([`Member`]).

use std::fmt;
use std::io::Cursor;

use lucid_core::catalog::{Check, CheckStatus, Registration};
use serde::{Deserialize, Serialize};

/// Node ids are small integers chosen by the operator (`--node-id`).
pub type NodeId = u64;

/// How other nodes reach a member: its Raft RPC address and its HTTP API address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub raft_addr: String,
    pub http_addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} http={}", self.raft_addr, self.http_addr)
    }
}

/// A replicated change. Every write the API accepts becomes exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Consul `PUT /v1/kv/<key>`; `cas: Some(0)` creates only when absent; `lock`: with
    /// `?acquire=` / `?release=` (`ok: false` when the session may not).
    KvSet {
        key: String,
        #[serde(with = "b64")]
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lock: Option<crate::store::sessions::KvLock>,
    },
    /// Consul `DELETE /v1/kv/<key>`.
    KvDelete {
        key: String,
        recurse: bool,
        cas: Option<u64>,
    },
    /// Register (or replace) a service instance and its checks.
    CatalogRegister {
        /// Refuse (`ok: false`) when the instance id belongs to another service: set for
        /// service tokens, which must not take over another service's instance.
        #[serde(default)]
        keep_owner: bool,
        registration: Registration,
        replace_checks: bool,
    },
    /// Remove an instance and its checks. `at_ms`, here and below: the writer's clock, for the
    /// lock-delay of sessions this invalidates (0 in entries from before sessions: none).
    CatalogDeregister {
        service_id: String,
        #[serde(default)]
        at_ms: i64,
    },
    /// `/v1/catalog/register` for an external node: the node (new, or updated unless
    /// `skip_node_update`), its service and its checks (`ok: false`, nothing written, when a
    /// check names a service the node does not have).
    NodeRegister {
        node: lucid_core::catalog::ExternalNode,
        skip_node_update: bool,
        service: Option<lucid_core::catalog::Instance>,
        checks: Vec<Check>,
    },
    /// `/v1/catalog/deregister` on an external node: a service, a check, or (neither) the
    /// node itself (`ok: false` when it or the target is unknown).
    NodeDeregister {
        node: String,
        service_id: Option<String>,
        check_id: Option<String>,
        /// Set when the caller may only act for this service: the target must still belong
        /// to it when the command applies (`ok: false` otherwise).
        #[serde(default)]
        service: Option<String>,
    },
    /// Add or replace a standalone check.
    CheckRegister { check: Check },
    /// Remove a check.
    CheckDeregister {
        check_id: String,
        #[serde(default)]
        at_ms: i64,
    },
    /// Set a check's status (TTL pass/warn/fail, `/v1/agent/check/update`); critical
    /// invalidates the sessions bound to it.
    CheckUpdate {
        check_id: String,
        status: CheckStatus,
        output: String,
        #[serde(default)]
        at_ms: i64,
    },
    /// `PUT /v1/session/create` (`ok: false` when the id is taken).
    SessionCreate {
        session: crate::store::sessions::Session,
    },
    /// `PUT /v1/session/renew/<id>` at `at_ms` (`ok: false` when it is gone).
    SessionRenew { id: String, at_ms: i64 },
    /// `PUT /v1/session/destroy/<id>`, or the leader expiring a TTL: the locks go per the
    /// session's behavior, with its lock-delay from `now_ms` (`ok: false` when it is gone).
    SessionDestroy { id: String, now_ms: i64 },
    /// A cluster setting changed at run time (the autopilot or CA configuration), with
    /// Consul's `?cas=` (`ok: false` when the modify index differs).
    SettingSet {
        name: String,
        value: serde_json::Value,
        cas: Option<u64>,
    },
    /// `PUT /v1/coordinate/update`.
    CoordinateSet {
        node: String,
        coord: serde_json::Value,
    },
    /// `PUT /v1/event/fire/<name>`.
    EventFire {
        event: crate::store::events::UserEvent,
    },
    /// `POST /v1/query` (`create`) or `PUT /v1/query/<id>`; `CommandResult::detail` carries
    /// `{"Error": ...}` when refused (a name taken, an unknown session).
    QuerySet {
        query: lucid_core::query::PreparedQuery,
        /// The accessor of the token it runs with ("" for the caller's); the definition's
        /// `Token` is never stored.
        #[serde(default)]
        token_accessor: String,
        create: bool,
    },
    /// `DELETE /v1/query/<id>` (`ok: false` when there is none).
    QueryDelete { id: String },
    /// `PUT /v1/txn`: every operation or none; `CommandResult::detail` carries Consul's
    /// `{"Results": [...]}` or `{"Errors": [...]}`.
    Txn {
        ops: Vec<crate::store::txn::TxnOp>,
        now_ms: i64,
    },
    /// Set a config entry (`cas`: only if its modify index matches; 0 = only when absent).
    ConfigSet {
        entry: lucid_core::config_entry::ConfigEntry,
        cas: Option<u64>,
    },
    /// Delete a config entry (`ok: false` when absent or the cas does not match).
    ConfigDelete {
        kind: lucid_core::config_entry::ConfigKind,
        name: String,
        cas: Option<u64>,
    },
    /// Create or replace the intention of a pair (`create_only`: `ok: false` if it exists).
    IntentionSet {
        intention: lucid_core::intention::Intention,
        create_only: bool,
    },
    /// Delete the intention of a pair (`ok: false` when there is none).
    IntentionDelete {
        source: lucid_core::intention::Party,
        destination: lucid_core::intention::Party,
    },
    /// Apply a planeIsolation policy: replace the plane map, set its intentions.
    PolicyApply {
        planes: crate::store::intentions::Planes,
        intentions: Vec<lucid_core::intention::Intention>,
    },
    /// The first management token (`ok: false` once bootstrapped).
    AclBootstrap { token: crate::store::acl::AclToken },
    /// Another token (`ok: false` when its secret is taken).
    AclTokenCreate { token: crate::store::acl::AclToken },
    /// Delete a token by accessor id (`ok: false` when unknown).
    AclTokenDelete { accessor_id: String },
    /// Create (`create`) or replace a token, policy, role, auth method or binding rule.
    /// Uniqueness is decided on the applied state: a refusal is `ok: false` with
    /// `{"Error": why}` in the detail.
    AclSet {
        object: crate::store::acl::AclObject,
        create: bool,
    },
    /// Delete an ACL object (`ok: false` when there is none).
    AclDelete {
        kind: crate::store::acl::AclKind,
        id: String,
    },
    /// Store the mesh root CA unless one exists (`ok: false` then: the first leader wins).
    CaInit { material: lucid_tls::CaMaterial },
    /// Record a leaf the CA signed.
    CertIssued { cert: crate::store::ca::IssuedCert },
    /// Revoke one serial (`ok: false` when unknown or already revoked).
    CertRevoke { serial: String },
    /// Revoke every unexpired leaf of a service (`ok: false` when there was none). `now` is
    /// the leader's clock when the command was made, so every replica decides alike.
    CertRevokeService { service: String, now: i64 },
    /// Drop every leaf (and its revocation) that expired before `before`, unix seconds; the
    /// leader decides `before` so every replica removes the same records.
    CertPrune { before: i64 },
    /// `PUT /v1/snapshot`: replace the whole application state with a backup blob.
    Restore {
        #[serde(with = "b64")]
        blob: Vec<u8>,
    },
}

/// What applying a [`Command`] answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// `false` when a CAS precondition failed (Consul answers the body `false`).
    pub ok: bool,
    /// The log index the command was applied at.
    pub index: u64,
    /// What a command that answers more than yes or no answered (a transaction's results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// Unix milliseconds on this node's clock, stamped into commands that need a time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

openraft::declare_raft_types!(
    /// The registry's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = Member,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StorageIOError = openraft::StorageIOError<NodeId>;

/// Binary fields travel as base64 in JSON (log entries, RPC bodies).
pub(crate) mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
