//! Deadlines: [`TaskSpecBuilder::deadline`](crate::TaskSpecBuilder::deadline), ordered by
//! [`Policy::EarliestDeadlineFirst`](crate::Policy::EarliestDeadlineFirst) and, on a queue with
//! [`QueueConfig::expire_late`](crate::QueueConfig::expire_late), enforced.
//!
//! On such a queue a task **expires** — ends in [`TaskState::Expired`](crate::TaskState::Expired),
//! with an `expired` event, no attempt used, its lease never taken — instead of starting once
//! its deadline has come ([`has_come`]). That happens at exactly three places, the same in both
//! backends:
//!
//! 1. **entering the ready set** (a submit, a delayed task or retry coming due, a task handed
//!    back by a worker that did not finish it): a task whose deadline has come expires there;
//! 2. **leaving it**: a step about to take tasks from the head of the ready set to dispatch
//!    them (on arrival, a refill, a pull, a hand-off, `dispatch`) first expires every head
//!    whose deadline has come — under EDF they are exactly the first ones, so it never looks
//!    past a live task;
//! 3. **maintenance**, which sleeps until the earliest deadline at the head of such a queue as
//!    it sleeps until due delayed tasks, expires the heads whose deadline has come (at most
//!    its step limit), so a waiting task ends on time even when no worker asks.
//!
//! A task that is already dispatched or running is never expired: its deadline says when it
//! had to *start*. A scheduled task whose run-at is after its deadline expires when it comes
//! due (1).

use crate::Millis;

/// Whether a task with `deadline` may no longer start at `now` (its deadline has come).
///
/// ```
/// use switchyard_core::flow::deadline::has_come;
/// assert!(!has_come(Some(1_000), 999));
/// assert!(has_come(Some(1_000), 1_000));
/// assert!(!has_come(None, u64::MAX));
/// ```
pub fn has_come(deadline: Option<Millis>, now: Millis) -> bool {
    deadline.is_some_and(|d| d <= now)
}
