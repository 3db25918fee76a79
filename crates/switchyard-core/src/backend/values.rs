//! The values the transitions report.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::{EventCounts, QueueName, TaskId, TaskKind, TaskState, WorkerId};

/// One dispatch decision: `task` from `queue` went to `worker`'s inbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Assignment {
    /// The task.
    pub task: TaskId,
    /// Its queue.
    pub queue: QueueName,
    /// The worker chosen.
    pub worker: WorkerId,
}

/// The answer to a submit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SubmitOutcome {
    /// The task's id; for a duplicate, the id of the task already there.
    pub id: TaskId,
    /// Its state after the submit (`None` only for a duplicate whose original record was
    /// already purged).
    pub state: Option<TaskState>,
    /// True if nothing was created: the id existed, or the dedup key was held (the rule:
    /// [`crate::flow::dedup`]).
    pub duplicate: bool,
    /// For a duplicate: this submit's payload is not the one the task already there has (had,
    /// if [`replaced`](Self::replaced)). False if that task's record is gone.
    pub payload_differs: bool,
    /// For a duplicate in a debouncing queue: the task holding the dedup key had not started
    /// and took this submit's payload and run time.
    pub replaced: bool,
    /// The worker it was dispatched to at once (or, in a pull queue, handed off to and started
    /// on: see [`Leases::receive_wait`](crate::Leases::receive_wait)), if any.
    pub assigned: Option<WorkerId>,
}

impl SubmitOutcome {
    /// The answer for task `id`: its `state` (`None` if unknown), whether it was a
    /// `duplicate`, and the worker it was `assigned` to.
    pub fn new(
        id: TaskId,
        state: Option<TaskState>,
        duplicate: bool,
        assigned: Option<WorkerId>,
    ) -> Self {
        SubmitOutcome {
            id,
            state,
            duplicate,
            payload_differs: false,
            replaced: false,
            assigned,
        }
    }

    /// The answer for a submit that found task `id` there: `differs`, whether the submit's
    /// payload is another than the task's, and `replaced`, whether the task took it (debounce).
    pub fn duplicate_of(
        id: TaskId,
        state: Option<TaskState>,
        differs: bool,
        replaced: bool,
        assigned: Option<WorkerId>,
    ) -> Self {
        SubmitOutcome {
            payload_differs: differs,
            replaced,
            ..SubmitOutcome::new(id, state, true, assigned)
        }
    }
}

/// A fencing token: it identifies one dispatch of a task. Only the holder of the current token
/// may complete or fail the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaseToken(pub u64);

/// What a worker needs to complete or fail a task it received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The task.
    pub task: TaskId,
    /// Its queue.
    pub queue: QueueName,
    /// The worker holding it.
    pub worker: WorkerId,
    /// The fencing token of this dispatch.
    pub token: LeaseToken,
}

/// A task handed to a worker by [`Leases::receive`](crate::Leases::receive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The lease to complete or fail it with.
    pub lease: Lease,
    /// Handler name.
    pub kind: TaskKind,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// This attempt's number, starting at 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When the lease runs out (start + timeout), on the backend's clock; after that the task
    /// fails as timed out.
    pub deadline: Millis,
    /// The attempt's timeout in milliseconds (`deadline` minus the start). A worker measures
    /// it on its own clock, so that clock skew against the backend does not move it.
    pub timeout_ms: u32,
    /// When the task last became ready to run, on the backend's clock: submitted, due (a
    /// delayed task or a retry), re-driven or handed back. The start (`deadline −
    /// timeout_ms`) minus this is how long it waited; `None` for a task readied by a release
    /// that did not record it.
    pub ready_since: Option<Millis>,
    /// The submitter's trace context, if it had one: the attempt's span continues it.
    pub trace_parent: Option<crate::TraceParent>,
    /// The vendor state of that trace context, handed to the attempt's span with it.
    pub trace_state: Option<crate::TraceState>,
}

impl Delivery {
    /// How long the task waited between becoming ready and this attempt's start, in ms (on the
    /// backend's clock; `None` when the backend did not say when it became ready).
    ///
    /// ```
    /// # use switchyard_core::*;
    /// # let lease = Lease { task: TaskId::from_parts(1, 1), queue: QueueName::new("q").unwrap(),
    /// #     worker: WorkerId::new("w").unwrap(), token: LeaseToken(1) };
    /// let d = Delivery { lease, kind: TaskKind::new("k").unwrap(), payload: vec![], attempt: 1,
    ///     max_attempts: 3, deadline: 10_500, timeout_ms: 500, ready_since: Some(9_250),
    ///     trace_parent: None, trace_state: None };
    /// assert_eq!(d.waited_ms(), Some(750)); // started at 10 000
    /// ```
    pub fn waited_ms(&self) -> Option<u64> {
        let started = self.deadline.checked_sub(u64::from(self.timeout_ms))?;
        self.ready_since
            .filter(|&since| since > 0)
            .map(|since| started.saturating_sub(since))
    }
}

/// Why a completion or failure was refused. Refusals change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Rejection {
    /// No such task (never existed, or its record expired).
    NotFound,
    /// The task is not running (e.g. already completed, or handed back).
    NotRunning(TaskState),
    /// The task is running under another lease: this worker's lease was taken back.
    StaleToken,
}

/// What an acknowledgement (complete or fail) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Ack {
    /// The task succeeded and its result is stored.
    Completed,
    /// The task will be retried; it is ready again at `run_at` (ms).
    Retrying {
        /// When it becomes ready again.
        run_at: Millis,
    },
    /// The task failed for the last time and is in the dead-letter set.
    Dead,
    /// A cancel had been requested; the task is now cancelled.
    Cancelled,
    /// Throttled: back in its place with its attempt not counted, its queue held until
    /// `until` (ms; [`Leases::throttle`](crate::Leases::throttle)).
    Throttled {
        /// When the queue's hold ends.
        until: Millis,
    },
    /// Nothing changed.
    Rejected(Rejection),
}

/// The answer to [`Leases::complete`](crate::Leases::complete) and [`Leases::fail`](crate::Leases::fail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AckOutcome {
    /// What happened to the task.
    pub ack: Ack,
    /// Tasks dispatched to the freed slot.
    pub assignments: Vec<Assignment>,
}

impl AckOutcome {
    /// `ack`, and the `assignments` the freed slot led to.
    pub fn new(ack: Ack, assignments: Vec<Assignment>) -> Self {
        AckOutcome { ack, assignments }
    }
}

/// The answer to [`Tasks::cancel`](crate::Tasks::cancel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The task was cancelled; it had not started.
    Cancelled {
        /// Tasks dispatched to a slot the cancel freed.
        assignments: Vec<Assignment>,
    },
    /// The task is running; its worker is asked to stop it (see [`Membership::heartbeat`](crate::Membership::heartbeat)).
    Requested,
    /// The task had already finished in this state; nothing changed.
    AlreadyFinished(TaskState),
}

/// The answer to [`Membership::register_worker`](crate::Membership::register_worker).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegisterOutcome {
    /// Whether an earlier registration with the same id was replaced (its tasks were handed back).
    pub replaced: bool,
    /// Tasks dispatched by the registration (to this worker, and the handed-back ones anywhere).
    pub assignments: Vec<Assignment>,
}

/// The answer to [`Membership::heartbeat`](crate::Membership::heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeartbeatReply {
    /// Running tasks of this worker whose cancellation was requested.
    pub cancel: Vec<TaskId>,
    /// Running tasks of this worker that outran their lease deadline and were failed as timed
    /// out (the worker should stop them: their leases are gone).
    pub expired: Vec<TaskId>,
    /// Dispatches made while failing them (retries, refills).
    pub assignments: Vec<Assignment>,
}

/// The answer to [`Membership::deregister_worker`](crate::Membership::deregister_worker) and part of a reap.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HandBack {
    /// Tasks that went back to their queues (or to the dead set, when out of attempts).
    pub returned: Vec<TaskId>,
    /// Dispatches of the returned tasks to other workers.
    pub assignments: Vec<Assignment>,
}

/// The answer to [`Maintain::maintain`](crate::Maintain::maintain).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// Delayed or backed-off tasks that became ready.
    pub promoted: usize,
    /// Waiting tasks that expired at their deadline ([`crate::flow::deadline`], rule 3).
    #[serde(default)]
    pub tasks_expired: usize,
    /// Workers found dead (heartbeat expired) and removed.
    pub workers_reaped: Vec<WorkerId>,
    /// Tasks handed back from dead workers.
    pub tasks_returned: usize,
    /// Tasks created by schedule ticks ([`crate::schedule`]), in the order created.
    #[serde(default)]
    pub ticked: Vec<TaskId>,
    /// Finished task records and dedup keys removed after their retention time.
    pub records_purged: usize,
    /// Flow settle entries carried out ([`crate::tree`], rule 4).
    #[serde(default)]
    pub flows_settled: usize,
    /// Dispatch decisions made along the way.
    pub assignments: Vec<Assignment>,
    /// True if a limit was hit and more work is waiting (call again).
    pub more: bool,
}

/// Counts of one queue's tasks by state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueStats {
    /// The queue.
    pub queue: Option<QueueName>,
    /// Flow tasks waiting for their children ([`crate::tree`]).
    #[serde(default)]
    pub waiting_children: u64,
    /// Waiting for their run-at time.
    pub scheduled: u64,
    /// Waiting for a worker.
    pub ready: u64,
    /// In a worker's inbox.
    pub dispatched: u64,
    /// Running.
    pub running: u64,
    /// Waiting for a retry.
    pub retry_scheduled: u64,
    /// Kept after success (until their retention ends).
    pub succeeded: u64,
    /// In the dead-letter set.
    pub dead: u64,
    /// Kept after cancellation (until their retention ends).
    pub cancelled: u64,
    /// Kept after expiring at their deadline (until their retention ends).
    #[serde(default)]
    pub expired: u64,
    /// Lifetime counts of what happened to the queue's tasks (see [`EventCounts`]).
    pub totals: EventCounts,
    /// Paused: nothing is dispatched from it (see [`Queues::set_paused`](crate::Queues::set_paused)).
    pub paused: bool,
    /// With a rate limit: the dispatches its window still allows now
    /// ([`crate::flow::rate`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_tokens: Option<u32>,
    /// Closed by its rate limit or a hold: when it opens again (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<Millis>,
}

impl QueueStats {
    /// Adds one task in `state`.
    pub fn count(&mut self, state: TaskState) {
        *self.slot(state) += 1;
    }

    /// The count for `state`.
    pub fn get(&self, state: TaskState) -> u64 {
        match state {
            TaskState::WaitingChildren => self.waiting_children,
            TaskState::Scheduled => self.scheduled,
            TaskState::Ready => self.ready,
            TaskState::Dispatched => self.dispatched,
            TaskState::Running => self.running,
            TaskState::RetryScheduled => self.retry_scheduled,
            TaskState::Succeeded => self.succeeded,
            TaskState::Dead => self.dead,
            TaskState::Cancelled => self.cancelled,
            TaskState::Expired => self.expired,
        }
    }

    fn slot(&mut self, state: TaskState) -> &mut u64 {
        match state {
            TaskState::WaitingChildren => &mut self.waiting_children,
            TaskState::Scheduled => &mut self.scheduled,
            TaskState::Ready => &mut self.ready,
            TaskState::Dispatched => &mut self.dispatched,
            TaskState::Running => &mut self.running,
            TaskState::RetryScheduled => &mut self.retry_scheduled,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::Dead => &mut self.dead,
            TaskState::Cancelled => &mut self.cancelled,
            TaskState::Expired => &mut self.expired,
        }
    }

    /// All tasks counted.
    pub fn total(&self) -> u64 {
        TaskState::ALL.iter().map(|s| self.get(*s)).sum()
    }

    /// Adds the counts of `other` (the same queue seen elsewhere, e.g. another partition).
    pub fn merge(&mut self, other: &QueueStats) {
        for state in TaskState::ALL {
            *self.slot(state) += other.get(state);
        }
        self.totals.merge(&other.totals);
        self.paused |= other.paused;
    }
}

/// One worker as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The worker.
    pub id: WorkerId,
    /// Slots.
    pub capacity: u32,
    /// Weight.
    pub weight: u32,
    /// Tasks dispatched to it or running on it now.
    pub inflight: u32,
    /// Whether it is draining (takes no new tasks; see [`Membership::drain_worker`](crate::Membership::drain_worker)).
    pub draining: bool,
    /// Its queues, in preference order.
    pub queues: Vec<QueueName>,
    /// When its heartbeat expires.
    pub expires_at: Millis,
    /// Its heartbeat TTL, in ms: each heartbeat moves `expires_at` to this far ahead (a worker
    /// runtime heartbeats every third of it).
    pub heartbeat_ttl_ms: u32,
    /// Tasks handed to it since it registered (one per attempt).
    pub dispatched: u64,
    /// Tasks it completed successfully since it registered.
    pub completed: u64,
}

impl WorkerStats {
    /// The counts of worker `id`, every one zero and its queue list empty (a backend fills in
    /// what it knows).
    pub fn new(id: WorkerId) -> Self {
        WorkerStats {
            id,
            capacity: 0,
            weight: 0,
            inflight: 0,
            draining: false,
            queues: Vec::new(),
            expires_at: 0,
            heartbeat_ttl_ms: 0,
            dispatched: 0,
            completed: 0,
        }
    }
}

/// A snapshot of the backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Per declared queue, by name.
    pub queues: Vec<QueueStats>,
    /// Per live worker, by id.
    pub workers: Vec<WorkerStats>,
    /// What an operator should know first, one sentence each: a part of the backend that did
    /// not answer (a partition whose server is down: the figures above leave it out), a
    /// primary with no replica in sync (a failover now would lose data). Empty when all is
    /// well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Stats {
    /// Counts per queue and per worker, without warnings.
    pub fn new(queues: Vec<QueueStats>, workers: Vec<WorkerStats>) -> Self {
        Stats {
            queues,
            workers,
            warnings: Vec::new(),
        }
    }
}
