//! Fair share between group keys, and the ready set every dispatch reads through: a queue's
//! ready tasks enter and leave by the helpers here (`ready_insert`, `ready_remove`,
//! `ready_rekey`, `ready_head`, `ready_take`), which keep a shared queue's groups (the rule:
//! `switchyard_core::flow::groups`) beside its ready set.
//!
//! Lua twin: lua/lib/groups.lua (the `GROUP` table), group_weight.lua, group_info.lua.

use std::collections::{BTreeMap, VecDeque};

use switchyard_core::flow::concurrency::held;
use switchyard_core::flow::groups::{
    DEFAULT_GROUP, GroupInfo, GroupLimits, GroupShare, not_shared, turn_length, validate_key,
    validate_weight,
};
use switchyard_core::{Millis, QueueName, Result, TaskId};

use super::rate::Rate;
use super::{State, internal};

mod limits;
mod waiting;

/// A position in a ready set: `(sort key, sequence number)`.
type Pos = (i64, u64);

/// The groups of a queue shared between groups.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    /// The ready tasks of each group with any, in the queue's policy order (the same entries
    /// as the queue's ready set).
    ready: BTreeMap<String, BTreeMap<Pos, TaskId>>,
    /// The open groups with ready tasks, in the order they joined (rule 2); the head has the
    /// turn.
    ring: VecDeque<String>,
    /// Dispatches left in the head group's turn; 0: its turn has not begun (rule 3).
    left: u32,
    /// Active (dispatched or running) tasks of each group with any.
    active: BTreeMap<String, u32>,
    /// Weights set by `set_group_weight` (1 for the others).
    weights: BTreeMap<String, u32>,
    /// Each group's rate window and hold, and its mark (`Rate::wake`: closed until then,
    /// rule 1), for the groups with any.
    rates: BTreeMap<String, Rate>,
    /// Limits set by `set_group_limits` in place of the queue's.
    overrides: BTreeMap<String, GroupLimits>,
    /// Scheduled and retry-scheduled tasks of each group with any (groups/waiting.rs).
    delayed: BTreeMap<String, u64>,
}

impl Groups {
    fn active(&self, group: &str) -> u32 {
        self.active.get(group).copied().unwrap_or(0)
    }

    fn has_ready(&self, group: &str) -> bool {
        self.ready.get(group).is_some_and(|r| !r.is_empty())
    }

    /// Rule 1: below its concurrency limit, and not marked.
    fn open(&self, group: &str, share: GroupShare) -> bool {
        self.below_limit(group, share) && !self.marked(group)
    }

    /// Takes `group` out of the ring (it has no ready task or was closed); the head loses the
    /// rest of its turn. A dispatch only ever takes out the head, or the tail it just sent
    /// there (O(1)); a cancel or a new limit may take one from the middle.
    fn leave_ring(&mut self, group: &str) {
        if self.ring.front().is_some_and(|g| g == group) {
            self.ring.pop_front();
            self.left = 0;
        } else if self.ring.back().is_some_and(|g| g == group) {
            self.ring.pop_back();
        } else if let Some(i) = self.ring.iter().position(|g| g == group) {
            self.ring.remove(i);
        }
    }

    fn insert(&mut self, group: &str, pos: Pos, id: TaskId, share: GroupShare) {
        let joins = !self.has_ready(group) && self.open(group, share);
        self.ready
            .entry(group.to_owned())
            .or_default()
            .insert(pos, id);
        if joins {
            self.ring.push_back(group.to_owned());
        }
    }

    fn remove(&mut self, group: &str, pos: &Pos) {
        let Some(r) = self.ready.get_mut(group) else {
            return;
        };
        r.remove(pos);
        if r.is_empty() {
            self.ready.remove(group);
            self.leave_ring(group);
        }
    }

    /// The next task: the minimum of the head group (rule 3).
    fn head(&self) -> Option<(Pos, TaskId)> {
        let group = self.ring.front()?;
        self.ready
            .get(group)?
            .first_key_value()
            .map(|(p, id)| (*p, *id))
    }

    /// Takes the next task out of its group and counts it against the head's turn; a turn
    /// used up sends the head to the tail.
    fn take(&mut self) -> Option<(Pos, TaskId)> {
        let group = self.ring.front()?.clone();
        let (pos, id) = self.ready.get_mut(&group)?.pop_first()?;
        if self.left == 0 {
            self.left = turn_length(self.weights.get(&group).copied());
        }
        self.left -= 1;
        if !self.has_ready(&group) {
            self.ready.remove(&group);
            self.leave_ring(&group);
        } else if self.left == 0 {
            self.ring.rotate_left(1);
        }
        Some((pos, id))
    }

    /// Counts a task of `group` in (`up`) or out of its active tasks; a group closed by its
    /// limit leaves the ring, one opened (and not marked) with ready tasks joins it (rule 1,
    /// 2).
    fn count(&mut self, group: &str, up: bool, share: GroupShare) {
        let limit = self.limits(group, share).concurrency;
        let before = self.active(group);
        let after = if up {
            before.saturating_add(1)
        } else {
            before.saturating_sub(1)
        };
        if after == 0 {
            self.active.remove(group);
        } else {
            self.active.insert(group.to_owned(), after);
        }
        let (was, is) = (held(before, limit), held(after, limit));
        if is && !was {
            self.leave_ring(group);
        } else if was && !is && self.has_ready(group) && !self.marked(group) {
            self.ring.push_back(group.to_owned());
        }
    }
}

impl State {
    /// The group of task `id` in a shared queue (`""` without a key).
    fn group_of(&self, id: TaskId) -> Result<String> {
        let t = self
            .tasks
            .get(&id)
            .ok_or_else(|| internal("task record missing"))?;
        Ok(t.group.clone().unwrap_or_else(|| DEFAULT_GROUP.to_owned()))
    }

    /// Puts task `id` into `queue`'s ready set at `pos` (and its group: rule 2).
    pub(super) fn ready_insert(&mut self, queue: &QueueName, pos: Pos, id: TaskId) -> Result<()> {
        let group = match self.queue(queue)?.groups {
            Some(_) => Some(self.group_of(id)?),
            None => None,
        };
        let q = self.queue_mut(queue)?;
        q.ready.insert(pos, id);
        let share = q.config.groups.unwrap_or_default();
        if let (Some(groups), Some(group)) = (q.groups.as_mut(), group) {
            groups.insert(&group, pos, id, share);
        }
        Ok(())
    }

    /// Takes task `id` (at `pos`) out of `queue`'s ready set (and its group).
    pub(super) fn ready_remove(&mut self, queue: &QueueName, pos: Pos, id: TaskId) -> Result<()> {
        let group = match self.queue(queue)?.groups {
            Some(_) => Some(self.group_of(id)?),
            None => None,
        };
        let q = self.queue_mut(queue)?;
        q.ready.remove(&pos);
        if let (Some(groups), Some(group)) = (q.groups.as_mut(), group) {
            groups.remove(&group, &pos);
        }
        Ok(())
    }

    /// Moves task `id` from `from` to `to` in `queue`'s ready order (a changed priority); its
    /// group keeps its place in the ring.
    pub(super) fn ready_rekey(
        &mut self,
        queue: &QueueName,
        from: Pos,
        to: Pos,
        id: TaskId,
    ) -> Result<()> {
        let group = match self.queue(queue)?.groups {
            Some(_) => Some(self.group_of(id)?),
            None => None,
        };
        let q = self.queue_mut(queue)?;
        q.ready.remove(&from);
        q.ready.insert(to, id);
        if let (Some(groups), Some(group)) = (q.groups.as_mut(), group)
            && let Some(r) = groups.ready.get_mut(&group)
        {
            r.remove(&from);
            r.insert(to, id);
        }
        Ok(())
    }

    /// The task `queue` dispatches next, if any: its ready minimum, or in a shared queue the
    /// minimum of the group whose turn it is (rule 3). None when every group with ready tasks
    /// is at its limit.
    pub(crate) fn ready_head(&self, queue: &QueueName) -> Result<Option<(Pos, TaskId)>> {
        let q = self.queue(queue)?;
        Ok(match &q.groups {
            Some(groups) => groups.head(),
            None => q.ready.first_key_value().map(|(p, id)| (*p, *id)),
        })
    }

    /// Takes the task [`ready_head`](Self::ready_head) names out of the ready set, counting it
    /// against its group's turn.
    pub(super) fn ready_take(&mut self, queue: &QueueName) -> Result<Option<TaskId>> {
        let q = self.queue_mut(queue)?;
        let taken = match q.groups.as_mut() {
            Some(groups) => groups.take(),
            None => q.ready.pop_first(),
        };
        if let Some((pos, _)) = taken {
            q.ready.remove(&pos);
        }
        Ok(taken.map(|(_, id)| id))
    }

    /// A shared queue whose ring is empty, and task `id`'s group open: the task would be the
    /// next to go the moment it joined its group (rule 3), so it may be dispatched on arrival
    /// without entering the ready set (the result is the same).
    pub(super) fn first_in_line(&self, queue: &QueueName, id: TaskId) -> Result<bool> {
        let q = self.queue(queue)?;
        let Some(groups) = &q.groups else {
            return Ok(false);
        };
        let share = q.config.groups.unwrap_or_default();
        Ok(groups.ring.is_empty() && groups.open(&self.group_of(id)?, share))
    }

    /// Counts task `id` in (`up`) or out of its group's active tasks (a shared queue).
    pub(super) fn count_group(&mut self, queue: &QueueName, id: TaskId, up: bool) -> Result<()> {
        if self.queue(queue)?.groups.is_none() {
            return Ok(());
        }
        let group = self.group_of(id)?;
        let q = self.queue_mut(queue)?;
        let share = q.config.groups.unwrap_or_default();
        if let Some(groups) = q.groups.as_mut() {
            groups.count(&group, up, share);
        }
        Ok(())
    }

    /// Reconfigure changed `queue`'s sharing from `old`: turned on or off (with nothing
    /// waiting or active, which reconfigure checked) the groups start afresh or go. Otherwise a new
    /// rate window (or none) starts afresh the log of each group without its own rate limit; each group with a window or a mark
    /// is marked again, by key, as now configured; then the groups no longer open leave the
    /// ring and the open ones with ready tasks out of it join at the tail, by key.
    pub(super) fn groups_reconfigured(
        &mut self,
        queue: &QueueName,
        old: Option<GroupShare>,
        now: Millis,
    ) -> Result<()> {
        let q = self.queue_mut(queue)?;
        let new = q.config.groups;
        if old.is_some() != new.is_some() {
            q.groups = new.map(|_| Groups::default());
            return Ok(());
        }
        let share = new.unwrap_or_default();
        let Some(groups) = q.groups.as_mut() else {
            return Ok(());
        };
        let window = |s: Option<GroupShare>| s.and_then(|g| g.rate).map(|l| l.per_ms);
        if window(old) != window(new) {
            for (g, r) in groups.rates.iter_mut() {
                if groups.overrides.get(g).and_then(|o| o.rate).is_none() {
                    r.log.clear();
                }
            }
        }
        let rated: Vec<String> = groups.rates.keys().cloned().collect();
        for g in &rated {
            if let Some(r) = groups.rates.get_mut(g) {
                r.wake = None;
            }
            groups.mark(g, share, now);
        }
        let closed: Vec<String> = groups
            .ring
            .iter()
            .filter(|g| !groups.open(g, share))
            .cloned()
            .collect();
        for g in &closed {
            groups.leave_ring(g);
        }
        let opened: Vec<String> = groups
            .ready
            .keys()
            .filter(|g| groups.open(g, share) && !groups.ring.contains(g))
            .cloned()
            .collect();
        groups.ring.extend(opened);
        self.due_moved.notify_waiters();
        Ok(())
    }

    /// Refuses a step with a task that has a group key for a plain queue, before anything else
    /// is checked or stored (the Redis twin refuses it while it parses the step's tasks).
    pub(crate) fn check_groups(&self, step: &[switchyard_core::TaskSpec]) -> Result<()> {
        for spec in step.iter().filter(|s| s.group_key().is_some()) {
            if self.queue(spec.queue())?.config.groups.is_none() {
                return Err(not_shared(spec.queue()));
            }
        }
        Ok(())
    }

    /// Queues::set_group_weight.
    pub(crate) fn set_group_weight(
        &mut self,
        queue: &QueueName,
        key: &str,
        weight: u32,
    ) -> Result<()> {
        validate_weight(weight)?;
        validate_key(key)?;
        let groups = self.shared(queue)?;
        if weight == 1 {
            groups.weights.remove(key);
        } else {
            groups.weights.insert(key.to_owned(), weight);
        }
        Ok(())
    }

    /// Queues::groups.
    pub(crate) fn groups(&mut self, queue: &QueueName) -> Result<Vec<GroupInfo>> {
        let now = self.now;
        let share = self.queue(queue)?.config.groups.unwrap_or_default();
        let groups = self.shared(queue)?;
        let marked = groups
            .rates
            .iter()
            .filter(|(_, r)| r.wake.is_some())
            .map(|(g, _)| g);
        let mut keys: Vec<&String> = groups
            .ready
            .keys()
            .chain(groups.active.keys())
            .chain(groups.weights.keys())
            .chain(groups.overrides.keys())
            .chain(groups.delayed.keys())
            .chain(marked)
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys
            .into_iter()
            .map(|key| {
                let rate = groups.rates.get(key);
                GroupInfo {
                    key: key.clone(),
                    weight: turn_length(groups.weights.get(key).copied()),
                    ready: groups.ready.get(key).map_or(0, |r| r.len() as u64),
                    scheduled: groups.scheduled(key),
                    active: groups.active(key),
                    in_ring: groups.ring.contains(key),
                    tokens: groups
                        .limits(key, share)
                        .rate
                        .map(|l| rate.map_or(l.max, |r| r.tokens(Some(l), now))),
                    closed_until: rate.and_then(|r| r.wake),
                    limits: groups.overrides.get(key).copied().unwrap_or_default(),
                }
            })
            .collect())
    }

    /// The groups of `queue`, or the error a plain queue answers.
    fn shared(&mut self, queue: &QueueName) -> Result<&mut Groups> {
        self.queue_mut(queue)?
            .groups
            .as_mut()
            .ok_or_else(|| not_shared(queue))
    }

    /// The audit of the shared queues' groups: each group's entries are its tasks in the ready
    /// set, the ring holds exactly the open groups with ready tasks (each once), the active
    /// counts match the records, the scheduled counts the delayed set.
    pub(crate) fn audit_groups(&self) -> std::result::Result<(), String> {
        for (qn, q) in &self.queues {
            let Some(groups) = &q.groups else { continue };
            let share = q.config.groups.unwrap_or_default();
            let in_groups: usize = groups.ready.values().map(BTreeMap::len).sum();
            if in_groups != q.ready.len() {
                return Err(format!(
                    "{qn}: its groups hold {in_groups} ready tasks, its ready set {}",
                    q.ready.len()
                ));
            }
            for (g, r) in &groups.ready {
                for (pos, id) in r {
                    if q.ready.get(pos) != Some(id) || self.group_of(*id).ok().as_ref() != Some(g) {
                        return Err(format!("{qn}: group {g:?} lists {id}, not its ready task"));
                    }
                }
            }
            let mut expected: Vec<&String> = groups
                .ready
                .iter()
                .filter(|(g, r)| !r.is_empty() && groups.open(g, share))
                .map(|(g, _)| g)
                .collect();
            let mut ring: Vec<&String> = groups.ring.iter().collect();
            expected.sort();
            ring.sort();
            if expected != ring {
                return Err(format!(
                    "{qn}: the ring holds {ring:?}, the open groups with ready tasks are {expected:?}"
                ));
            }
            let mut counted: BTreeMap<String, u32> = BTreeMap::new();
            for t in self.tasks.values() {
                if &t.queue == qn && t.state.is_leased() {
                    *counted
                        .entry(t.group.clone().unwrap_or_default())
                        .or_default() += 1;
                }
            }
            if counted != groups.active {
                return Err(format!(
                    "{qn}: groups count {:?} active, the records say {counted:?}",
                    groups.active
                ));
            }
            self.audit_delayed(qn, groups)?;
        }
        Ok(())
    }
}
