//! The capability traits whose sum is [`Backend`](super::Backend): each names one thing a
//! backend can do, so that a reader sees the whole surface from the list of traits and a caller
//! can ask only for what it uses.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    AckOutcome, Assignment, Browse, CancelOutcome, Delivery, HandBack, HeartbeatReply, Lease,
    MaintenanceReport, RegisterOutcome, Stats, SubmitOutcome, TaskPage,
};
use crate::schedule::{Claim, ScheduleInfo, ScheduleSpec, Upserted};
use crate::{
    Event, Progress, ProgressAck, QueueConfig, QueueName, Result, ScheduleName, TaskChange, TaskId,
    TaskInfo, TaskKind, TaskOutcome, TaskSpec, WorkerRef, WorkerSpec,
};

/// Declaring queues and changing them: their configuration, pause flag, contents and existence.
/// See [`admin`](crate::admin) for the rules of purge, reconfigure and delete.
#[async_trait]
pub trait Queues: Send + Sync {
    /// Declares a queue. Declaring it again with the same configuration is a no-op; with a
    /// different one it is an [`Error::QueueConflict`](crate::Error::QueueConflict).
    async fn declare_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<()>;

    /// The configuration of a declared queue.
    async fn queue_config(&self, queue: &QueueName) -> Result<Option<QueueConfig>>;

    /// Pauses (`true`) or resumes a queue. While paused nothing is dispatched from it: tasks
    /// are still accepted, become ready and wait; running tasks finish and report as usual.
    /// Resuming dispatches what waits to the eligible workers at once (the assignments are
    /// returned) and wakes workers waiting on a pull queue. Pausing a paused queue, or
    /// resuming a running one, changes nothing.
    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<Vec<Assignment>>;

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

    /// Sets the weight (`1..=`[`MAX_WEIGHT`](crate::flow::groups::MAX_WEIGHT): dispatches per
    /// turn) of group `key` in a queue shared between groups
    /// ([`QueueConfig::groups`](crate::QueueConfig::groups)); it takes effect from the group's
    /// next turn. Weight 1, the default, needs no call. A plain queue answers
    /// [`Error::Invalid`](crate::Error::Invalid).
    async fn set_group_weight(&self, queue: &QueueName, key: &str, weight: u32) -> Result<()>;

    /// Gives group `key` of a queue shared between groups its own concurrency and rate limits
    /// in place of the queue's per-group ones ([`GroupLimits`](crate::flow::groups::GroupLimits);
    /// the default takes them off). It takes effect at once: a group now over a lowered limit
    /// waits, one under a raised limit is taken up. A plain queue answers
    /// [`Error::Invalid`](crate::Error::Invalid).
    async fn set_group_limits(
        &self,
        queue: &QueueName,
        key: &str,
        limits: crate::flow::groups::GroupLimits,
    ) -> Result<()>;

    /// The groups of a queue shared between groups: those with waiting or active tasks, a set
    /// weight or own limits, or a mark, by key (see [`flow::groups`](crate::flow::groups)).
    async fn groups(&self, queue: &QueueName) -> Result<Vec<crate::flow::groups::GroupInfo>>;
}

/// What a producer does: submit tasks, one or many.
#[async_trait]
pub trait Produce: Send + Sync {
    /// Submits one task. Submitting an id that exists, or a dedup key that is taken, changes
    /// nothing and reports `duplicate`.
    async fn submit(&self, spec: TaskSpec) -> Result<SubmitOutcome>;

    /// Submits several tasks, with the same effect as submitting them one by one in order.
    /// Every queue is checked first; if one is unknown, nothing is submitted.
    ///
    /// A large batch is applied in chunks (so that other callers are not held up behind it),
    /// each chunk atomically. If a chunk fails (the server ran out of memory, the connection
    /// broke), the error is [`Error::BatchIncomplete`](crate::Error::BatchIncomplete): it lists
    /// the tasks stored (by position in the batch, with their outcomes) and wraps the cause. Submitting the same specs again is the recovery: ids already stored come back
    /// as duplicates.
    async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<SubmitOutcome>>;

    /// Submits a [`Flow`](crate::tree::Flow): a tree of tasks, stored whole in one atomic
    /// step, in which a task with children runs only when they have ended (the rules:
    /// [`crate::tree`]). Answers each task in pre-order ([`Flow::flatten`](crate::tree::Flow::flatten)).
    /// A flow whose root exists already is answered by the root alone, as a duplicate.
    async fn submit_flow(&self, flow: crate::tree::Flow) -> Result<Vec<SubmitOutcome>>;
}

/// A worker's life in the backend: registering, heartbeating, draining and leaving. Every
/// call made as a worker answers [`Error::UnknownWorker`](crate::Error::UnknownWorker) once it
/// was reaped and [`Error::WorkerReplaced`](crate::Error::WorkerReplaced) once another instance
/// took its id.
#[async_trait]
pub trait Membership: Send + Sync {
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
    ///   [`Maintain::maintain`](crate::Maintain::maintain) (run by any worker), which hands its tasks back.
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
}

/// Handing tasks to workers and taking their answers: dispatch, receive, and the end of each
/// attempt under its [`Lease`].
#[async_trait]
pub trait Leases: Send + Sync {
    /// Dispatches ready tasks of `queue` to eligible workers, up to `limit`. The backend already
    /// dispatches at every step, so this finds work only after a crash left some undone.
    async fn dispatch(&self, queue: &QueueName, limit: usize) -> Result<Vec<Assignment>>;

    /// Starts up to `max` tasks from the worker's inbox (then, with slots to spare, from its
    /// pull queues) and returns them. Never blocks; returns an empty list if there is nothing.
    async fn receive(&self, worker: &WorkerRef, max: usize) -> Result<Vec<Delivery>>;

    /// Like [`Leases::receive`](crate::Leases::receive), but if nothing is there, waits up to
    /// `timeout` for work to arrive without polling the backend.
    ///
    /// A worker that gets nothing (with any `max` and `timeout`) is left *waiting*, and
    /// *parked* on its pull queues, after the call returns: while it has a free slot and an
    /// empty inbox, a task dispatched to it, or the next task due in one of those pull queues,
    /// is started on it at once and handed over whole (the hand-off), with no second call.
    /// A call with a timeout returns such tasks as they come; a zero `timeout` only asks (and
    /// parks) and never returns a hand-off, which stays running on the worker for the next
    /// waiting call or for [`Leases::running`]. After the backend lost its connection, it may
    /// also return tasks the caller already runs: the caller ignores those it holds (same
    /// task and lease token). See `docs/architecture.md`, "Waiting and parking".
    async fn receive_wait(
        &self,
        worker: &WorkerRef,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Every task running on the worker, in lease-token order, as deliveries (without
    /// `ready_since`). A worker that may have missed a hand-off (its connection dropped)
    /// reconciles with this: it starts the ones it does not hold.
    async fn running(&self, worker: &WorkerRef) -> Result<Vec<Delivery>>;

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

    /// Hands a running task back to its place in its queue without counting the attempt, and
    /// holds the queue (it dispatches nothing) until `hold` from now: what a handler that
    /// learned downstream is throttling it asks for (`TaskError::rate_limited`). The queue
    /// takes up again by itself when the hold ends ([`crate::flow::rate`]). A cancel that was
    /// pending ends the task cancelled instead. Refused (changing nothing) if the lease is
    /// stale.
    async fn throttle(&self, lease: &Lease, hold: Duration) -> Result<AckOutcome>;

    /// Stores how far the lease's task has come ([`crate::progress`]: accepted only under the
    /// current lease, announced at most once a second per attempt). Changes nothing else: not
    /// the lease, not the task's state.
    async fn progress(&self, lease: &Lease, progress: &Progress) -> Result<ProgressAck>;
}

/// One task by id: reading it, waiting for its end, cancelling, re-driving or deleting it, and
/// the dead-letter set it may end in.
#[async_trait]
pub trait Tasks: Send + Sync {
    /// A snapshot of one task.
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskInfo>>;

    /// How the task ended, if it has.
    async fn get_outcome(&self, id: TaskId) -> Result<Option<TaskOutcome>>;

    /// Waits up to `timeout` for the task to end, without polling the backend.
    async fn wait_outcome(&self, id: TaskId, timeout: Duration) -> Result<Option<TaskOutcome>>;

    /// Waits up to `timeout`, without polling, until the task's progress holds an announcement
    /// that `seen` (what an earlier call returned) does not ([`crate::progress::news`]) or the
    /// task finishes; returns the progress then (the newest report of its latest attempt,
    /// `None` if it has none). Returns at once if there is such news already.
    /// [`Error::TaskNotFound`](crate::Error::TaskNotFound) for an unknown id.
    async fn wait_progress(
        &self,
        id: TaskId,
        seen: Option<&Progress>,
        timeout: Duration,
    ) -> Result<Option<Progress>>;

    /// Cancels a task: at once if it has not started, by request if it is running.
    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome>;

    /// Dead tasks of a queue, oldest first, up to `limit`.
    async fn list_dead(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskInfo>>;

    /// Changes a task that has not started — its priority, payload or run time
    /// ([`crate::TaskChange`], whose module states the rule). Refused with
    /// [`Error::WrongState`](crate::Error::WrongState) once it has been dispatched, and
    /// [`Error::TaskNotFound`](crate::Error::TaskNotFound) for an unknown id. Answers where the
    /// task is now (a run time that has come may dispatch it at once).
    async fn change_task(&self, id: TaskId, change: &TaskChange) -> Result<SubmitOutcome>;

    /// Moves a dead task back to its queue with its attempts reset.
    async fn redrive(&self, id: TaskId) -> Result<SubmitOutcome>;

    /// Deletes a finished task (succeeded, dead or cancelled) and its outcome. A task that
    /// can still run is refused with [`Error::WrongState`](crate::Error::WrongState): cancel
    /// it first. See [`admin`](crate::admin).
    async fn delete_task(&self, id: TaskId) -> Result<()>;

    /// The children of a flow's task, in the order submitted, each with its end as counted for
    /// the parent ([`crate::tree`], rule 2) and its state now. `None` for an unknown task; an
    /// empty list for a task without children.
    async fn children(&self, id: TaskId) -> Result<Option<Vec<crate::tree::ChildResult>>>;
}

/// Read-only views for operators and tests: counts, the order of a queue, the event log, learned costs.
#[async_trait]
pub trait Inspect: Send + Sync {
    /// Counts per queue and per worker.
    async fn stats(&self) -> Result<Stats>;

    /// The next ready tasks of a queue in the order they will leave it, up to `limit`.
    async fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>>;

    /// One page of the task browser: the tasks of a queue in one state, in the state's order
    /// (see [`Browse`]), filtered by kind and id prefix, from where the previous page stopped.
    /// Each call examines at most [`BROWSE_SCAN`](super::BROWSE_SCAN) entries of the state's
    /// index, so a page costs the same however many tasks the queue holds. Pages are not a
    /// snapshot: a task that changes state between two calls may be missed or shown twice.
    async fn browse(&self, query: &Browse) -> Result<TaskPage>;

    /// Events recorded after position `after` (from the start when `None`), oldest first, at
    /// most `limit`.
    async fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>>;

    /// The learned cost of a task kind in a shortest-job-first queue: the moving average of its
    /// measured run times in ms, if any run has completed. A task submitted without a cost hint
    /// to such a queue is ordered by it.
    async fn learned_cost(&self, queue: &QueueName, kind: &TaskKind) -> Result<Option<u32>>;

    /// About how many bytes the backend holds for each declared queue: its own structures and
    /// its tasks' records. On Redis, `MEMORY USAGE` of the queue's keys (sampled) plus its
    /// tasks' share of the task hash and its dead tasks' share of the dead-letter set, at
    /// those keys' average entry size; in memory, the records' sizes. An estimate for an
    /// operator's view, read every 10 s by the dashboard, not an exact count.
    async fn memory(&self) -> Result<Vec<(QueueName, u64)>>;
}

/// Schedules ([`crate::schedule`], whose rules these follow): a named definition creating one
/// task per tick. Their due ticks are claimed by [`Maintain::maintain`], which every worker
/// runs; [`claim_ticks`](Schedules::claim_ticks) is that claim, for any other ticker.
#[async_trait]
pub trait Schedules: Send + Sync {
    /// Creates a schedule, or replaces its definition; the same definition changes nothing.
    async fn upsert_schedule(&self, spec: &ScheduleSpec) -> Result<Upserted>;

    /// A schedule and its state (`None`: no schedule of that name).
    async fn get_schedule(&self, name: &ScheduleName) -> Result<Option<ScheduleInfo>>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<ScheduleInfo>>;

    /// Pauses (no tick is claimed) or resumes (from the first tick after now) a schedule;
    /// false if there is none of that name.
    async fn set_schedule_paused(&self, name: &ScheduleName, paused: bool) -> Result<bool>;

    /// Removes a schedule (the tasks it created stay); false if there was none.
    async fn remove_schedule(&self, name: &ScheduleName) -> Result<bool>;

    /// Applies `claim` (computed by [`Claim::at`] from the state read) to schedule `name` in
    /// one atomic step if the schedule still has the next tick and version it was computed
    /// from: creates the ticks' tasks (unless the overlap policy skips them), counts them, sets
    /// the next tick. `None`: it no longer holds (another ticker applied it, or the schedule
    /// changed or went), and nothing changed. The schedule's queue must exist and have room
    /// (else the error, and nothing changed).
    async fn claim_ticks(&self, name: &ScheduleName, claim: &Claim) -> Result<Option<Claimed>>;
}

/// What an applied [`Claim`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Claimed {
    /// The tasks created, oldest tick first (a tick whose task existed creates none).
    pub created: Vec<TaskId>,
    /// True if the overlap policy skipped the ticks.
    pub skipped: bool,
    /// Tasks dispatched at once.
    pub assignments: Vec<Assignment>,
}

/// Housekeeping that any process may run (workers do): reaping dead workers, promoting due
/// tasks, purging old records, and sleeping until the next of these is due.
#[async_trait]
pub trait Maintain: Send + Sync {
    /// How long until maintenance has something to do: until the first run-at among delayed
    /// tasks or the first heartbeat expiry, measured on the backend's own clock (zero when it
    /// is already due; `None` when nothing is waiting). Workers sleep that long (or their
    /// maintenance interval, if shorter) instead of polling; a relative answer keeps a
    /// worker whose clock is skewed from the backend's waking at the right moment.
    async fn until_due(&self) -> Result<Option<Duration>>;

    /// Sleeps until maintenance has something to do ([`until_due`](Maintain::until_due)), for
    /// at most `at_most`. A delayed task that becomes the first of its queue while this sleeps
    /// (submitted, or a retry backed off, by any process) wakes it to look again, so
    /// maintenance loops promote it on time without polling.
    async fn sleep_until_due(&self, at_most: Duration) -> Result<()>;

    /// Housekeeping, at most `limit` items of each kind: reaps workers whose heartbeat expired
    /// (handing their tasks back), promotes due delayed tasks, claims the due ticks of
    /// schedules ([`crate::schedule`], rule 2), purges finished records past their retention. Safe to run from many places at once: every step is atomic and
    /// re-checks its condition, so two callers reaping the same worker or promoting the same
    /// task do it once between them.
    ///
    /// Maintenance does not look for expired leases, and need not: a running task past its
    /// deadline is failed by its own worker's [heartbeat](Membership::heartbeat) while that worker
    /// lives, and once the worker stops heartbeating, the reap here returns all its tasks.
    /// Reaping reads only the workers whose heartbeat expiry passed, in expiry order, so its
    /// cost follows the dead workers, not the number of running tasks.
    async fn maintain(&self, limit: usize) -> Result<MaintenanceReport>;
}
