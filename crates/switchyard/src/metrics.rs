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
//! ("Metrics"). Every family has a `# HELP` line ([`FAMILIES`]), and the counters a process
//! can know in advance are there at 0 from the start (a worker's, for each queue and kind it
//! serves), so an alert on their increase sees 0, not "no data".
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

/// What a family's series are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only go up (`_total`).
    Counter,
    /// Go up and down.
    Gauge,
    /// Counted in buckets (`_seconds`).
    Histogram,
}

/// One family of series: its name, kind, labels and help text (the `# HELP` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricFamily {
    /// The series' name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The labels every series of it carries.
    pub labels: &'static [&'static str],
    /// What it counts or measures.
    pub help: &'static str,
}

/// Every family this library records. `docs/operations.md` ("Metrics") lists the same, with
/// the alerts to set on them.
pub const FAMILIES: &[MetricFamily] = &[
    MetricFamily {
        name: "switchyard_attempts_started_total",
        kind: Kind::Counter,
        labels: &["queue", "kind"],
        help: "Handlers started by this worker (one per delivery), by queue and task kind.",
    },
    MetricFamily {
        name: "switchyard_attempts_total",
        kind: Kind::Counter,
        labels: &["queue", "kind", "outcome"],
        help: "Attempts ended on this worker, by queue, task kind and outcome (succeeded, failed, stopped).",
    },
    MetricFamily {
        name: "switchyard_attempt_duration_seconds",
        kind: Kind::Histogram,
        labels: &["queue", "kind", "outcome"],
        help: "Run time of an attempt, from receipt to the handler's answer.",
    },
    MetricFamily {
        name: "switchyard_wait_duration_seconds",
        kind: Kind::Histogram,
        labels: &["queue", "kind"],
        help: "How long a task waited for this attempt, from when it last became ready to its start.",
    },
    MetricFamily {
        name: "switchyard_retries_total",
        kind: Kind::Counter,
        labels: &["queue"],
        help: "Failed attempts reported by this worker that the backend will retry.",
    },
    MetricFamily {
        name: "switchyard_dead_letters_total",
        kind: Kind::Counter,
        labels: &["queue"],
        help: "Tasks this worker's reports sent to the dead-letter set.",
    },
    MetricFamily {
        name: "switchyard_throttled_total",
        kind: Kind::Counter,
        labels: &["queue"],
        help: "Attempts this worker handed back because downstream throttles (TaskError::rate_limited); not failures.",
    },
    MetricFamily {
        name: "switchyard_reports_refused_total",
        kind: Kind::Counter,
        labels: &["queue"],
        help: "Reports refused because the lease was gone (timed out, reaped, cancelled).",
    },
    MetricFamily {
        name: "switchyard_worker_in_flight",
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "Handlers running now on this worker.",
    },
    MetricFamily {
        name: "switchyard_worker_capacity",
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "Slots of this worker.",
    },
    MetricFamily {
        name: "switchyard_backend_errors_total",
        kind: Kind::Counter,
        labels: &["operation"],
        help: "Backend calls of this worker that failed and are retried.",
    },
    MetricFamily {
        name: "switchyard_redis_reconnects_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Times the connection layer replaced its connections.",
    },
    MetricFamily {
        name: "switchyard_redis_reconnect_failures_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Attempts of the connection layer to reconnect that failed.",
    },
    MetricFamily {
        name: "switchyard_redis_failovers_followed_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Moves to another primary the Sentinels named.",
    },
    MetricFamily {
        name: "switchyard_redis_replicas_in_sync",
        kind: Kind::Gauge,
        labels: &[],
        help: "Replicas of the namespace's primary online and at most 10 s behind (set by each stats read).",
    },
];

/// Gives each family its help text, and puts its counter at 0 if it has no labels (the
/// labelled ones start at 0 where their labels are known: a worker's queues and kinds). Call
/// it once the recorder is installed; [`serve`] and [`recorder`] do it for [`FAMILIES`].
pub fn describe(families: &[MetricFamily]) {
    for f in families {
        match f.kind {
            Kind::Counter => {
                metrics::describe_counter!(f.name, f.help);
                if f.labels.is_empty() {
                    metrics::counter!(f.name).increment(0);
                }
            }
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram => metrics::describe_histogram!(f.name, f.help),
        }
    }
}

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
        .map_err(|e| Error::invalid("metrics", format!("cannot serve metrics on {addr}: {e}")))?;
    describe(FAMILIES);
    Ok(())
}

/// Installs the Prometheus exporter as this process's recorder without a listener; render
/// the exposition text with [`PrometheusHandle::render`]. Series not updated for `idle` are
/// dropped (e.g. a worker that went away), when given.
pub fn recorder(idle: Option<Duration>) -> Result<PrometheusHandle, Error> {
    let mut b = builder()?;
    if idle.is_some() {
        b = b.idle_timeout(metrics_util::MetricKindMask::ALL, idle);
    }
    let handle = b
        .install_recorder()
        .map_err(|e| Error::invalid("metrics", e.to_string()))?;
    describe(FAMILIES);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    /// The operations guide lists every family by its full name.
    #[test]
    fn every_family_is_in_the_operations_guide() {
        let guide = include_str!("../../../docs/operations.md");
        for f in super::FAMILIES {
            assert!(
                guide.contains(&format!("`{}`", f.name)),
                "{} is not in docs/operations.md",
                f.name
            );
        }
    }
}
