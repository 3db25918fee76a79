//! Queue administration on the reference state (rules in `switchyard_core::admin`): deleting a
//! finished task, purging a class of a queue's tasks, reconfiguring and deleting a queue.

use switchyard_core::admin::{InUse, Purge, PurgeReport, Reshape};
use switchyard_core::strategy::Balancer;
use switchyard_core::{
    Error, EventKind, Millis, QueueConfig, QueueName, Result, TaskId, TaskOutcome, TaskState,
};

use super::State;

impl State {
    pub(crate) fn delete_task(&mut self, id: TaskId) -> Result<()> {
        let t = self.seen(id).ok_or(Error::TaskNotFound(id))?;
        if !t.state.is_terminal() {
            return Err(Error::WrongState {
                id,
                state: t.state,
                operation: "delete (only finished tasks can be deleted: cancel it first)",
            });
        }
        self.drop_finished(id);
        Ok(())
    }

    /// Removes a finished task's record and its index entries (maintenance too).
    pub(super) fn drop_finished(&mut self, id: TaskId) {
        let Some(t) = self.tasks.remove(&id) else {
            return;
        };
        if let Some(q) = self.queues.get_mut(&t.queue) {
            q.done.remove(&(t.retain_until, id));
            if t.state == TaskState::Dead {
                q.dead.remove(&(t.finished_at, id));
            }
        }
    }

    pub(crate) fn purge_queue(
        &mut self,
        queue: &QueueName,
        what: Purge,
        limit: usize,
        now: Millis,
    ) -> Result<PurgeReport> {
        let q = self.queue(queue)?;
        let ids: Vec<TaskId> = match what {
            Purge::Waiting => q
                .ready
                .values()
                .chain(q.delayed.values())
                .take(limit)
                .copied()
                .collect(),
            Purge::Dead => q.dead.iter().take(limit).map(|(_, id)| *id).collect(),
            Purge::Finished => q.done.iter().take(limit).map(|(_, id)| *id).collect(),
        };
        for id in &ids {
            if what == Purge::Waiting {
                self.cancel_waiting(queue, *id, now)?;
            } else {
                self.drop_finished(*id);
            }
        }
        let q = self.queue(queue)?;
        let more = match what {
            Purge::Waiting => !q.ready.is_empty() || !q.delayed.is_empty(),
            Purge::Dead => !q.dead.is_empty(),
            Purge::Finished => !q.done.is_empty(),
        };
        Ok(PurgeReport::new(ids.len() as u64, more))
    }

    /// Cancels a ready, scheduled or retry-scheduled task of `queue` (`cancel` too).
    pub(super) fn cancel_waiting(
        &mut self,
        queue: &QueueName,
        id: TaskId,
        now: Millis,
    ) -> Result<()> {
        let (state, position) = {
            let t = self.tasks.get(&id).ok_or(Error::TaskNotFound(id))?;
            (t.state, t.position)
        };
        if let Some(pos) = position {
            if state == TaskState::Ready {
                self.ready_remove(queue, pos, id)?;
            } else {
                self.delayed_remove(queue, pos, id)?;
            }
        }
        self.emit(EventKind::Cancelled, id, None, None);
        self.finish(id, TaskState::Cancelled, TaskOutcome::Cancelled, now)
    }

    pub(crate) fn reconfigure_queue(
        &mut self,
        queue: &QueueName,
        config: QueueConfig,
    ) -> Result<bool> {
        config.validate()?;
        let q = self.queue(queue)?;
        if q.config == config {
            return Ok(false);
        }
        let reshape = Reshape::between(&q.config, &config);
        let in_use = |reason| Error::QueueInUse {
            queue: queue.clone(),
            operation: "reconfigured",
            reason,
        };
        if reshape.order && !q.ready.is_empty() {
            return Err(in_use(InUse::Ready(q.ready.len() as u64)));
        }
        if reshape.balancer && !q.members.is_empty() {
            return Err(in_use(InUse::Served(q.members.iter().cloned().collect())));
        }
        let busy = (q.ready.len() + q.delayed.len()) as u64 + u64::from(q.active);
        if reshape.groups && busy > 0 {
            return Err(in_use(InUse::Shared(busy)));
        }
        let q = self.queue_mut(queue)?;
        let old_rate = q.config.rate;
        let old_groups = q.config.groups;
        q.config = config;
        if reshape.balancer {
            q.balancer = Balancer::new(config.strategy, config.seed);
            q.jitter = config.jitter_rng();
        }
        self.groups_reconfigured(queue, old_groups, self.now)?;
        self.rate_reconfigured(queue, old_rate, self.now)?;
        // A limit raised or removed lets the queue take up what waits.
        self.take_up(queue, self.now)?;
        Ok(true)
    }

    pub(crate) fn delete_queue(&mut self, queue: &QueueName) -> Result<()> {
        let q = self.queue(queue)?;
        let in_use = |reason| Error::QueueInUse {
            queue: queue.clone(),
            operation: "deleted",
            reason,
        };
        if !q.members.is_empty() {
            return Err(in_use(InUse::Served(q.members.iter().cloned().collect())));
        }
        let held = self.tasks.values().filter(|t| &t.queue == queue).count();
        if held > 0 {
            return Err(in_use(InUse::Tasks(held as u64)));
        }
        self.queues.remove(queue);
        self.costs.retain(|(q, _), _| q != queue);
        Ok(())
    }
}
