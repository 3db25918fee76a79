//! Waiting without polling: the shared pub/sub listener and the per-worker wake channels.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::{Result, WorkerId};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::RedisBackend;
use crate::error::map_redis;
use crate::outcomes::Listener;

impl RedisBackend {
    /// The shared subscription to outcome and due-time announcements (see the `outcomes`
    /// module), started (again) if there is none or its connection was lost.
    pub(super) async fn listener(&self) -> Result<Arc<Listener>> {
        let mut slot = self.inner.outcomes.lock().await;
        if let Some(listener) = slot.as_ref()
            && listener.is_alive()
        {
            return Ok(listener.clone());
        }
        let fixed = [self.inner.keys.due_channel()];
        // Watched from before the connection is opened, so that a move meanwhile is seen.
        let moves = self.inner.topology.moves();
        let pubsub = self
            .inner
            .topology
            .pubsub()
            .await
            .map_err(|e| map_redis(&e))?;
        let listener = Listener::start(pubsub, &fixed, moves)
            .await
            .map_err(|e| map_redis(&e))?;
        *slot = Some(listener.clone());
        Ok(listener)
    }

    /// A registration on the shared listener for `channel` (see the `outcomes` module).
    pub(super) async fn registration(
        &self,
        channel: &str,
    ) -> Result<crate::outcomes::Registration> {
        self.listener()
            .await?
            .register(channel)
            .await
            .map_err(|e| map_redis(&e))
    }

    /// The wake-up subscription a worker sleeps on in `receive_wait`.
    pub(super) async fn waiter(&self, worker: &WorkerId) -> Arc<Mutex<Waiter>> {
        let mut waiters = self.inner.waiters.lock().await;
        waiters.entry(worker.clone()).or_default().clone()
    }

    /// Whether the primary moved since `moves` was taken.
    pub(super) fn moved_since(moves: Option<&tokio::sync::watch::Receiver<u64>>) -> bool {
        moves.is_some_and(|m| m.has_changed().unwrap_or(false))
    }

    /// A subscription to a worker's wake channel, where the scripts see it (see
    /// `Topology::pubsub_for`): a hand-off goes only to a worker someone listens for.
    pub(super) async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub> {
        let mut pubsub = self
            .inner
            .topology
            .pubsub_for(channel)
            .await
            .map_err(|e| map_redis(&e))?;
        crate::outcomes::bounded("SUBSCRIBE", pubsub.subscribe(channel))
            .await
            .map_err(|e| map_redis(&e))?;
        Ok(pubsub)
    }

    /// Forgets that `worker` is parked and renews its wake-up subscription (dropping what it
    /// held): a registration, drain or deregistration through this backend may have unparked
    /// it without a message, or handed back the tasks of messages still unread. Called before
    /// and after each. (The worker parks again only through an ask, made on the renewed
    /// subscription, so no hand-off is missed.)
    pub(super) fn renew_waiting(&self, worker: &WorkerId) {
        let mut epochs = self
            .inner
            .membership_epochs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *epochs.entry(worker.clone()).or_default() += 1;
    }

    /// The membership epoch of `worker` (see [`renew_waiting`](Self::renew_waiting)).
    pub(super) fn membership_epoch(&self, worker: &WorkerId) -> u64 {
        let epochs = self
            .inner
            .membership_epochs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        epochs.get(worker).copied().unwrap_or(0)
    }
}

/// A worker's wake-up subscription, and what this backend knows of its parking.
///
/// A worker that received nothing is parked in Redis (see `Leases::receive_wait`); every event
/// that gives it something to receive then publishes on its channel — a plain wake-up, or a
/// hand-off carrying the started task. So a waiting call that knows the worker parked can wait
/// for the next message without asking again. That knowledge is trusted for [`PARKED_TRUST`]
/// at most, and only while no registration, drain or deregistration of the worker went through
/// this backend.
#[derive(Default)]
pub(crate) struct Waiter {
    pub(super) pubsub: Option<redis::aio::PubSub>,
    /// Watches the primary's moves from before the subscription was made: a move means the
    /// subscription is on the old primary (see `Topology::moves`).
    pub(super) moves: Option<tokio::sync::watch::Receiver<u64>>,
    /// The membership epoch when the subscription was made.
    pub(super) subscribed_in: u64,
    /// When the worker was last seen parked, and the membership epoch then.
    pub(super) parked: Option<(Instant, u64)>,
    /// The subscription was lost: hand-offs may have been missed.
    pub(super) lost: bool,
}

/// How long a parked mark saves asking (see [`Waiter`]): a bound on any surprise.
pub(crate) const PARKED_TRUST: Duration = Duration::from_secs(1);

impl Waiter {
    /// Whether the worker can be taken to be parked, with `epoch` the current membership epoch.
    pub(super) fn is_parked(&self, epoch: u64) -> bool {
        self.parked
            .is_some_and(|(at, e)| e == epoch && at.elapsed() < PARKED_TRUST)
    }
}
