//! Process plumbing that both binaries need the same way, written once: flags with a TOML
//! file as their defaults ([`config`]), log setup ([`logging`]), the Prometheus recorder and
//! its upkeep ([`metrics`]), the shutdown signal ([`signal`]), and the retry schedule of
//! every reconnect loop ([`backoff`]).

pub mod backoff;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod signal;
