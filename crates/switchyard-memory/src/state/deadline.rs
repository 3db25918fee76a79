//! Deadlines: expiring the late tasks of a queue with `expire_late` (the rule, at its three
//! places: `switchyard_core::flow::deadline`).
//!
//! Lua twin: lua/lib/deadline.lua.

use switchyard_core::flow::deadline::has_come;
use switchyard_core::{EventKind, Millis, QueueName, Result, TaskId, TaskOutcome, TaskState};

use super::{State, to_i64};

impl State {
    /// Rule 1: task `id` enters its queue's ready set at `now`; if the queue expires late
    /// tasks and its deadline has come, it expires instead (true).
    pub(super) fn expires_on_entry(&mut self, id: TaskId, now: Millis) -> Result<bool> {
        let (queue, start_by) = {
            let t = self.task_mut(id)?;
            (t.queue.clone(), t.start_by)
        };
        if !self.queue(&queue)?.config.expire_late || !has_come(start_by, now) {
            return Ok(false);
        }
        self.expire(id, now)?;
        Ok(true)
    }

    /// Rules 2 and 3: expires the heads of `queue`'s ready set whose deadline has come, at
    /// most `limit`, if the queue expires late tasks; returns how many. Under EDF the ready
    /// order is the deadline order, so the first live head ends the search.
    pub(super) fn expire_heads(
        &mut self,
        queue: &QueueName,
        now: Millis,
        limit: usize,
    ) -> Result<usize> {
        let mut n = 0;
        while n < limit {
            let q = self.queue_mut(queue)?;
            if !q.config.expire_late {
                break;
            }
            let Some((&pos, &id)) = q.ready.first_key_value() else {
                break;
            };
            if pos.0 > to_i64(now) || !has_come(self.task_mut(id)?.start_by, now) {
                break;
            }
            self.ready_remove(queue, pos, id)?;
            self.expire(id, now)?;
            n += 1;
        }
        Ok(n)
    }

    /// Whether `queue` has a ready head whose deadline has come (maintenance's `more`).
    pub(super) fn late_head(&self, queue: &QueueName, now: Millis) -> bool {
        self.queues.get(queue).is_some_and(|q| {
            q.config.expire_late
                && q.ready.first_key_value().is_some_and(|(pos, id)| {
                    pos.0 <= to_i64(now)
                        && self
                            .tasks
                            .get(id)
                            .is_some_and(|t| has_come(t.start_by, now))
                })
        })
    }

    /// The earliest deadline at the head of a queue that expires late tasks (maintenance wakes
    /// then).
    pub(super) fn next_expiry(&self) -> Option<Millis> {
        self.queues
            .values()
            .filter(|q| q.config.expire_late)
            .filter_map(|q| q.ready.values().next())
            .filter_map(|id| self.tasks.get(id)?.start_by)
            .min()
    }

    /// Ends task `id` (out of every set already) expired.
    fn expire(&mut self, id: TaskId, now: Millis) -> Result<()> {
        self.emit(EventKind::Expired, id, None, None);
        self.finish(id, TaskState::Expired, TaskOutcome::Expired, now)
    }
}
