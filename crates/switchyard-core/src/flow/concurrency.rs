//! Concurrency limits: [`QueueConfig::concurrency`](crate::QueueConfig::concurrency).
//!
//! A queue's **active** tasks are its dispatched and running ones. A queue limited to `L` is
//! **held** while `active ≥ L`: like a paused queue, it then dispatches nothing (no dispatch
//! on arrival, no refill, no pull, no hand-off). When one of its tasks stops being active —
//! completed, failed, timed out, cancelled, or handed back from a worker that drained, left or
//! was reaped — the step that ended it **resumes** the queue after its own refill: it
//! dispatches (push queues, by the strategy) or hands off (pull queues) the queue's next ready
//! tasks while the queue is not held and a worker takes them. The exact rule and its bound are
//! in `docs/architecture.md` ("Flow control"); [`held`] is the test both backends make.

/// Whether a queue with `active` active tasks and limit `limit` dispatches nothing now.
///
/// ```
/// use switchyard_core::flow::concurrency::held;
/// assert!(!held(4, None));
/// assert!(!held(4, Some(5)));
/// assert!(held(5, Some(5)));
/// assert!(held(7, Some(5))); // after the limit was lowered
/// ```
pub fn held(active: u32, limit: Option<u32>) -> bool {
    limit.is_some_and(|l| active >= l)
}
