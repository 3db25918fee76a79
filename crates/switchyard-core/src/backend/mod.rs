//! The [`Backend`] trait, the sum of seven capability traits that between them make every
//! state transition of the task state machine, and the values the transitions report.
//!
//! Each method that changes state is **one atomic step**: one Lua script on Redis, one critical
//! section in memory. After every step the invariants of `docs/architecture.md` hold: every
//! task is in exactly one state, no worker holds more tasks than its capacity, no ready task
//! waits while a worker serving its (push) queue has a free slot, tasks leave a queue in policy
//! order, and repeating a submit or a completion changes nothing.
//!
//! Steps that can hand tasks to workers report those decisions as [`Assignment`]s, so callers
//! (and the cross-backend tests) can see exactly what the strategy chose.

use std::time::Duration;

use crate::WorkerId;

mod browse;
mod capabilities;
mod values;

pub use browse::{BROWSE_PAGE_MAX, BROWSE_SCAN, Browse, BrowseOrder, TaskPage};

pub use capabilities::{
    Claimed, Inspect, Leases, Maintain, Membership, Produce, Queues, Schedules, Tasks,
};
pub use values::{
    Ack, AckOutcome, Assignment, CancelOutcome, Delivery, HandBack, HeartbeatReply, Lease,
    LeaseToken, MaintenanceReport, QueueStats, RegisterOutcome, Rejection, Stats, SubmitOutcome,
    WorkerStats,
};

/// The error recorded when a worker disappears (deregistered, reaped, replaced) during a
/// running attempt. Both backends record exactly this text.
pub fn lost_worker_error(worker: &WorkerId, attempt: u32) -> String {
    format!("worker {worker} was lost during attempt {attempt}")
}

/// The error recorded when a running attempt outlives its timeout. Both backends record
/// exactly this text.
pub fn timeout_error(timeout_ms: u32) -> String {
    format!("timed out after {timeout_ms} ms")
}

/// Longest failure message kept with a task, in bytes; longer ones are cut.
pub const MAX_ERROR_BYTES: usize = 4096;

/// The failure message a backend records for `error`: cut to [`MAX_ERROR_BYTES`] on a
/// character boundary, and never empty. Both backends record exactly this text.
///
/// ```
/// use switchyard_core::backend::normalize_error;
/// assert_eq!(normalize_error(""), "failed without a message");
/// assert_eq!(normalize_error("boom"), "boom");
/// assert!(normalize_error(&"é".repeat(5000)).len() <= 4096);
/// ```
pub fn normalize_error(error: &str) -> String {
    if error.is_empty() {
        return "failed without a message".to_owned();
    }
    let mut end = error.len().min(MAX_ERROR_BYTES);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    error[..end].to_owned()
}

/// How far one sample may be above the average it is folded into (and the first one above
/// the queue's default cost): one stalled run moves a learned cost by at most 3/8 of itself.
pub const SAMPLE_CAP: u64 = 4;

/// The moving average of run times after one more sample: `⌊(7 · average + s) / 8⌋` where `s`
/// is the sample, at most [`SAMPLE_CAP`] times the average; the first sample sets it, at most
/// [`SAMPLE_CAP`] times `default` (the queue's default cost). So a run that stalled —
/// first or not — cannot mis-order a kind for many rounds. Both backends compute exactly
/// this.
///
/// ```
/// use switchyard_core::backend::next_average;
/// assert_eq!(next_average(None, 80, 1_000), 80);
/// assert_eq!(next_average(Some(80), 160, 1_000), 90);
/// // A stall counts as at most four times the average (or the default, for the first).
/// assert_eq!(next_average(Some(80), 60_000, 1_000), (7 * 80 + 320) / 8);
/// assert_eq!(next_average(None, 60_000, 1_000), 4_000);
/// ```
pub fn next_average(average: Option<u64>, sample: u64, default: u64) -> u64 {
    match average {
        None => sample.min(default.max(1).saturating_mul(SAMPLE_CAP)),
        Some(a) => (7 * a + sample.min(a.max(1).saturating_mul(SAMPLE_CAP))) / 8,
    }
}

/// Where task state lives: the sum of the capability traits, implemented by the in-memory
/// reference backend and the Redis backend (and by anything that implements all seven).
///
/// | trait | what it covers |
/// |---|---|
/// | [`Queues`] | declare, configuration, pause, purge, reconfigure, delete |
/// | [`Produce`] | submit one task or a batch |
/// | [`Membership`] | register, heartbeat, drain, deregister a worker |
/// | [`Leases`] | dispatch, receive, complete, fail: an attempt from start to end |
/// | [`Tasks`] | one task by id: read, await, cancel, re-drive, delete; the dead letters |
/// | [`Inspect`] | stats, the order of a queue, the event log, learned costs |
/// | [`Maintain`] | reaping, promotion, retention, and sleeping until they are due |
///
/// All methods take `&self` and are safe to call from many tasks at once. Code that uses a
/// backend through a generic bound or `dyn Backend` calls every method directly; code that
/// holds a concrete backend brings the traits into scope with the [prelude](crate::prelude).
///
/// ```
/// use switchyard_core::prelude::*;
/// use switchyard_core::{QueueName, Result, TaskSpec};
///
/// // A function that only reads counts asks for only that capability...
/// async fn ready<B: Inspect + ?Sized>(backend: &B, queue: &QueueName) -> Result<u64> {
///     let stats = backend.stats().await?;
///     Ok(stats.queues.iter().filter(|q| q.queue.as_ref() == Some(queue)).map(|q| q.ready).sum())
/// }
///
/// // ...and one that needs more takes a `Backend`, which is all of them.
/// async fn submit_and_count(backend: &dyn Backend, spec: TaskSpec) -> Result<u64> {
///     let queue = spec.queue().clone();
///     backend.submit(spec).await?;
///     ready(backend, &queue).await
/// }
/// ```
pub trait Backend:
    Queues + Produce + Membership + Leases + Tasks + Inspect + Maintain + Schedules + Send + Sync
{
}

impl<B> Backend for B where
    B: Queues
        + Produce
        + Membership
        + Leases
        + Tasks
        + Inspect
        + Maintain
        + Schedules
        + Send
        + Sync
        + ?Sized
{
}

/// The shortest sleep of [`Maintain::sleep_until_due`](crate::Maintain::sleep_until_due) (unless less of its `at_most` is left):
/// something that is already due but that maintenance cannot clear yet must not turn the loop
/// into a spin.
pub const MIN_DUE_PAUSE: Duration = Duration::from_millis(5);

/// How long [`Maintain::sleep_until_due`](crate::Maintain::sleep_until_due) sleeps before looking again: until the next due time
/// (at least [`MIN_DUE_PAUSE`]), capped by the time `left`; `None` once no time is left.
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::backend::due_pause;
///
/// let s = Duration::from_secs;
/// assert_eq!(due_pause(Some(s(2)), s(10)), Some(s(2)));
/// assert_eq!(due_pause(None, s(10)), Some(s(10)));
/// assert_eq!(due_pause(Some(s(60)), s(10)), Some(s(10)));
/// assert_eq!(due_pause(Some(Duration::ZERO), s(10)), Some(Duration::from_millis(5)));
/// assert_eq!(due_pause(Some(s(2)), Duration::ZERO), None);
/// ```
pub fn due_pause(until_due: Option<Duration>, left: Duration) -> Option<Duration> {
    if left.is_zero() {
        return None;
    }
    Some(until_due.map_or(left, |d| d.max(MIN_DUE_PAUSE).min(left)))
}
