//! Applying a scenario's steps to one backend, recording every answer in a trace, and
//! checking the invariants after each step.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use switchyard_core::prelude::*;
use switchyard_core::{
    Clock, Error, Lease, ManualClock, QueueConfig, SubmitOutcome, TaskId, TaskIdGenerator,
    TaskSpec, TaskState, TraceParent, TraceState, WorkerRef, WorkerSpec,
};

use super::invariants::ReadyEntry;
use super::{MAINTAIN_LIMIT, Op, SubmitOp, instance_token, queue_index, queue_name, worker_id};

/// A backend-specific structural check run after every step.
pub type AuditFn<B> = Box<
    dyn for<'a> Fn(&'a B) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>
        + Send
        + Sync,
>;

/// Applies scenario steps to one backend and checks the invariants after each.
pub struct Runner<B> {
    /// The backend under test.
    pub backend: B,
    /// Its clock.
    pub clock: ManualClock,
    /// Every answer, one line per step, for cross-backend comparison.
    pub trace: Vec<String>,
    pub(super) ids: TaskIdGenerator,
    pub(super) configs: Vec<QueueConfig>,
    pub(super) accepted: Vec<TaskId>,
    pub(super) specs: BTreeMap<TaskId, TaskSpec>,
    /// The flow tasks submitted with children, in order (`scenario/flows.rs`).
    pub(super) parents: Vec<TaskId>,
    pub(super) deliveries: Vec<Lease>,
    pub(super) completed: Vec<Lease>,
    pub(super) live: std::collections::BTreeSet<usize>,
    /// The instance of each worker's last accepted registration.
    pub(super) instances: BTreeMap<usize, u8>,
    pub(super) audit: Option<AuditFn<B>>,
    /// Steps applied so far (the next step's index, counted from 0 like [`Runner::run`]).
    pub(super) steps: usize,
    /// The tasks in their ready order (ready, dispatched or running) after the last step, with
    /// the entry the runner expects for each: a task returned from a worker takes it again.
    pub(super) entries: BTreeMap<TaskId, ReadyEntry>,
    /// Every accepted task's state, run-at and attempts after the last step.
    pub(super) states: BTreeMap<TaskId, (TaskState, Option<u64>, u32)>,
    /// The step times of each queue's dispatches, as the runner sees them (rate limits).
    pub(super) dispatch_times: BTreeMap<switchyard_core::QueueName, Vec<u64>>,
    /// Queues a step throttled (held for a while: work conservation does not hold for them).
    pub(super) throttled: std::collections::BTreeSet<switchyard_core::QueueName>,
    /// Waiting tasks this step's submits debounced (switchyard_core::flow::dedup): changed
    /// like [`Op::Change`] changes one.
    pub(super) replaced: Vec<TaskId>,
    /// Of those, the ones a submit of this step moved to a later run time (scheduled): if the
    /// step ends with one ready again, a later submit made it ready now — a new entry, not its
    /// old place.
    pub(super) rescheduled: Vec<TaskId>,
    /// The schedules upserted, by index (their tasks are accepted as their ticks create them).
    pub(super) schedules: BTreeMap<u8, switchyard_core::schedule::ScheduleSpec>,
}

pub(super) fn fatal(e: &Error) -> bool {
    matches!(e, Error::Backend { .. })
}

impl<B: Backend> Runner<B> {
    /// Declares the scenario's queues on `backend`, whose clock must be `clock`.
    pub async fn new(
        backend: B,
        clock: ManualClock,
        configs: &[QueueConfig],
    ) -> Result<Self, String> {
        for (i, config) in configs.iter().enumerate() {
            backend
                .declare_queue(&queue_name(i), *config)
                .await
                .map_err(|e| format!("declare q{i}: {e}"))?;
        }
        Ok(Runner {
            backend,
            clock,
            trace: Vec::new(),
            ids: TaskIdGenerator::new(42),
            configs: configs.to_vec(),
            accepted: Vec::new(),
            specs: BTreeMap::new(),
            parents: Vec::new(),
            deliveries: Vec::new(),
            completed: Vec::new(),
            live: std::collections::BTreeSet::new(),
            instances: BTreeMap::new(),
            audit: None,
            steps: 0,
            entries: BTreeMap::new(),
            states: BTreeMap::new(),
            dispatch_times: BTreeMap::new(),
            throttled: std::collections::BTreeSet::new(),
            replaced: Vec::new(),
            rescheduled: Vec::new(),
            schedules: BTreeMap::new(),
        })
    }

    /// Adds a backend-specific audit.
    pub fn with_audit(mut self, audit: AuditFn<B>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Tasks accepted so far.
    pub fn accepted(&self) -> &[TaskId] {
        &self.accepted
    }

    /// Records the answer to submitting task `id`: accepted if it was created; a waiting task
    /// it debounced is changed.
    pub(super) fn answered(&mut self, id: TaskId, out: &SubmitOutcome) {
        if !out.duplicate {
            self.accepted.push(id);
        }
        if out.replaced {
            self.replaced.push(out.id);
            if out.state == Some(TaskState::Scheduled) {
                self.rescheduled.push(out.id);
            }
        }
    }

    pub(super) fn spec(&mut self, op: &SubmitOp) -> Result<TaskSpec, String> {
        let id = self.ids.next_at(self.clock.now_ms());
        let mut b = TaskSpec::builder(queue_name(op.queue).as_str(), "job")
            .id(id)
            // Tasks sharing a dedup key sometimes share a payload too, so that a duplicate's
            // answer says both ways whether its payload differs.
            .payload(match op.dedup {
                Some(k) if op.priority.is_multiple_of(3) => format!("d{k}").into_bytes(),
                _ => format!("payload-{id}").into_bytes(),
            })
            .priority(op.priority);
        if let Some(c) = op.cost_ms {
            b = b.cost_hint(std::time::Duration::from_millis(u64::from(c)));
        }
        if let Some(d) = op.delay_ms {
            b = b.delay(std::time::Duration::from_millis(u64::from(d)));
        }
        if let Some(k) = op.affinity {
            b = b.affinity_key(format!("k{k}"));
        }
        if let Some(k) = op.dedup {
            b = b.dedup_key(format!("d{k}"));
        }
        if let Some(g) = op.group {
            b = b.group_key(format!("g{g}"));
        }
        if let Some(a) = op.max_attempts {
            b = b.max_attempts(a);
        }
        if let Some(d) = op.deadline_ms {
            b = b.deadline(self.clock.now_ms() + u64::from(d));
        }
        if op.priority % 2 == 1 {
            // Half the tasks carry a trace context, which every delivery must hand back.
            let n = id.as_u128() | 1;
            let trace = format!("00-{n:032x}-{:016x}-01", (n as u64) | 1);
            b = b.trace_parent(TraceParent::parse(&trace).map_err(|e| e.to_string())?);
            // and half of those a vendor state with it.
            if op.priority % 4 == 3 {
                let state = format!("sy=p{},congo=t61rcWkgMzE", op.priority);
                b = b.trace_state(TraceState::parse(&state).map_err(|e| e.to_string())?);
            }
        }
        b.build().map_err(|e| format!("spec: {e}"))
    }

    /// Worker `i` mapped onto the live workers (so most steps address a registered worker);
    /// `i` itself when none is live.
    pub(super) fn live_worker(&self, i: usize) -> usize {
        if self.live.is_empty() {
            return i;
        }
        self.live
            .iter()
            .nth(i % self.live.len())
            .copied()
            .unwrap_or(i)
    }

    /// Worker `i` as its last accepted registration names itself.
    pub(super) fn me(&self, i: usize) -> WorkerRef {
        WorkerRef {
            id: worker_id(i),
            instance: instance_token(self.instances.get(&i).copied().unwrap_or(0)),
        }
    }

    /// A delivered lease. When `pick % 4 == 3`, any delivery ever made (likely stale);
    /// otherwise one whose task is still running on that worker, if there is one.
    pub(super) async fn pick_delivery(&self, pick: usize) -> Result<Lease, String> {
        let n = self.deliveries.len();
        if pick % 4 == 3 {
            return Ok(self.deliveries[(pick / 4) % n].clone());
        }
        let mut current = Vec::new();
        for lease in self.deliveries.iter().rev() {
            let info = self
                .backend
                .get_task(lease.task)
                .await
                .map_err(|e| e.to_string())?;
            if info.is_some_and(|i| {
                i.state == TaskState::Running && i.worker.as_ref() == Some(&lease.worker)
            }) && !current.iter().any(|l: &&Lease| l.task == lease.task)
            {
                current.push(lease);
            }
        }
        Ok(match current.len() {
            0 => self.deliveries[n - 1].clone(),
            k => current[(pick / 4) % k].clone(),
        })
    }

    fn record(&mut self, line: String) {
        self.trace.push(line);
    }

    /// Applies one step and checks every invariant afterwards.
    pub async fn apply(&mut self, op: &Op) -> Result<(), String> {
        let before = self.ready_lists().await?;
        let mut cancelled = None;
        macro_rules! answer {
            ($label:expr, $call:expr) => {
                match $call.await {
                    Ok(v) => format!("{} -> {:?}", $label, v),
                    Err(e) if fatal(&e) => return Err(format!("{}: backend failed: {e}", $label)),
                    Err(e) => format!("{} -> error: {e}", $label),
                }
            };
        }
        let line = match op {
            Op::Submit(s) => {
                let spec = self.spec(s)?;
                let id = spec.id();
                self.specs.insert(id, spec.clone());
                match self.backend.submit(spec).await {
                    Ok(out) => {
                        self.answered(id, &out);
                        format!("submit {id} -> {out:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("submit: backend failed: {e}")),
                    Err(e) => format!("submit {id} -> error: {e}"),
                }
            }
            Op::SubmitFlow { root, children } => self.apply_flow(root, children).await?,
            Op::Batch(ops) => {
                let mut specs = Vec::new();
                for s in ops {
                    let spec = self.spec(s)?;
                    self.specs.insert(spec.id(), spec.clone());
                    specs.push(spec);
                }
                let ids: Vec<TaskId> = specs.iter().map(TaskSpec::id).collect();
                match self.backend.submit_batch(specs).await {
                    Ok(outs) => {
                        for (id, out) in ids.iter().zip(&outs) {
                            self.answered(*id, out);
                        }
                        format!("batch {ids:?} -> {outs:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("batch: backend failed: {e}")),
                    Err(e) => format!("batch -> error: {e}"),
                }
            }
            Op::Resubmit { pick } => {
                if self.accepted.is_empty() {
                    "resubmit: nothing yet".to_string()
                } else {
                    let id = self.accepted[pick % self.accepted.len()];
                    let spec = self.specs.get(&id).cloned().ok_or("spec missing")?;
                    let snap = self.snapshot().await?;
                    // It differs if the task's payload was changed since (unknown, false, once its
                    // record is gone).
                    let differs = snap
                        .tasks
                        .iter()
                        .flatten()
                        .find(|t| t.id == id)
                        .is_some_and(|t| t.payload != spec.payload());
                    // A task with a group key, resubmitted after its queue stopped sharing
                    // between groups, is refused like any such spec — and changes nothing.
                    let unshared = spec.group_key().is_some()
                        && self
                            .configs
                            .get(queue_index(spec.queue()).unwrap_or(usize::MAX))
                            .is_some_and(|c| c.groups.is_none());
                    let out = match self.backend.submit(spec).await {
                        Err(e @ Error::Invalid { .. }) if unshared => {
                            if self.snapshot().await? != snap {
                                return Err(format!("refused resubmit of {id} changed state"));
                            }
                            self.record(format!("resubmit {id} -> refused: {e}"));
                            return self.check_after(op, &before, None).await;
                        }
                        r => r.map_err(|e| format!("resubmit: {e}"))?,
                    };
                    if !out.duplicate || out.id != id || out.replaced {
                        return Err(format!("resubmit of {id} was not a duplicate: {out:?}"));
                    }
                    if out.payload_differs != differs {
                        return Err(format!(
                            "resubmit of {id}: payload differs should be {differs}: {out:?}"
                        ));
                    }
                    if self.snapshot().await? != snap {
                        return Err(format!("resubmit of {id} changed state"));
                    }
                    format!("resubmit {id} -> {out:?}")
                }
            }
            Op::Register {
                worker,
                instance,
                capacity,
                weight,
                queues,
            } => {
                let spec = WorkerSpec::new(
                    worker_id(*worker).as_str(),
                    queues.iter().map(|q| queue_name(*q).to_string()),
                )
                .map_err(|e| e.to_string())?
                .instance(instance_token(*instance))
                .capacity(*capacity)
                .weight(*weight);
                self.live.insert(*worker);
                let label = format!(
                    "register w{worker}#{instance} cap {capacity} weight {weight} {queues:?}"
                );
                match self.backend.register_worker(spec).await {
                    Ok(out) => {
                        self.instances.insert(*worker, *instance);
                        format!("{label} -> {out:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("{label}: backend failed: {e}")),
                    Err(e) => format!("{label} -> error: {e}"),
                }
            }
            Op::Deregister { worker } => {
                let worker = self.live_worker(*worker);
                self.live.remove(&worker);
                answer!(
                    format!("deregister w{worker}"),
                    self.backend.deregister_worker(&self.me(worker))
                )
            }
            Op::Drain { worker } => {
                let worker = self.live_worker(*worker);
                answer!(
                    format!("drain w{worker}"),
                    self.backend.drain_worker(&self.me(worker))
                )
            }
            Op::Heartbeat { worker } => {
                let worker = self.live_worker(*worker);
                answer!(
                    format!("heartbeat w{worker}"),
                    self.backend.heartbeat(&self.me(worker))
                )
            }
            Op::Impostor { worker } => {
                let worker = self.live_worker(*worker);
                let impostor = WorkerRef {
                    id: worker_id(worker),
                    instance: instance_token(99),
                };
                let snap = self.snapshot().await?;
                let beat = self.backend.heartbeat(&impostor).await;
                let got = self.backend.receive(&impostor, 4).await;
                for (what, refused) in [
                    ("heartbeat", beat.as_ref().err()),
                    ("receive", got.as_ref().err()),
                ] {
                    if !matches!(
                        refused,
                        Some(Error::UnknownWorker(_) | Error::WorkerReplaced(_))
                    ) {
                        return Err(format!(
                            "impostor {what} as w{worker} was not refused: {beat:?} {got:?}"
                        ));
                    }
                }
                if self.snapshot().await? != snap {
                    return Err(format!("impostor calls as w{worker} changed state"));
                }
                format!("impostor w{worker} -> {beat:?} {got:?}")
            }
            Op::Advance { ms } => {
                self.clock.advance(std::time::Duration::from_millis(*ms));
                match self.backend.maintain(MAINTAIN_LIMIT).await {
                    Ok(report) => {
                        for w in &report.workers_reaped {
                            self.live.retain(|i| &worker_id(*i) != w);
                        }
                        // Retention (by count, on the queues that keep only so many) removed
                        // finished tasks — finished in this pass too, perhaps (a reaped task
                        // dead, a late one expired), so any earlier state will do; the count
                        // must match.
                        self.forget_removed(report.records_purged as u64, &TaskState::ALL)
                            .await?;
                        self.ticked(&report.ticked)?;
                        format!("advance {ms} -> {report:?}{}", self.schedule_view().await?)
                    }
                    Err(e) => return Err(format!("maintain: {e}")),
                }
            }
            Op::Receive { .. }
            | Op::Park { .. }
            | Op::Running { .. }
            | Op::Complete { .. }
            | Op::CompleteAndReceive { .. }
            | Op::CompleteAgain { .. }
            | Op::Fail { .. }
            | Op::Throttle { .. }
            | Op::Progress { .. } => self.apply_lease(op).await?,
            Op::Change {
                pick,
                priority,
                run_in,
                payload,
            } => {
                if self.accepted.is_empty() {
                    "change: nothing yet".to_string()
                } else {
                    let id = self.accepted[pick % self.accepted.len()];
                    // A ready task postponed leaves its ready set from anywhere, as a cancel.
                    cancelled = Some(id);
                    let mut change = switchyard_core::TaskChange::new();
                    change.priority = *priority;
                    change.run_at = run_in.map(|d| self.clock.now_ms().saturating_add_signed(d));
                    if *payload {
                        change.payload =
                            Some(format!("changed at {}", self.clock.now_ms()).into_bytes());
                    }
                    answer!(
                        format!("change {id} {change:?}"),
                        self.backend.change_task(id, &change)
                    )
                }
            }
            Op::Cancel { pick } => {
                if self.accepted.is_empty() {
                    "cancel: nothing yet".to_string()
                } else {
                    let id = self.accepted[pick % self.accepted.len()];
                    cancelled = Some(id);
                    answer!(format!("cancel {id}"), self.backend.cancel(id))
                }
            }
            Op::Redrive { pick } => {
                if self.accepted.is_empty() {
                    "redrive: nothing yet".to_string()
                } else {
                    let id = self.accepted[pick % self.accepted.len()];
                    answer!(format!("redrive {id}"), self.backend.redrive(id))
                }
            }
            Op::Dispatch { queue } => {
                answer!(
                    format!("dispatch q{queue}"),
                    self.backend.dispatch(&queue_name(*queue), 16)
                )
            }
            Op::SubmitTogether(_) | Op::CompleteTogether { .. } => self.apply_together(op).await?,
            Op::UpsertSchedule { .. }
            | Op::ClaimTicks { .. }
            | Op::PauseSchedule { .. }
            | Op::RemoveSchedule { .. } => self.apply_schedule(op).await?,
            Op::SetGroupWeight { .. } | Op::SetGroupLimits { .. } => self.apply_groups(op).await?,
            Op::DeleteTask { .. }
            | Op::PurgeQueue { .. }
            | Op::Reconfigure { .. }
            | Op::DeleteQueue { .. } => self.apply_admin(op).await?,
            Op::Pause { queue, paused } => {
                answer!(
                    format!("pause q{queue} {paused}"),
                    self.backend.set_paused(&queue_name(*queue), *paused)
                )
            }
        };
        self.record(line);
        self.check_after(op, &before, cancelled).await
    }

    /// The invariants after step `op`, given the ready lists `before` it and the task it
    /// cancelled, if any.
    async fn check_after(
        &mut self,
        op: &Op,
        before: &[Vec<TaskId>],
        cancelled: Option<TaskId>,
    ) -> Result<(), String> {
        // A task changed (by a change, or a debounced submit) or cancelled may leave the ready
        // order from anywhere.
        let mut changed = std::mem::take(&mut self.replaced);
        if matches!(op, Op::Change { .. }) {
            changed.extend(cancelled);
        }
        let mut moved = changed.clone();
        moved.extend(cancelled);
        if matches!(op, Op::Advance { .. }) {
            // Maintenance settling a flow cancels the waiting children of a failed or
            // cancelled parent, from anywhere in their queues (switchyard_core::tree, rule 4).
            for id in before.iter().flatten() {
                let info = self
                    .backend
                    .get_task(*id)
                    .await
                    .map_err(|e| e.to_string())?;
                // (Purged in the same pass, if its queue keeps nothing.)
                if info.is_none_or(|t| t.state == TaskState::Cancelled) {
                    moved.push(*id);
                }
            }
        }
        let (snap, after) = self.check_all(before, &moved).await?;
        // Only a failed attempt (reported, or timed out by a heartbeat) puts a running task
        // back in its queue as a new entry; every other way back keeps its place.
        let fails = matches!(op, Op::Fail { .. } | Op::Heartbeat { .. });
        let rescheduled = std::mem::take(&mut self.rescheduled);
        self.check_policy_order(&snap, &after, fails, &changed, &rescheduled)
    }

    /// Applies every step, stopping at the first violation (reported with the step number).
    pub async fn run(&mut self, ops: &[Op]) -> Result<(), String> {
        for (n, op) in ops.iter().enumerate() {
            self.apply(op).await.map_err(|e| {
                format!("step {n} ({op:?}): {e}\ntrace:\n{}", self.trace.join("\n"))
            })?;
        }
        Ok(())
    }
}

/// A current-thread runtime for driving async backends from proptest bodies.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
}
