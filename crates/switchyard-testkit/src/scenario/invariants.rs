//! The invariants of `docs/architecture.md` ("The state machine"), checked after every
//! step: one function per numbered invariant.

use std::collections::BTreeMap;

use switchyard_core::flow::concurrency::held;
use switchyard_core::policy::KeyInput;
use switchyard_core::prelude::*;
use switchyard_core::{Clock, QueueName, TaskId, TaskInfo, TaskState, WorkerId};

use super::{Runner, Snapshot, queue_name};

/// How the runner expects a ready task to have entered its ready set.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadyEntry {
    /// The enqueue time its policy key uses (aging).
    enqueued_at: u64,
    /// The step in which it entered: the FIFO tie-break between equal keys follows it.
    step: usize,
}

impl<B: Backend> Runner<B> {
    /// Checks invariants 1–4 (5 is checked inside the idempotence steps), except the
    /// independent recomputation of the policy order, which needs the runner's history and is
    /// done by [`Runner::apply`].
    pub async fn check(
        &self,
        before: &[Vec<TaskId>],
        cancelled: Option<TaskId>,
    ) -> Result<(), String> {
        let moved: Vec<TaskId> = cancelled.into_iter().collect();
        self.check_all(before, &moved).await.map(|_| ())
    }

    /// [`Runner::check`], returning the snapshot and the ready lists it looked at; `moved` may
    /// have left the ready order from anywhere (cancelled or changed).
    pub(super) async fn check_all(
        &self,
        before: &[Vec<TaskId>],
        moved: &[TaskId],
    ) -> Result<(Snapshot, Vec<Vec<TaskId>>), String> {
        if let Some(audit) = &self.audit {
            audit(&self.backend)
                .await
                .map_err(|e| format!("audit: {e}"))?;
        }
        let snap = self.snapshot().await?;
        let held = self.conservation(&snap)?;
        capacity(&snap, held)?;
        self.work_conservation(&snap)?;
        self.within_limits(&snap)?;
        self.within_group_limits(&snap)?;
        self.within_group_bounds(&snap)?;
        let after = self.ready_lists().await?;
        let groups = snap
            .tasks
            .iter()
            .flatten()
            .map(|t| (t.id, t.group_key.clone().unwrap_or_default()))
            .collect();
        order_kept(before, &after, moved, &groups)?;
        Ok((snap, after))
    }

    /// 1. Conservation: every accepted task is there, in one state, and the backend's counts
    ///    match the records. Answers how many tasks name each worker.
    fn conservation(&self, snap: &Snapshot) -> Result<BTreeMap<WorkerId, u32>, String> {
        let mut tally: BTreeMap<QueueName, BTreeMap<TaskState, u64>> = BTreeMap::new();
        let mut held: BTreeMap<WorkerId, u32> = BTreeMap::new();
        for (id, info) in self.accepted.iter().zip(&snap.tasks) {
            let info = info.as_ref().ok_or_else(|| format!("task {id} was lost"))?;
            *tally
                .entry(info.queue.clone())
                .or_default()
                .entry(info.state)
                .or_default() += 1;
            if info.state.is_leased() {
                let w = info
                    .worker
                    .clone()
                    .ok_or_else(|| format!("{id} is leased to nobody"))?;
                *held.entry(w).or_default() += 1;
            } else if info.worker.is_some() {
                return Err(format!("{id} is {} but names a worker", info.state));
            }
        }
        for q in &snap.stats.queues {
            let name = q.queue.clone().ok_or("stats without queue name")?;
            for state in TaskState::ALL {
                let counted = tally
                    .get(&name)
                    .and_then(|m| m.get(&state))
                    .copied()
                    .unwrap_or(0);
                if q.get(state) != counted {
                    return Err(format!(
                        "{name}: backend counts {} {state} tasks, records say {counted}",
                        q.get(state)
                    ));
                }
            }
        }
        Ok(held)
    }

    /// 3. Work conservation: no push queue that is not paused, held at its concurrency limit,
    ///    rate-limited or ever throttled (closed until maintenance takes it up), has a ready
    ///    task while a worker serving it has a free slot.
    fn work_conservation(&self, snap: &Snapshot) -> Result<(), String> {
        for (i, q) in snap.stats.queues.iter().enumerate() {
            let config = self.configs.get(i).ok_or("queue index")?;
            let active = u32::try_from(q.dispatched + q.running).unwrap_or(u32::MAX);
            // A shared queue has a task to dispatch while a group is in its ring.
            let waiting = match snap.groups.get(i).and_then(Option::as_ref) {
                Some(groups) => groups.iter().any(|g| g.in_ring),
                None => q.ready > 0,
            };
            if !config.strategy.is_push()
                || !waiting
                || q.paused
                || held(active, config.concurrency)
                || config.rate.is_some()
                || self.throttled.contains(&queue_name(i))
            {
                continue;
            }
            let name = queue_name(i);
            if let Some(w) = snap
                .stats
                .workers
                .iter()
                .find(|w| w.queues.contains(&name) && !w.draining && w.inflight < w.capacity)
            {
                return Err(format!(
                    "{name} has {} ready tasks while {} has a free slot",
                    q.ready, w.id
                ));
            }
        }
        Ok(())
    }

    /// Concurrency limits: no task of a queue became active in this step while more than its
    /// limit are active (more can be active only after the limit was lowered).
    fn within_limits(&self, snap: &Snapshot) -> Result<(), String> {
        for (i, config) in self.configs.iter().enumerate() {
            let Some(limit) = config.concurrency else {
                continue;
            };
            let name = queue_name(i);
            let active: Vec<&TaskId> = self
                .accepted
                .iter()
                .zip(&snap.tasks)
                .filter(|(_, info)| {
                    info.as_ref()
                        .is_some_and(|t| t.queue == name && t.state.is_leased())
                })
                .map(|(id, _)| id)
                .collect();
            if active.len() <= limit as usize {
                continue;
            }
            if let Some(id) = active.iter().find(|id| {
                !self
                    .states
                    .get(**id)
                    .is_some_and(|(st, _, _)| st.is_leased())
            }) {
                return Err(format!(
                    "{name} has {} active tasks, over its limit of {limit}, and {id} became active in this step",
                    active.len()
                ));
            }
        }
        Ok(())
    }

    /// Rate limits: the runner logs a dispatch at this step's time for each task that became
    /// leased (or started another attempt while leased) in the step, and no dispatch of this
    /// step makes the window of a rate-limited queue ending now hold more dispatches than its
    /// limit (the window may hold more without one: a limit lowered below what it holds closes
    /// the queue until enough have left). A task dispatched twice in one step counts once, so
    /// the check can miss an excess but never invents one.
    fn within_rate(&mut self, infos: &BTreeMap<TaskId, &TaskInfo>, now: u64) -> Result<(), String> {
        let mut dispatched_now = std::collections::BTreeSet::new();
        for (id, info) in infos {
            let before = self.states.get(id).copied();
            // Out of a worker's hands before; or running before and, after a failed attempt,
            // in an inbox again or running a later attempt (receiving from an inbox is not a
            // dispatch).
            let dispatched = info.state.is_leased()
                && before.is_none_or(|(st, _, attempts)| {
                    !st.is_leased()
                        || st == TaskState::Running
                            && (info.state == TaskState::Dispatched || info.attempts > attempts)
                });
            if dispatched {
                self.dispatch_times
                    .entry(info.queue.clone())
                    .or_default()
                    .push(now);
                dispatched_now.insert(info.queue.clone());
            }
        }
        for (i, config) in self.configs.iter().enumerate() {
            let Some(limit) = config.rate else {
                continue;
            };
            let name = queue_name(i);
            if !dispatched_now.contains(&name) {
                continue;
            }
            let times = self
                .dispatch_times
                .get(&name)
                .map_or(&[][..], Vec::as_slice);
            let in_window = times.iter().filter(|&&t| limit.counts(t, now)).count();
            if in_window > limit.max as usize {
                return Err(format!(
                    "{name} dispatched in this step, making {in_window} dispatches in the {} ms up to {now}, over its rate limit of {limit}",
                    limit.per_ms
                ));
            }
        }
        Ok(())
    }

    /// Invariant 4, recomputed without trusting the backend's keys: each ready set, as
    /// `peek_ready` lists it, must be sorted by `(key, entry step)`, where `key` is
    /// [`Policy::sort_key`] of the task's priority and cost (from its record) and of the time the
    /// runner expects it entered the ready order, and the entry step stands in for the
    /// backend's sequence number (tasks entering in the same step may tie in any order).
    ///
    /// The expected entry follows the rules of `docs/architecture.md`. A task keeps its entry
    /// while it is ready, dispatched or running, and takes it again when it comes back from a
    /// worker that did not finish it (hand-back, drain, reap: then, under aging, its key counts
    /// from its creation). It enters anew when it is submitted, promoted from scheduled or
    /// retry-scheduled (aging from its run-at; `changed` to a run time that has come: from
    /// now), re-driven, or back after a failed attempt
    /// (`fails`: the step reported one, or a heartbeat timed one out), each at this step's
    /// time. So a wrong key on re-entry (retry promotion, hand-back, redrive, aging) or a
    /// re-entry in the wrong place shows up as a task out of place.
    pub(super) fn check_policy_order(
        &mut self,
        snap: &Snapshot,
        ready: &[Vec<TaskId>],
        fails: bool,
        changed: &[TaskId],
        rescheduled: &[TaskId],
    ) -> Result<(), String> {
        let step = self.steps;
        self.steps += 1;
        let now = self.clock.now_ms();
        let infos: BTreeMap<TaskId, &TaskInfo> =
            snap.tasks.iter().flatten().map(|t| (t.id, t)).collect();
        self.within_rate(&infos, now)?;
        let in_order = |s: TaskState| {
            matches!(
                s,
                TaskState::Ready | TaskState::Dispatched | TaskState::Running
            )
        };
        // Every task in the ready order after the step, with its expected entry.
        let mut entries = BTreeMap::new();
        for (id, info) in &infos {
            if !in_order(info.state) {
                continue;
            }
            let before = self.states.get(id).copied();
            let kept = self.entries.get(id).copied();
            let fresh = |enqueued_at| ReadyEntry { enqueued_at, step };
            let entry = match (before, kept) {
                // Changed to a run time that has come: ready now (switchyard_core::TaskChange).
                (Some((TaskState::Scheduled | TaskState::RetryScheduled, _, _)), _)
                    if changed.contains(id) =>
                {
                    fresh(now)
                }
                // Promoted: ages from its run-at.
                (Some((TaskState::Scheduled | TaskState::RetryScheduled, Some(run_at), _)), _) => {
                    fresh(run_at)
                }
                // A failed attempt put it back (it may have started again at once).
                (Some((TaskState::Running, _, attempts)), Some(_))
                    if fails && (info.state != TaskState::Running || info.attempts != attempts) =>
                {
                    fresh(now)
                }
                // Back from a worker in its old place: aging counts from its creation.
                (Some((TaskState::Dispatched | TaskState::Running, _, _)), Some(entry))
                    if info.state == TaskState::Ready =>
                {
                    ReadyEntry {
                        enqueued_at: info.created_at,
                        step: entry.step,
                    }
                }
                // Debounced from ready to a later run time and then, by a later submit of the
                // same step, to now: ready now, a new entry.
                (Some((TaskState::Ready, _, _)), _)
                    if rescheduled.contains(id) && info.state == TaskState::Ready =>
                {
                    fresh(now)
                }
                (_, Some(entry)) => entry,
                // Submitted, re-driven.
                _ => fresh(now),
            };
            entries.insert(*id, entry);
        }
        for (i, list) in ready.iter().enumerate() {
            let policy = self.configs.get(i).ok_or("queue index")?.policy;
            let mut previous: Option<(i64, usize, TaskId)> = None;
            for id in list {
                let info = infos
                    .get(id)
                    .ok_or_else(|| format!("q{i} lists {id} as ready, but it has no record"))?;
                if info.state != TaskState::Ready {
                    return Err(format!(
                        "q{i} lists {id} as ready, but it is {}",
                        info.state
                    ));
                }
                let entry = entries
                    .get(id)
                    .copied()
                    .ok_or_else(|| format!("q{i}: no entry for {id}"))?;
                let key = policy.sort_key(&KeyInput {
                    priority: info.priority,
                    cost_ms: info.cost_ms,
                    enqueued_at: entry.enqueued_at,
                    deadline: info.start_by,
                });
                if let Some((pk, ps, pid)) = previous
                    && (key, entry.step) < (pk, ps)
                {
                    return Err(format!(
                        "q{i} ({}): {id} (key {key}, entered at step {}, enqueued at {}) is \
                         listed after {pid} (key {pk}, entered at step {ps}) but should leave \
                         first; ready order {list:?}",
                        policy.name(),
                        entry.step,
                        entry.enqueued_at,
                    ));
                }
                previous = Some((key, entry.step, *id));
            }
        }
        self.entries = entries;
        self.states = infos
            .into_iter()
            .map(|(id, t)| (id, (t.state, t.run_at, t.attempts)))
            .collect();
        Ok(())
    }
}

/// 2. Capacity: no worker holds more than its capacity, and its in-flight count is the number
///    of tasks that name it (`held`, from [`Runner::conservation`]); no task names a worker
///    that is not registered.
fn capacity(snap: &Snapshot, mut held: BTreeMap<WorkerId, u32>) -> Result<(), String> {
    for w in &snap.stats.workers {
        if w.inflight > w.capacity {
            return Err(format!(
                "{} holds {} > capacity {}",
                w.id, w.inflight, w.capacity
            ));
        }
        let named = held.remove(&w.id).unwrap_or(0);
        if named != w.inflight {
            return Err(format!(
                "{} counts {} in flight, {named} tasks name it",
                w.id, w.inflight
            ));
        }
    }
    if let Some((w, n)) = held.into_iter().next() {
        return Err(format!(
            "{n} tasks are leased to {w}, which is not registered"
        ));
    }
    Ok(())
}

/// 4. Order, as seen in one step: the tasks that left each ready set (`before` → `after`) were
///    a prefix of it (`cancelled`, taken out by a cancel or a change, aside) — in a queue shared
///    between groups, a prefix of each group's part of it (`groups`: each task's group key; the
///    ring decides which group's turn it is). The order of the sets themselves is checked by
///    `check_policy_order`; 5, idempotence, inside the steps that repeat a call.
fn order_kept(
    before: &[Vec<TaskId>],
    after: &[Vec<TaskId>],
    moved: &[TaskId],
    groups: &BTreeMap<TaskId, String>,
) -> Result<(), String> {
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        let mut parts: BTreeMap<&str, Vec<&TaskId>> = BTreeMap::new();
        for id in b.iter().filter(|id| !moved.contains(id)) {
            let group = groups.get(id).map_or("", String::as_str);
            parts.entry(group).or_default().push(id);
        }
        for (group, b) in parts {
            let left: Vec<&TaskId> = b.iter().copied().filter(|id| !a.contains(id)).collect();
            if b[..left.len()] != left[..] {
                return Err(format!(
                    "q{i} (group {group:?}): tasks {left:?} left out of order; the queue was {b:?}"
                ));
            }
        }
    }
    Ok(())
}
