//! Wide flows (`switchyard_core::tree`, rule 6): staged in steps of at most `FLOW_STEP` tasks,
//! committed by the step with the root, then made seen by maintenance one step a round.
//!
//! Lua twin: the stage and commit modes of lua/submit_flow.lua, the `s` and `x` entries of
//! lua/settle.lua.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use switchyard_core::flow::bounded::{check, check_group, group_of};
use switchyard_core::tree::{
    FlatNode, STAGE_TTL_MS, Settle, children_of, first_named, flow_taken, settle_entry,
};
use switchyard_core::{
    Assignment, EventKind, Millis, QueueName, Result, SubmitOutcome, TaskId, TaskOutcome, TaskState,
};

use super::super::State;
use super::Family;

/// A wide flow's steps, by root: the ids of each step, and the next to make seen.
#[derive(Debug, Default)]
pub(crate) struct Staging {
    pub(crate) steps: Vec<Vec<TaskId>>,
    pub(crate) next: usize,
}

impl State {
    /// A task anyone may see: not a staged one (rule 6).
    pub(crate) fn seen(&self, id: TaskId) -> Option<&super::super::Task> {
        self.tasks.get(&id).map(|t| &**t).filter(|t| !t.staged)
    }

    /// The checks a step makes before it stores anything: its queues, its group keys, a root
    /// that exists (the flow's duplicate, answered), its ids (a staged one is stored again).
    fn check_step(
        &self,
        nodes: &[FlatNode],
        step: Range<usize>,
        queues: &[&QueueName],
    ) -> Result<Option<SubmitOutcome>> {
        for q in queues {
            self.queue(q)?;
        }
        for n in &nodes[step.clone()] {
            if n.spec.group_key().is_some() && self.queue(n.spec.queue())?.config.groups.is_none() {
                return Err(switchyard_core::flow::groups::not_shared(n.spec.queue()));
            }
        }
        // The root exists only once the flow is committed: a duplicate (seen or not yet).
        let root = &nodes[0].spec;
        if let Some(t) = self.tasks.get(&root.id()) {
            let state = (!t.staged).then_some(t.state);
            // Only the commit step carries the root (a staging step names it by id).
            let differs = step.start == 0 && t.payload != root.payload();
            return Ok(Some(SubmitOutcome::duplicate_of(
                t.id, state, differs, false, None,
            )));
        }
        if let Some(n) = nodes[step]
            .iter()
            .find(|n| self.tasks.get(&n.spec.id()).is_some_and(|t| !t.staged))
        {
            return Err(flow_taken(n.spec.id()));
        }
        Ok(None)
    }

    /// Stores the tasks of `step` staged; answers their ids.
    fn store_staged(
        &mut self,
        nodes: &[FlatNode],
        step: Range<usize>,
        now: Millis,
    ) -> Result<Vec<TaskId>> {
        let kids = children_of(nodes);
        let mut ids = Vec::with_capacity(step.len());
        for i in step {
            let n = &nodes[i];
            let config = self.queue(n.spec.queue())?.config;
            let mut task = self.new_task(&n.spec, &config, now);
            task.parent = n.parent.map(|p| (nodes[p].spec.id(), n.on_failure));
            task.state = TaskState::WaitingChildren;
            task.staged = true;
            if !kids[i].is_empty() {
                task.family = Some(Box::new(Family {
                    open: kids[i].len(),
                    children: kids[i]
                        .iter()
                        .map(|&c| (nodes[c].spec.id(), nodes[c].on_failure))
                        .collect(),
                    ends: HashMap::new(),
                }));
            }
            ids.push(task.id);
            self.tasks.insert(task.id, Box::new(task));
        }
        Ok(ids)
    }

    /// A later step of a wide flow (`step` is its place among the steps, from 1): staged, and
    /// deleted at `now + STAGE_TTL_MS` unless committed. A root that exists answers the flow.
    pub(crate) fn stage_flow(
        &mut self,
        nodes: &[FlatNode],
        step: Range<usize>,
        index: usize,
        now: Millis,
    ) -> Result<Option<SubmitOutcome>> {
        // The root's queue first, then the step's (as the Redis call names them).
        let named = std::iter::once(nodes[0].spec.queue())
            .chain(nodes[step.clone()].iter().map(|n| n.spec.queue()));
        if let Some(dup) = self.check_step(nodes, step.clone(), &first_named(named))? {
            return Ok(Some(dup));
        }
        let ids = self.store_staged(nodes, step, now)?;
        let root = &nodes[0].spec;
        let staging = self.staging.entry(root.id()).or_default();
        if staging.steps.len() <= index {
            staging.steps.resize(index + 1, Vec::new());
        }
        staging.steps[index] = ids;
        let entry = settle_entry(root.queue().as_str(), root.id(), Settle::Expire);
        self.settle_add_at(entry, now.saturating_add(STAGE_TTL_MS));
        Ok(None)
    }

    /// The first step of a wide flow, with its root: checks the room of every leaf of the
    /// flow, stores the step staged, and commits the flow (a materialize entry).
    pub(crate) fn commit_flow(
        &mut self,
        nodes: &[FlatNode],
        first: Range<usize>,
        now: Millis,
    ) -> Result<Vec<SubmitOutcome>> {
        // The queues the leaves enter first, in the order they first name them, then the rest.
        let leaves = nodes
            .iter()
            .filter(|n| n.children == 0)
            .map(|n| n.spec.queue());
        let named = leaves.chain(nodes.iter().map(|n| n.spec.queue()));
        if let Some(dup) = self.check_step(nodes, first.clone(), &first_named(named))? {
            return Ok(vec![dup]);
        }
        self.check_flow_room(nodes, first.clone())?;
        let ids = self.store_staged(nodes, first, now)?;
        let root = &nodes[0].spec;
        let staging = self.staging.entry(root.id()).or_default();
        if staging.steps.is_empty() {
            staging.steps.push(Vec::new());
        }
        staging.steps[0] = ids;
        staging.next = 0;
        self.settle_add(
            settle_entry(root.queue().as_str(), root.id(), Settle::Materialize),
            now,
        );
        Ok(nodes
            .iter()
            .map(|n| SubmitOutcome::new(n.spec.id(), None, false, None))
            .collect())
    }

    /// The room check of a wide flow's commit: each queue its leaves enter, in the order they
    /// first name them, for all its leaves and then the first step's; then each of its groups
    /// by key, the same way.
    fn check_flow_room(&self, nodes: &[FlatNode], first: Range<usize>) -> Result<()> {
        let mut order: Vec<&QueueName> = Vec::new();
        let mut all: HashMap<&QueueName, (u64, BTreeMap<&str, u64>)> = HashMap::new();
        let mut now_: HashMap<&QueueName, (u64, BTreeMap<&str, u64>)> = HashMap::new();
        for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.children == 0) {
            let q = n.spec.queue();
            if !order.contains(&q) {
                order.push(q);
            }
            for counts in std::iter::once(&mut all).chain(first.contains(&i).then_some(&mut now_)) {
                let c = counts.entry(q).or_default();
                c.0 += 1;
                *c.1.entry(group_of(&n.spec)).or_default() += 1;
            }
        }
        for name in order {
            let q = self.queue(name)?;
            let waiting = (q.ready.len() + q.delayed.len()) as u64;
            let empty = (0, BTreeMap::new());
            let (whole, here) = (&all[name], now_.get(name).unwrap_or(&empty));
            check(name, q.config.max_waiting, waiting, whole.0)?;
            check(name, q.config.max_waiting, waiting, here.0)?;
            let (Some(groups), Some(bound)) =
                (&q.groups, q.config.groups.and_then(|g| g.max_waiting))
            else {
                continue;
            };
            for (group, n) in &whole.1 {
                let waiting = groups.waiting(group);
                check_group(name, group, Some(bound), waiting, *n)?;
                let adding = here.1.get(group).copied().unwrap_or(0);
                check_group(name, group, Some(bound), waiting, adding)?;
            }
        }
        Ok(())
    }

    /// Settle entry `s`: makes the next step of `root`'s flow seen, in pre-order: a task with
    /// children waits for them, a leaf enters its queue; either ends cancelled if its parent
    /// ended meanwhile. Writes the entry again while steps remain.
    pub(super) fn materialize(
        &mut self,
        root: TaskId,
        queue: &QueueName,
        now: Millis,
        assignments: &mut Vec<Assignment>,
    ) -> Result<()> {
        let Some(staging) = self.staging.get_mut(&root) else {
            return Ok(());
        };
        let Some(ids) = staging.steps.get(staging.next).cloned() else {
            self.staging.remove(&root);
            return Ok(());
        };
        staging.next += 1;
        let more = staging.next < staging.steps.len();
        for id in ids {
            let Some(t) = self.tasks.get_mut(&id).filter(|t| t.staged) else {
                continue;
            };
            t.staged = false;
            let (parent, has_children, created_at, run_at, q) = (
                t.parent.map(|(p, _)| p),
                t.family.is_some(),
                t.created_at,
                t.run_at,
                t.queue.clone(),
            );
            self.emit(EventKind::Submitted, id, None, None);
            let parent_waits = parent.is_none_or(|p| {
                self.seen(p)
                    .is_some_and(|p| p.state == TaskState::WaitingChildren)
            });
            if !parent_waits {
                self.emit(EventKind::Cancelled, id, None, None);
                self.finish(id, TaskState::Cancelled, TaskOutcome::Cancelled, now)?;
            } else if has_children {
                self.queue_mut(&q)?.parents.insert((created_at, id));
            } else {
                assignments.extend(self.enter_queue(id, run_at, now, false)?);
            }
        }
        if more {
            self.settle_add(settle_entry(queue.as_str(), root, Settle::Materialize), now);
        } else {
            self.staging.remove(&root);
        }
        Ok(())
    }

    /// Settle entry `x`: deletes the staged tasks of `root`'s flow unless it was committed.
    pub(super) fn expire_staging(&mut self, root: TaskId) {
        if self.tasks.contains_key(&root) {
            return;
        }
        if let Some(staging) = self.staging.remove(&root) {
            for id in staging.steps.into_iter().flatten() {
                if self.tasks.get(&id).is_some_and(|t| t.staged) {
                    self.tasks.remove(&id);
                }
            }
        }
    }

    /// Every staged task, for the audit.
    pub(crate) fn staged_ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.staging
            .values()
            .flat_map(|s| s.steps.iter().skip(s.next).flatten().copied())
            .filter(|id| self.tasks.get(id).is_some_and(|t| t.staged))
    }
}
