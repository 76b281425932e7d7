//! The process-wide Prometheus recorder and the upkeep that keeps its memory flat.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Latency histogram buckets, in seconds: sub-millisecond DNS answers to 10 s requests.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Install the recorder once per process and return its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed; ours still renders what it got.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Fold histogram samples into buckets every `period` until `stop`. The recorder keeps every
/// sample until upkeep runs; without a scraper nothing else does, and at tens of thousands
/// of requests a second the samples grow the heap by megabytes a minute.
pub async fn upkeep(handle: PrometheusHandle, period: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = stop.cancelled() => return,
        }
    }
}
