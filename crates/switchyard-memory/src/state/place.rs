//! Putting a task into its queue (afresh, or back in its place), filling workers,
//! dispatching ready tasks.
//!
//! Lua twin: lua/lib/place.lua, lua/dispatch.lua.

use switchyard_core::policy::KeyInput;
use switchyard_core::{Assignment, Millis, QueueName, Result, TaskId, TaskState, WorkerId};

use super::{State, internal, to_i64};

/// What the first worker parked on a pull queue does with an arriving task (`State::sleeper`).
pub(super) enum Sleeper {
    /// Nobody is parked there.
    None,
    /// The sleeper could not take it, and was woken (and unparked) instead.
    Woken,
    /// It takes the task (the hand-off).
    Takes(WorkerId),
}

impl State {
    /// The next value of the backend-wide sequence.
    pub(super) fn next_seq(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Puts a task into its queue's ready set, or dispatches it at once when the set is empty
    /// and an eligible worker exists (the strategy decides which); in a pull queue, the set's
    /// minimum then goes to a parked worker that takes it (`hand_off_ready`). `enqueued_at`
    /// feeds aging. The task goes behind every task there; see `return_ready` for one that
    /// keeps its place.
    pub(super) fn make_ready(
        &mut self,
        id: TaskId,
        enqueued_at: Millis,
        now: Millis,
    ) -> Result<Option<Assignment>> {
        self.enter_ready(id, enqueued_at, now, false)
    }

    /// [`make_ready`](Self::make_ready) for a task that comes back from a worker that did not
    /// finish it (reaped, deregistered, drained): it takes its old place in the ready order
    /// (under aging, its key counts from its creation), ahead of the tasks that became ready
    /// after it.
    pub(super) fn return_ready(&mut self, id: TaskId, now: Millis) -> Result<Option<Assignment>> {
        self.enter_ready(id, now, now, true)
    }

    pub(super) fn enter_ready(
        &mut self,
        id: TaskId,
        enqueued_at: Millis,
        now: Millis,
        keep: bool,
    ) -> Result<Option<Assignment>> {
        self.task_mut(id)?.ready_since = enqueued_at;
        // flow::deadline, rule 1.
        if self.expires_on_entry(id, now)? {
            return Ok(None);
        }
        let (queue_name, priority, cost_ms, affinity, created_at, kept, start_by) = {
            let t = self
                .tasks
                .get(&id)
                .ok_or_else(|| internal("task record missing"))?;
            (
                t.queue.clone(),
                t.priority,
                t.cost_ms,
                t.affinity_bytes(),
                t.created_at,
                t.order,
                t.start_by,
            )
        };
        let seq = self.next_seq();
        let order = if keep { kept } else { seq };
        self.task_mut(id)?.order = order;
        let q = self.queue_mut(&queue_name)?;
        let key = q.config.policy.sort_key(&KeyInput {
            priority,
            cost_ms,
            enqueued_at: if keep { created_at } else { enqueued_at },
            deadline: start_by,
        });
        // flow::deadline, rule 2: an arrival may be dispatched from the head.
        if q.dispatches(now) {
            self.expire_heads(&queue_name, now, usize::MAX)?;
        }
        // A non-empty ready set means no worker of this queue has a free slot (invariant 3),
        // so only an empty set can dispatch an arriving task. In a queue shared between
        // groups, ready tasks of groups at their limit may wait beside free slots: there the
        // arriving task goes at once only if no group is in the ring and its own is open (it
        // would be next in line); otherwise it joins its group and the queue dispatches by its
        // ring (below).
        let first = self.first_in_line(&queue_name, id)?;
        let q = self.queue_mut(&queue_name)?;
        let shared = q.groups.is_some();
        if (if shared { first } else { q.ready.is_empty() })
            && q.config.strategy.is_push()
            && q.dispatches(now)
            && let Some(worker) = q.balancer.pick(&affinity)
        {
            // The task's sequence number doubles as its lease token.
            return self.dispatch_to(&worker, id, Some(seq), now).map(Some);
        }
        let push = q.config.strategy.is_push() && q.dispatches(now);
        let pull = !q.config.strategy.is_push() && q.dispatches(now);
        self.ready_insert(&queue_name, (key, order), id)?;
        let t = self.task_mut(id)?;
        t.state = TaskState::Ready;
        t.position = Some((key, order));
        t.worker = None;
        if pull {
            self.hand_off_ready(&queue_name, now)?;
        }
        if shared && push {
            return Ok(self.dispatch(&queue_name, 1, now)?.into_iter().next());
        }
        Ok(None)
    }

    /// Schedules a task for `at`, or makes it ready now if `at` has come.
    pub(super) fn enter_queue(
        &mut self,
        id: TaskId,
        at: Option<Millis>,
        now: Millis,
        retry: bool,
    ) -> Result<Option<Assignment>> {
        match at {
            Some(at) if at > now => {
                let queue_name = self.queue_of_task(id)?;
                let seq = self.next_seq();
                let position = (to_i64(at), seq);
                self.delayed_insert(&queue_name, position, id)?;
                if self
                    .queue(&queue_name)?
                    .delayed
                    .first_key_value()
                    .is_some_and(|(first, _)| *first == position)
                {
                    self.due_moved.notify_waiters();
                }
                let t = self.task_mut(id)?;
                t.state = if retry {
                    TaskState::RetryScheduled
                } else {
                    TaskState::Scheduled
                };
                t.run_at = Some(at);
                t.position = Some(position);
                t.worker = None;
                Ok(None)
            }
            _ => self.make_ready(id, now, now),
        }
    }

    /// Pull queues: the first worker parked on `queue` (by id), if it takes a task at once — it
    /// has a free slot and an empty inbox. One that cannot is unparked and woken instead: it
    /// has its inbox to receive.
    pub(super) fn sleeper(&mut self, queue: &QueueName) -> Result<Sleeper> {
        let Some(w) = self.queue(queue)?.parked.first().cloned() else {
            return Ok(Sleeper::None);
        };
        if self
            .workers
            .get(&w)
            .is_some_and(|wk| wk.has_free_slot() && wk.inbox.is_empty())
            && self.listening(&w)
        {
            return Ok(Sleeper::Takes(w));
        }
        self.unpark(&w);
        self.wake(&w);
        Ok(Sleeper::Woken)
    }

    /// Pull queues: hands the ready tasks of `queue`, minimum first, to the parked workers that
    /// take them (see `sleeper`), each under a fresh token, until none is ready or none takes.
    pub(super) fn hand_off_ready(&mut self, queue: &QueueName, now: Millis) -> Result<()> {
        if self.queue(queue)?.dispatches(now) {
            self.expire_heads(queue, now, usize::MAX)?;
        }
        while self.queue(queue)?.dispatches(now) && self.ready_head(queue)?.is_some() {
            match self.sleeper(queue)? {
                Sleeper::None => break,
                Sleeper::Woken => {}
                Sleeper::Takes(w) => {
                    let id = self
                        .ready_take(queue)?
                        .ok_or_else(|| internal("ready head vanished"))?;
                    let token = self.next_seq();
                    self.hand_to(&w, id, token, now)?;
                }
            }
        }
        Ok(())
    }

    /// The worker a task entering its queue went to at once (SubmitOutcome::assigned): the
    /// one it was dispatched to, or handed off to (then it is running).
    pub(super) fn assigned_at_once(
        &self,
        id: TaskId,
        dispatched: Option<Assignment>,
    ) -> Option<WorkerId> {
        dispatched.map(|a| a.worker).or_else(|| {
            self.tasks
                .get(&id)
                .filter(|t| t.state == TaskState::Running)
                .and_then(|t| t.worker.clone())
        })
    }

    /// Fills a worker's free slots from its push queues, in its preference order. Only this
    /// worker can be eligible for a non-empty queue here (invariant 3), so the strategy is not
    /// consulted and its state does not change.
    pub(super) fn fill_worker(
        &mut self,
        worker: &WorkerId,
        now: Millis,
    ) -> Result<Vec<Assignment>> {
        let mut out = Vec::new();
        while let Some(id) = self.take_first_ready(worker, true)? {
            out.push(self.dispatch_to(worker, id, None, now)?);
        }
        Ok(out)
    }

    /// Takes out of its ready set the first ready task of `worker`'s push queues (`push`) or
    /// pull queues, in the worker's preference order — the minimum of the first such queue
    /// that has one and is not paused — if the worker has a free slot (fill_worker and
    /// receive_tasks in the Lua).
    pub(super) fn take_first_ready(
        &mut self,
        worker: &WorkerId,
        push: bool,
    ) -> Result<Option<TaskId>> {
        let Some(w) = self.workers.get(worker) else {
            return Ok(None);
        };
        if !w.has_free_slot() {
            return Ok(None);
        }
        let now = self.now;
        let mut next = None;
        for qn in w.spec.queues().to_vec() {
            let Some(q) = self.queues.get(&qn) else {
                continue;
            };
            if q.config.strategy.is_push() != push || !q.dispatches(now) {
                continue;
            }
            // flow::deadline, rule 2.
            self.expire_heads(&qn, now, usize::MAX)?;
            if self.ready_head(&qn)?.is_some() {
                next = Some(qn);
                break;
            }
        }
        let Some(qn) = next else {
            return Ok(None);
        };
        self.ready_take(&qn)
    }

    pub(crate) fn dispatch(
        &mut self,
        queue: &QueueName,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<Assignment>> {
        let mut out = Vec::new();
        while out.len() < limit {
            let q = self.queue_mut(queue)?;
            if !q.dispatches(now) {
                break;
            }
            // flow::deadline, rule 2 (push queues: a pull queue's tasks leave by receive).
            if q.config.strategy.is_push() {
                self.expire_heads(queue, now, usize::MAX)?;
            }
            let Some((_, id)) = self.ready_head(queue)? else {
                break;
            };
            let affinity = self
                .tasks
                .get(&id)
                .ok_or_else(|| internal("task record missing"))?
                .affinity_bytes();
            let q = self.queue_mut(queue)?;
            let Some(worker) = q.balancer.pick(&affinity) else {
                break;
            };
            self.ready_take(queue)?;
            out.push(self.dispatch_to(&worker, id, None, now)?);
        }
        Ok(out)
    }
}
