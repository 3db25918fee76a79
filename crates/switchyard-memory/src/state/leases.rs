//! Leased tasks: receiving them, checking a lease, finishing, failing, handing back.
//!
//! Lua twin: lua/lib/leases.lua, lua/receive.lua, lua/complete.lua, lua/fail.lua, lua/running.lua.

use switchyard_core::EventKind;
use switchyard_core::backend::{lost_worker_error, normalize_error};
use switchyard_core::{
    Ack, AckOutcome, Delivery, Error, HandBack, Lease, Millis, Rejection, Result, TaskId,
    TaskOutcome, TaskState, WorkerId,
};

use super::{State, Task, internal};

impl State {
    /// Frees the slot a task held on its worker; the task is no longer active in its queue.
    pub(super) fn release_slot(
        &mut self,
        worker: &WorkerId,
        id: TaskId,
        inbox_seq: Option<u64>,
    ) -> Result<()> {
        if let Some(w) = self.workers.get_mut(worker) {
            let held = match inbox_seq {
                Some(seq) => w.inbox.remove(&seq).is_some(),
                None => w.running.remove(&id),
            };
            if held {
                w.inflight = w.inflight.saturating_sub(1);
            }
        }
        self.count_active(id, false)?;
        self.refresh_load(worker);
        Ok(())
    }

    /// Ends a task in a terminal state (and counts the end in its parent, if it is a flow's
    /// child: `state/flows.rs`).
    pub(super) fn finish(
        &mut self,
        id: TaskId,
        state: TaskState,
        outcome: TaskOutcome,
        now: Millis,
    ) -> Result<()> {
        let (queue_name, ttl, created_at, was) = {
            let t = self
                .tasks
                .get(&id)
                .ok_or_else(|| internal("task record missing"))?;
            let q = self.queue(&t.queue)?;
            let ttl = if state == TaskState::Dead {
                q.config.dead_ttl_ms
            } else {
                q.config.result_ttl_ms
            };
            (t.queue.clone(), ttl, t.created_at, t.state)
        };
        let until = now.saturating_add(ttl);
        let q = self.queue_mut(&queue_name)?;
        if was == TaskState::WaitingChildren {
            q.parents.remove(&(created_at, id));
        }
        if state == TaskState::Dead {
            q.dead.insert((now, id));
        }
        q.done.insert((until, id));
        self.child_ended(id, &outcome, now);
        let t = self.task_mut(id)?;
        t.state = state;
        t.outcome = Some(outcome);
        t.worker = None;
        t.position = None;
        t.finished_at = now;
        t.retain_until = until;
        self.finished.notify_waiters();
        Ok(())
    }

    /// Checks that `lease` is the current lease of a running task.
    pub(super) fn check_lease(&self, lease: &Lease) -> std::result::Result<(), Rejection> {
        let Some(t) = self.tasks.get(&lease.task) else {
            return Err(Rejection::NotFound);
        };
        if t.state != TaskState::Running {
            return Err(Rejection::NotRunning(t.state));
        }
        if t.token != lease.token.0
            || t.worker.as_ref() != Some(&lease.worker)
            || t.queue != lease.queue
        {
            return Err(Rejection::StaleToken);
        }
        Ok(())
    }

    /// A running attempt ended in failure (reported, or timed out): retry after backoff, or
    /// dead, or cancelled if a cancel was pending. The slot is released first, then the task
    /// moves (and may be dispatched at once), then the worker refills.
    pub(super) fn end_attempt_failed(
        &mut self,
        id: TaskId,
        error: String,
        retry: bool,
        now: Millis,
    ) -> Result<AckOutcome> {
        let (worker, attempts, max_attempts, cancel, queue_name) = {
            let t = self.task_mut(id)?;
            t.last_error = Some(error.clone());
            (
                t.worker
                    .clone()
                    .ok_or_else(|| internal("running task without worker"))?,
                t.attempts,
                t.max_attempts,
                t.cancel_requested,
                t.queue.clone(),
            )
        };
        self.emit(EventKind::Failed, id, Some(&worker), Some(error.clone()));
        self.release_slot(&worker, id, None)?;
        let mut assignments = Vec::new();
        let ack = if cancel {
            self.emit(EventKind::Cancelled, id, None, None);
            self.finish(id, TaskState::Cancelled, TaskOutcome::Cancelled, now)?;
            Ack::Cancelled
        } else if retry && attempts < max_attempts {
            let q = self.queue_mut(&queue_name)?;
            let delay = q.config.backoff.delay_ms(attempts, &mut q.jitter);
            let run_at = now.saturating_add(delay);
            self.task_mut(id)?.run_at = Some(run_at);
            self.emit(EventKind::Retried, id, None, Some(run_at.to_string()));
            assignments.extend(self.enter_queue(id, Some(run_at), now, true)?);
            Ack::Retrying { run_at }
        } else {
            self.emit(EventKind::Dead, id, None, Some(error.clone()));
            self.finish(id, TaskState::Dead, TaskOutcome::Dead(error), now)?;
            Ack::Dead
        };
        assignments.extend(self.fill_worker(&worker, now)?);
        assignments.extend(self.resume(&queue_name, now)?);
        Ok(AckOutcome::new(ack, assignments))
    }

    /// Removes a worker and sends its tasks back: inbox tasks (in dispatch order) with their
    /// attempt count unchanged, then running tasks (in id order) with the attempt counted —
    /// dead if it was the last one, cancelled if a cancel was pending.
    pub(super) fn hand_back(&mut self, worker: &WorkerId, now: Millis) -> Result<HandBack> {
        self.unpark(worker);
        let Some(w) = self.workers.remove(worker) else {
            return Err(Error::UnknownWorker(worker.clone()));
        };
        // Forget the worker's notifier, but first wake whoever waits on it, so that a
        // `receive_wait` in progress returns now instead of sleeping out its timeout: it finds
        // the worker unknown (or re-registered, and then parks on a fresh notifier). The stored
        // permit covers a waiter that has its notifier but is not listening yet.
        if let Some(waker) = self.wakers.remove(worker) {
            waker.notify_waiters();
            waker.notify_one();
        }
        self.heartbeats.remove(&(w.expires_at, worker.clone()));
        for qn in w.spec.queues() {
            if let Some(q) = self.queues.get_mut(qn) {
                q.balancer.leave(worker);
                q.members.remove(worker);
            }
        }
        let mut back = HandBack::default();
        for (_, id) in w.inbox {
            back.returned.push(id);
            self.task_mut(id)?.worker = None;
            self.count_active(id, false)?;
            back.assignments.extend(self.return_ready(id, now)?);
        }
        for id in w.running {
            back.returned.push(id);
            self.count_active(id, false)?;
            let (attempts, max_attempts, cancel) = {
                let t = self.task_mut(id)?;
                (t.attempts, t.max_attempts, t.cancel_requested)
            };
            let error = lost_worker_error(worker, attempts);
            self.task_mut(id)?.last_error = Some(error.clone());
            self.emit(EventKind::Failed, id, Some(worker), Some(error.clone()));
            if cancel {
                self.emit(EventKind::Cancelled, id, None, None);
                self.finish(id, TaskState::Cancelled, TaskOutcome::Cancelled, now)?;
            } else if attempts >= max_attempts {
                self.emit(EventKind::Dead, id, None, Some(error.clone()));
                self.finish(id, TaskState::Dead, TaskOutcome::Dead(error), now)?;
            } else {
                self.emit(EventKind::Retried, id, None, Some(now.to_string()));
                back.assignments.extend(self.return_ready(id, now)?);
            }
        }
        let resumed = self.resume_each(&back.returned, now)?;
        back.assignments.extend(resumed);
        Ok(back)
    }

    pub(crate) fn receive(
        &mut self,
        worker: &WorkerId,
        max: usize,
        now: Millis,
    ) -> Result<Vec<Delivery>> {
        if !self.workers.contains_key(worker) {
            return Err(Error::UnknownWorker(worker.clone()));
        }
        let mut out = Vec::new();
        // First what was pushed, in dispatch order.
        while out.len() < max {
            let Some(id) = self
                .workers
                .get_mut(worker)
                .and_then(|w| w.inbox.pop_first().map(|(_, id)| id))
            else {
                break;
            };
            out.push(self.start(worker, id, now)?);
        }
        // Then, with slots to spare, pull from the worker's pull queues in preference order.
        while out.len() < max {
            let Some(id) = self.take_first_ready(worker, false)? else {
                break;
            };
            let token = self.next_seq();
            out.push(self.start_pulled(worker, id, token, now)?);
        }
        Ok(out)
    }

    /// Every task running on `worker`, in lease-token order (Leases::running).
    pub(crate) fn running_on(&self, worker: &WorkerId) -> Result<Vec<Delivery>> {
        let w = self
            .workers
            .get(worker)
            .ok_or_else(|| Error::UnknownWorker(worker.clone()))?;
        let mut tasks: Vec<&Task> = w
            .running
            .iter()
            .filter_map(|id| self.tasks.get(id).map(|t| &**t))
            .collect();
        tasks.sort_by_key(|t| t.token);
        Ok(tasks.iter().map(|t| t.delivery(worker, None)).collect())
    }

    pub(crate) fn complete(
        &mut self,
        lease: &Lease,
        value: Vec<u8>,
        now: Millis,
    ) -> Result<AckOutcome> {
        if let Err(rejection) = self.check_lease(lease) {
            return Ok(AckOutcome::new(Ack::Rejected(rejection), Vec::new()));
        }
        let id = lease.task;
        self.emit(EventKind::Succeeded, id, Some(&lease.worker), None);
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.completed += 1;
        }
        self.learn_cost(id, now)?;
        self.release_slot(&lease.worker, id, None)?;
        self.finish(id, TaskState::Succeeded, TaskOutcome::Succeeded(value), now)?;
        let mut assignments = self.fill_worker(&lease.worker, now)?;
        assignments.extend(self.resume(&lease.queue, now)?);
        Ok(AckOutcome::new(Ack::Completed, assignments))
    }

    pub(crate) fn fail(
        &mut self,
        lease: &Lease,
        error: &str,
        retry: bool,
        now: Millis,
    ) -> Result<AckOutcome> {
        if let Err(rejection) = self.check_lease(lease) {
            return Ok(AckOutcome::new(Ack::Rejected(rejection), Vec::new()));
        }
        self.end_attempt_failed(lease.task, normalize_error(error), retry, now)
    }
}
