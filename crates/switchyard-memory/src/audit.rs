//! Invariant checks over the whole memory state (used by tests after every step).

use std::collections::HashSet;

use switchyard_core::TaskState;

use crate::state::State;

impl State {
    /// Checks the invariants of `docs/architecture.md` ("The state machine") that can be seen in one state, plus the consistency
    /// of every index. Returns the first violation found.
    pub(crate) fn audit(&self) -> Result<(), String> {
        // Schedules: the due set is exactly the unpaused schedules with a next tick.
        if let Some(wrong) = self.schedule_due_mismatch() {
            return Err(wrong);
        }
        // Fair share: the groups mirror the ready set, the ring is the open groups with ready
        // tasks, the active counts match.
        self.audit_groups()?;
        // Conservation: each record sits in exactly the structure its state names.
        let mut seen = HashSet::new();
        for (qn, q) in &self.queues {
            for (pos, id) in &q.ready {
                let t = self
                    .tasks
                    .get(id)
                    .ok_or(format!("ready {id} has no record"))?;
                if t.state != TaskState::Ready || t.position != Some(*pos) || &t.queue != qn {
                    return Err(format!(
                        "ready entry {id} disagrees with its record ({})",
                        t.state
                    ));
                }
                if !seen.insert(*id) {
                    return Err(format!("{id} is in two places"));
                }
            }
            for (pos, id) in &q.delayed {
                let t = self
                    .tasks
                    .get(id)
                    .ok_or(format!("delayed {id} has no record"))?;
                if !matches!(t.state, TaskState::Scheduled | TaskState::RetryScheduled)
                    || t.position != Some(*pos)
                {
                    return Err(format!(
                        "delayed entry {id} disagrees with its record ({})",
                        t.state
                    ));
                }
                if !seen.insert(*id) {
                    return Err(format!("{id} is in two places"));
                }
            }
            for (at, id) in &q.dead {
                let t = self
                    .tasks
                    .get(id)
                    .ok_or(format!("dead {id} has no record"))?;
                if t.state != TaskState::Dead || t.finished_at != *at {
                    return Err(format!("dead entry {id} disagrees with its record"));
                }
            }
            for (at, id) in &q.parents {
                let t = self
                    .tasks
                    .get(id)
                    .ok_or(format!("waiting-for-children {id} has no record"))?;
                if t.state != TaskState::WaitingChildren || t.created_at != *at || &t.queue != qn {
                    return Err(format!(
                        "waiting-for-children entry {id} disagrees with its record"
                    ));
                }
                if !seen.insert(*id) {
                    return Err(format!("{id} is in two places"));
                }
            }
            for (until, id) in &q.done {
                let t = self
                    .tasks
                    .get(id)
                    .ok_or(format!("retained {id} has no record"))?;
                if !t.state.is_terminal() || t.retain_until != *until || &t.queue != qn {
                    return Err(format!("retention entry {id} disagrees with its record"));
                }
                if !seen.insert(*id) {
                    return Err(format!("{id} is in two places"));
                }
            }
        }
        for (wid, w) in &self.workers {
            for (seq, id) in &w.inbox {
                let t = self
                    .tasks
                    .get(id)
                    .ok_or(format!("inbox {id} has no record"))?;
                if t.state != TaskState::Dispatched
                    || t.worker.as_ref() != Some(wid)
                    || t.inbox_seq != *seq
                {
                    return Err(format!(
                        "inbox entry {id} of {wid} disagrees with its record"
                    ));
                }
                if !seen.insert(*id) {
                    return Err(format!("{id} is in two places"));
                }
            }
            for id in &w.running {
                let t = self
                    .tasks
                    .get(id)
                    .ok_or(format!("running {id} has no record"))?;
                if t.state != TaskState::Running || t.worker.as_ref() != Some(wid) {
                    return Err(format!(
                        "running entry {id} of {wid} disagrees with its record"
                    ));
                }
                if !seen.insert(*id) {
                    return Err(format!("{id} is in two places"));
                }
            }
            // Capacity.
            let held = u32::try_from(w.inbox.len() + w.running.len()).unwrap_or(u32::MAX);
            if held != w.inflight {
                return Err(format!(
                    "{wid} counts {} in flight but holds {held}",
                    w.inflight
                ));
            }
            if w.inflight > w.spec.get_capacity() {
                return Err(format!(
                    "{wid} holds {} tasks with capacity {}",
                    w.inflight,
                    w.spec.get_capacity()
                ));
            }
            if !self.heartbeats.contains(&(w.expires_at, wid.clone())) {
                return Err(format!("{wid} has no heartbeat entry"));
            }
        }
        if self.heartbeats.len() != self.workers.len() {
            return Err("heartbeat index has entries for unknown workers".into());
        }
        if let Some(w) = self.wakers.keys().find(|w| !self.workers.contains_key(*w)) {
            return Err(format!("a wake-up notifier is kept for {w}, which is gone"));
        }
        // Staged tasks of wide flows are in their flow's steps (rule 6).
        seen.extend(self.staged_ids());
        if seen.len() != self.tasks.len() {
            let lost: Vec<_> = self
                .tasks
                .keys()
                .filter(|id| !seen.contains(id))
                .take(3)
                .collect();
            return Err(format!("tasks in no structure: {lost:?}"));
        }
        // Flows: each parent counts its children without an end; the settle index by text
        // holds the settle entries.
        for t in self.tasks.values() {
            if let Some(f) = &t.family {
                let open = f
                    .children
                    .iter()
                    .filter(|(c, _)| !f.ends.contains_key(c))
                    .count();
                if open != f.open {
                    return Err(format!(
                        "{} counts {} children without an end, its ends say {open}",
                        t.id, f.open
                    ));
                }
            }
        }
        if self.settle.len() != self.settle_entries.len()
            || self
                .settle
                .iter()
                .any(|(_, e)| !self.settle_entries.contains(e))
        {
            return Err("the settle entries and their index by text disagree".into());
        }
        // Work conservation, and the balancers' view of eligibility.
        for (qn, q) in &self.queues {
            for wid in &q.members {
                let w = self
                    .workers
                    .get(wid)
                    .ok_or(format!("{qn} lists dead worker {wid}"))?;
                let free = w.has_free_slot();
                if q.config.strategy.is_push() {
                    // Invariant 3, work conservation, holds for queues that are not paused,
                    // held at their concurrency limit, or marked to open later (rate; the
                    // mark stays until maintenance takes the queue up). In a queue shared
                    // between groups, only the ready tasks of open groups count.
                    if free
                        && q.dispatches(self.now)
                        && q.rate.wake.is_none()
                        && self.ready_head(qn).ok().flatten().is_some()
                    {
                        return Err(format!(
                            "{qn} has {} ready tasks while {wid} has a free slot",
                            q.ready.len()
                        ));
                    }
                    if q.balancer.is_eligible(wid) != free {
                        return Err(format!(
                            "{qn}'s balancer is wrong about {wid}'s eligibility"
                        ));
                    }
                }
            }
            if q.config.strategy.is_push() && q.balancer.eligible_count() > q.members.len() {
                return Err(format!("{qn}'s balancer lists workers that left"));
            }
            if !q.rate.open(q.config.rate, self.now) && q.rate.wake.is_none() {
                return Err(format!(
                    "{qn} is closed by its rate limit or hold but not marked to open again"
                ));
            }
            let active = self
                .tasks
                .values()
                .filter(|t| &t.queue == qn && t.state.is_leased())
                .count();
            if active != q.active as usize {
                return Err(format!(
                    "{qn} counts {} active tasks, its records say {active}",
                    q.active
                ));
            }
        }
        Ok(())
    }
}
