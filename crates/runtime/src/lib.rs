//! Process plumbing that both binaries need the same way, written once: flags with a TOML
//! file as their defaults ([`config`]), log setup ([`logging`]), the Prometheus recorder and
//! its upkeep ([`metrics`]), and the shutdown signal ([`signal`]).

pub mod config;
pub mod logging;
pub mod metrics;
pub mod signal;
