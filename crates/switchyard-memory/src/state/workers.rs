//! Workers: their records and load, registering, heartbeating, draining and leaving, and
//! whether one listens for hand-offs.
//!
//! Lua twin: lua/lib/workers.lua, lua/lib/steps.lua, lua/register.lua, lua/heartbeat.lua, lua/drain.lua, lua/deregister.lua.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use switchyard_core::backend::timeout_error;
use switchyard_core::strategy::Load;
use switchyard_core::{
    Delivery, Error, HandBack, HeartbeatReply, Millis, RegisterOutcome, Result, TaskId, WorkerId,
    WorkerRef, WorkerSpec,
};

use super::State;

/// One live worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) spec: WorkerSpec,
    pub(crate) inflight: u32,
    /// Dispatched, not yet received, by dispatch sequence.
    pub(crate) inbox: BTreeMap<u64, TaskId>,
    pub(crate) running: BTreeSet<TaskId>,
    pub(crate) expires_at: Millis,
    /// Takes no new tasks (see `drain_worker`).
    pub(crate) draining: bool,
    /// It asked for tasks and got none (`receive_wait`): a task dispatched to it while its
    /// inbox is empty is started at once (a hand-off).
    pub(crate) waiting: bool,
    /// Hand-offs (tasks started on it while it was parked) not yet taken by a waiting receive.
    pub(crate) handed: VecDeque<Delivery>,
    /// Tasks handed to it (one per attempt) and completed by it, since it registered.
    pub(crate) dispatched: u64,
    pub(crate) completed: u64,
}

impl Worker {
    /// The load the balancers see: a draining worker looks full.
    fn load(&self) -> Load {
        let capacity = self.spec.get_capacity();
        Load {
            inflight: if self.draining {
                capacity
            } else {
                self.inflight
            },
            capacity,
        }
    }

    /// Whether it may take another task.
    pub(crate) fn has_free_slot(&self) -> bool {
        !self.draining && self.inflight < self.spec.get_capacity()
    }
}

impl State {
    /// Tells every balancer of the worker's queues its current load.
    pub(super) fn refresh_load(&mut self, worker: &WorkerId) {
        let Some(w) = self.workers.get(worker) else {
            return;
        };
        let load = w.load();
        for q in w.spec.queues() {
            if let Some(queue) = self.queues.get_mut(q) {
                queue.balancer.set_load(worker, load);
            }
        }
    }

    pub(super) fn wake(&self, worker: &WorkerId) {
        if let Some(n) = self.wakers.get(worker) {
            n.notify_one();
        }
    }

    /// Notes that `worker` waits for hand-offs through this backend (see `listeners`).
    pub(crate) fn listen(&mut self, worker: &WorkerId) {
        if !self.listeners.contains(worker) {
            self.listeners.insert(worker.clone());
        }
    }

    /// Whether a hand-off to `worker` would be seen: only then is it handed a task, started
    /// at once (lua/lib/workers.lua `listening`, where a subscription to its wake channel
    /// says so). Otherwise the task is left for it to receive, and no attempt is counted.
    pub(super) fn listening(&self, worker: &WorkerId) -> bool {
        self.listeners.contains(worker)
    }

    pub(crate) fn register_worker(
        &mut self,
        spec: WorkerSpec,
        now: Millis,
    ) -> Result<RegisterOutcome> {
        spec.validate()?;
        for q in spec.queues() {
            self.queue(q)?;
        }
        let id = spec.id().clone();
        let mut outcome = RegisterOutcome::default();
        if let Some(old) = self.workers.get(&id) {
            // Another instance's registration is replaced only once it has expired.
            if old.spec.get_instance() != spec.get_instance() && old.expires_at >= now {
                return Err(Error::WorkerIdInUse {
                    worker: id,
                    expires_in_ms: old.expires_at - now,
                });
            }
            outcome.replaced = true;
            outcome.assignments = self.hand_back(&id, now)?.assignments;
        }
        let expires_at = now.saturating_add(u64::from(spec.heartbeat_ttl_ms()));
        let weight = spec.get_weight();
        let queues = spec.queues().to_vec();
        self.workers.insert(
            id.clone(),
            Worker {
                spec,
                inflight: 0,
                inbox: BTreeMap::new(),
                running: BTreeSet::new(),
                waiting: false,
                handed: VecDeque::new(),
                dispatched: 0,
                completed: 0,
                expires_at,
                draining: false,
            },
        );
        self.heartbeats.insert((expires_at, id.clone()));
        for qn in &queues {
            let q = self.queue_mut(qn)?;
            q.members.insert(id.clone());
            q.balancer.join(&id, weight);
        }
        self.refresh_load(&id);
        outcome.assignments.extend(self.fill_worker(&id, now)?);
        Ok(outcome)
    }

    /// Checks that `worker` names the current registration of its id: `UnknownWorker` if there
    /// is none, `WorkerReplaced` if another instance holds it. Every call a worker makes as
    /// itself passes here first.
    pub(crate) fn check_instance(&self, worker: &WorkerRef) -> Result<()> {
        match self.workers.get(&worker.id) {
            None => Err(Error::UnknownWorker(worker.id.clone())),
            Some(w) if w.spec.get_instance() != worker.instance => {
                Err(Error::WorkerReplaced(worker.id.clone()))
            }
            Some(_) => Ok(()),
        }
    }

    /// Extends the worker's heartbeat, then fails its running tasks whose lease deadline has
    /// passed (`deadline < now`, by deadline then id) as timed out, and lists its running tasks
    /// whose cancel was requested (by id).
    pub(crate) fn heartbeat(&mut self, worker: &WorkerId, now: Millis) -> Result<HeartbeatReply> {
        let w = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| Error::UnknownWorker(worker.clone()))?;
        let old = w.expires_at;
        w.expires_at = now.saturating_add(u64::from(w.spec.heartbeat_ttl_ms()));
        let new = w.expires_at;
        let running: Vec<TaskId> = w.running.iter().copied().collect();
        self.heartbeats.remove(&(old, worker.clone()));
        self.heartbeats.insert((new, worker.clone()));
        let mut overdue: Vec<(Millis, TaskId)> = running
            .iter()
            .filter_map(|id| self.tasks.get(id).map(|t| (t.deadline, *id)))
            .filter(|(deadline, _)| *deadline < now)
            .collect();
        overdue.sort();
        let mut reply = HeartbeatReply::default();
        for (_, id) in overdue {
            let timeout = self.task_mut(id)?.timeout_ms;
            let outcome = self.end_attempt_failed(id, timeout_error(timeout), true, now)?;
            reply.expired.push(id);
            reply.assignments.extend(outcome.assignments);
        }
        if let Some(w) = self.workers.get(worker) {
            reply.cancel = w
                .running
                .iter()
                .filter(|id| self.tasks.get(id).is_some_and(|t| t.cancel_requested))
                .copied()
                .collect();
        }
        Ok(reply)
    }

    pub(crate) fn drain_worker(&mut self, worker: &WorkerId, now: Millis) -> Result<HandBack> {
        let w = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| Error::UnknownWorker(worker.clone()))?;
        if w.draining {
            return Ok(HandBack::default());
        }
        w.draining = true;
        w.waiting = false;
        let inbox: Vec<(u64, TaskId)> = std::mem::take(&mut w.inbox).into_iter().collect();
        w.inflight -= u32::try_from(inbox.len())
            .unwrap_or(u32::MAX)
            .min(w.inflight);
        self.unpark(worker);
        self.refresh_load(worker);
        let mut back = HandBack::default();
        for (_, id) in inbox {
            back.returned.push(id);
            self.task_mut(id)?.worker = None;
            self.count_active(id, false)?;
            back.assignments.extend(self.return_ready(id, now)?);
        }
        let resumed = self.resume_each(&back.returned, now)?;
        back.assignments.extend(resumed);
        Ok(back)
    }

    pub(crate) fn deregister_worker(&mut self, worker: &WorkerId, now: Millis) -> Result<HandBack> {
        self.hand_back(worker, now)
    }
}
