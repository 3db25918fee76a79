//! The steps of a scenario: what each [`Op`] asks of the backend.

use switchyard_core::admin::Purge;
use switchyard_core::{InstanceToken, QueueConfig, QueueName, WorkerId};

/// One submit.
#[derive(Debug, Clone)]
pub struct SubmitOp {
    /// Queue index.
    pub queue: usize,
    /// Priority.
    pub priority: u16,
    /// Cost hint in ms.
    pub cost_ms: Option<u32>,
    /// Delay in ms.
    pub delay_ms: Option<u32>,
    /// Affinity key index (`k0` …).
    pub affinity: Option<u8>,
    /// Dedup key index (`d0` …).
    pub dedup: Option<u8>,
    /// Attempts.
    pub max_attempts: Option<u32>,
    /// Deadline, in ms after the submit (0: due at once).
    pub deadline_ms: Option<u32>,
    /// Group key index (`g0` …; a plain queue refuses it).
    pub group: Option<u8>,
}

/// A child of a flow (`switchyard_core::tree`): its task, its failure policy (a code of
/// `OnFailure`) and its own children.
#[derive(Debug, Clone)]
pub struct FlowChildOp {
    /// The task (a dedup key is dropped: a flow's tasks have none).
    pub task: SubmitOp,
    /// `OnFailure::from_code` of it, modulo 3.
    pub policy: u8,
    /// Its children (leaves).
    pub children: Vec<SubmitOp>,
}

/// One step.
#[derive(Debug, Clone)]
pub enum Op {
    /// Submit a flow: a root with children, some with children of their own.
    SubmitFlow {
        /// The root task (no delay: it starts when its children end).
        root: SubmitOp,
        /// Its children.
        children: Vec<FlowChildOp>,
    },
    /// Submit a new task.
    Submit(SubmitOp),
    /// Submit several in one call.
    Batch(Vec<SubmitOp>),
    /// Several callers submit one task each at the same moment (`submit` called
    /// concurrently; Redis sends them as one call): each caller must get the answer it would
    /// have had submitting alone, in turn.
    SubmitTogether(Vec<SubmitOp>),
    /// Several callers complete a delivered task each at the same moment, each receiving up to
    /// its own `max` in the same call (`complete_and_receive` called concurrently; Redis sends
    /// each worker's completions as one call). Each caller must get the answer it would have
    /// had calling alone, in turn; the callers are ordered by worker first (concurrent calls
    /// have no order among themselves, and that is the order Redis serves them in).
    CompleteTogether {
        /// Which delivery (as [`Op::Complete`]) and how many tasks to receive, per caller.
        picks: Vec<(usize, usize)>,
    },
    /// Submit an earlier task's spec again (must change nothing).
    Resubmit {
        /// Which earlier task.
        pick: usize,
    },
    /// Register (or re-register) a worker. Registering again with the same instance replaces
    /// the registration; with another one it is refused while the registration is live.
    Register {
        /// Worker index.
        worker: usize,
        /// Instance index (`0` or `1`): the registration's token is [`instance_token`] of it.
        instance: u8,
        /// Slots.
        capacity: u32,
        /// Weight.
        weight: u32,
        /// Served queue indexes, in preference order.
        queues: Vec<usize>,
    },
    /// Start draining a worker.
    Drain {
        /// Worker index.
        worker: usize,
    },
    /// Deregister a worker.
    Deregister {
        /// Worker index.
        worker: usize,
    },
    /// Heartbeat a worker.
    Heartbeat {
        /// Worker index.
        worker: usize,
    },
    /// Move the clock and run maintenance.
    Advance {
        /// Milliseconds.
        ms: u64,
    },
    /// A worker receives up to `max` tasks.
    Receive {
        /// Worker index.
        worker: usize,
        /// Most tasks.
        max: usize,
    },
    /// A worker asks without waiting (`receive_wait` with a zero timeout): it receives up to
    /// `max`, and if it got nothing it is parked on its pull queues, so that a task arriving
    /// there is handed off to it (started at once).
    Park {
        /// Worker index.
        worker: usize,
        /// Most tasks.
        max: usize,
    },
    /// The tasks running on a worker (`Leases::running`, the reconciling call); hand-offs among
    /// them become deliveries to pick.
    Running {
        /// Worker index.
        worker: usize,
    },
    /// Complete a delivered task (one of the eight most recent deliveries, or any of them
    /// when `pick` is odd, to exercise stale leases).
    Complete {
        /// Which delivery.
        pick: usize,
    },
    /// Complete a delivered task and receive up to `max` more for its worker in the same step
    /// (the combined call a worker makes when a slot frees up).
    CompleteAndReceive {
        /// Which delivery.
        pick: usize,
        /// Most tasks to receive.
        max: usize,
    },
    /// Complete an already completed task again (must change nothing).
    CompleteAgain {
        /// Which completion.
        pick: usize,
    },
    /// Fail a delivered task.
    Fail {
        /// Which delivery.
        pick: usize,
        /// Whether to allow a retry.
        retry: bool,
    },
    /// Throttle a delivered task: back in its place, its queue held for `hold_ms`.
    Throttle {
        /// Which delivery.
        pick: usize,
        /// How long the queue is held, in ms.
        hold_ms: u64,
    },
    /// Report progress of a delivered task (its lease may be stale by now).
    Progress {
        /// Which delivery.
        pick: usize,
        /// Parts per million done.
        ppm: u32,
        /// With a message, or without.
        message: bool,
    },
    /// Change a task (refused unless it has not started).
    Change {
        /// Which task.
        pick: usize,
        /// A new priority.
        priority: Option<u16>,
        /// A new run time, this many ms from now (negative: past).
        run_in: Option<i64>,
        /// A new payload.
        payload: bool,
    },
    /// Cancel a task.
    Cancel {
        /// Which task.
        pick: usize,
    },
    /// Re-drive a task (refused unless dead).
    Redrive {
        /// Which task.
        pick: usize,
    },
    /// Explicit dispatch of a queue.
    Dispatch {
        /// Queue index.
        queue: usize,
    },
    /// Pause or resume a queue.
    Pause {
        /// Queue index.
        queue: usize,
        /// Pause (true) or resume.
        paused: bool,
    },
    /// Create or replace schedule `s<index>`: every `every_ms` from now, of queue `queue`,
    /// misfires run once (0), skipped beyond 200 ms (1) or caught up 2 at most (2), overlaps
    /// skipped or allowed, at most `limit` ticks.
    UpsertSchedule {
        /// Which schedule (0 or 1).
        index: u8,
        /// Queue index.
        queue: usize,
        /// The interval.
        every_ms: u64,
        /// The misfire policy, as above.
        misfire: u8,
        /// Skip ticks while the last tick's task has not finished.
        overlap_skip: bool,
        /// At most this many ticks.
        limit: Option<u64>,
    },
    /// The clock moves by `advance_ms` (no maintenance), then a ticker claims schedule
    /// `s<index>`'s due ticks from the state it reads, then applies the same claim again, which
    /// must change nothing. With `paused_between`, the schedule is paused after the claim is
    /// computed (the claim must then change nothing) and resumed after.
    ClaimTicks {
        /// Which schedule.
        index: u8,
        /// How far the clock moves first.
        advance_ms: u64,
        /// Pause the schedule between computing the claim and applying it.
        paused_between: bool,
    },
    /// Pause or resume schedule `s<index>`.
    PauseSchedule {
        /// Which schedule.
        index: u8,
        /// Pause (true) or resume.
        paused: bool,
    },
    /// Remove schedule `s<index>`.
    RemoveSchedule {
        /// Which schedule.
        index: u8,
    },
    /// Set the weight of group `g<group>` of a queue (refused unless it is shared).
    SetGroupWeight {
        /// Queue index.
        queue: usize,
        /// Group key index.
        group: u8,
        /// The weight (0 and above 1,000 are refused).
        weight: u32,
    },
    /// Give group `g<group>` of a queue its own limits (refused unless it is shared; an own
    /// concurrency of 0 is refused).
    SetGroupLimits {
        /// Queue index.
        queue: usize,
        /// Group key index.
        group: u8,
        /// The limits (both `None`: the queue's again).
        limits: switchyard_core::flow::groups::GroupLimits,
    },
    /// Delete a task (refused unless finished).
    DeleteTask {
        /// Which task.
        pick: usize,
    },
    /// Cancel or delete up to `limit` tasks of one class of a queue.
    PurgeQueue {
        /// Queue index.
        queue: usize,
        /// Which tasks.
        what: Purge,
        /// Most tasks.
        limit: usize,
    },
    /// Change a queue's configuration; with `keep_shape`, only the fields that may always
    /// change (policy, strategy and seed stay as they are).
    Reconfigure {
        /// Queue index.
        queue: usize,
        /// The new configuration.
        config: QueueConfig,
        /// Keep policy, strategy and seed.
        keep_shape: bool,
    },
    /// Delete a queue (refused while it holds tasks or is served) and, if that worked,
    /// declare it again with its configuration: a fresh queue must behave as a new one.
    DeleteQueue {
        /// Queue index.
        queue: usize,
    },
    /// Heartbeat and receive as worker `worker` with a token no registration has: both must
    /// be refused (unknown or replaced) and change nothing.
    Impostor {
        /// Worker index.
        worker: usize,
    },
}

/// The instance token of instance index `i` in a scenario.
pub fn instance_token(i: u8) -> InstanceToken {
    InstanceToken::new(u64::from(i) + 1).unwrap_or_else(|_| unreachable_name())
}

/// Queue configurations and steps.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// One configuration per queue `q0` ….
    pub configs: Vec<QueueConfig>,
    /// The steps.
    pub ops: Vec<Op>,
}

/// The name of queue `i`.
pub fn queue_name(i: usize) -> QueueName {
    QueueName::new(format!("q{i}")).unwrap_or_else(|_| unreachable_name())
}

/// The index of a scenario's queue (`q<i>`: the inverse of [`queue_name`]).
pub fn queue_index(name: &QueueName) -> Option<usize> {
    name.as_str().strip_prefix('q')?.parse().ok()
}

/// The id of worker `i`.
pub fn worker_id(i: usize) -> WorkerId {
    WorkerId::new(format!("w{i}")).unwrap_or_else(|_| unreachable_name())
}

pub(super) fn unreachable_name<T>() -> T {
    panic!("generated names are valid")
}
