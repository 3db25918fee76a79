//! Fair share between group keys (tenants) inside one queue:
//! [`QueueConfig::groups`](crate::QueueConfig::groups), a task's
//! [group key](crate::TaskSpecBuilder::group_key), and the weights set with
//! [`Queues::set_group_weight`](crate::Queues::set_group_weight).
//!
//! A queue declared with a [`GroupShare`] keeps its ready tasks by group (a task without a key
//! is in the group `""`), each group in the queue's policy order. The rule, exactly (both
//! backends; `docs/architecture.md`, "Fair share between groups"):
//!
//! 1. A group is **open** while fewer than the [per-group concurrency
//!    limit](GroupShare::concurrency) of its tasks are active (dispatched or running) and it
//!    is not **marked** closed by its [rate limit](GroupShare::rate) or a hold. A group's
//!    active count falls when one of its tasks ends, however it ends. The dispatch that takes
//!    a group's last token (its window, as a queue's: [`crate::flow::rate`]), or a handler of
//!    one of its tasks that asks for a hold ([`TaskError::rate_limited`](crate::TaskError::rate_limited):
//!    in a shared queue it holds the group, not the queue), marks the group with the time it
//!    opens again ([`opens_at`](crate::flow::rate::opens_at)); maintenance, which sleeps until
//!    the earliest mark, takes the mark off then (or moves it, if the group is still closed)
//!    and the group joins the ring if it has ready tasks.
//! 2. The **ring** holds the open groups that have ready tasks, each once, in the order they
//!    joined it; a group joins at the tail when it gets a ready task while open and out of the
//!    ring, or opens with ready tasks. It leaves when it has no ready task or is no longer
//!    open.
//! 3. The queue's next task is the minimum (by its policy) of the ring's **head** group. The
//!    head keeps its **turn** for [`weight`](turn_length) dispatches; then it goes to the tail
//!    (if it is still in the ring) and the next group's turn begins. A group that leaves the
//!    ring loses the rest of its turn.
//! 4. Everything else is as in any queue: the queue's own gates (pause, concurrency and rate
//!    limits) come first, and its strategy picks the worker.
//!
//! The bound: with the groups `G₁ … Gₙ` in the ring, a group that joins it is served after at
//! most `Σ weight(Gᵢ)` dispatches (one round), however long the others' backlogs are; under
//! contention each group gets dispatches in the ratio of the weights (exactly, in every full
//! round); a group alone gets every dispatch (work-conserving). Each dispatch is O(1) in the
//! number of groups (the head of a list).

use serde::{Deserialize, Serialize};

use crate::flow::rate::RateLimit;
use crate::{Error, QueueName, Result};

/// The largest weight of a group.
pub const MAX_WEIGHT: u32 = 1_000;

/// The group of a task submitted without a key.
pub const DEFAULT_GROUP: &str = "";

/// A queue that shares its dispatches fairly between the group keys of its tasks.
///
/// ```
/// use switchyard_core::QueueConfig;
/// use switchyard_core::flow::groups::GroupShare;
/// let tenants = QueueConfig::default().with_groups(GroupShare::default().with_concurrency(1));
/// assert_eq!(tenants.groups.and_then(|g| g.concurrency), Some(1));
/// assert!(QueueConfig::default().with_groups(GroupShare::default().with_concurrency(0))
///     .validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupShare {
    /// At most this many tasks of one group active (dispatched or running) at once; `None`
    /// (the default) is unlimited. At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// At most `max` dispatches of one group in any window of `per_ms` (each group its own
    /// window); `None` (the default) is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
    /// At most this many waiting tasks (ready, scheduled, retry-scheduled) of one group: a
    /// submit that would take a group past it is refused whole with
    /// [`Error::GroupFull`] (the rule: [`crate::flow::bounded`]); `None` (the default) is
    /// unbounded. At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_waiting: Option<u32>,
}

impl GroupShare {
    /// At most `max` tasks of each group active at once.
    pub fn with_concurrency(mut self, max: u32) -> Self {
        self.concurrency = Some(max);
        self
    }

    /// At most `limit.max` dispatches of each group in any window of `limit.per_ms`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchyard_core::flow::{groups::GroupShare, rate::RateLimit};
    /// let per_customer = GroupShare::default().with_rate(RateLimit::new(5, Duration::from_secs(1)));
    /// assert_eq!(per_customer.rate.map(|r| r.max), Some(5));
    /// ```
    pub fn with_rate(mut self, limit: RateLimit) -> Self {
        self.rate = Some(limit);
        self
    }

    /// At most `max` waiting tasks of each group.
    ///
    /// ```
    /// use switchyard_core::QueueConfig;
    /// use switchyard_core::flow::groups::GroupShare;
    /// let share = GroupShare::default().with_max_waiting(500);
    /// assert_eq!(share.max_waiting, Some(500));
    /// assert!(QueueConfig::default().with_groups(GroupShare::default().with_max_waiting(0))
    ///     .validate().is_err());
    /// ```
    pub fn with_max_waiting(mut self, max: u32) -> Self {
        self.max_waiting = Some(max);
        self
    }

    /// Checks the per-group limits.
    pub fn validate(&self) -> Result<()> {
        if let Some(rate) = self.rate {
            rate.validate()?;
        }
        if self.concurrency == Some(0) {
            return Err(Error::invalid(
                "group concurrency",
                "must be at least 1 (a group limited to 0 would never run)",
            ));
        }
        if self.max_waiting == Some(0) {
            return Err(Error::invalid(
                "group max waiting",
                "must be at least 1 (a group bounded at 0 would refuse every task)",
            ));
        }
        Ok(())
    }
}

/// One group's own limits, set with [`Queues::set_group_limits`](crate::Queues::set_group_limits)
/// in place of the queue's [per-group limits](GroupShare): a field left `None` keeps the
/// queue's. The group's limits are its own from the call on (a new rate window starts its log
/// afresh); the default (both `None`) takes them off.
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::flow::{groups::{GroupLimits, GroupShare}, rate::RateLimit};
/// let share = GroupShare::default().with_concurrency(1).with_rate(RateLimit::new(5, Duration::from_secs(1)));
/// let big = GroupLimits::default().with_concurrency(4);
/// let mine = big.over(share);
/// assert_eq!((mine.concurrency, mine.rate.map(|r| r.max)), (Some(4), Some(5)));
/// assert!(GroupLimits::default().with_concurrency(0).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupLimits {
    /// At most this many of the group's tasks active at once (at least 1); `None`: the
    /// queue's per-group limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// At most `max` of the group's dispatches in any window of `per_ms`; `None`: the queue's
    /// per-group rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
}

impl GroupLimits {
    /// The group's own concurrency limit.
    pub fn with_concurrency(mut self, max: u32) -> Self {
        self.concurrency = Some(max);
        self
    }

    /// The group's own rate limit.
    pub fn with_rate(mut self, limit: RateLimit) -> Self {
        self.rate = Some(limit);
        self
    }

    /// Whether it sets nothing (the group has the queue's limits).
    pub fn is_empty(&self) -> bool {
        *self == GroupLimits::default()
    }

    /// Checks both limits.
    pub fn validate(&self) -> Result<()> {
        GroupShare {
            concurrency: self.concurrency,
            rate: self.rate,
            max_waiting: None,
        }
        .validate()
    }

    /// The limits a group has under the queue's `share`: its own where set, the queue's
    /// otherwise.
    pub fn over(&self, share: GroupShare) -> GroupShare {
        GroupShare {
            concurrency: self.concurrency.or(share.concurrency),
            rate: self.rate.or(share.rate),
            ..share
        }
    }
}

/// Checks a weight given to [`Queues::set_group_weight`](crate::Queues::set_group_weight).
///
/// ```
/// use switchyard_core::flow::groups::validate_weight;
/// assert!(validate_weight(3).is_ok());
/// assert!(validate_weight(0).is_err());
/// assert!(validate_weight(1_001).is_err());
/// ```
pub fn validate_weight(weight: u32) -> Result<()> {
    if !(1..=MAX_WEIGHT).contains(&weight) {
        return Err(Error::invalid(
            "group weight",
            format!("{weight} is outside 1..={MAX_WEIGHT}"),
        ));
    }
    Ok(())
}

/// Checks a group key given to [`Queues::set_group_weight`](crate::Queues::set_group_weight)
/// (a task's key is checked by [`TaskSpecBuilder::build`](crate::TaskSpecBuilder::build) the
/// same way): at most [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES) bytes, no control character.
///
/// ```
/// use switchyard_core::flow::groups::validate_key;
/// assert!(validate_key("customer-42").is_ok());
/// assert!(validate_key("a\u{0}b").is_err());
/// ```
pub fn validate_key(key: &str) -> Result<()> {
    if key.len() > crate::MAX_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(Error::invalid(
            "group key",
            format!(
                "must be at most {} bytes without control characters",
                crate::MAX_KEY_BYTES
            ),
        ));
    }
    Ok(())
}

/// How many dispatches a group's turn lasts: its weight (1 unless one was set).
///
/// ```
/// use switchyard_core::flow::groups::turn_length;
/// assert_eq!(turn_length(None), 1);
/// assert_eq!(turn_length(Some(3)), 3);
/// ```
pub fn turn_length(weight: Option<u32>) -> u32 {
    weight.unwrap_or(1).max(1)
}

/// What one group of a queue looks like now ([`Queues::groups`](crate::Queues::groups)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group key (`""`: tasks submitted without one).
    pub key: String,
    /// Its weight: dispatches per turn.
    pub weight: u32,
    /// Its ready tasks.
    pub ready: u64,
    /// Its scheduled and retry-scheduled tasks (with `ready`, what its
    /// [bound](GroupShare::max_waiting) counts).
    #[serde(default)]
    pub scheduled: u64,
    /// Its dispatched and running tasks.
    pub active: u32,
    /// Whether it is in the ring (open, with ready tasks).
    pub in_ring: bool,
    /// Tokens left of its [rate limit](GroupShare::rate) (`None` without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u32>,
    /// The time it is marked closed until, by its rate limit or a hold (`None`: not marked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_until: Option<crate::Millis>,
    /// Its own limits, in place of the queue's (empty: the queue's).
    #[serde(default, skip_serializing_if = "GroupLimits::is_empty")]
    pub limits: GroupLimits,
}

/// The refusal of a task with a group key, or of a group operation, on a plain queue.
///
/// ```
/// use switchyard_core::QueueName;
/// use switchyard_core::flow::groups::not_shared;
/// let e = not_shared(&QueueName::new("mail").unwrap());
/// assert!(e.to_string().contains("does not share between groups"));
/// ```
pub fn not_shared(queue: &QueueName) -> Error {
    Error::invalid(
        "group key",
        format!(
            "queue {queue} does not share between groups (declare it with fair share: `QueueConfig::with_groups`, `switchyard declare --fair-share`)"
        ),
    )
}
