//! Progress reports of running tasks (the rule: `switchyard_core::progress`).
//!
//! Lua twin: lua/progress.lua.

use switchyard_core::progress::announced;
use switchyard_core::{EventKind, Lease, Millis, Progress, ProgressAck, Result};

use super::State;
use super::records::Task;

impl Task {
    /// The progress of its latest attempt, if that attempt reported any.
    pub(crate) fn current_progress(&self) -> Option<&Progress> {
        self.progress
            .as_ref()
            .filter(|p| p.attempt() == self.attempts)
    }
}

impl State {
    /// Stores `report` as the progress of the lease's attempt, if the lease is current;
    /// announces it (logs a `progress` event if the queue records it, wakes progress waiters)
    /// if it is the attempt's first or the last announced one is old enough.
    pub(crate) fn progress(
        &mut self,
        lease: &Lease,
        report: &Progress,
        now: Millis,
    ) -> Result<ProgressAck> {
        if let Err(rejection) = self.check_lease(lease) {
            return Ok(ProgressAck::Rejected(rejection));
        }
        let t = self.task_mut(lease.task)?;
        let (reports, last) = match t.current_progress() {
            Some(p) => (p.reports() + 1, Some(p.announced_at())),
            None => (1, None),
        };
        let announce = announced(last, now);
        let announced_at = if announce { now } else { last.unwrap_or(now) };
        let stored = report
            .clone()
            .stored(t.attempts, now, reports, announced_at);
        let detail = stored.event_detail();
        t.progress = Some(stored);
        if announce {
            self.emit(
                EventKind::Progress,
                lease.task,
                Some(&lease.worker),
                Some(detail),
            );
            self.progressed.notify_waiters();
        }
        Ok(ProgressAck::Stored {
            announced: announce,
        })
    }
}
