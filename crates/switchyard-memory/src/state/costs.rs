//! Learned costs: the moving average of a kind's run times in shortest-job-first queues.
//!
//! Lua twin: `learn_cost` in lua/lib/leases.lua, `k:` fields of lua/lib/queues.lua's state.

use switchyard_core::Policy;
use switchyard_core::backend::next_average;
use switchyard_core::{Millis, QueueConfig, QueueName, Result, TaskId, TaskKind};

use super::{State, internal};

impl State {
    /// The cost of a task without a cost hint: for shortest-job-first queues the moving average
    /// of its kind's measured run times, once there is one; otherwise the queue default.
    pub(super) fn default_cost(
        &self,
        queue: &QueueName,
        kind: &TaskKind,
        config: &QueueConfig,
    ) -> u32 {
        if matches!(config.policy, Policy::ShortestJobFirst { .. })
            && let Some(avg) = self.costs.get(&(queue.clone(), kind.clone()))
        {
            return u32::try_from(*avg).unwrap_or(u32::MAX);
        }
        config.default_cost_ms
    }

    /// In a shortest-job-first queue, folds a succeeding task's run time (now minus its start)
    /// into its kind's moving average.
    pub(super) fn learn_cost(&mut self, id: TaskId, now: Millis) -> Result<()> {
        let t = self
            .tasks
            .get(&id)
            .ok_or_else(|| internal("task record missing"))?;
        let q = self.queue(&t.queue)?;
        if !matches!(q.config.policy, Policy::ShortestJobFirst { .. }) {
            return Ok(());
        }
        let started = t.deadline.saturating_sub(u64::from(t.timeout_ms));
        let key = (t.queue.clone(), t.kind.clone());
        let sample = now.saturating_sub(started);
        let default = u64::from(q.config.default_cost_ms);
        let avg = next_average(self.costs.get(&key).copied(), sample, default);
        self.costs.insert(key, avg);
        Ok(())
    }

    /// The moving average of a kind's run times in a queue.
    pub(crate) fn learned_cost(&self, queue: &QueueName, kind: &TaskKind) -> Option<u32> {
        self.costs
            .get(&(queue.clone(), kind.clone()))
            .map(|a| u32::try_from(*a).unwrap_or(u32::MAX))
    }
}
