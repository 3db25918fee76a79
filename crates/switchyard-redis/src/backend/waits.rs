//! Waiting without polling: the shared pub/sub listener and the per-worker wake channels.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use switchyard_core::{Result, WorkerId};
use tokio::sync::Mutex;

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
        let pubsub = self
            .inner
            .topology
            .pubsub()
            .await
            .map_err(|e| map_redis(&e))?;
        let listener = Listener::start(pubsub, &fixed)
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

    /// The channel-subscribed connection a worker sleeps on in `receive_wait`.
    pub(super) async fn waiter(&self, worker: &WorkerId) -> Arc<Mutex<Option<redis::aio::PubSub>>> {
        let mut waiters = self.inner.waiters.lock().await;
        waiters.entry(worker.clone()).or_default().clone()
    }

    pub(super) async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub> {
        let mut pubsub = self
            .inner
            .topology
            .pubsub()
            .await
            .map_err(|e| map_redis(&e))?;
        crate::outcomes::bounded("SUBSCRIBE", pubsub.subscribe(channel))
            .await
            .map_err(|e| map_redis(&e))?;
        Ok(pubsub)
    }

    /// Sleeps until the worker is woken (a dispatch to it, or a task in one of its pull queues,
    /// after it was marked waiting by a receive or completion with `park`), or `timeout`
    /// passes. Returns whether it was woken. The first call subscribes and returns `true` at
    /// once, since a wake-up before the subscription could have been missed: receive then.
    pub async fn wait_woken(&self, worker: &WorkerId, timeout: Duration) -> Result<bool> {
        let slot = self.waiter(worker).await;
        let mut guard = slot.lock().await;
        let Some(pubsub) = guard.as_mut() else {
            *guard = Some(
                self.subscribe(&self.inner.keys.wake_channel(worker))
                    .await?,
            );
            return Ok(true);
        };
        let message = tokio::time::timeout(timeout, pubsub.on_message().next()).await;
        match message {
            Err(_) => Ok(false),
            Ok(Some(_)) => Ok(true),
            Ok(None) => {
                tracing::warn!(%worker, "wake-up connection lost; reconnecting");
                *guard = None;
                Ok(true)
            }
        }
    }
}
