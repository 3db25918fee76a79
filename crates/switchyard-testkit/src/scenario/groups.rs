//! Queues shared between groups in a scenario (`switchyard_core::flow::groups`): the weight
//! and own-limits steps ([`Op::SetGroupWeight`], [`Op::SetGroupLimits`]) and the per-group
//! limit invariant. The ring's order itself is
//! what the two backends must agree on step by step (their traces and snapshots, which carry
//! each shared queue's groups); work conservation and the order invariant see a shared queue
//! through its groups (`invariants.rs`).

use std::collections::BTreeMap;

use switchyard_core::TaskId;
use switchyard_core::prelude::*;

use super::runner::fatal;
use super::snapshot::Snapshot;
use super::{Op, Runner, queue_name};

impl<B: Backend> Runner<B> {
    pub(super) async fn apply_groups(&mut self, op: &Op) -> Result<String, String> {
        match op {
            Op::SetGroupWeight {
                queue,
                group,
                weight,
            } => {
                let label = format!("weight q{queue} g{group} {weight}");
                match self
                    .backend
                    .set_group_weight(&queue_name(*queue), &format!("g{group}"), *weight)
                    .await
                {
                    Ok(()) => Ok(format!("{label} -> set")),
                    Err(e) if fatal(&e) => Err(format!("{label}: backend failed: {e}")),
                    Err(e) => Ok(format!("{label} -> error: {e}")),
                }
            }
            Op::SetGroupLimits {
                queue,
                group,
                limits,
            } => {
                let label = format!("limits q{queue} g{group} {limits:?}");
                match self
                    .backend
                    .set_group_limits(&queue_name(*queue), &format!("g{group}"), *limits)
                    .await
                {
                    Ok(()) => Ok(format!("{label} -> set")),
                    Err(e) if fatal(&e) => Err(format!("{label}: backend failed: {e}")),
                    Err(e) => Ok(format!("{label} -> error: {e}")),
                }
            }
            other => Err(format!("not a group step: {other:?}")),
        }
    }

    /// Per-group concurrency limits (the group's own, or the queue's): no task of a group
    /// became active in this step while more than the limit of its group are active (more can
    /// be active only after the limit was lowered).
    pub(super) fn within_group_limits(&self, snap: &Snapshot) -> Result<(), String> {
        for (i, config) in self.configs.iter().enumerate() {
            let Some(share) = config.groups else {
                continue;
            };
            let own: BTreeMap<&str, Option<u32>> = snap
                .groups
                .get(i)
                .and_then(Option::as_ref)
                .into_iter()
                .flatten()
                .map(|g| (g.key.as_str(), g.limits.over(share).concurrency))
                .collect();
            let name = queue_name(i);
            let mut active: BTreeMap<String, Vec<TaskId>> = BTreeMap::new();
            for t in snap.tasks.iter().flatten() {
                if t.queue == name && t.state.is_leased() {
                    let group = t.group_key.clone().unwrap_or_default();
                    active.entry(group).or_default().push(t.id);
                }
            }
            for (group, ids) in active {
                let limit = own
                    .get(group.as_str())
                    .copied()
                    .unwrap_or(share.concurrency);
                let Some(limit) = limit else {
                    continue;
                };
                if ids.len() <= limit as usize {
                    continue;
                }
                if let Some(id) = ids.iter().find(|id| {
                    !self
                        .states
                        .get(*id)
                        .is_some_and(|(st, _, _)| st.is_leased())
                }) {
                    return Err(format!(
                        "{name} group {group:?} has {} active tasks, over its limit of {limit}, and {id} became active in this step",
                        ids.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Bounds per group: each group's waiting tasks (ready, scheduled, retry-scheduled) are
    /// what the backend's `groups` says, and no task of a group entered in this step (was
    /// submitted or ticked) while the group holds more than its bound (more can wait only
    /// after the bound was lowered, or by tasks that came back).
    pub(super) fn within_group_bounds(&self, snap: &Snapshot) -> Result<(), String> {
        for (i, config) in self.configs.iter().enumerate() {
            let Some(infos) = snap.groups.get(i).and_then(Option::as_ref) else {
                continue;
            };
            let name = queue_name(i);
            let mut waiting: BTreeMap<String, Vec<TaskId>> = BTreeMap::new();
            for t in snap.tasks.iter().flatten() {
                if t.queue == name && t.state.is_waiting() {
                    let group = t.group_key.clone().unwrap_or_default();
                    waiting.entry(group).or_default().push(t.id);
                }
            }
            for g in infos {
                let n = waiting.get(&g.key).map_or(0, Vec::len) as u64;
                if g.ready + g.scheduled != n {
                    return Err(format!(
                        "{name} group {:?}: the backend counts {} ready and {} scheduled, the records {n} waiting",
                        g.key, g.ready, g.scheduled
                    ));
                }
            }
            let Some(bound) = config.groups.and_then(|g| g.max_waiting) else {
                continue;
            };
            for (group, ids) in waiting {
                if ids.len() <= bound as usize {
                    continue;
                }
                if let Some(id) = ids.iter().find(|id| !self.states.contains_key(*id)) {
                    return Err(format!(
                        "{name} group {group:?} has {} waiting tasks, over its bound of {bound}, and {id} entered in this step",
                        ids.len()
                    ));
                }
            }
        }
        Ok(())
    }
}
