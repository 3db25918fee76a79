//! Parking, events, starting a task, dispatching it to a worker, hand-offs.
//!
//! Lua twin: lua/lib/dispatch.lua.

use std::collections::VecDeque;
use std::sync::Arc;

use switchyard_core::{Assignment, Delivery, Millis, Result, TaskId, TaskState, WorkerId};
use switchyard_core::{EVENT_LOG_CAP, Event, EventKind};
use tokio::sync::Notify;

use super::{State, internal};

impl State {
    /// The notifier a waiting worker sleeps on. The worker is marked waiting (a dispatch to it
    /// while its inbox is empty starts the task at once: see `dispatch_to`) and parked on its
    /// pull queues, so that the next task arriving in one of them is handed to it (`sleeper`).
    pub(crate) fn park(&mut self, worker: &WorkerId) -> Arc<Notify> {
        if let Some(w) = self.workers.get_mut(worker) {
            w.waiting = true;
        }
        if let Some(w) = self.workers.get(worker) {
            for qn in w.spec.queues() {
                if let Some(q) = self.queues.get_mut(qn)
                    && !q.config.strategy.is_push()
                {
                    q.parked.insert(worker.clone());
                }
            }
        }
        self.wakers.entry(worker.clone()).or_default().clone()
    }

    /// Takes a worker off every parked list (it is awake, or gone).
    pub(super) fn unpark(&mut self, worker: &WorkerId) {
        if let Some(w) = self.workers.get(worker) {
            for qn in w.spec.queues() {
                if let Some(q) = self.queues.get_mut(qn) {
                    q.parked.remove(worker);
                }
            }
        }
    }

    /// Records an event if the task's queue records its kind.
    pub(super) fn emit(
        &mut self,
        kind: EventKind,
        id: TaskId,
        worker: Option<&WorkerId>,
        detail: Option<String>,
    ) {
        let Some(t) = self.tasks.get(&id) else { return };
        let Some(q) = self.queues.get_mut(&t.queue) else {
            return;
        };
        q.totals.add(kind, 1);
        if !kind.recorded_at(q.config.events) {
            return;
        }
        self.event_count += 1;
        let mut event = Event::new(
            self.event_count.to_string(),
            kind,
            id,
            t.queue.clone(),
            self.now,
        );
        event.worker = worker.cloned();
        event.detail = detail;
        self.events.push_back(event);
        if self.events.len() > EVENT_LOG_CAP {
            self.events.pop_front();
        }
    }

    /// Starts a task on a worker: attempt counted, lease deadline set.
    pub(super) fn start(&mut self, worker: &WorkerId, id: TaskId, now: Millis) -> Result<Delivery> {
        let t = self
            .tasks
            .get_mut(&id)
            .ok_or_else(|| internal("task record missing"))?;
        t.state = TaskState::Running;
        t.attempts += 1;
        t.deadline = now.saturating_add(u64::from(t.timeout_ms));
        t.worker = Some(worker.clone());
        t.position = None;
        let delivery = t.delivery(worker, Some(t.ready_since));
        if let Some(w) = self.workers.get_mut(worker) {
            w.running.insert(id);
        }
        Ok(delivery)
    }

    /// Takes a ready task of a pull queue (already out of its ready set) into a free slot of
    /// `worker` under `token`, and starts it.
    pub(super) fn start_pulled(
        &mut self,
        worker: &WorkerId,
        id: TaskId,
        token: u64,
        now: Millis,
    ) -> Result<Delivery> {
        self.task_mut(id)?.token = token;
        self.count_active(id, true)?;
        self.spend_token(id, now)?;
        if let Some(w) = self.workers.get_mut(worker) {
            w.inflight += 1;
            w.dispatched += 1;
        }
        self.refresh_load(worker);
        self.start(worker, id, now)
    }

    /// The hand-off: starts task `id` on a parked or waiting `worker` under `token` and keeps
    /// the delivery for its waiting receive (which is woken); the worker stays parked and
    /// waiting while it has a free slot.
    pub(super) fn hand_to(
        &mut self,
        worker: &WorkerId,
        id: TaskId,
        token: u64,
        now: Millis,
    ) -> Result<()> {
        let delivery = self.start_pulled(worker, id, token, now)?;
        let full = match self.workers.get_mut(worker) {
            Some(w) => {
                w.handed.push_back(delivery);
                // Filled: parked no more, and no longer waiting.
                let full = !w.has_free_slot();
                if full {
                    w.waiting = false;
                }
                full
            }
            None => true,
        };
        self.prune_handed(worker);
        if full {
            self.unpark(worker);
        }
        self.wake(worker);
        Ok(())
    }

    /// Hands a task to a worker's inbox under a lease token (a fresh sequence value unless
    /// given); the token also orders the inbox.
    pub(super) fn dispatch_to(
        &mut self,
        worker: &WorkerId,
        id: TaskId,
        token: Option<u64>,
        now: Millis,
    ) -> Result<Assignment> {
        let token = match token {
            Some(t) => t,
            None => self.next_seq(),
        };
        let (waiting, empty) = self
            .workers
            .get(worker)
            .map_or((false, false), |w| (w.waiting, w.inbox.is_empty()));
        if waiting && empty && self.listening(worker) {
            // The worker waits with nothing to receive: it takes the task at once.
            let queue = self.task_mut(id)?.queue.clone();
            self.hand_to(worker, id, token, now)?;
            self.emit(EventKind::Dispatched, id, Some(worker), None);
            return Ok(Assignment {
                task: id,
                queue,
                worker: worker.clone(),
            });
        }
        let seq = token;
        let queue = {
            let t = self.task_mut(id)?;
            t.state = TaskState::Dispatched;
            t.worker = Some(worker.clone());
            t.token = token;
            t.inbox_seq = seq;
            t.position = None;
            t.queue.clone()
        };
        self.count_active(id, true)?;
        self.spend_token(id, now)?;
        let w = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| internal("picked worker missing"))?;
        w.inflight += 1;
        w.dispatched += 1;
        w.inbox.insert(seq, id);
        // A waiting worker with tasks still to receive is woken to receive them.
        w.waiting = false;
        self.refresh_load(worker);
        self.wake(worker);
        self.emit(EventKind::Dispatched, id, Some(worker), None);
        Ok(Assignment {
            task: id,
            queue,
            worker: worker.clone(),
        })
    }

    /// Drops the hand-offs of `worker` whose lease ended untaken, once there are more of them
    /// than it has slots (a caller that never waits never takes them).
    pub(super) fn prune_handed(&mut self, worker: &WorkerId) {
        let Some(w) = self.workers.get(worker) else {
            return;
        };
        if w.handed.len() <= w.spec.get_capacity() as usize {
            return;
        }
        let live: VecDeque<Delivery> = w
            .handed
            .iter()
            .filter(|d| self.check_lease(&d.lease).is_ok())
            .cloned()
            .collect();
        if let Some(w) = self.workers.get_mut(worker) {
            w.handed = live;
        }
    }

    /// Up to `max` of the worker's hand-offs, oldest first, skipping any whose lease ended
    /// before it was taken (timed out, say).
    pub(crate) fn take_handed(&mut self, worker: &WorkerId, max: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(d) = self
                .workers
                .get_mut(worker)
                .and_then(|w| w.handed.pop_front())
            else {
                break;
            };
            if self.check_lease(&d.lease).is_ok() {
                out.push(d);
            }
        }
        out
    }
}
