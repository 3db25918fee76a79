//! Retention: how long, and how many, finished tasks a queue keeps (their records, results
//! and outcomes).
//!
//! Both backends apply it in maintenance's purge step (memory `state/maintain.rs`, Lua
//! `lua/purge.lua`; held equal by the lockstep tests), queue by queue in name order, within
//! the pass's step limit shared by the queues:
//!
//! 1. **By age**: a finished task whose retention ended (`finished_at +`
//!    [`result_ttl_ms`](crate::QueueConfig::result_ttl_ms), or
//!    [`dead_ttl_ms`](crate::QueueConfig::dead_ttl_ms) for a dead one) is removed, in
//!    (retention end, id) order.
//! 2. **Dead by count**: with [`keep_dead`](crate::QueueConfig::keep_dead) = `n`, the dead
//!    tasks beyond the newest `n` are removed, earliest death first (the dead-letter set's own
//!    order).
//! 3. **Finished by count**: with [`keep_finished`](crate::QueueConfig::keep_finished) = `n`,
//!    the tasks that ended succeeded, cancelled or expired beyond `n` are removed, in
//!    (retention end, id) order — the order they finished in, as long as the result TTL did
//!    not change meanwhile.
//!
//! Each removal takes one step; what the limit leaves is reported as more to do, and the next
//! pass goes on. Maintenance runs on every worker every interval whether or not tasks move, so
//! a quiet queue is trimmed too.

/// How many to remove of `count` kept to at most `keep` (`None`: no count limit).
///
/// ```
/// use switchyard_core::admin::retention::excess;
/// assert_eq!(excess(10, Some(3)), 7);
/// assert_eq!(excess(2, Some(3)), 0);
/// assert_eq!(excess(10, None), 0);
/// ```
pub fn excess(count: usize, keep: Option<u32>) -> usize {
    keep.map_or(0, |k| {
        count.saturating_sub(usize::try_from(k).unwrap_or(usize::MAX))
    })
}
