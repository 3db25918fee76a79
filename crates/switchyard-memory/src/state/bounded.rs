//! Bounded queues and bounded groups: the room check of a submit step (the rule:
//! `switchyard_core::flow::bounded`).
//!
//! Lua twin: lua/lib/bounded.lua.

use std::collections::{BTreeMap, HashMap, HashSet};

use switchyard_core::flow::bounded::{Remaining, check, check_group, group_of};
use switchyard_core::{Millis, QueueName, Result, TaskSpec};

use super::State;

impl State {
    /// Refuses the submit step `step` if a bounded queue it carries tasks to lacks room,
    /// before anything is stored: for the batch's tasks to it from this step on (`rest`, empty
    /// when the batch takes one step), then for the step's new tasks; then, in a queue with a
    /// bound per group, each group `Remaining::groups_to_check` names, by key, the same way.
    pub(crate) fn check_room(
        &self,
        step: &[TaskSpec],
        rest: &Remaining,
        now: Millis,
    ) -> Result<()> {
        let mut queues: Vec<&QueueName> = Vec::new();
        for spec in step {
            if !queues.contains(&spec.queue()) {
                queues.push(spec.queue());
            }
        }
        let bounded = |name: &QueueName| {
            self.queues.get(name).is_some_and(|q| {
                q.config.max_waiting.is_some()
                    || q.config.groups.and_then(|g| g.max_waiting).is_some()
            })
        };
        if !queues.iter().any(|q| bounded(q)) {
            return Ok(());
        }
        // The tasks the step would store: as `submit` decides, id first, then dedup key.
        let mut new: HashMap<&QueueName, u64> = HashMap::new();
        let mut new_in: HashMap<&QueueName, BTreeMap<&str, u64>> = HashMap::new();
        let (mut ids, mut keys) = (HashSet::new(), HashSet::new());
        for spec in step {
            if self.tasks.contains_key(&spec.id()) || ids.contains(&spec.id()) {
                continue;
            }
            if let Some(key) = spec.dedup_key() {
                let config = &self.queue(spec.queue())?.config;
                let held = if keys.contains(&(spec.queue(), key)) {
                    // Claimed earlier in the step: held unless the window is 0 (it expires at
                    // once). Under debounce a later submit may still create a task, but only
                    // once the one before has left the waiting tasks: one more at most.
                    config.dedup_window_ms > 0
                } else {
                    // Held by a task that answers the submit (throttle) or takes it (debounce).
                    self.dedup_holder(spec.queue(), key, now)
                        .is_some_and(|holder| {
                            let state = self.tasks.get(&holder).map(|t| t.state);
                            !config.dedup_mode.creates(state)
                        })
                };
                if held {
                    continue;
                }
                keys.insert((spec.queue(), key));
            }
            ids.insert(spec.id());
            *new.entry(spec.queue()).or_default() += 1;
            *new_in
                .entry(spec.queue())
                .or_default()
                .entry(group_of(spec))
                .or_default() += 1;
        }
        for name in queues {
            let q = self.queue(name)?;
            let bound = q.config.max_waiting;
            let waiting = (q.ready.len() + q.delayed.len()) as u64;
            check(name, bound, waiting, rest.queue(name))?;
            check(name, bound, waiting, new.get(name).copied().unwrap_or(0))?;
            let (Some(groups), Some(bound)) =
                (&q.groups, q.config.groups.and_then(|g| g.max_waiting))
            else {
                continue;
            };
            // The groups the step names (each task's, new or not), and at a batch's first step
            // those its later steps carry tasks to, by key.
            let new_here = new_in.get(name);
            for (group, whole) in rest.groups_to_check(name, step) {
                let waiting = groups.waiting(group);
                let adding = new_here.and_then(|n| n.get(group)).copied().unwrap_or(0);
                check_group(name, group, Some(bound), waiting, whole)?;
                check_group(name, group, Some(bound), waiting, adding)?;
            }
        }
        Ok(())
    }
}
