//! The reference state machine: every transition of `docs/architecture.md` ("The state
//! machine", "The rules of each step") as a method on [`State`].
//!
//! Each public method is one atomic step (the caller holds the lock). The rules written in
//! these methods are the semantics the Redis scripts reproduce, and the modules mirror the
//! Lua library file by file, so that a rule and its twin are found by the same name:
//!
//! | module | holds | Lua twin |
//! | --- | --- | --- |
//! | `records` | a task's record, what it shows (`TaskInfo`, a delivery) | `lua/lib/records.lua` |
//! | `queues` | declaring, finding and pausing a queue | `lua/lib/queues.lua`, `declare.lua`, `pause.lua` |
//! | `workers` | workers, their load, registering, heartbeating, draining, leaving | `lua/lib/workers.lua`, `steps.lua`, `register.lua`, `heartbeat.lua`, `drain.lua`, `deregister.lua` |
//! | `dispatch` | parking, events, starting a task, dispatching it, hand-offs | `lua/lib/dispatch.lua` |
//! | `place` | the sequence, a task entering its queue (or going back), filling workers | `lua/lib/deferred.lua` (`next_seq`), `lua/lib/place.lua`, `dispatch.lua` |
//! | `leases` | receiving, checking a lease, finishing, failing, handing back | `lua/lib/leases.lua`, `receive.lua`, `complete.lua`, `fail.lua`, `running.lua` |
//! | `bounded` | the room check of a submit to a bounded queue | `lua/lib/bounded.lua` |
//! | `concurrency` | concurrency limits: the active count, resuming a queue | `lua/lib/concurrency.lua` |
//! | `rate` | rate limits and holds: the window, tokens, the wake mark | `lua/lib/rate.lua` |
//! | `groups` | the ready set's entry and exit, fair share between group keys | `lua/lib/groups.lua`, `group_weight.lua`, `group_info.lua` |
//! | `costs` | learned costs of shortest-job-first queues | `learn_cost` in `lua/lib/leases.lua` |
//! | `tasks` | submitting, cancelling, re-driving a task | `lua/submit.lua`, `cancel.lua`, `redrive.lua` |
//! | `flows` | a flow's tree: storing it, counting a child's end in its parent, settling | `lua/lib/flows.lua`, `submit_flow.lua`, `settle.lua`, `children.lua` |
//! | `maintain` | reaping, promoting, purging | `lua/reap_worker.lua`, `promote.lua`, `purge.lua` |
//! | `inspect` | the reads: a task, the dead letters, the ready order, events, stats | `lua/stats.lua`, `peek.lua` |
//! | `browse` | the task browser: a page of a queue's tasks in one state | `lua/browse.lua` |
//! | `admin` | deleting tasks, purging, reconfiguring and deleting queues | `lua/lib/admin.lua` and its transitions |
//!
//! The comments name each rule where the order of effects matters for identical decisions.

mod admin;
mod bounded;
mod browse;
mod change;
mod concurrency;
mod costs;
mod deadline;
mod dispatch;
mod flows;
mod groups;
mod inspect;
mod leases;
mod maintain;
mod place;
mod progress;
mod queues;
mod rate;
mod records;
mod schedules;
mod tasks;
mod workers;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use switchyard_core::{
    BackendErrorKind, Error, Event, Millis, QueueName, ScheduleName, TaskId, TaskKind, WorkerId,
};
use tokio::sync::Notify;

pub(crate) use queues::Queue;
pub(crate) use records::{IdHash, Task};
use tasks::DedupEntry;
pub(crate) use workers::Worker;

/// Everything the memory backend knows.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) queues: BTreeMap<QueueName, Queue>,
    /// Every task, by id. Boxed, and hashed by the id's own random bits: when the map
    /// doubles, it moves and rehashes pointers, not records (at a million tasks, records moved
    /// by value held the lock for half a second).
    pub(crate) tasks: HashMap<TaskId, Box<Task>, IdHash>,
    pub(crate) workers: BTreeMap<WorkerId, Worker>,
    /// The backend-wide sequence: FIFO tie-break of ready and delayed sets, lease tokens and
    /// inbox order all draw from it.
    pub(super) counter: u64,
    pub(super) dedup: HashMap<(QueueName, String), DedupEntry>,
    pub(super) dedup_expiry: BTreeSet<(Millis, QueueName, String)>,
    /// Live workers by `(expires_at, id)`.
    pub(crate) heartbeats: BTreeSet<(Millis, WorkerId)>,
    /// Wakes a worker waiting in `receive_wait`. Only registered workers have one: the entry
    /// goes when the worker does (see `hand_back`).
    pub(crate) wakers: HashMap<WorkerId, Arc<Notify>>,
    /// Workers that wait for hand-offs through this backend (have called `receive_wait`): the
    /// twin of a subscription to a worker's wake channel on Redis (see `listening`).
    pub(crate) listeners: HashSet<WorkerId>,
    /// Wakes everyone waiting for an outcome.
    pub(crate) finished: Arc<Notify>,
    /// Wakes everyone waiting for progress (an announced report: `state/progress.rs`).
    pub(crate) progressed: Arc<Notify>,
    /// Wakes every maintenance loop sleeping in `sleep_until_due` when a delayed task becomes
    /// the first of its queue (the earliest due time may have moved earlier).
    pub(crate) due_moved: Arc<Notify>,
    /// The time of the step in progress (set before every step).
    pub(crate) now: Millis,
    /// The capped event log, and the number of events ever recorded (their ids).
    pub(super) events: VecDeque<Event>,
    pub(super) event_count: u64,
    /// Moving averages of run times per (queue, kind), for shortest-job-first queues.
    pub(super) costs: HashMap<(QueueName, TaskKind), u64>,
    /// Schedules by name, and the unpaused ones by (next tick, name).
    pub(super) schedules: BTreeMap<ScheduleName, schedules::Schedule>,
    pub(super) schedule_due: BTreeSet<(Millis, ScheduleName)>,
    /// Flow settle entries by (due time, entry text) (`state/flows.rs`).
    pub(super) settle: BTreeSet<(Millis, String)>,
    /// The entries of `settle`, by text.
    pub(super) settle_entries: HashSet<String>,
    /// Wide flows being staged or made seen, by root (`state/flows.rs`, rule 6).
    pub(super) staging: HashMap<TaskId, flows::Staging>,
}

pub(super) fn internal(what: &str) -> Error {
    Error::backend(
        BackendErrorKind::Other,
        format!("memory backend inconsistency: {what}"),
    )
}

pub(super) fn to_i64(ms: Millis) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
