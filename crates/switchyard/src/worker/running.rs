//! What a worker holds while it runs: the handlers running now, the leases it took (so that
//! a repeated delivery is skipped), and the ways their tokens are fired (a cancel, a lost
//! lease, the end of a shutdown's grace period).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_core::display::duration;
use switchyard_core::{Delivery, LeaseToken, TaskId};
use tokio_util::sync::CancellationToken;

use super::Inner;

/// Why the runtime fired a running handler's cancellation token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// A user cancelled the task: the failure report ends it as cancelled.
    Cancelled,
    /// The lease is gone (the heartbeat failed the attempt as timed out, or the worker was
    /// reaped): a report will be refused, and changes nothing.
    LeaseLost,
    /// Shutdown passed its grace period: nothing is reported, the deregistration hands the
    /// task back to its queue.
    Shutdown,
}

/// One running handler.
pub(super) struct Slot {
    pub(super) token: CancellationToken,
    /// The first reason its token fired for, if it did.
    pub(super) stop: Option<Stop>,
}

/// How many finished leases a worker remembers (see `Running::done`).
pub(super) const DONE_KEPT: usize = 4_096;

/// The running handlers, keyed by task and lease token (after a reap, the same task may come
/// back to this worker under a new lease while the old handler is still winding down).
#[derive(Default)]
pub(super) struct Running {
    pub(super) slots: HashMap<(TaskId, LeaseToken), Slot>,
    /// Every delivery taken and not yet done with, from the moment it was received: a
    /// backend that lost its connection may deliver a lease again (see `Leases::receive_wait`),
    /// and a second copy is skipped.
    pub(super) held: HashSet<(TaskId, LeaseToken)>,
    /// The latest leases done with (at most [`DONE_KEPT`]): a list of running tasks taken
    /// before one of them ended still names it, and it must not run again.
    pub(super) done: HashSet<(TaskId, LeaseToken)>,
    pub(super) done_order: VecDeque<(TaskId, LeaseToken)>,
    /// Set (under the same lock) when shutdown stops every handler: a handler that would start
    /// after that never runs, so no task escapes the stop.
    pub(super) stopping: bool,
}

impl Running {
    /// Fires the tokens of the matching handlers, recording `why` unless a reason is there.
    fn stop(&mut self, why: Stop, matches: impl Fn(TaskId) -> bool) {
        for ((id, _), slot) in &mut self.slots {
            if matches(*id) {
                slot.stop.get_or_insert(why);
                slot.token.cancel();
            }
        }
    }
}

impl Inner {
    /// Takes a delivery: false if this worker holds its lease already, or was done with it
    /// lately (a repeated delivery).
    pub(super) fn claim(&self, delivery: &Delivery) -> bool {
        let key = (delivery.lease.task, delivery.lease.token);
        let mut running = self.running();
        !running.done.contains(&key) && running.held.insert(key)
    }

    /// Done with a delivery (see [`claim`](Self::claim)).
    pub(super) fn release(&self, delivery: &Delivery) {
        let key = (delivery.lease.task, delivery.lease.token);
        let mut running = self.running();
        if running.held.remove(&key) && running.done.insert(key) {
            running.done_order.push_back(key);
            if running.done_order.len() > DONE_KEPT
                && let Some(old) = running.done_order.pop_front()
            {
                running.done.remove(&old);
            }
        }
    }

    pub(super) fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        // A panic never happens while the lock is held (handlers run outside it).
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fires the tokens of the running handlers `matches` selects, for `why`.
    pub(super) fn stop(&self, why: Stop, matches: impl Fn(TaskId) -> bool) {
        self.running().stop(why, matches);
    }

    /// After a failed heartbeat: once none got through for a whole TTL, the backend may have
    /// reaped this worker and handed its tasks to others at any moment, so its running
    /// handlers are stopped (once) rather than left to run a task twice at once.
    pub(super) fn drop_expired_leases(&self) {
        let ttl = Duration::from_millis(u64::from(self.spec.heartbeat_ttl_ms()));
        let since = self.since_contact();
        if since > ttl && !self.leases_dropped.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                worker = %self.spec.id(),
                "no heartbeat got through for {} (heartbeat TTL {}): this worker's leases may \
                 have been handed to other workers; stopping its running tasks",
                duration(since),
                duration(ttl)
            );
            self.stop(Stop::LeaseLost, |_| true);
        }
    }

    /// Past the grace period: every running handler is stopped for shutdown and none starts
    /// any more.
    pub(super) fn stop_for_shutdown(&self) {
        let mut running = self.running();
        running.stopping = true;
        running.stop(Stop::Shutdown, |_| true);
    }
}
