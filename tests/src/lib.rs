//! lucid-tests: support for integration suites that spawn the real Lucid Mesh binaries.
//!
//! # Layout
//! - [`api`]: one JSON call to a registry.
//! - [`bins`]: find (and if needed build) the workspace's binaries.
//! - [`registry`]: a `lucid-registry` child process on ephemeral loopback ports, killed on Drop,
//!   and a [`registry::Cluster`] of them.
//! - [`dns`]: hickory's DNS client, raw DNS packets, and `dig`.
//! - [`netns`]: test hosts in network namespaces on a bridge, for partitions.
//! - [`openssl`]: CSRs made and certificates checked by the openssl command.
//! - [`procs`]: child processes that log `listening <kind> <addr>`; stopping them by PID.
//! - [`python`]: a venv with real Python clients (py-consul) from PyPI.
//! - [`sock`]: raw sockets held the attacker's way (slowloris, floods from one address).
//! - [`wait`]: polling helpers (tests never sleep where they can poll).

pub mod api;
pub mod bins;
pub mod dns;
pub mod netns;
pub mod openssl;
pub mod procs;
pub mod python;
pub mod registry;
pub mod sock;
pub mod wait;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
