//! lucid-core: the types every Lucid Mesh part shares.
//!
//! # Layout
//! - [`acl`]: Consul's ACL rule language, its authorizer and the built-in and synthetic
//!   policies; [`acl_request`]: the ACL objects' request bodies.
//! - [`catalog`]: service instances and checks, parsed from Consul registration bodies.
//! - [`config_entry`]: `service-defaults` / `proxy-defaults`: what the sidecars enforce.
//! - [`intention`]: who may call whom; the platform's planeIsolation policy as intentions.
//! - [`filter`]: Consul's `?filter=` expressions (go-bexpr), checked against a schema.
//! - [`session`]: Consul's session create body.
//! - [`query`]: Consul's prepared queries: the definition, name lookup, templates.
//! - [`grpc`]: gRPC status codes, their names in config entries, their HTTP equivalents.
//! - [`error`]: the platform's `LUCID_ERR_<n>` codes and the JSON error envelope.
//! - [`conn_limit`]: caps on connections per listener and per peer address.
//! - [`duration`]: Consul-style durations (`"10s"`, `"1m30s"`, or integer nanoseconds).
//! - [`wire`]: the typed answers of the registry that the sidecar and lucidctl read.

#![forbid(unsafe_code)]

pub mod acl;
pub mod acl_request;
pub mod catalog;
pub mod config_entry;
pub mod conn_limit;
pub mod duration;
pub mod error;
pub mod filter;
pub mod grpc;
pub mod intention;
mod obj;
pub mod query;
pub mod session;
pub mod wire;

pub use duration::{format_duration, parse_duration, DurationError};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use obj::{fold_key, BodyError};

/// Unix seconds now (certificate validity, rotation times); 0 if the clock is before 1970.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
