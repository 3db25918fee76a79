//! Bounded queues: [`QueueConfig::max_waiting`](crate::QueueConfig::max_waiting).
//!
//! A queue bounded by `B` refuses, with [`Error::QueueFull`] and before storing anything, a
//! submit step whose new tasks would take its waiting tasks (ready, scheduled,
//! retry-scheduled) past `B`; a batch of several steps is also checked whole. The exact rule
//! and its bound are in `docs/architecture.md` ("Flow control"); [`check`] is the comparison
//! both backends make.

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
