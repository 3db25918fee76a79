//! A task's own transitions: submitting, cancelling, re-driving.
//!
//! Lua twin: lua/submit.lua, lua/cancel.lua, lua/redrive.lua.

use switchyard_core::EventKind;
use switchyard_core::{
    CancelOutcome, Error, Millis, QueueConfig, QueueName, Result, SubmitOutcome, TaskChange,
    TaskId, TaskOutcome, TaskSpec, TaskState,
};

use super::{State, Task, internal};

#[derive(Debug)]
pub(crate) struct DedupEntry {
    task: TaskId,
    expires_at: Millis,
}

impl State {
    pub(crate) fn submit(&mut self, spec: TaskSpec, now: Millis) -> Result<SubmitOutcome> {
        let config = self.queue(spec.queue())?.config;
        if spec.group_key().is_some() && config.groups.is_none() {
            return Err(switchyard_core::flow::groups::not_shared(spec.queue()));
        }
        if let Some(t) = self.tasks.get(&spec.id()) {
            let differs = t.payload != spec.payload();
            return Ok(SubmitOutcome::duplicate_of(
                t.id,
                Some(t.state),
                differs,
                false,
                None,
            ));
        }
        if let Some(key) = spec.dedup_key() {
            // The rule: switchyard_core::flow::dedup.
            if let Some(holder) = self.dedup_holder(spec.queue(), key, now) {
                let found = self.tasks.get(&holder);
                let state = found.map(|t| t.state);
                let differs = found.is_some_and(|t| t.payload != spec.payload());
                if state.is_some_and(|s| config.dedup_mode.replaces(s)) {
                    let change = TaskChange::new()
                        .payload(spec.payload().to_vec())
                        .run_at(spec.schedule().run_at(now).unwrap_or(now));
                    let changed = self.change_task(holder, &change, now)?;
                    self.hold_dedup_key(spec.queue(), key, holder, now, &config);
                    return Ok(SubmitOutcome::duplicate_of(
                        holder,
                        changed.state,
                        differs,
                        true,
                        changed.assigned,
                    ));
                }
                if !config.dedup_mode.creates(state) {
                    return Ok(SubmitOutcome::duplicate_of(
                        holder, state, differs, false, None,
                    ));
                }
            }
            self.hold_dedup_key(spec.queue(), key, spec.id(), now, &config);
        }
        let id = spec.id();
        let run_at = spec.schedule().run_at(now);
        let task = self.new_task(&spec, &config, now);
        self.tasks.insert(id, Box::new(task));
        self.emit(EventKind::Submitted, id, None, None);
        let dispatched = self.enter_queue(id, run_at, now, false)?;
        let assigned = self.assigned_at_once(id, dispatched);
        let state = self.tasks.get(&id).map(|t| t.state);
        Ok(SubmitOutcome::new(id, state, false, assigned))
    }

    /// The record of a new task from `spec` in a queue configured by `config`: ready, not yet
    /// in its queue (the caller places it).
    pub(super) fn new_task(&self, spec: &TaskSpec, config: &QueueConfig, now: Millis) -> Task {
        Task {
            id: spec.id(),
            queue: spec.queue().clone(),
            kind: spec.kind().clone(),
            priority: spec.priority(),
            cost_ms: match spec.cost_hint_ms() {
                Some(c) => c,
                None => self.default_cost(spec.queue(), spec.kind(), config),
            },
            max_attempts: spec.max_attempts().unwrap_or(config.max_attempts),
            timeout_ms: spec.timeout_ms().unwrap_or(config.timeout_ms),
            affinity_key: spec.affinity_key().map(str::to_owned),
            trace_parent: spec.trace_parent().cloned(),
            trace_state: spec.trace_state().cloned(),
            dedup_key: spec.dedup_key().map(str::to_owned),
            group: spec.group_key().map(str::to_owned),
            start_by: spec.deadline(),
            created_at: now,
            state: TaskState::Ready,
            attempts: 0,
            run_at: spec.schedule().run_at(now),
            position: None,
            order: 0,
            worker: None,
            token: 0,
            inbox_seq: 0,
            deadline: 0,
            ready_since: 0,
            last_error: None,
            cancel_requested: false,
            outcome: None,
            finished_at: 0,
            retain_until: 0,
            progress: None,
            payload: spec.payload().to_vec(),
            parent: None,
            family: None,
            staged: false,
        }
    }

    /// Task `task` holds dedup key `key` of `queue` for the queue's dedup window from `now`.
    fn hold_dedup_key(
        &mut self,
        queue: &QueueName,
        key: &str,
        task: TaskId,
        now: Millis,
        config: &QueueConfig,
    ) {
        let expires_at = now.saturating_add(config.dedup_window_ms);
        let dedup_key = (queue.clone(), key.to_owned());
        if let Some(old) = self
            .dedup
            .insert(dedup_key.clone(), DedupEntry { task, expires_at })
        {
            self.dedup_expiry
                .remove(&(old.expires_at, dedup_key.0.clone(), dedup_key.1.clone()));
        }
        self.dedup_expiry
            .insert((expires_at, dedup_key.0, dedup_key.1));
    }

    /// The task that holds dedup key `key` of `queue` at `now`, if its window is open.
    pub(super) fn dedup_holder(&self, queue: &QueueName, key: &str, now: Millis) -> Option<TaskId> {
        self.dedup
            .get(&(queue.clone(), key.to_owned()))
            .filter(|entry| entry.expires_at > now)
            .map(|entry| entry.task)
    }

    pub(crate) fn cancel(&mut self, id: TaskId, now: Millis) -> Result<CancelOutcome> {
        let (state, queue_name, worker, inbox_seq) = {
            let t = self.seen(id).ok_or(Error::TaskNotFound(id))?;
            (t.state, t.queue.clone(), t.worker.clone(), t.inbox_seq)
        };
        match state {
            TaskState::Scheduled | TaskState::RetryScheduled | TaskState::Ready => {
                self.cancel_waiting(&queue_name, id, now)?;
                Ok(CancelOutcome::Cancelled {
                    assignments: Vec::new(),
                })
            }
            TaskState::Dispatched => {
                let worker = worker.ok_or_else(|| internal("dispatched task without worker"))?;
                self.release_slot(&worker, id, Some(inbox_seq))?;
                self.emit(EventKind::Cancelled, id, None, None);
                self.finish(id, TaskState::Cancelled, TaskOutcome::Cancelled, now)?;
                let mut assignments = self.fill_worker(&worker, now)?;
                assignments.extend(self.resume(&queue_name, now)?);
                Ok(CancelOutcome::Cancelled { assignments })
            }
            TaskState::Running => {
                self.task_mut(id)?.cancel_requested = true;
                Ok(CancelOutcome::Requested)
            }
            TaskState::WaitingChildren => {
                self.cancel_parent(id, now)?;
                Ok(CancelOutcome::Cancelled {
                    assignments: Vec::new(),
                })
            }
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled | TaskState::Expired => {
                Ok(CancelOutcome::AlreadyFinished(state))
            }
            other => Err(internal(&format!("cancel of a task in state {other:?}"))),
        }
    }

    pub(crate) fn redrive(&mut self, id: TaskId, now: Millis) -> Result<SubmitOutcome> {
        let (state, finished_at, retain_until, queue_name) = {
            let t = self.seen(id).ok_or(Error::TaskNotFound(id))?;
            (t.state, t.finished_at, t.retain_until, t.queue.clone())
        };
        if state != TaskState::Dead {
            return Err(Error::WrongState {
                id,
                state,
                operation: "redrive (only dead tasks can be re-driven)",
            });
        }
        let q = self.queue_mut(&queue_name)?;
        q.dead.remove(&(finished_at, id));
        q.done.remove(&(retain_until, id));
        {
            let t = self.task_mut(id)?;
            t.attempts = 0;
            // Its attempts count again from 1: the old runs' progress goes (flow: progress).
            t.progress = None;
            t.outcome = None;
            t.run_at = None;
        }
        self.emit(EventKind::Retried, id, None, Some(now.to_string()));
        let dispatched = self.make_ready(id, now, now)?;
        let assigned = self.assigned_at_once(id, dispatched);
        let state = self.tasks.get(&id).map(|t| t.state);
        Ok(SubmitOutcome::new(id, state, false, assigned))
    }
}
