//! Events: what happened to tasks, kept in a capped log for monitoring.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::display::quoted;
use crate::{Error, QueueName, TaskId, WorkerId};

/// How many events a backend keeps (older ones are dropped; Redis trims approximately).
pub const EVENT_LOG_CAP: usize = 10_000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EventKind {
    /// A task was accepted.
    Submitted,
    /// A task was handed to a worker.
    Dispatched,
    /// A task succeeded.
    Succeeded,
    /// An attempt failed (reported, timed out, or its worker was lost); `detail` is the error.
    Failed,
    /// A failed task will run again; `detail` is the run-at time in ms.
    Retried,
    /// A task failed for the last time; it is in the dead-letter set.
    Dead,
    /// A task was cancelled.
    Cancelled,
    /// A task was still waiting at its deadline and expired.
    Expired,
    /// A running task's handler reported progress; `detail` is the percentage and message
    /// (announced reports only, at most one a second per attempt: [`crate::progress`]).
    /// Recorded at [`EventLevel::All`] only, and not counted in [`EventCounts`].
    Progress,
}

impl EventKind {
    /// Every counted kind (the lifecycle steps), in lifecycle order; [`EventKind::Progress`]
    /// is the one kind not among them.
    pub const ALL: [EventKind; 8] = [
        EventKind::Submitted,
        EventKind::Dispatched,
        EventKind::Succeeded,
        EventKind::Failed,
        EventKind::Retried,
        EventKind::Dead,
        EventKind::Cancelled,
        EventKind::Expired,
    ];

    /// The kind's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Submitted => "submitted",
            EventKind::Dispatched => "dispatched",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::Retried => "retried",
            EventKind::Dead => "dead",
            EventKind::Cancelled => "cancelled",
            EventKind::Expired => "expired",
            EventKind::Progress => "progress",
        }
    }

    /// Parses [`EventKind::as_str`] output.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .chain([EventKind::Progress])
            .find(|k| k.as_str() == s)
    }

    /// Whether a queue at `level` records this kind.
    pub fn recorded_at(self, level: EventLevel) -> bool {
        match level {
            EventLevel::Off => false,
            EventLevel::Failures => matches!(
                self,
                EventKind::Failed
                    | EventKind::Retried
                    | EventKind::Dead
                    | EventKind::Cancelled
                    | EventKind::Expired
            ),
            EventLevel::All => true,
        }
    }
}

/// How many events of each kind happened to a queue's tasks since the queue was declared,
/// counted whether or not the queue records them in the log ([`EventLevel`]): the lifetime
/// totals behind throughput and failure rates (two snapshots a second apart give the rates).
///
/// ```
/// use switchyard_core::{EventCounts, EventKind};
///
/// let mut counts = EventCounts::default();
/// counts.add(EventKind::Succeeded, 2);
/// counts.add(EventKind::Failed, 1);
/// assert_eq!(counts.get(EventKind::Succeeded), 2);
/// assert_eq!(counts.succeeded + counts.failed, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventCounts {
    /// Tasks accepted.
    pub submitted: u64,
    /// Hand-overs to a worker (one per attempt).
    pub dispatched: u64,
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Attempts that failed (reported, timed out, or their worker was lost).
    pub failed: u64,
    /// Times a task went back to its queue for another attempt (after a failure, or re-driven).
    pub retried: u64,
    /// Tasks that ended in the dead-letter set.
    pub dead: u64,
    /// Tasks that were cancelled.
    pub cancelled: u64,
    /// Tasks that expired (still waiting at their deadline).
    #[serde(default)]
    pub expired: u64,
}

impl EventCounts {
    /// The count of `kind` (0 for [`EventKind::Progress`], which is not counted).
    pub fn get(&self, kind: EventKind) -> u64 {
        match kind {
            EventKind::Submitted => self.submitted,
            EventKind::Dispatched => self.dispatched,
            EventKind::Succeeded => self.succeeded,
            EventKind::Failed => self.failed,
            EventKind::Retried => self.retried,
            EventKind::Dead => self.dead,
            EventKind::Cancelled => self.cancelled,
            EventKind::Expired => self.expired,
            EventKind::Progress => 0,
        }
    }

    /// Adds `n` events of `kind` (progress events are not counted: nothing changes).
    pub fn add(&mut self, kind: EventKind, n: u64) {
        let slot = match kind {
            EventKind::Submitted => &mut self.submitted,
            EventKind::Dispatched => &mut self.dispatched,
            EventKind::Succeeded => &mut self.succeeded,
            EventKind::Failed => &mut self.failed,
            EventKind::Retried => &mut self.retried,
            EventKind::Dead => &mut self.dead,
            EventKind::Cancelled => &mut self.cancelled,
            EventKind::Expired => &mut self.expired,
            EventKind::Progress => return,
        };
        *slot = slot.saturating_add(n);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &EventCounts) {
        for kind in EventKind::ALL {
            self.add(kind, other.get(kind));
        }
    }
}

/// Which events a queue records. Recording every step costs a stream append per step on Redis,
/// so the default records only what goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EventLevel {
    /// Nothing.
    Off,
    /// Failed, retried, dead and cancelled.
    #[default]
    Failures,
    /// Every kind, submitted, dispatched and succeeded included.
    All,
}

impl EventLevel {
    /// Its name on the command line: `off`, `failures`, `all`.
    pub fn name(self) -> &'static str {
        match self {
            EventLevel::Off => "off",
            EventLevel::Failures => "failures",
            EventLevel::All => "all",
        }
    }
}

impl std::str::FromStr for EventLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "off" => Ok(EventLevel::Off),
            "failures" => Ok(EventLevel::Failures),
            "all" => Ok(EventLevel::All),
            _ => Err(Error::invalid(
                "event level",
                format!("{}: expected off, failures or all", quoted(s)),
            )),
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Position in the log; pass it to [`Inspect::events`](crate::Inspect::events) to read on.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// To which task.
    pub task: TaskId,
    /// In which queue.
    pub queue: QueueName,
    /// On which worker, if any.
    pub worker: Option<WorkerId>,
    /// When, in ms since the epoch (backend clock).
    pub at: Millis,
    /// The error (failed), the run-at time (retried), or nothing.
    pub detail: Option<String>,
}

impl Event {
    /// An event of `kind` about `task` of `queue` at `at`, at position `id` of the log, with
    /// no worker and no detail.
    pub fn new(id: String, kind: EventKind, task: TaskId, queue: QueueName, at: Millis) -> Self {
        Event {
            id,
            kind,
            task,
            queue,
            worker: None,
            at,
            detail: None,
        }
    }
}
