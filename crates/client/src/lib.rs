//! lucid-client: a typed async client of the lucid-registry HTTP API.
//!
//! # Layout
//! - [`http`]: a small pooled HTTP/1.1 client with per-request timeouts (hyper-util), shared by
//!   the registry's own peer traffic (Raft RPC, join, write forwarding) and by the tools.
//! - [`registry`]: typed calls on the registry API (KV, status, operator).
//! - [`health`]: the `health` subcommand of the server binaries (container health checks).

#![forbid(unsafe_code)]

pub mod health;
pub mod http;
pub mod registry;

pub use crate::http::{ClientError, HttpClient, Response};
pub use crate::registry::{KvPair, RegistryClient};
pub use lucid_core::wire::operator::JoinRequest;
