//! Rate limits and holds: a queue's window of dispatches, the token a dispatch takes, the mark
//! of when a queue without a token (or held) opens again, and maintenance taking it up then
//! (the rule: `switchyard_core::flow::rate`; the gate itself is `Queue::dispatches`).
//!
//! Lua twin: lua/lib/rate.lua.

use std::collections::VecDeque;

use switchyard_core::flow::rate::{RateLimit, opens_at};
use switchyard_core::{
    Ack, AckOutcome, Assignment, EventKind, Lease, Millis, QueueName, Result, TaskId, TaskOutcome,
    TaskState,
};

use super::State;

/// A queue's rate state.
#[derive(Debug, Default)]
pub(crate) struct Rate {
    /// Times of its dispatches, oldest first: those still in the window, and older ones not
    /// dropped yet (only those counting at `now` matter).
    pub(crate) log: VecDeque<Millis>,
    /// Held (dispatches nothing) until then; 0: not held.
    pub(crate) hold_until: Millis,
    /// When it opens again, set by the step that took its last token or held it; cleared by
    /// the maintenance pass that takes it up (`wake_due`).
    pub(crate) wake: Option<Millis>,
}

impl Rate {
    /// The time the log counts at for a step at `now`: never before its newest dispatch, so
    /// that a step carrying an older time (another process's clock, a primary whose clock is
    /// behind after a failover) cannot make room the log's own times deny.
    fn at(&self, now: Millis) -> Millis {
        self.log.back().map_or(now, |&newest| newest.max(now))
    }

    /// Dispatches still counting at `now` under `limit`, and the oldest of them.
    fn window(&self, limit: RateLimit, now: Millis) -> (usize, Option<Millis>) {
        let now = self.at(now);
        let gone = self.log.partition_point(|&at| !limit.counts(at, now));
        (self.log.len() - gone, self.log.get(gone).copied())
    }

    /// Tokens left at `now` (`u32::MAX` without a limit).
    pub(crate) fn tokens(&self, limit: Option<RateLimit>, now: Millis) -> u32 {
        limit.map_or(u32::MAX, |l| l.tokens(self.window(l, now).0))
    }

    /// Whether the queue may dispatch at `now` as far as its rate and hold go.
    pub(crate) fn open(&self, limit: Option<RateLimit>, now: Millis) -> bool {
        now >= self.hold_until && self.tokens(limit, now) > 0
    }

    /// Logs a dispatch at `now` under `limit`, dropping the times that left the window; the
    /// tokens left after it.
    pub(crate) fn spend(&mut self, limit: RateLimit, now: Millis) -> u32 {
        let at = self.at(now);
        while self.log.front().is_some_and(|&t| !limit.counts(t, at)) {
            self.log.pop_front();
        }
        self.log.push_back(at);
        self.tokens(Some(limit), now)
    }

    /// When it opens again, seen at `now` (`now` if it is open).
    pub(crate) fn opens_at(&self, limit: Option<RateLimit>, now: Millis) -> Millis {
        let (tokens, oldest) = match limit {
            Some(l) => {
                let (n, oldest) = self.window(l, now);
                (l.tokens(n), oldest)
            }
            None => (u32::MAX, None),
        };
        opens_at(limit, tokens, oldest, self.hold_until, now)
    }
}

impl State {
    /// A dispatch of task `id` at `now` takes a token of its queue, if the queue is limited
    /// (the last token marks the queue with the time it opens again), and one of its group's,
    /// if the queue limits each group (`state/groups.rs`).
    pub(super) fn spend_token(&mut self, id: TaskId, now: Millis) -> Result<()> {
        let queue = self.queue_of_task(id)?;
        let q = self.queue_mut(&queue)?;
        if let Some(limit) = q.config.rate
            && q.rate.spend(limit, now) == 0
        {
            self.mark_wake(&queue, now)?;
        }
        self.spend_group_token(&queue, id, now)
    }

    /// Marks `queue` with the time it opens again, if that is after `now`, and wakes the
    /// maintenance loops sleeping until an earlier time.
    fn mark_wake(&mut self, queue: &QueueName, now: Millis) -> Result<()> {
        let q = self.queue_mut(queue)?;
        let at = q.rate.opens_at(q.config.rate, now);
        if at > now {
            q.rate.wake = Some(at);
            self.due_moved.notify_waiters();
        }
        Ok(())
    }

    /// Maintenance: takes `queue` up if its mark, or a mark of one of its groups, has come
    /// (the marks go: `state/groups.rs` for the groups').
    pub(super) fn wake_due(&mut self, queue: &QueueName, now: Millis) -> Result<Vec<Assignment>> {
        let groups = self.groups_wake_due(queue, now)?;
        let q = self.queue_mut(queue)?;
        let own = q.rate.wake.is_some_and(|at| at <= now);
        if own {
            q.rate.wake = None;
        }
        if own || groups {
            return self.take_up(queue, now);
        }
        Ok(Vec::new())
    }

    /// Reconfigure changed `queue`'s rate limit from `old`: a new window length (or no limit)
    /// starts the log afresh, the same one keeps it; a limit lowered below the window's
    /// dispatches closes the queue, so it is marked.
    pub(super) fn rate_reconfigured(
        &mut self,
        queue: &QueueName,
        old: Option<RateLimit>,
        now: Millis,
    ) -> Result<()> {
        let q = self.queue_mut(queue)?;
        if old.map(|l| l.per_ms) != q.config.rate.map(|l| l.per_ms) {
            q.rate.log.clear();
        }
        self.mark_wake(queue, now)
    }

    /// A handler asked to hold its queue for `hold_ms` (Leases::throttle): the task goes back
    /// to its place in the ready order with its attempt not counted (a pending cancel ends it
    /// cancelled instead), the queue — in a queue shared between groups, the task's group — is
    /// held until `now + hold_ms` (or later, if it was held longer) and marked, and the
    /// worker's freed slot is refilled.
    pub(crate) fn throttle(
        &mut self,
        lease: &Lease,
        hold_ms: u64,
        now: Millis,
    ) -> Result<AckOutcome> {
        if let Err(rejection) = self.check_lease(lease) {
            return Ok(AckOutcome::new(Ack::Rejected(rejection), Vec::new()));
        }
        let id = lease.task;
        let cancel = self.task_mut(id)?.cancel_requested;
        self.release_slot(&lease.worker, id, None)?;
        let mut assignments = Vec::new();
        let ack = if cancel {
            self.emit(EventKind::Cancelled, id, None, None);
            self.finish(id, TaskState::Cancelled, TaskOutcome::Cancelled, now)?;
            Ack::Cancelled
        } else {
            let t = self.task_mut(id)?;
            t.attempts = t.attempts.saturating_sub(1);
            // The run did not count: neither does its progress (the next run reuses its number).
            t.progress = None;
            let until = if self.queue(&lease.queue)?.groups.is_some() {
                self.hold_group(&lease.queue, id, hold_ms, now)?
            } else {
                let q = self.queue_mut(&lease.queue)?;
                q.rate.hold_until = q.rate.hold_until.max(now.saturating_add(hold_ms));
                self.mark_wake(&lease.queue, now)?;
                self.queue(&lease.queue)?.rate.hold_until
            };
            assignments.extend(self.return_ready(id, now)?);
            Ack::Throttled { until }
        };
        assignments.extend(self.fill_worker(&lease.worker, now)?);
        assignments.extend(self.resume(&lease.queue, now)?);
        Ok(AckOutcome::new(ack, assignments))
    }
}
