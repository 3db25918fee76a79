//! Bounded queues: [`QueueConfig::max_waiting`](crate::QueueConfig::max_waiting), and
//! bounded groups: [`GroupShare::max_waiting`](crate::flow::groups::GroupShare::max_waiting).
//!
//! A queue bounded by `B` refuses, with [`Error::QueueFull`] and before storing anything, a
//! submit step whose new tasks would take its waiting tasks (ready, scheduled,
//! retry-scheduled) past `B`; a batch of several steps is also checked whole ([`Remaining`]).
//! A queue shared between groups with a bound `b` per group does the same for each group's
//! waiting tasks, with [`Error::GroupFull`]: the queue's bound is checked first, then each
//! group's, in the order the step names them. The exact rule and its bound are in
//! `docs/architecture.md` ("Flow control"); [`check`] and [`check_group`] are the comparisons
//! both backends make.

use std::collections::{BTreeMap, HashMap};

use crate::flow::groups::DEFAULT_GROUP;
use crate::{Error, QueueName, Result, TaskSpec};

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

/// The check of one group's room (or, with `adding` the batch's count, of a whole batch).
///
/// ```
/// use switchyard_core::flow::bounded::check_group;
/// use switchyard_core::{Error, QueueName};
/// let q = QueueName::new("exports").unwrap();
/// assert!(check_group(&q, "acme", Some(100), 90, 10).is_ok());
/// let Err(Error::GroupFull { group, waiting, .. }) = check_group(&q, "acme", Some(100), 95, 10)
/// else { panic!() };
/// assert_eq!((group.as_str(), waiting), ("acme", 95));
/// ```
pub fn check_group(
    queue: &QueueName,
    group: &str,
    bound: Option<u32>,
    waiting: u64,
    adding: u64,
) -> Result<()> {
    check(queue, bound, waiting, adding).map_err(|_| Error::GroupFull {
        queue: queue.clone(),
        group: group.to_owned(),
        waiting,
        bound: bound.unwrap_or(0),
        adding,
    })
}

/// What a batch of several steps still carries, from the current step on, to each queue and to
/// each group of a queue (a task without a group key counts in the group `""`): each step's
/// room check covers these counts too, so that a batch that does not fit is refused before its
/// first step stores anything — for the queues the step carries tasks to, and their groups as
/// [`groups_to_check`](Remaining::groups_to_check) names them. Empty for a batch of one step.
///
/// ```
/// use switchyard_core::flow::bounded::{Remaining, BATCH_STEP};
/// use switchyard_core::{QueueName, TaskSpec};
/// let q = QueueName::new("exports").unwrap();
/// let specs: Vec<TaskSpec> = (0..BATCH_STEP + 4)
///     .map(|i| TaskSpec::builder("exports", "k").group_key(if i % 2 == 0 { "a" } else { "b" }).build().unwrap())
///     .collect();
/// let mut rest = Remaining::of(&specs);
/// assert_eq!(rest.queue(&q), 260);
/// let first: Vec<(&str, u64)> = rest.groups_to_check(&q, &specs[..BATCH_STEP]).into_iter().collect();
/// assert_eq!(first, [("a", 130), ("b", 130)]);
/// rest.stored(&specs[..BATCH_STEP]);
/// assert_eq!(rest.queue(&q), 4);
/// let second: Vec<(&str, u64)> = rest.groups_to_check(&q, &specs[BATCH_STEP..BATCH_STEP + 1]).into_iter().collect();
/// assert_eq!(second, [("a", 2)]);
/// assert_eq!(Remaining::of(&specs[..3]).queue(&q), 0);
/// ```
#[derive(Debug, Default, Clone)]
pub struct Remaining {
    queues: HashMap<QueueName, (u64, BTreeMap<String, u64>)>,
    /// No step is stored yet.
    first: bool,
}

impl Remaining {
    /// The counts of the whole batch `specs` (none if it takes one step).
    pub fn of(specs: &[TaskSpec]) -> Self {
        let mut rest = Remaining {
            first: true,
            ..Remaining::default()
        };
        if specs.len() > BATCH_STEP {
            for spec in specs {
                let (n, groups) = rest.queues.entry(spec.queue().clone()).or_default();
                *n += 1;
                *groups.entry(group_of(spec).to_owned()).or_default() += 1;
            }
        }
        rest
    }

    /// The step `step` is stored: its tasks no longer count.
    pub fn stored(&mut self, step: &[TaskSpec]) {
        self.first = false;
        for spec in step {
            if let Some((n, groups)) = self.queues.get_mut(spec.queue()) {
                *n = n.saturating_sub(1);
                if let Some(g) = groups.get_mut(group_of(spec)) {
                    *g -= 1;
                    if *g == 0 {
                        groups.remove(group_of(spec));
                    }
                }
            }
        }
    }

    /// The batch's tasks to `queue` from the current step on.
    pub fn queue(&self, queue: &QueueName) -> u64 {
        self.queues.get(queue).map_or(0, |(n, _)| *n)
    }

    /// The groups of `queue` the room check of the step `step` covers, by key, each with the
    /// batch's tasks to it from this step on: at the batch's first step every group the batch
    /// carries tasks to (so that a batch that does not fit is refused whole), at a later step
    /// only the groups the step names (a batch of many group keys is not checked again group by
    /// group at each of its steps; a later step can be refused only if other producers filled a
    /// group meanwhile).
    pub fn groups_to_check<'a>(
        &'a self,
        queue: &QueueName,
        step: &'a [TaskSpec],
    ) -> BTreeMap<&'a str, u64> {
        let groups = self.queues.get(queue).map(|(_, g)| g);
        let count = |g: &str| groups.and_then(|m| m.get(g)).copied().unwrap_or(0);
        let mut out: BTreeMap<&str, u64> = step
            .iter()
            .filter(|s| s.queue() == queue)
            .map(|s| (group_of(s), count(group_of(s))))
            .collect();
        if self.first {
            out.extend(groups.into_iter().flatten().map(|(g, n)| (g.as_str(), *n)));
        }
        out
    }
}

/// The group a task counts in (`""` without a key).
pub fn group_of(spec: &TaskSpec) -> &str {
    spec.group_key().unwrap_or(DEFAULT_GROUP)
}
