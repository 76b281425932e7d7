//! lucid-registry: a Raft-replicated registry node (openraft over sled) serving a
//! Consul-compatible HTTP API.
//!
//! # Layout
//! - [`config`]: flags, env and TOML resolved into a [`config::RegistryConfig`].
//! - [`types`]: the Raft type configuration: log commands, results, member addresses.
//! - [`store`]: the sled-backed Raft log and state machine (the only module that sees sled).
//! - [`raft`]: Raft RPC over HTTP (client and server) on `--raft-addr`.
//! - [`node`]: a running node: writes forwarded to the leader, reads, membership changes.
//! - [`api`]: the HTTP API on `--http-addr` (KV, catalog, operator, status, snapshot, metrics).
//! - [`ca`]: the mesh CA: root created once by a leader, leaves signed and recorded.
//! - `dns`: keeps the DNS zone (`lucid-dns`) equal to the local replica's catalog.
//! - `health`: HTTP/TCP probes, TTL expiry and reaping, run by whichever node leads.
//! - `sessions`: session TTLs, counted by whichever node leads.
//! - `tokens`: expired ACL tokens reaped by whichever node leads.
//! - `serve`: a router on a bound listener, plain or TLS (handshakes bounded in time).
//! - [`lifecycle`]: bootstrap or join, Raft metrics export, and [`run`], the entry point.

#![forbid(unsafe_code)]

pub mod api;
pub mod ca;
pub mod config;
mod dns;
mod health;
mod lifecycle;
pub mod node;
pub mod raft;
mod serve;
mod sessions;
pub mod store;
mod tokens;
pub mod types;

pub use lifecycle::{run, Listeners, RunError};
