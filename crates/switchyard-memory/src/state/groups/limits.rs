//! A group's rate window, holds and marks (rule 1 of `switchyard_core::flow::groups`: a group
//! marked closed until its next token or the end of a hold, taken up by maintenance), and its
//! own limits in place of the queue's (`set_group_limits`).
//!
//! Lua twin: lua/lib/group_limits.lua (`window`, `mark`, `GROUP.spend`, `GROUP.hold`,
//! `GROUP.wake_due`, `GROUP.set_limits`), lua/group_limits.lua.

use switchyard_core::flow::concurrency::held;
use switchyard_core::flow::groups::{GroupLimits, GroupShare, validate_key};
use switchyard_core::{Millis, QueueName, Result, TaskId};

use super::Groups;
use crate::state::{State, internal};

impl Groups {
    /// Whether `group` is marked closed by its rate limit or a hold.
    pub(super) fn marked(&self, group: &str) -> bool {
        self.rates.get(group).is_some_and(|r| r.wake.is_some())
    }

    /// The limits of `group` under the queue's `share`: its own where set.
    pub(super) fn limits(&self, group: &str, share: GroupShare) -> GroupShare {
        self.overrides
            .get(group)
            .map_or(share, |own| own.over(share))
    }

    /// Below its concurrency limit.
    pub(super) fn below_limit(&self, group: &str, share: GroupShare) -> bool {
        !held(self.active(group), self.limits(group, share).concurrency)
    }

    /// Marks `group` with the time it opens again, if that is after `now`: it leaves the ring.
    /// Whether it was marked.
    pub(super) fn mark(&mut self, group: &str, share: GroupShare, now: Millis) -> bool {
        let rate = self.limits(group, share).rate;
        let r = self.rates.entry(group.to_owned()).or_default();
        let at = r.opens_at(rate, now);
        if at <= now {
            return false;
        }
        r.wake = Some(at);
        self.leave_ring(group);
        true
    }

    /// A dispatch of `group`'s task at `now` takes a token of its rate limit; the last one
    /// marks it. Whether it was marked.
    pub(super) fn spend(&mut self, group: &str, share: GroupShare, now: Millis) -> bool {
        let Some(limit) = self.limits(group, share).rate else {
            return false;
        };
        let r = self.rates.entry(group.to_owned()).or_default();
        r.spend(limit, now) == 0 && self.mark(group, share, now)
    }

    /// Maintenance: the marks that have come, by (time, group), go; a group still closed is
    /// marked again, an open one with ready tasks joins the ring. Whether any mark went.
    pub(super) fn wake_due(&mut self, share: GroupShare, now: Millis) -> bool {
        let mut due: Vec<(Millis, String)> = self
            .rates
            .iter()
            .filter_map(|(g, r)| r.wake.filter(|&at| at <= now).map(|at| (at, g.clone())))
            .collect();
        due.sort();
        for (_, group) in &due {
            if let Some(r) = self.rates.get_mut(group) {
                r.wake = None;
            }
            if !self.mark(group, share, now)
                && self.has_ready(group)
                && self.below_limit(group, share)
            {
                self.ring.push_back(group.clone());
            }
        }
        !due.is_empty()
    }
}

impl State {
    /// A dispatch of task `id` at `now` takes a token of its group (a queue that limits each
    /// group's rate); the last one marks the group.
    pub(in crate::state) fn spend_group_token(
        &mut self,
        queue: &QueueName,
        id: TaskId,
        now: Millis,
    ) -> Result<()> {
        if self.queue(queue)?.groups.is_none() {
            return Ok(());
        }
        let group = self.group_of(id)?;
        let q = self.queue_mut(queue)?;
        let share = q.config.groups.unwrap_or_default();
        if let Some(groups) = q.groups.as_mut()
            && groups.spend(&group, share, now)
        {
            self.due_moved.notify_waiters();
        }
        Ok(())
    }

    /// A handler of task `id` asked to hold its group for `hold_ms` (a shared queue's
    /// `throttle`): held until `now + hold_ms` (or later, if it was held longer) and marked.
    /// The time it is held until.
    pub(in crate::state) fn hold_group(
        &mut self,
        queue: &QueueName,
        id: TaskId,
        hold_ms: u64,
        now: Millis,
    ) -> Result<Millis> {
        let group = self.group_of(id)?;
        let q = self.queue_mut(queue)?;
        let share = q.config.groups.unwrap_or_default();
        let groups = q
            .groups
            .as_mut()
            .ok_or_else(|| internal("hold of a plain queue's group"))?;
        let r = groups.rates.entry(group.clone()).or_default();
        r.hold_until = r.hold_until.max(now.saturating_add(hold_ms));
        let until = r.hold_until;
        if groups.mark(&group, share, now) {
            self.due_moved.notify_waiters();
        }
        Ok(until)
    }

    /// Maintenance: takes `queue`'s group marks that have come off (rule 1). Whether any did.
    pub(in crate::state) fn groups_wake_due(
        &mut self,
        queue: &QueueName,
        now: Millis,
    ) -> Result<bool> {
        let q = self.queue_mut(queue)?;
        let share = q.config.groups.unwrap_or_default();
        Ok(q.groups.as_mut().is_some_and(|g| g.wake_due(share, now)))
    }

    /// The earliest group mark of any queue (maintenance sleeps until then).
    pub(in crate::state) fn next_group_wake(&self) -> Option<Millis> {
        self.queues
            .values()
            .filter_map(|q| q.groups.as_ref())
            .flat_map(|g| g.rates.values().filter_map(|r| r.wake))
            .min()
    }

    /// Queues::set_group_limits: the group's own limits replace (or, empty, give back) the
    /// queue's; a new rate window starts its log afresh; it is marked again as now limited,
    /// then leaves the ring if it is no longer open, or joins it if it is open with ready
    /// tasks; the queue takes up what that lets it.
    pub(crate) fn set_group_limits(
        &mut self,
        queue: &QueueName,
        key: &str,
        limits: GroupLimits,
        now: Millis,
    ) -> Result<()> {
        validate_key(key)?;
        limits.validate()?;
        let share = self.queue(queue)?.config.groups.unwrap_or_default();
        let groups = self.shared(queue)?;
        let old = groups.limits(key, share).rate.map(|l| l.per_ms);
        if limits.is_empty() {
            groups.overrides.remove(key);
        } else {
            groups.overrides.insert(key.to_owned(), limits);
        }
        let new_window = old != groups.limits(key, share).rate.map(|l| l.per_ms);
        if let Some(r) = groups.rates.get_mut(key) {
            if new_window {
                r.log.clear();
            }
            r.wake = None;
        }
        groups.mark(key, share, now);
        let in_ring = groups.ring.iter().any(|g| g == key);
        if in_ring && !groups.open(key, share) {
            groups.leave_ring(key);
        } else if !in_ring && groups.open(key, share) && groups.has_ready(key) {
            groups.ring.push_back(key.to_owned());
        }
        self.due_moved.notify_waiters();
        self.take_up(queue, now)?;
        Ok(())
    }
}
