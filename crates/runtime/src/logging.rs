//! Logs to stderr, as text or JSON lines; the level comes from `RUST_LOG`. The same events
//! can also be watched live ([`monitor`], Consul's `/v1/agent/monitor`): a broadcast that
//! costs nothing while nobody watches.

use std::fmt::Write as _;
use std::sync::OnceLock;

use clap::ValueEnum;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log output format (DESIGN §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Lines held for a watcher that falls behind before the oldest are dropped.
const MONITOR_BUFFER: usize = 1024;

fn channel() -> &'static broadcast::Sender<(Level, String)> {
    static TX: OnceLock<broadcast::Sender<(Level, String)>> = OnceLock::new();
    TX.get_or_init(|| broadcast::channel(MONITOR_BUFFER).0)
}

/// Watch the process's log: each event (at or above what `RUST_LOG` lets through) as its
/// level and a text line.
pub fn monitor() -> broadcast::Receiver<(Level, String)> {
    channel().subscribe()
}

/// Collects an event's message and fields into one line.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// The layer that feeds [`monitor`].
struct Monitor;

impl<S: Subscriber> Layer<S> for Monitor {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let tx = channel();
        if tx.receiver_count() == 0 {
            return;
        }
        let meta = event.metadata();
        let mut line = Line(format!("[{}] {}:", meta.level(), meta.target()));
        event.record(&mut line);
        let _ = tx.send((*meta.level(), line.0));
    }
}

/// Install the process's subscriber; `default_filter` applies when `RUST_LOG` is unset or
/// invalid.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(Monitor)
        .try_init();
}
