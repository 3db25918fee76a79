//! Maintenance: reaping dead workers, promoting due tasks, claiming schedules' due ticks
//! (`state/schedules.rs`), settling flows (`state/flows.rs`), purging what expired.
//!
//! Lua twin: lua/reap_worker.lua, lua/promote.lua, lua/schedule_claim.lua, lua/settle.lua,
//! lua/purge.lua.

use switchyard_core::admin::retention::excess;
use switchyard_core::{MaintenanceReport, Millis, QueueName, Result, TaskId, TaskState, WorkerId};

use super::{State, to_i64};

impl State {
    /// The first run-at among delayed tasks, the first time a queue (or a group) closed by its rate
    /// limit or a hold opens again, the first heartbeat expiry (+1 ms: reaping needs `expiry < now`), or the
    /// first next tick of a schedule.
    pub(crate) fn next_due(&self) -> Option<Millis> {
        let delayed = self.queues.values().filter_map(|q| {
            q.delayed
                .keys()
                .next()
                .map(|(at, _)| u64::try_from(*at).unwrap_or(0))
        });
        let wakes = self
            .queues
            .values()
            .filter_map(|q| q.rate.wake)
            .chain(self.next_group_wake());
        let reap = self.heartbeats.first().map(|(t, _)| t + 1);
        delayed
            .chain(wakes)
            .chain(reap)
            .chain(self.next_expiry())
            .chain(self.next_tick())
            .chain(self.next_settle())
            .min()
    }

    pub(crate) fn maintain(&mut self, limit: usize, now: Millis) -> Result<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        // 1. Workers whose heartbeat expired, by (expiry, id).
        let dead: Vec<WorkerId> = self
            .heartbeats
            .iter()
            .take_while(|(t, _)| *t < now)
            .take(limit)
            .map(|(_, w)| w.clone())
            .collect();
        for worker in dead {
            let back = self.hand_back(&worker, now)?;
            report.tasks_returned += back.returned.len();
            report.assignments.extend(back.assignments);
            report.workers_reaped.push(worker);
        }
        report.more |= self.heartbeats.first().is_some_and(|(t, _)| *t < now);
        // 2. Queue by queue in name order: taken up if its rate mark has come, then its ready
        //    heads whose deadline has come expired (flow::deadline, rule 3), then its due
        //    delayed tasks, by (run_at, seq).
        let mut budget = limit;
        let names: Vec<QueueName> = self.queues.keys().cloned().collect();
        for qn in names {
            report.assignments.extend(self.wake_due(&qn, now)?);
            let expired = self.expire_heads(&qn, now, budget)?;
            budget -= expired;
            report.tasks_expired += expired;
            loop {
                let q = self.queue(&qn)?;
                let Some((&(at, seq), &id)) = q.delayed.first_key_value() else {
                    break;
                };
                if at > to_i64(now) {
                    break;
                }
                if budget == 0 {
                    report.more = true;
                    break;
                }
                budget -= 1;
                self.delayed_remove(&qn, (at, seq), id)?;
                let at = u64::try_from(at).unwrap_or(now);
                report.assignments.extend(self.make_ready(id, at, now)?);
                report.promoted += 1;
            }
            report.more |= self.late_head(&qn, now);
        }
        // 3. Due schedule ticks (state/schedules.rs), then due flow settle entries
        //    (state/flows.rs).
        self.tick_schedules(limit, now, &mut report)?;
        let (settled, more) = self.settle_due(limit, now, &mut report.assignments)?;
        report.flows_settled = settled;
        report.more |= more;
        // 4. Finished records past their retention, queue by queue in name order, by
        //    (retain_until, id), then beyond the queue's counts (admin::retention); then
        //    expired dedup keys.
        let mut budget = limit;
        let names: Vec<QueueName> = self.queues.keys().cloned().collect();
        for qn in names {
            loop {
                let q = self.queue_mut(&qn)?;
                let Some(&(until, id)) = q.done.first() else {
                    break;
                };
                if until > now {
                    break;
                }
                if budget == 0 {
                    report.more = true;
                    break;
                }
                budget -= 1;
                q.done.remove(&(until, id));
                self.drop_finished(id);
                report.records_purged += 1;
            }
            let trimmed = self.trim_by_count(&qn, budget)?;
            budget -= trimmed.0;
            report.records_purged += trimmed.0;
            report.more |= trimmed.1;
        }
        let stale: Vec<(Millis, QueueName, String)> = self
            .dedup_expiry
            .iter()
            .take_while(|(t, _, _)| *t <= now)
            .take(limit)
            .cloned()
            .collect();
        for entry in stale {
            self.dedup_expiry.remove(&entry);
            let (_, q, k) = entry;
            self.dedup.remove(&(q, k));
        }
        Ok(report)
    }

    /// Retention by count (`switchyard_core::admin::retention`, rules 2 and 3): removes, within
    /// `budget`, the dead tasks of `queue` beyond its `keep_dead` (earliest death first), then
    /// its other finished tasks beyond `keep_finished` (by retention end); how many it removed,
    /// and whether any beyond remain.
    fn trim_by_count(&mut self, queue: &QueueName, mut budget: usize) -> Result<(usize, bool)> {
        let q = self.queue(queue)?;
        let (keep_dead, keep_finished) = (q.config.keep_dead, q.config.keep_finished);
        let mut removed = 0;
        let dead = {
            let excess = excess(q.dead.len(), keep_dead);
            q.dead
                .iter()
                .take(excess.min(budget))
                .map(|(_, id)| *id)
                .collect::<Vec<_>>()
        };
        for id in dead {
            self.drop_finished(id);
            removed += 1;
            budget -= 1;
        }
        let q = self.queue(queue)?;
        let left_dead = excess(q.dead.len(), keep_dead) > 0;
        let finished = q.done.len() - q.dead.len();
        let excess_finished = excess(finished, keep_finished);
        let others: Vec<TaskId> = q
            .done
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| {
                self.tasks
                    .get(id)
                    .is_some_and(|t| t.state != TaskState::Dead)
            })
            .take(excess_finished.min(budget))
            .collect();
        for id in &others {
            self.drop_finished(*id);
        }
        removed += others.len();
        Ok((removed, left_dead || others.len() < excess_finished))
    }
}
