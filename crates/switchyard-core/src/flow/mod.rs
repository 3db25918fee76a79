//! Flow control: the rules that decide whether a task may enter a queue, and when it may
//! leave it, beyond the queue's policy. Each rule has its own module here, stated once for
//! both backends (the memory reference and its Lua twin implement it, and the lockstep tests
//! hold them equal):
//!
//! * [`dedup`] — a submit whose dedup key is held throttles (answered by the task holding it)
//!   or debounces (that task, if it has not started, takes the new payload and run time).
//! * [`bounded`] — a queue with a maximum number of waiting tasks refuses submits that would
//!   take it past the bound ([`Error::QueueFull`](crate::Error::QueueFull)).
//! * [`concurrency`] — a queue with a concurrency limit dispatches nothing while that many of
//!   its tasks are active, and takes up again as soon as one ends.
//! * [`groups`] — a queue shared between group keys (tenants) dispatches by deficit
//!   round-robin between its groups, by weight, with an optional per-group concurrency limit.
//! * [`rate`] — a queue with a rate limit dispatches at most `max` tasks in any window.
//! * [`deadline`] — a queue that expires late tasks ends a task still waiting at its deadline
//!   in `expired` instead of starting it.

pub mod bounded;
pub mod concurrency;
pub mod deadline;
pub mod dedup;
pub mod groups;
pub mod rate;
