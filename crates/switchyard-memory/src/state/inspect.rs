//! Reads: one task, its outcome, the dead-letter set, the ready order, the event log, stats.
//!
//! Lua twin: lua/stats.lua, lua/peek.lua.

use std::collections::BTreeMap;

use switchyard_core::Event;
use switchyard_core::{
    Error, Millis, QueueName, QueueStats, Result, Stats, TaskId, TaskInfo, TaskOutcome, WorkerStats,
};

use super::State;

impl State {
    /// Events after `after`, oldest first.
    pub(crate) fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        let after: u64 = match after {
            None => 0,
            Some(a) => a.parse().map_err(|_| {
                Error::invalid(
                    "event id",
                    format!("`{a}` is not an event id of this backend"),
                )
            })?,
        };
        Ok(self
            .events
            .iter()
            .filter(|e| e.id.parse::<u64>().is_ok_and(|n| n > after))
            .take(limit)
            .cloned()
            .collect())
    }

    pub(crate) fn get_task(&self, id: TaskId) -> Option<TaskInfo> {
        self.seen(id).map(|t| {
            let mut info = t.info();
            info.progress = t.current_progress().cloned();
            info
        })
    }

    pub(crate) fn get_outcome(&self, id: TaskId) -> Option<TaskOutcome> {
        self.tasks.get(&id).and_then(|t| t.outcome.clone())
    }

    pub(crate) fn list_dead(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskInfo>> {
        let q = self.queue(queue)?;
        Ok(q.dead
            .iter()
            .take(limit)
            .filter_map(|(_, id)| self.tasks.get(id).map(|t| t.info()))
            .collect())
    }

    pub(crate) fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>> {
        Ok(self
            .queue(queue)?
            .ready
            .values()
            .take(limit)
            .copied()
            .collect())
    }

    /// About how many bytes each queue holds (Inspect::memory): its tasks' records (the
    /// struct, its payload, result and strings, and the map entry) and one index entry per
    /// ready, delayed, dead or finished task.
    pub(crate) fn memory(&self) -> Vec<(QueueName, u64)> {
        const ENTRY: usize = 48;
        let mut bytes: BTreeMap<&QueueName, usize> = self.queues.keys().map(|q| (q, 0)).collect();
        for t in self.tasks.values() {
            let strings = [&t.affinity_key, &t.dedup_key, &t.last_error]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>();
            let result = match &t.outcome {
                Some(TaskOutcome::Succeeded(v)) => v.len(),
                Some(TaskOutcome::Dead(e)) => e.len(),
                _ => 0,
            };
            let size = std::mem::size_of::<super::Task>() + t.payload.len() + strings + result;
            if let Some(b) = bytes.get_mut(&t.queue) {
                *b += size + 2 * ENTRY;
            }
        }
        bytes
            .into_iter()
            .map(|(q, b)| (q.clone(), b as u64))
            .collect()
    }

    pub(crate) fn stats(&self, now: Millis) -> Stats {
        let mut per_queue: BTreeMap<&QueueName, QueueStats> = self
            .queues
            .iter()
            .map(|(name, q)| {
                let mut stats = QueueStats::default();
                stats.queue = Some(name.clone());
                stats.totals = q.totals;
                stats.paused = q.paused;
                stats.rate_tokens = q.config.rate.map(|l| q.rate.tokens(Some(l), now));
                let opens = q.rate.opens_at(q.config.rate, now);
                stats.opens_at = Some(opens).filter(|&at| at > now);
                (name, stats)
            })
            .collect();
        for t in self.tasks.values().filter(|t| !t.staged) {
            if let Some(s) = per_queue.get_mut(&t.queue) {
                s.count(t.state);
            }
        }
        let workers = self.workers.iter().map(|(id, w)| {
            let mut stats = WorkerStats::new(id.clone());
            stats.capacity = w.spec.get_capacity();
            stats.weight = w.spec.get_weight();
            stats.inflight = w.inflight;
            stats.draining = w.draining;
            stats.queues = w.spec.queues().to_vec();
            stats.expires_at = w.expires_at;
            stats.heartbeat_ttl_ms = w.spec.heartbeat_ttl_ms();
            stats.dispatched = w.dispatched;
            stats.completed = w.completed;
            stats
        });
        Stats::new(per_queue.into_values().collect(), workers.collect())
    }
}
