//! Prometheus metrics, through the [`metrics`] facade.
//!
//! Workers record what they do (attempts, their outcomes and run times, retries, dead letters,
//! in-flight tasks, backend errors); the connection layer counts reconnects. Nothing is
//! recorded anywhere until a recorder is installed: [`serve`] installs the Prometheus exporter
//! with its own HTTP listener (what [`WorkerBuilder::metrics`](crate::WorkerBuilder::metrics)
//! and `switchyard worker --metrics` do), [`recorder`] installs it for a server that renders
//! the text itself (`switchyard dashboard` serves it at `/metrics`). An application with its
//! own `metrics` recorder gets the same series in it without either.
//!
//! The names, labels and the alerts to set on them are listed in `docs/operations.md`
//! ("Metrics").
//!
//! ```no_run
//! # async fn run() -> switchyard::Result<()> {
//! // Every series of this process at http://127.0.0.1:9100/metrics.
//! switchyard::metrics::serve("127.0.0.1:9100".parse().unwrap())?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use switchyard_core::Error;

/// Histogram buckets of every `*_seconds` series: 1 ms to 5 min.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

fn builder() -> Result<PrometheusBuilder, Error> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
        .map_err(|e| Error::invalid("metrics", e.to_string()))
}

/// Installs the Prometheus exporter as this process's recorder and serves `GET /metrics` (any
/// path, in fact) on `addr`. Call it once per process, inside a tokio runtime; a second call,
/// or one in a process that already has a recorder, is refused.
pub fn serve(addr: SocketAddr) -> Result<(), Error> {
    builder()?
        .with_http_listener(addr)
        .install()
        .map_err(|e| Error::invalid("metrics", format!("cannot serve metrics on {addr}: {e}")))
}

/// Installs the Prometheus exporter as this process's recorder without a listener; render
/// the exposition text with [`PrometheusHandle::render`]. Series not updated for `idle` are
/// dropped (e.g. a worker that went away), when given.
pub fn recorder(idle: Option<Duration>) -> Result<PrometheusHandle, Error> {
    let mut b = builder()?;
    if idle.is_some() {
        b = b.idle_timeout(metrics_util::MetricKindMask::ALL, idle);
    }
    b.install_recorder()
        .map_err(|e| Error::invalid("metrics", e.to_string()))
}
