//! Concurrency limits: counting a queue's active tasks, and resuming a queue when one of them
//! ends (the rule: `switchyard_core::flow::concurrency`; the gate itself is
//! `Queue::dispatches`).
//!
//! Lua twin: lua/lib/concurrency.lua (the count: `count_active` in lua/lib/queues.lua).

use switchyard_core::{Assignment, Millis, QueueName, Result, TaskId};

use super::State;

impl State {
    /// Counts task `id` in (`up`) or out of its queue's active tasks.
    pub(super) fn count_active(&mut self, id: TaskId, up: bool) -> Result<()> {
        let queue = self.queue_of_task(id)?;
        let q = self.queue_mut(&queue)?;
        q.active = if up {
            q.active.saturating_add(1)
        } else {
            q.active.saturating_sub(1)
        };
        self.count_group(&queue, id, up)
    }

    /// After one of a limited queue's tasks stopped being active: dispatches its next ready
    /// tasks (push, by the strategy) or hands them off (pull) while it is not held and a worker
    /// takes them. Nothing for a queue without a limit, on itself or on its groups (it was
    /// never held).
    pub(super) fn resume(&mut self, queue: &QueueName, now: Millis) -> Result<Vec<Assignment>> {
        let config = self.queue(queue)?.config;
        let group_limit = config.groups.and_then(|g| g.concurrency);
        if config.concurrency.is_none() && group_limit.is_none() {
            return Ok(Vec::new());
        }
        self.take_up(queue, now)
    }

    /// Dispatches (push) or hands off (pull) the queue's next ready tasks while it may
    /// dispatch and a worker takes them: what a queue no longer held does (`resume`; and
    /// `reconfigure`, whatever the limit was or is now).
    pub(super) fn take_up(&mut self, queue: &QueueName, now: Millis) -> Result<Vec<Assignment>> {
        let q = self.queue(queue)?;
        if !q.dispatches(now) {
            return Ok(Vec::new());
        }
        if q.config.strategy.is_push() {
            return self.dispatch(queue, usize::MAX, now);
        }
        self.hand_off_ready(queue, now)?;
        Ok(Vec::new())
    }

    /// [`resume`](Self::resume) for the queues of the tasks `returned` by a worker, each once, in
    /// the order they first appear.
    pub(super) fn resume_each(
        &mut self,
        returned: &[TaskId],
        now: Millis,
    ) -> Result<Vec<Assignment>> {
        let mut queues: Vec<QueueName> = Vec::new();
        for id in returned {
            if let Some(t) = self.tasks.get(id)
                && !queues.contains(&t.queue)
            {
                queues.push(t.queue.clone());
            }
        }
        let mut out = Vec::new();
        for q in &queues {
            out.extend(self.resume(q, now)?);
        }
        Ok(out)
    }
}
