//! Flows: storing a tree of tasks, counting a child's end in its parent by the child's id,
//! and settling what those ends decide (the rules: `switchyard_core::tree`).
//!
//! Lua twin: lua/lib/flows.lua, lua/submit_flow.lua, lua/settle.lua, lua/children.lua.

use std::collections::HashMap;

use switchyard_core::flow::bounded::Remaining;
use switchyard_core::tree::{
    ChildResult, FlatNode, OnFailure, SETTLE_BATCH, Settle, child_failed_error, flow_taken,
    parse_settle_entry, settle_entry,
};
use switchyard_core::{
    Assignment, EventKind, Millis, Result, SubmitOutcome, TaskId, TaskOutcome, TaskState,
};

use super::{State, internal};

mod staging;

pub(crate) use staging::Staging;

/// What a task with children keeps of them.
#[derive(Debug, Default)]
pub(crate) struct Family {
    /// Its children, in the order submitted, with what their failure does to it.
    pub(crate) children: Vec<(TaskId, OnFailure)>,
    /// Each child's end as counted (rule 2): the first one only.
    pub(crate) ends: HashMap<TaskId, TaskOutcome>,
    /// How many children have no end counted.
    pub(crate) open: usize,
}

impl State {
    /// Rule 1: stores a flattened flow in pre-order, or nothing.
    pub(crate) fn submit_flow(
        &mut self,
        nodes: &[FlatNode],
        now: Millis,
    ) -> Result<Vec<SubmitOutcome>> {
        let root = nodes.first().ok_or_else(|| internal("empty flow"))?;
        for n in nodes {
            self.queue(n.spec.queue())?;
        }
        for n in nodes {
            if n.spec.group_key().is_some() && self.queue(n.spec.queue())?.config.groups.is_none() {
                return Err(switchyard_core::flow::groups::not_shared(n.spec.queue()));
            }
        }
        if let Some(t) = self.tasks.get(&root.spec.id()) {
            let differs = t.payload != root.spec.payload();
            return Ok(vec![SubmitOutcome::duplicate_of(
                t.id,
                Some(t.state),
                differs,
                false,
                None,
            )]);
        }
        if let Some(n) = nodes.iter().find(|n| self.tasks.contains_key(&n.spec.id())) {
            return Err(flow_taken(n.spec.id()));
        }
        let leaves: Vec<_> = nodes
            .iter()
            .filter(|n| n.children == 0)
            .map(|n| n.spec.clone())
            .collect();
        self.check_room(&leaves, &Remaining::default(), now)?;
        let mut kids: Vec<Vec<(TaskId, OnFailure)>> = vec![Vec::new(); nodes.len()];
        for n in nodes {
            if let Some(p) = n.parent {
                kids.get_mut(p)
                    .ok_or_else(|| internal("flow parent out of range"))?
                    .push((n.spec.id(), n.on_failure));
            }
        }
        let mut out = Vec::with_capacity(nodes.len());
        for (n, children) in nodes.iter().zip(kids) {
            let config = self.queue(n.spec.queue())?.config;
            let mut task = self.new_task(&n.spec, &config, now);
            let id = task.id;
            if let Some(p) = n.parent {
                task.parent = Some((nodes[p].spec.id(), n.on_failure));
            }
            let leaf = children.is_empty();
            if !leaf {
                task.state = TaskState::WaitingChildren;
                task.family = Some(Box::new(Family {
                    open: children.len(),
                    children,
                    ends: HashMap::new(),
                }));
            }
            let run_at = task.run_at;
            if !leaf {
                self.queue_mut(&task.queue)?.parents.insert((now, id));
            }
            self.tasks.insert(id, Box::new(task));
            self.emit(EventKind::Submitted, id, None, None);
            let assigned = if leaf {
                let dispatched = self.enter_queue(id, run_at, now, false)?;
                self.assigned_at_once(id, dispatched)
            } else {
                None
            };
            let state = self.tasks.get(&id).map(|t| t.state);
            out.push(SubmitOutcome::new(id, state, false, assigned));
        }
        Ok(out)
    }

    /// Rules 2 and 3: task `id` reached a terminal state with `outcome` (called by `finish`).
    pub(super) fn child_ended(&mut self, id: TaskId, outcome: &TaskOutcome, now: Millis) {
        let Some((parent, policy)) = self.tasks.get(&id).and_then(|t| t.parent) else {
            return;
        };
        let Some(p) = self.tasks.get_mut(&parent) else {
            return;
        };
        let Some(family) = p.family.as_mut() else {
            return;
        };
        if family.ends.contains_key(&id) {
            return;
        }
        family.ends.insert(id, outcome.clone());
        family.open -= 1;
        if p.state != TaskState::WaitingChildren {
            return;
        }
        let failed = !matches!(outcome, TaskOutcome::Succeeded(_));
        let what = match policy {
            OnFailure::FailParent if failed => Some(Settle::Fail(id)),
            OnFailure::Continue if failed => Some(Settle::Release),
            _ if family.open == 0 => Some(Settle::Release),
            _ => None,
        };
        if let Some(what) = what {
            let entry = settle_entry(p.queue.as_str(), parent, what);
            self.settle_add(entry, now);
        }
    }

    /// Writes a settle entry due now, unless the same entry is waiting already (it keeps its
    /// time: Redis' `ZADD NX`).
    fn settle_add(&mut self, entry: String, now: Millis) {
        self.settle_add_at(entry, now);
    }

    /// [`settle_add`](Self::settle_add), due at `at`.
    fn settle_add_at(&mut self, entry: String, at: Millis) {
        if self.settle_entries.insert(entry.clone()) {
            self.settle.insert((at, entry));
            self.due_moved.notify_waiters();
        }
    }

    /// A cancel entry for each child of `id` without an end, in child order (rules 4, 5).
    fn cancel_children(&mut self, id: TaskId, now: Millis) {
        let open: Vec<(String, TaskId)> = match self.tasks.get(&id).and_then(|t| t.family.as_ref())
        {
            Some(f) => f
                .children
                .iter()
                .filter(|(c, _)| !f.ends.contains_key(c))
                // A staged child is cancelled when it is made seen (rule 6).
                .filter_map(|(c, _)| self.seen(*c).map(|t| (t.queue.to_string(), *c)))
                .collect(),
            None => return,
        };
        for (queue, child) in open {
            self.settle_add(settle_entry(&queue, child, Settle::Cancel), now);
        }
    }

    /// Rule 5: cancels a task waiting for its children.
    pub(super) fn cancel_parent(&mut self, id: TaskId, now: Millis) -> Result<()> {
        self.emit(EventKind::Cancelled, id, None, None);
        self.finish(id, TaskState::Cancelled, TaskOutcome::Cancelled, now)?;
        self.cancel_children(id, now);
        Ok(())
    }

    /// Rule 4: carries out due settle entries, [`SETTLE_BATCH`] per round, at most `limit`;
    /// how many, and whether more are due.
    pub(crate) fn settle_due(
        &mut self,
        limit: usize,
        now: Millis,
        assignments: &mut Vec<Assignment>,
    ) -> Result<(usize, bool)> {
        let mut done = 0;
        loop {
            let round: Vec<(Millis, String)> = self
                .settle
                .iter()
                .take_while(|(at, _)| *at <= now)
                .take(SETTLE_BATCH.min(limit - done))
                .cloned()
                .collect();
            if round.is_empty() {
                return Ok((done, false));
            }
            for entry in round {
                if self.settle.remove(&entry) {
                    self.settle_entries.remove(&entry.1);
                    self.settle_one(&entry.1, now, assignments)?;
                    done += 1;
                }
            }
            if done == limit {
                let more = self.settle.first().is_some_and(|(at, _)| *at <= now);
                return Ok((done, more));
            }
        }
    }

    fn settle_one(
        &mut self,
        entry: &str,
        now: Millis,
        assignments: &mut Vec<Assignment>,
    ) -> Result<()> {
        let (queue_name, id, what) =
            parse_settle_entry(entry).ok_or_else(|| internal("unreadable settle entry"))?;
        match what {
            Settle::Materialize => {
                let queue = switchyard_core::QueueName::new(queue_name)?;
                return self.materialize(id, &queue, now, assignments);
            }
            Settle::Expire => {
                self.expire_staging(id);
                return Ok(());
            }
            _ => {}
        }
        let Some((state, queue)) = self.seen(id).map(|t| (t.state, t.queue.clone())) else {
            return Ok(());
        };
        match (what, state) {
            (Settle::Release, TaskState::WaitingChildren) => {
                let created_at = self.tasks.get(&id).map_or(0, |t| t.created_at);
                self.queue_mut(&queue)?.parents.remove(&(created_at, id));
                assignments.extend(self.enter_queue(id, None, now, false)?);
            }
            (Settle::Fail(child), TaskState::WaitingChildren) => {
                let error = child_failed_error(child);
                self.task_mut(id)?.last_error = Some(error.clone());
                self.emit(EventKind::Dead, id, None, Some(error.clone()));
                self.finish(id, TaskState::Dead, TaskOutcome::Dead(error), now)?;
                self.cancel_children(id, now);
            }
            (Settle::Cancel, TaskState::WaitingChildren) => self.cancel_parent(id, now)?,
            (Settle::Cancel, s) if s.is_waiting() => self.cancel_waiting(&queue, id, now)?,
            _ => {}
        }
        Ok(())
    }

    /// The first settle entry's due time.
    pub(super) fn next_settle(&self) -> Option<Millis> {
        self.settle.first().map(|(at, _)| *at)
    }

    /// The children of `id` with their ends as counted (`None`: no such task).
    pub(crate) fn children(&self, id: TaskId) -> Option<Vec<ChildResult>> {
        let t = self.seen(id)?;
        let Some(family) = &t.family else {
            return Some(Vec::new());
        };
        Some(
            family
                .children
                .iter()
                .map(|(c, policy)| {
                    ChildResult::new(
                        *c,
                        *policy,
                        family.ends.get(c).cloned(),
                        self.seen(*c).map(|t| t.state),
                    )
                })
                .collect(),
        )
    }
}
