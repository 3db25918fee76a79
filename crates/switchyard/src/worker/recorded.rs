//! What a worker reports to the [`metrics`] facade: one function per fact, so that every
//! series name and label set is written once (they are listed in `docs/operations.md`).

use std::time::Duration;

use switchyard_core::{Ack, Delivery, QueueName, WorkerId};

/// A handler started on `delivery` (which says how long the task waited for it).
pub(super) fn attempt_started(worker: &WorkerId, delivery: &Delivery) {
    metrics::gauge!("switchyard_worker_in_flight", "worker" => worker.to_string()).increment(1.0);
    metrics::counter!(
        "switchyard_attempts_started_total",
        "queue" => delivery.lease.queue.to_string(),
        "kind" => delivery.kind.to_string(),
    )
    .increment(1);
    if let Some(ms) = delivery.waited_ms() {
        metrics::histogram!(
            "switchyard_wait_duration_seconds",
            "queue" => delivery.lease.queue.to_string(),
            "kind" => delivery.kind.to_string(),
        )
        .record(Duration::from_millis(ms).as_secs_f64());
    }
}

/// How an attempt ended, as the worker saw it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ended {
    /// The handler returned a value.
    Succeeded,
    /// The handler returned an error, panicked, or ran out of time.
    Failed,
    /// Shutdown stopped the handler; the task goes back to its queue.
    Stopped,
}

impl Ended {
    fn label(self) -> &'static str {
        match self {
            Ended::Succeeded => "succeeded",
            Ended::Failed => "failed",
            Ended::Stopped => "stopped",
        }
    }
}

/// A handler ended after running for `ran`.
pub(super) fn attempt_ended(worker: &WorkerId, delivery: &Delivery, ended: Ended, ran: Duration) {
    metrics::gauge!("switchyard_worker_in_flight", "worker" => worker.to_string()).decrement(1.0);
    let queue = delivery.lease.queue.to_string();
    let kind = delivery.kind.to_string();
    metrics::counter!(
        "switchyard_attempts_total",
        "queue" => queue.clone(),
        "kind" => kind.clone(),
        "outcome" => ended.label(),
    )
    .increment(1);
    metrics::histogram!(
        "switchyard_attempt_duration_seconds",
        "queue" => queue,
        "kind" => kind,
        "outcome" => ended.label(),
    )
    .record(ran.as_secs_f64());
}

/// The backend's answer to a report: retries, dead letters and refused reports are counted.
pub(super) fn acknowledged(queue: &QueueName, ack: &Ack) {
    let name = match ack {
        Ack::Retrying { .. } => "switchyard_retries_total",
        Ack::Dead => "switchyard_dead_letters_total",
        Ack::Rejected(_) => "switchyard_reports_refused_total",
        Ack::Throttled { .. } => "switchyard_throttled_total",
        _ => return,
    };
    metrics::counter!(name, "queue" => queue.to_string()).increment(1);
}

/// The counters of a worker that starts serving `queues` with handlers for `kinds`, each at 0
/// (an alert on an increase then sees 0, not "no data").
pub(super) fn start_at_zero<'a>(
    queues: &[QueueName],
    kinds: impl Iterator<Item = &'a str> + Clone,
) {
    for queue in queues {
        for name in [
            "switchyard_retries_total",
            "switchyard_dead_letters_total",
            "switchyard_reports_refused_total",
            "switchyard_throttled_total",
        ] {
            metrics::counter!(name, "queue" => queue.to_string()).increment(0);
        }
        for kind in kinds.clone() {
            metrics::counter!(
                "switchyard_attempts_started_total",
                "queue" => queue.to_string(),
                "kind" => kind.to_owned(),
            )
            .increment(0);
            for ended in [Ended::Succeeded, Ended::Failed, Ended::Stopped] {
                metrics::counter!(
                    "switchyard_attempts_total",
                    "queue" => queue.to_string(),
                    "kind" => kind.to_owned(),
                    "outcome" => ended.label(),
                )
                .increment(0);
            }
        }
    }
    for operation in BACKEND_OPERATIONS {
        metrics::counter!("switchyard_backend_errors_total", "operation" => operation).increment(0);
    }
}

/// The worker's backend calls that [`backend_error`] counts.
const BACKEND_OPERATIONS: [&str; 4] = ["receive", "heartbeat", "report", "maintenance"];

/// The worker's slots, set when it registers.
pub(super) fn capacity(worker: &WorkerId, capacity: u32) {
    metrics::gauge!("switchyard_worker_capacity", "worker" => worker.to_string())
        .set(f64::from(capacity));
}

/// A backend call of the worker failed (it is retried): `operation` is one of
/// [`BACKEND_OPERATIONS`].
pub(super) fn backend_error(operation: &'static str) {
    metrics::counter!("switchyard_backend_errors_total", "operation" => operation).increment(1);
}
