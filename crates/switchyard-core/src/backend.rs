//! The [`Backend`] trait: every state transition of the task state machine, and the values
//! the transitions report.
//!
//! Each method that changes state is **one atomic step**: one Lua script on Redis, one critical
//! section in memory. After every step the invariants of `docs/architecture.md` hold: every
//! task is in exactly one state, no worker holds more tasks than its capacity, no ready task
//! waits while a worker serving its (push) queue has a free slot, tasks leave a queue in policy
//! order, and repeating a submit or a completion changes nothing.
//!
//! Steps that can hand tasks to workers report those decisions as [`Assignment`]s, so callers
//! (and the cross-backend tests) can see exactly what the strategy chose.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::{
    Event, EventCounts, QueueConfig, QueueName, Result, TaskId, TaskInfo, TaskKind, TaskOutcome,
    TaskSpec, TaskState, WorkerId, WorkerRef, WorkerSpec,
};

/// The error recorded when a worker disappears (deregistered, reaped, replaced) during a
/// running attempt. Both backends record exactly this text.
pub fn lost_worker_error(worker: &WorkerId, attempt: u32) -> String {
    format!("worker {worker} was lost during attempt {attempt}")
}

/// The error recorded when a running attempt outlives its timeout. Both backends record
/// exactly this text.
pub fn timeout_error(timeout_ms: u32) -> String {
    format!("timed out after {timeout_ms} ms")
}

/// Longest failure message kept with a task, in bytes; longer ones are cut.
pub const MAX_ERROR_BYTES: usize = 4096;

/// The failure message a backend records for `error`: cut to [`MAX_ERROR_BYTES`] on a
/// character boundary, and never empty. Both backends record exactly this text.
///
/// ```
/// use switchyard_core::backend::normalize_error;
/// assert_eq!(normalize_error(""), "failed without a message");
/// assert_eq!(normalize_error("boom"), "boom");
/// assert!(normalize_error(&"é".repeat(5000)).len() <= 4096);
/// ```
pub fn normalize_error(error: &str) -> String {
    if error.is_empty() {
        return "failed without a message".to_owned();
    }
    let mut end = error.len().min(MAX_ERROR_BYTES);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    error[..end].to_owned()
}

/// The moving average of run times after one more sample: `⌊(7 · average + sample) / 8⌋`, or
/// the sample itself for the first. Both backends compute exactly this.
///
/// ```
/// use switchyard_core::backend::next_average;
/// assert_eq!(next_average(None, 80), 80);
/// assert_eq!(next_average(Some(80), 160), 90);
/// ```
pub fn next_average(average: Option<u64>, sample: u64) -> u64 {
    match average {
        None => sample,
        Some(a) => (7 * a + sample) / 8,
    }
}

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
pub struct SubmitOutcome {
    /// The task's id; for a duplicate, the id of the task already there.
    pub id: TaskId,
    /// Its state after the submit (`None` only for a duplicate whose original record was
    /// already purged).
    pub state: Option<TaskState>,
    /// True if nothing was created: the id existed, or the dedup key was taken.
    pub duplicate: bool,
    /// The worker it was dispatched to at once, if any.
    pub assigned: Option<WorkerId>,
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

/// A task handed to a worker by [`Backend::receive`].
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
    /// Nothing changed.
    Rejected(Rejection),
}

/// The answer to [`Backend::complete`] and [`Backend::fail`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckOutcome {
    /// What happened to the task.
    pub ack: Ack,
    /// Tasks dispatched to the freed slot.
    pub assignments: Vec<Assignment>,
}

/// The answer to [`Backend::cancel`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelOutcome {
    /// The task was cancelled; it had not started.
    Cancelled {
        /// Tasks dispatched to a slot the cancel freed.
        assignments: Vec<Assignment>,
    },
    /// The task is running; its worker is asked to stop it (see [`Backend::heartbeat`]).
    Requested,
    /// The task had already finished in this state; nothing changed.
    AlreadyFinished(TaskState),
}

/// The answer to [`Backend::register_worker`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegisterOutcome {
    /// Whether an earlier registration with the same id was replaced (its tasks were handed back).
    pub replaced: bool,
    /// Tasks dispatched by the registration (to this worker, and the handed-back ones anywhere).
    pub assignments: Vec<Assignment>,
}

/// The answer to [`Backend::heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Running tasks of this worker whose cancellation was requested.
    pub cancel: Vec<TaskId>,
    /// Running tasks of this worker that outran their lease deadline and were failed as timed
    /// out (the worker should stop them: their leases are gone).
    pub expired: Vec<TaskId>,
    /// Dispatches made while failing them (retries, refills).
    pub assignments: Vec<Assignment>,
}

/// The answer to [`Backend::deregister_worker`] and part of a reap.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HandBack {
    /// Tasks that went back to their queues (or to the dead set, when out of attempts).
    pub returned: Vec<TaskId>,
    /// Dispatches of the returned tasks to other workers.
    pub assignments: Vec<Assignment>,
}

/// The answer to [`Backend::maintain`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MaintenanceReport {
    /// Delayed or backed-off tasks that became ready.
    pub promoted: usize,
    /// Workers found dead (heartbeat expired) and removed.
    pub workers_reaped: Vec<WorkerId>,
    /// Tasks handed back from dead workers.
    pub tasks_returned: usize,
    /// Finished task records and dedup keys removed after their retention time.
    pub records_purged: usize,
    /// Dispatch decisions made along the way.
    pub assignments: Vec<Assignment>,
    /// True if a limit was hit and more work is waiting (call again).
    pub more: bool,
}

/// Counts of one queue's tasks by state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// The queue.
    pub queue: Option<QueueName>,
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
    /// Lifetime counts of what happened to the queue's tasks (see [`EventCounts`]).
    pub totals: EventCounts,
    /// Paused: nothing is dispatched from it (see [`Backend::set_paused`]).
    pub paused: bool,
}

impl QueueStats {
    /// Adds one task in `state`.
    pub fn count(&mut self, state: TaskState) {
        *self.slot(state) += 1;
    }

    /// The count for `state`.
    pub fn get(&self, state: TaskState) -> u64 {
        match state {
            TaskState::Scheduled => self.scheduled,
            TaskState::Ready => self.ready,
            TaskState::Dispatched => self.dispatched,
            TaskState::Running => self.running,
            TaskState::RetryScheduled => self.retry_scheduled,
            TaskState::Succeeded => self.succeeded,
            TaskState::Dead => self.dead,
            TaskState::Cancelled => self.cancelled,
        }
    }

    fn slot(&mut self, state: TaskState) -> &mut u64 {
        match state {
            TaskState::Scheduled => &mut self.scheduled,
            TaskState::Ready => &mut self.ready,
            TaskState::Dispatched => &mut self.dispatched,
            TaskState::Running => &mut self.running,
            TaskState::RetryScheduled => &mut self.retry_scheduled,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::Dead => &mut self.dead,
            TaskState::Cancelled => &mut self.cancelled,
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
pub struct WorkerStats {
    /// The worker.
    pub id: WorkerId,
    /// Slots.
    pub capacity: u32,
    /// Weight.
    pub weight: u32,
    /// Tasks dispatched to it or running on it now.
    pub inflight: u32,
    /// Whether it is draining (takes no new tasks; see [`Backend::drain_worker`]).
    pub draining: bool,
    /// Its queues, in preference order.
    pub queues: Vec<QueueName>,
    /// When its heartbeat expires.
    pub expires_at: Millis,
    /// Tasks handed to it since it registered (one per attempt).
    pub dispatched: u64,
    /// Tasks it completed successfully since it registered.
    pub completed: u64,
}

/// A snapshot of the backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Per declared queue, by name.
    pub queues: Vec<QueueStats>,
    /// Per live worker, by id.
    pub workers: Vec<WorkerStats>,
}

/// Where task state lives. Implemented by the in-memory reference backend and the Redis backend.
///
/// All methods take `&self` and are safe to call from many tasks at once.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Declares a queue. Declaring it again with the same configuration is a no-op; with a
    /// different one it is an [`Error::QueueConflict`](crate::Error::QueueConflict).
    async fn declare_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<()>;

    /// The configuration of a declared queue.
    async fn queue_config(&self, queue: &QueueName) -> Result<Option<QueueConfig>>;

    /// Submits one task. Submitting an id that exists, or a dedup key that is taken, changes
    /// nothing and reports `duplicate`.
    async fn submit(&self, spec: TaskSpec) -> Result<SubmitOutcome>;

    /// Submits several tasks, with the same effect as submitting them one by one in order.
    /// Every queue is checked first; if one is unknown, nothing is submitted.
    ///
    /// A large batch is applied in chunks (so that other callers are not held up behind it),
    /// each chunk atomically. If a chunk fails (the server ran out of memory, the connection
    /// broke), the error is [`Error::BatchIncomplete`](crate::Error::BatchIncomplete): it lists
    /// the outcomes of the tasks stored before it (always the first ones, in order) and wraps
    /// the cause. Submitting the same specs again is the recovery: ids already stored come back
    /// as duplicates.
    async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<SubmitOutcome>>;

    /// Registers a worker and fills its free slots from its queues.
    ///
    /// An earlier registration of the same id is replaced (and its tasks handed back) only if
    /// it has the same [instance token](crate::InstanceToken) or its heartbeat has expired
    /// (`expires_at < now`, so that maintenance could reap it). A live registration of another
    /// instance is left alone and the call fails with
    /// [`Error::WorkerIdInUse`](crate::Error::WorkerIdInUse): two live processes can never
    /// share an id, so a task cannot run under it twice at once.
    async fn register_worker(&self, spec: WorkerSpec) -> Result<RegisterOutcome>;

    /// Extends the worker's heartbeat, fails its running tasks whose lease deadline passed
    /// (`deadline < now`) as timed out, and reports running tasks whose cancel was requested.
    /// Fails with [`Error::UnknownWorker`](crate::Error::UnknownWorker) if it was reaped, and
    /// with [`Error::WorkerReplaced`](crate::Error::WorkerReplaced) if another instance took
    /// the id over (the same two errors answer every call a worker makes as itself: heartbeat,
    /// drain, deregister, receive).
    ///
    /// **How leases end.** A lease lives as long as its worker heartbeats; the task's timeout is
    /// a separate, hard limit. Every running task belongs to exactly one registered worker, so
    /// two mechanisms between them cover every lease, and neither needs a global index of
    /// leases or a leader to scan one:
    ///
    /// * a worker that is alive enforces the timeouts of its own tasks here: each heartbeat
    ///   looks only at this worker's running tasks (at most its capacity) and fails the overdue
    ///   ones with [`timeout_error`], so an overrunning task ends within one heartbeat interval
    ///   of its deadline, even if the worker's process is too stuck to stop the handler;
    /// * a worker that stopped heartbeating expires after its TTL and is reaped by
    ///   [`Backend::maintain`] (run by any worker), which hands its tasks back.
    ///
    /// So every expired lease is handled within `max(heartbeat interval, heartbeat TTL)` (plus,
    /// for a dead worker, the wait for the next maintenance pass), whether or not its worker is
    /// alive. The worker runtime also measures each timeout on its own clock
    /// ([`Delivery::timeout_ms`]) and normally fails the attempt itself, with the same text.
    async fn heartbeat(&self, worker: &WorkerRef) -> Result<HeartbeatReply>;

    /// Starts a graceful stop: the worker takes no new tasks (no dispatch, no refill, no pull)
    /// and the tasks in its inbox go back to their queues at once, without using an attempt.
    /// Its running tasks stay with it until it completes or fails them. Draining twice changes
    /// nothing.
    async fn drain_worker(&self, worker: &WorkerRef) -> Result<HandBack>;

    /// Removes a worker. Tasks in its inbox go back to their queues without using an attempt;
    /// running tasks go back with the attempt counted.
    async fn deregister_worker(&self, worker: &WorkerRef) -> Result<HandBack>;

    /// Dispatches ready tasks of `queue` to eligible workers, up to `limit`. The backend already
    /// dispatches at every step, so this finds work only after a crash left some undone.
    async fn dispatch(&self, queue: &QueueName, limit: usize) -> Result<Vec<Assignment>>;

    /// Starts up to `max` tasks from the worker's inbox (then, with slots to spare, from its
    /// pull queues) and returns them. Never blocks; returns an empty list if there is nothing.
    async fn receive(&self, worker: &WorkerRef, max: usize) -> Result<Vec<Delivery>>;

    /// Like [`Backend::receive`], but if nothing is there, waits up to `timeout` for work to
    /// arrive without polling the backend.
    async fn receive_wait(
        &self,
        worker: &WorkerRef,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Marks a running task succeeded with `value` as its result. Refused (changing nothing)
    /// if the lease is stale.
    async fn complete(&self, lease: &Lease, value: Vec<u8>) -> Result<AckOutcome>;

    /// Completes a task and, if the completion was accepted, receives up to `max` more for
    /// the lease's worker in one step. A refused completion receives nothing: the lease was
    /// stale, so the caller may be an instance that was replaced, and must not take tasks from
    /// the inbox of the registration that now holds the id.
    async fn complete_and_receive(
        &self,
        lease: &Lease,
        value: Vec<u8>,
        max: usize,
    ) -> Result<(AckOutcome, Vec<Delivery>)>;

    /// Records a failed attempt. With `retry` and attempts left, the task is retried after the
    /// queue's backoff; otherwise it goes to the dead-letter set.
    async fn fail(&self, lease: &Lease, error: &str, retry: bool) -> Result<AckOutcome>;

    /// Cancels a task: at once if it has not started, by request if it is running.
    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome>;

    /// A snapshot of one task.
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskInfo>>;

    /// How the task ended, if it has.
    async fn get_outcome(&self, id: TaskId) -> Result<Option<TaskOutcome>>;

    /// Waits up to `timeout` for the task to end, without polling the backend.
    async fn wait_outcome(&self, id: TaskId, timeout: Duration) -> Result<Option<TaskOutcome>>;

    /// Pauses (`true`) or resumes a queue. While paused nothing is dispatched from it: tasks
    /// are still accepted, become ready and wait; running tasks finish and report as usual.
    /// Resuming dispatches what waits to the eligible workers at once (the assignments are
    /// returned) and wakes workers waiting on a pull queue. Pausing a paused queue, or
    /// resuming a running one, changes nothing.
    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<Vec<Assignment>>;

    /// Dead tasks of a queue, oldest first, up to `limit`.
    async fn list_dead(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskInfo>>;

    /// Moves a dead task back to its queue with its attempts reset.
    async fn redrive(&self, id: TaskId) -> Result<SubmitOutcome>;

    /// Deletes a finished task (succeeded, dead or cancelled) and its outcome. A task that
    /// can still run is refused with [`Error::WrongState`](crate::Error::WrongState): cancel
    /// it first. See [`admin`](crate::admin).
    async fn delete_task(&self, id: TaskId) -> Result<()>;

    /// Cancels (waiting) or deletes (dead, finished) up to `limit` tasks of one class of a
    /// queue; call again while [`PurgeReport::more`](crate::admin::PurgeReport). See
    /// [`admin`](crate::admin).
    async fn purge_queue(
        &self,
        queue: &QueueName,
        what: crate::admin::Purge,
        limit: usize,
    ) -> Result<crate::admin::PurgeReport>;

    /// Changes a declared queue's configuration; `false` if it already had this one. A new
    /// policy needs an empty ready set, a new strategy or seed a queue no worker serves
    /// ([`Reshape`](crate::admin::Reshape)); otherwise
    /// [`Error::QueueInUse`](crate::Error::QueueInUse).
    async fn reconfigure_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<bool>;

    /// Deletes a queue that holds no task and that no registered worker serves (otherwise
    /// [`Error::QueueInUse`](crate::Error::QueueInUse)), with its counters, pause flag and
    /// learned costs. Its dedup keys expire on their own.
    async fn delete_queue(&self, queue: &QueueName) -> Result<()>;

    /// Counts per queue and per worker.
    async fn stats(&self) -> Result<Stats>;

    /// The next ready tasks of a queue in the order they will leave it, up to `limit`.
    async fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>>;

    /// Events recorded after position `after` (from the start when `None`), oldest first, at
    /// most `limit`.
    async fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>>;

    /// The learned cost of a task kind in a shortest-job-first queue: the moving average of its
    /// measured run times in ms, if any run has completed. A task submitted without a cost hint
    /// to such a queue is ordered by it.
    async fn learned_cost(&self, queue: &QueueName, kind: &TaskKind) -> Result<Option<u32>>;

    /// How long until maintenance has something to do: until the first run-at among delayed
    /// tasks or the first heartbeat expiry, measured on the backend's own clock (zero when it
    /// is already due; `None` when nothing is waiting). Workers sleep that long (or their
    /// maintenance interval, if shorter) instead of polling; a relative answer keeps a
    /// worker whose clock is skewed from the backend's waking at the right moment.
    async fn until_due(&self) -> Result<Option<Duration>>;

    /// Sleeps until maintenance has something to do ([`until_due`](Backend::until_due)), for
    /// at most `at_most`. A delayed task that becomes the first of its queue while this sleeps
    /// (submitted, or a retry backed off, by any process) wakes it to look again, so
    /// maintenance loops promote it on time without polling.
    async fn sleep_until_due(&self, at_most: Duration) -> Result<()>;

    /// Housekeeping, at most `limit` items of each kind: reaps workers whose heartbeat expired
    /// (handing their tasks back), promotes due delayed tasks, purges finished records past
    /// their retention. Safe to run from many places at once: every step is atomic and
    /// re-checks its condition, so two callers reaping the same worker or promoting the same
    /// task do it once between them.
    ///
    /// Maintenance does not look for expired leases, and need not: a running task past its
    /// deadline is failed by its own worker's [heartbeat](Backend::heartbeat) while that worker
    /// lives, and once the worker stops heartbeating, the reap here returns all its tasks.
    /// Reaping reads only the workers whose heartbeat expiry passed, in expiry order, so its
    /// cost follows the dead workers, not the number of running tasks.
    async fn maintain(&self, limit: usize) -> Result<MaintenanceReport>;
}

/// The shortest sleep of [`Backend::sleep_until_due`] (unless less of its `at_most` is left):
/// something that is already due but that maintenance cannot clear yet must not turn the loop
/// into a spin.
pub const MIN_DUE_PAUSE: Duration = Duration::from_millis(5);

/// How long [`Backend::sleep_until_due`] sleeps before looking again: until the next due time
/// (at least [`MIN_DUE_PAUSE`]), capped by the time `left`; `None` once no time is left.
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::backend::due_pause;
///
/// let s = Duration::from_secs;
/// assert_eq!(due_pause(Some(s(2)), s(10)), Some(s(2)));
/// assert_eq!(due_pause(None, s(10)), Some(s(10)));
/// assert_eq!(due_pause(Some(s(60)), s(10)), Some(s(10)));
/// assert_eq!(due_pause(Some(Duration::ZERO), s(10)), Some(Duration::from_millis(5)));
/// assert_eq!(due_pause(Some(s(2)), Duration::ZERO), None);
/// ```
pub fn due_pause(until_due: Option<Duration>, left: Duration) -> Option<Duration> {
    if left.is_zero() {
        return None;
    }
    Some(until_due.map_or(left, |d| d.max(MIN_DUE_PAUSE).min(left)))
}
