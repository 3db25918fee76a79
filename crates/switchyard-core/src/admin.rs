//! Queue administration: the rules both backends apply when an operator deletes tasks, empties
//! or deletes a queue, or changes its configuration.
//!
//! * [`Tasks::delete_task`](crate::Tasks::delete_task) removes one *finished* task
//!   (succeeded, dead or cancelled) with its outcome; a task that can still run must be
//!   cancelled first.
//! * [`Queues::purge_queue`](crate::Queues::purge_queue) removes up to a limit of one
//!   [`Purge`] class of a queue's tasks per call, so that a queue of a million tasks is emptied
//!   in bounded steps (the CLI loops and shows progress). Waiting tasks are *cancelled* (they
//!   end with a `cancelled` outcome and event, so whoever awaits them learns it); finished
//!   ones are deleted.
//! * [`Queues::reconfigure_queue`](crate::Queues::reconfigure_queue) changes a queue's
//!   configuration in place. Limits, retries, timeouts, retention and events may change at any
//!   time and apply to what happens after the change. The ordering and the choice of worker
//!   may change only when nothing depends on the old ones ([`Reshape`]).
//! * [`Queues::delete_queue`](crate::Queues::delete_queue) removes a queue that holds no
//!   task and that no registered worker serves.
//!
//! * [`retention`]: finished tasks are removed by maintenance when their retention time ends,
//!   and beyond a count when the queue keeps only so many.
//!
//! Refusals are [`Error::QueueInUse`](crate::Error::QueueInUse) with an [`InUse`] reason,
//! formatted here once for both backends.
//!
//! ```
//! use switchyard_core::admin::Reshape;
//! use switchyard_core::{Policy, QueueConfig, Strategy};
//! let old = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin);
//! let more_attempts = old.with_max_attempts(10);
//! assert_eq!(Reshape::between(&old, &more_attempts), Reshape::default());
//! let by_priority = QueueConfig::new(Policy::PRIORITY, Strategy::RoundRobin);
//! assert!(Reshape::between(&old, &by_priority).order);
//! ```

pub mod retention;
use serde::{Deserialize, Serialize};

use crate::{QueueConfig, WorkerId};

/// Which of a queue's tasks [`Queues::purge_queue`](crate::Queues::purge_queue) removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purge {
    /// Ready, scheduled and retry-scheduled tasks: cancelled, ready ones first in the order
    /// they would have left the queue, then delayed ones by run-at. Dispatched and running
    /// tasks are left alone (cancel them one by one, or let them finish).
    Waiting,
    /// Dead tasks (the dead-letter set), oldest death first: deleted.
    Dead,
    /// Every finished task (succeeded, dead, cancelled), by the end of its retention: deleted.
    Finished,
}

impl Purge {
    /// Its name on the command line and in replies: `waiting`, `dead`, `finished`.
    pub fn name(self) -> &'static str {
        match self {
            Purge::Waiting => "waiting",
            Purge::Dead => "dead",
            Purge::Finished => "finished",
        }
    }

    /// Its code in the Redis scripts' arguments.
    pub fn code(self) -> u8 {
        match self {
            Purge::Waiting => 0,
            Purge::Dead => 1,
            Purge::Finished => 2,
        }
    }
}

impl std::str::FromStr for Purge {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "waiting" => Ok(Purge::Waiting),
            "dead" => Ok(Purge::Dead),
            "finished" => Ok(Purge::Finished),
            other => Err(crate::Error::invalid(
                "purge",
                format!("`{other}`: expected waiting, dead or finished"),
            )),
        }
    }
}

/// What one [`Queues::purge_queue`](crate::Queues::purge_queue) call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PurgeReport {
    /// Tasks cancelled (waiting) or deleted (dead, finished).
    pub removed: u64,
    /// Whether tasks of the class are left: call again.
    pub more: bool,
}

impl PurgeReport {
    /// `removed` tasks, and whether `more` are left.
    pub fn new(removed: u64, more: bool) -> Self {
        PurgeReport { removed, more }
    }
}

/// Which parts of a queue's behaviour a configuration change replaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reshape {
    /// The policy (or its aging) changes. Ready tasks are ordered by keys the old policy
    /// computed when they entered, so the ready set must be empty.
    pub order: bool,
    /// The strategy (or its virtual nodes) or the seed changes. The balancer's state belongs
    /// to its members, so no registered worker may serve the queue; the balancer and the
    /// jitter generator start afresh, as on a new queue.
    pub balancer: bool,
    /// Fair share between groups is turned on or off ([`QueueConfig::groups`]). A shared
    /// queue keeps its waiting and active tasks by group, so none may be waiting (ready,
    /// scheduled, retry-scheduled) or active.
    pub groups: bool,
}

impl Reshape {
    /// What changing `old` into `new` replaces. Every other field (attempts, timeout, default
    /// cost, backoff, retention, dedup window and mode, events) changes freely.
    pub fn between(old: &QueueConfig, new: &QueueConfig) -> Reshape {
        Reshape {
            order: old.policy != new.policy,
            balancer: old.strategy != new.strategy || old.seed != new.seed,
            groups: old.groups.is_some() != new.groups.is_some(),
        }
    }
}

/// Why a queue cannot be reconfigured or deleted now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InUse {
    /// This many tasks are ready (a policy change needs an empty ready set).
    Ready(u64),
    /// These workers (sorted) serve the queue.
    Served(Vec<WorkerId>),
    /// The queue still holds this many tasks, in any state (deleting needs none).
    Tasks(u64),
    /// This many tasks are ready, scheduled, retry-scheduled or active (turning fair share
    /// between groups on or off needs none: each group counts its waiting tasks).
    Shared(u64),
}

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InUse::Ready(n) => write!(
                f,
                "{n} tasks are ready, ordered by the current policy: let them run or purge them (`switchyard purge <queue> --waiting`) before changing the policy"
            ),
            InUse::Served(workers) => {
                let names: Vec<&str> = workers.iter().map(WorkerId::as_str).collect();
                write!(
                    f,
                    "workers {} serve it: stop or drain them first",
                    names.join(", ")
                )
            }
            InUse::Shared(n) => write!(
                f,
                "{n} tasks are waiting or active: turning fair share between groups on or off needs none (let them run, or purge the waiting ones with `switchyard purge <queue> --waiting`)"
            ),
            InUse::Tasks(n) => write!(
                f,
                "it holds {n} tasks: purge waiting and finished tasks and let running ones end first"
            ),
        }
    }
}
