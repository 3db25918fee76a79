//! Bounded queues: [`QueueConfig::max_waiting`](crate::QueueConfig::max_waiting).
//!
//! **Waiting** tasks are a queue's ready, scheduled and retry-scheduled ones (dispatched and
//! running tasks do not wait). For a bounded queue with bound `B`, every atomic submit step
//! (one script call on Redis, one hold of the lock in memory; a step carries at most
//! [`BATCH_STEP`] tasks) does, before it stores anything:
//!
//! 1. count `n`, the **new** tasks the step carries to the queue: those whose id is not
//!    stored (nor taken by an earlier task of the step) and whose dedup key is not held (nor
//!    claimed by an earlier task of the step) — exactly the tasks the step would store;
//! 2. refuse the whole step with [`Error::QueueFull`] if `n > 0` and `waiting + n > B`,
//!    `waiting` counted as the step starts (a step of duplicates only is always answered).
//!
//! A batch of more than one step is, in addition, checked whole at its first step: refused if
//! `waiting + m > B`, `m` being *all* the batch's tasks to the queue (duplicates included: they
//! are not known before their step). So, with no other producer, a batch that does not fit
//! stores nothing; with concurrent producers, a later step can still be refused, and the error
//! is then [`Error::BatchIncomplete`](crate::Error::BatchIncomplete) naming the stored tasks.
//!
//! Since every step checks and stores atomically, concurrent producers can never take the
//! waiting count past `B` by submitting. A new task counts as waiting when the check is made
//! even if a free worker takes it at once. Tasks already in the queue always come back to it:
//! retries, hand-backs of a lost worker's tasks, and re-drives of dead tasks are never refused,
//! and lowering the bound (`reconfigure`) refuses new submits until enough have left.

use crate::{Error, QueueName, Result};

/// The most tasks a backend stores in one atomic submit step; larger batches are split.
pub const BATCH_STEP: usize = 256;

/// The check of one step (or, with `adding` the batch's count, of a whole batch).
///
/// ```
/// use switchyard_core::flow::bounded::check;
/// use switchyard_core::{Error, QueueName};
/// let q = QueueName::new("exports").unwrap();
/// assert!(check(&q, None, 5_000, 10).is_ok());
/// assert!(check(&q, Some(1_000), 990, 10).is_ok());
/// let Err(Error::QueueFull { waiting, bound, adding, .. }) = check(&q, Some(1_000), 995, 10)
/// else { panic!() };
/// assert_eq!((waiting, bound, adding), (995, 1_000, 10));
/// ```
pub fn check(queue: &QueueName, bound: Option<u32>, waiting: u64, adding: u64) -> Result<()> {
    match bound {
        Some(b) if adding > 0 && waiting.saturating_add(adding) > u64::from(b) => {
            Err(Error::QueueFull {
                queue: queue.clone(),
                waiting,
                bound: b,
                adding,
            })
        }
        _ => Ok(()),
    }
}
