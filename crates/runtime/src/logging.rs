//! Logs to stderr, as text or JSON lines; the level comes from `RUST_LOG`.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Log output format (DESIGN §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the process's subscriber; `default_filter` applies when `RUST_LOG` is unset or
/// invalid.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}
