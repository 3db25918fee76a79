//! Task records: what the reference keeps of a task, and what it shows of one (its
//! `TaskInfo`, a delivery).
//!
//! Lua twin: lua/lib/records.lua.

use switchyard_core::{
    Delivery, Lease, LeaseToken, Millis, QueueName, Result, TaskId, TaskInfo, TaskKind,
    TaskOutcome, TaskState, WorkerId,
};
use switchyard_core::{Progress, TraceParent, TraceState};

use switchyard_core::tree::OnFailure;

use super::flows::Family;
use super::{State, internal};

/// One task record.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) id: TaskId,
    pub(crate) queue: QueueName,
    pub(crate) kind: TaskKind,
    pub(crate) payload: Vec<u8>,
    pub(crate) priority: u16,
    pub(crate) cost_ms: u32,
    pub(crate) max_attempts: u32,
    pub(crate) timeout_ms: u32,
    pub(crate) affinity_key: Option<String>,
    pub(crate) dedup_key: Option<String>,
    /// Its group key (a queue shared between groups: `groups`).
    pub(crate) group: Option<String>,
    /// The time it should start by (`TaskSpec::deadline`; `flow::deadline`).
    pub(crate) start_by: Option<Millis>,
    /// The submitter's trace context, handed over with every delivery.
    pub(crate) trace_parent: Option<TraceParent>,
    pub(crate) trace_state: Option<TraceState>,
    pub(crate) created_at: Millis,
    pub(crate) state: TaskState,
    pub(crate) attempts: u32,
    pub(crate) run_at: Option<Millis>,
    /// Position in the queue's ready or delayed set.
    pub(crate) position: Option<(i64, u64)>,
    /// Its place in the ready order (the sequence number it was last made ready with), kept
    /// while it is dispatched and running: a task returned from a worker takes it again.
    pub(crate) order: u64,
    pub(crate) worker: Option<WorkerId>,
    pub(crate) token: u64,
    pub(crate) inbox_seq: u64,
    pub(crate) deadline: Millis,
    /// When it last became ready (its enqueue time for aging): deliveries carry it.
    pub(crate) ready_since: Millis,
    pub(crate) last_error: Option<String>,
    pub(crate) cancel_requested: bool,
    pub(crate) outcome: Option<TaskOutcome>,
    pub(crate) finished_at: Millis,
    pub(crate) retain_until: Millis,
    /// The last progress report (`state/progress.rs`).
    pub(crate) progress: Option<Progress>,
    /// A flow's child: its parent, and what its failure does to it (`state/flows.rs`).
    pub(crate) parent: Option<(TaskId, OnFailure)>,
    /// A flow's task with children: them and their ends (`state/flows.rs`).
    pub(crate) family: Option<Box<Family>>,
    /// A wide flow's task stored but not yet seen (`state/flows.rs`, rule 6).
    pub(crate) staged: bool,
}

impl Task {
    /// Its current attempt as a delivery to `worker`.
    pub(super) fn delivery(&self, worker: &WorkerId, ready_since: Option<Millis>) -> Delivery {
        Delivery {
            lease: Lease {
                task: self.id,
                queue: self.queue.clone(),
                worker: worker.clone(),
                token: LeaseToken(self.token),
            },
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            attempt: self.attempts,
            max_attempts: self.max_attempts,
            deadline: self.deadline,
            timeout_ms: self.timeout_ms,
            ready_since,
            trace_parent: self.trace_parent.clone(),
            trace_state: self.trace_state.clone(),
        }
    }

    /// The key the affinity strategy hashes: the affinity key, or the id's text.
    pub(super) fn affinity_bytes(&self) -> Vec<u8> {
        match &self.affinity_key {
            Some(k) => k.as_bytes().to_vec(),
            None => self.id.to_string().into_bytes(),
        }
    }

    pub(crate) fn info(&self) -> TaskInfo {
        let mut info = TaskInfo::new(self.id, self.queue.clone(), self.kind.clone(), self.state);
        info.priority = self.priority;
        info.cost_ms = self.cost_ms;
        info.attempts = self.attempts;
        info.max_attempts = self.max_attempts;
        info.timeout_ms = self.timeout_ms;
        info.created_at = self.created_at;
        info.run_at = self.run_at;
        info.worker = self.worker.clone();
        info.token = Some(LeaseToken(self.token));
        info.last_error = self.last_error.clone();
        info.cancel_requested = self.cancel_requested;
        info.affinity_key = self.affinity_key.clone();
        info.dedup_key = self.dedup_key.clone();
        info.group_key = self.group.clone();
        info.deadline = Some(self.deadline);
        info.finished_at = Some(self.finished_at);
        info.start_by = self.start_by;
        info.ready_since = Some(self.ready_since);
        info.trace_parent = self.trace_parent.clone();
        info.trace_state = self.trace_state.clone();
        info.payload = self.payload.clone();
        info.shown()
    }
}

/// Hashes a [`TaskId`] by its low 64 bits, which are random (`TaskId` is 48 bits of time and
/// 80 random ones): nothing to mix, so a resize rehashes a million ids in milliseconds.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// See [`IdHash`].
#[derive(Debug, Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for a `TaskId` (it hashes one u128); any other input is folded in.
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 ^= value as u64;
    }
}

impl State {
    pub(super) fn task_mut(&mut self, id: TaskId) -> Result<&mut Task> {
        self.tasks
            .get_mut(&id)
            .map(|t| &mut **t)
            .ok_or_else(|| internal("task record missing"))
    }

    /// The queue of task `id`.
    pub(super) fn queue_of_task(&self, id: TaskId) -> Result<QueueName> {
        self.tasks
            .get(&id)
            .map(|t| t.queue.clone())
            .ok_or_else(|| internal("task record missing"))
    }
}
