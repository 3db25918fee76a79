//! The administration steps of a scenario ([`Op::DeleteTask`], [`Op::PurgeQueue`],
//! [`Op::Reconfigure`], [`Op::DeleteQueue`]): applied, and what they removed accounted for
//! by task id, so that conservation (invariant 1) still holds for every task that stays.

use std::collections::BTreeSet;

use switchyard_core::admin::Purge;
use switchyard_core::prelude::*;
use switchyard_core::{Policy, TaskId, TaskState};

use super::runner::fatal;
use super::{Op, Runner, queue_name};

/// The states a finished task is in (what deleting or purging finished tasks removes).
const FINISHED: [TaskState; 4] = [
    TaskState::Succeeded,
    TaskState::Dead,
    TaskState::Cancelled,
    TaskState::Expired,
];

impl<B: Backend> Runner<B> {
    pub(super) async fn apply_admin(&mut self, op: &Op) -> Result<String, String> {
        match op {
            Op::DeleteTask { pick } => {
                if self.accepted.is_empty() {
                    return Ok("delete: nothing yet".to_string());
                }
                let id = self.accepted[pick % self.accepted.len()];
                let label = format!("delete {id}");
                match self.backend.delete_task(id).await {
                    Ok(()) => {
                        self.forget_removed(1, &FINISHED)
                            .await
                            .map_err(|e| format!("{label}: {e}"))?;
                        Ok(format!("{label} -> deleted"))
                    }
                    Err(e) if fatal(&e) => Err(format!("{label}: backend failed: {e}")),
                    Err(e) => Ok(format!("{label} -> error: {e}")),
                }
            }
            Op::PurgeQueue { queue, what, limit } => {
                let label = format!("purge q{queue} {} {limit}", what.name());
                let waiting = self.waiting_in(*queue);
                match self
                    .backend
                    .purge_queue(&queue_name(*queue), *what, *limit)
                    .await
                {
                    Ok(report) => {
                        if report.removed > *limit as u64 {
                            return Err(format!("{label}: removed {} > limit", report.removed));
                        }
                        match what {
                            Purge::Waiting => self.check_cancelled(&waiting, report.removed).await,
                            Purge::Dead => {
                                self.forget_removed(report.removed, &[TaskState::Dead])
                                    .await
                            }
                            Purge::Finished => self.forget_removed(report.removed, &FINISHED).await,
                        }
                        .map_err(|e| format!("{label}: {e}"))?;
                        Ok(format!("{label} -> {report:?}"))
                    }
                    Err(e) if fatal(&e) => Err(format!("{label}: backend failed: {e}")),
                    Err(e) => Ok(format!("{label} -> error: {e}")),
                }
            }
            Op::Reconfigure {
                queue,
                config,
                keep_shape,
            } => {
                let mut config = *config;
                if *keep_shape {
                    let current = self.configs.get(*queue).ok_or("queue index")?;
                    // Expiry turned on or off (or left) at random on an EDF queue.
                    config.expire_late =
                        current.policy == Policy::EarliestDeadlineFirst && config.seed % 2 == 0;
                    config.policy = current.policy;
                    config.strategy = current.strategy;
                    config.seed = current.seed;
                }
                let label = format!("reconfigure q{queue} {config:?}");
                match self
                    .backend
                    .reconfigure_queue(&queue_name(*queue), config)
                    .await
                {
                    Ok(changed) => {
                        let stored = self
                            .backend
                            .queue_config(&queue_name(*queue))
                            .await
                            .map_err(|e| format!("{label}: {e}"))?;
                        if stored != Some(config) {
                            return Err(format!("{label}: the backend keeps {stored:?}"));
                        }
                        if let Some(c) = self.configs.get_mut(*queue) {
                            // A rate limit with a new window counts from an empty one.
                            if c.rate.map(|r| r.per_ms) != config.rate.map(|r| r.per_ms) {
                                self.dispatch_times.remove(&queue_name(*queue));
                            }
                            *c = config;
                        }
                        Ok(format!("{label} -> {changed}"))
                    }
                    Err(e) if fatal(&e) => Err(format!("{label}: backend failed: {e}")),
                    Err(e) => Ok(format!("{label} -> error: {e}")),
                }
            }
            Op::DeleteQueue { queue } => {
                let name = queue_name(*queue);
                let label = format!("delete queue q{queue}");
                match self.backend.delete_queue(&name).await {
                    Ok(()) => {
                        if self.accepted_in(*queue) > 0 {
                            return Err(format!("{label}: deleted while it held tasks"));
                        }
                        let config = *self.configs.get(*queue).ok_or("queue index")?;
                        self.backend
                            .declare_queue(&name, config)
                            .await
                            .map_err(|e| format!("{label}: declaring it again: {e}"))?;
                        Ok(format!("{label} -> deleted, declared again"))
                    }
                    Err(e) if fatal(&e) => Err(format!("{label}: backend failed: {e}")),
                    Err(e) => Ok(format!("{label} -> error: {e}")),
                }
            }
            other => Err(format!("not an administration step: {other:?}")),
        }
    }

    /// Accepted tasks of queue `i` that were ready, scheduled or retry-scheduled after the
    /// last step.
    fn waiting_in(&self, i: usize) -> BTreeSet<TaskId> {
        let name = queue_name(i);
        self.accepted
            .iter()
            .filter(|id| {
                self.specs.get(id).is_some_and(|s| s.queue() == &name)
                    && self.states.get(id).is_some_and(|(st, _, _)| {
                        matches!(
                            st,
                            TaskState::Ready | TaskState::Scheduled | TaskState::RetryScheduled
                        )
                    })
            })
            .copied()
            .collect()
    }

    fn accepted_in(&self, i: usize) -> usize {
        let name = queue_name(i);
        self.accepted
            .iter()
            .filter(|id| self.specs.get(id).is_some_and(|s| s.queue() == &name))
            .count()
    }

    /// After a waiting purge: exactly `removed` of the `waiting` tasks are cancelled now.
    async fn check_cancelled(
        &self,
        waiting: &BTreeSet<TaskId>,
        removed: u64,
    ) -> Result<(), String> {
        let mut cancelled = 0;
        for id in waiting {
            let info = self
                .backend
                .get_task(*id)
                .await
                .map_err(|e| e.to_string())?;
            if info.is_some_and(|t| t.state == TaskState::Cancelled) {
                cancelled += 1;
            }
        }
        if cancelled != removed {
            return Err(format!(
                "reported {removed} cancelled, {cancelled} waiting tasks are"
            ));
        }
        Ok(())
    }

    /// After a deletion (or maintenance's purge: retention by count): the accepted tasks without a record are exactly `removed`, each was
    /// in one of `allowed` after the last step; they leave the runner's books.
    pub(super) async fn forget_removed(
        &mut self,
        removed: u64,
        allowed: &[TaskState],
    ) -> Result<(), String> {
        let mut gone = BTreeSet::new();
        for id in &self.accepted {
            if self
                .backend
                .get_task(*id)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                let before = self.states.get(id).map(|(st, _, _)| *st);
                if !before.is_some_and(|st| allowed.contains(&st)) {
                    return Err(format!("{id} was deleted, but it was {before:?}"));
                }
                gone.insert(*id);
            }
        }
        if gone.len() as u64 != removed {
            return Err(format!(
                "reported {removed} deleted, {} records are gone",
                gone.len()
            ));
        }
        self.accepted.retain(|id| !gone.contains(id));
        Ok(())
    }
}
