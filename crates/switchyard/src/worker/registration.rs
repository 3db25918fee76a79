//! How a running worker keeps its registration: the first registration, the queues it
//! re-declares, coming back after the backend dropped it (a reap, or Redis losing its data),
//! and stopping for good when another instance holds its id.

use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_core::display::duration;
use switchyard_core::{Error, QueueName, Result};
use tokio::time::Instant;

use super::Inner;
use super::recovery::repeats;
use super::running::Stop;

/// Extra wait, beyond the holder's expiry, before a worker whose id was in use tries again.
const IN_USE_MARGIN: Duration = Duration::from_millis(250);

impl Inner {
    /// Declares the queues the worker carries (see `WorkerBuilder::declare`).
    pub(super) async fn declare_carried(&self) -> Result<()> {
        for (queue, config) in &self.declarations {
            self.backend.declare_queue(queue, *config).await?;
        }
        Ok(())
    }

    /// Whether the worker carries the configuration of `queue`.
    fn carries(&self, queue: &QueueName) -> bool {
        self.declarations.iter().any(|(q, _)| q == queue)
    }

    /// The first registration, after declaring the carried queues. If a live registration of
    /// another instance holds the id, waits once until it would expire (a predecessor that
    /// just died expires then) and tries again; a holder that is still alive then means two
    /// processes share the id, and the worker does not start.
    pub(super) async fn register_first(&self) -> Result<()> {
        self.declare_carried().await?;
        let mut generation = self.registration.lock().await;
        match self.register_locked(&mut generation).await {
            Err(Error::WorkerIdInUse { expires_in_ms, .. }) => {
                let wait = Duration::from_millis(expires_in_ms) + IN_USE_MARGIN;
                tracing::warn!(
                    worker = %self.spec.id(),
                    "worker id is held by another live instance; waiting {} for it to expire \
                     (if it keeps heartbeating, another process runs with the same id and this \
                     one will not start)",
                    duration(wait)
                );
                tokio::select! {
                    _ = self.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                self.register_locked(&mut generation).await
            }
            other => other,
        }
    }

    pub(super) async fn register_locked(&self, generation: &mut u64) -> Result<()> {
        let out = self.backend.register_worker(self.spec.clone()).await?;
        *generation += 1;
        self.touch();
        tracing::info!(worker = %self.spec.id(), replaced = out.replaced, "registered");
        Ok(())
    }

    /// Records a successful contact that proves the registration was alive (a registration
    /// or heartbeat).
    pub(super) fn touch(&self) {
        *self
            .last_contact
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// How long ago a registration or heartbeat last got through.
    pub(super) fn since_contact(&self) -> Duration {
        self.last_contact
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// Registers again after the backend answered that it does not know this worker, once per
    /// loss (`seen` is the registration generation the caller saw). The running handlers'
    /// leases are gone, so they are stopped first. Then one attempt: on success the worker
    /// is back; if its queues are gone too (Redis lost its data), the carried ones are
    /// declared again first; any other failure pauses the caller (jittered, growing) before it
    /// tries again, so that a worker never spins against a backend that keeps failing. A
    /// draining worker does not come back: it is on its way out.
    pub(super) async fn reregister(&self, seen: u64) {
        let mut generation = self.registration.lock().await;
        if *generation != seen {
            return;
        }
        self.stop(Stop::LeaseLost, |_| true);
        if self.draining.load(Ordering::SeqCst) {
            tracing::warn!(worker = %self.spec.id(), "the backend dropped this worker while it was shutting down");
            return;
        }
        if !self.lost_reported.swap(true, Ordering::SeqCst) {
            self.report_loss().await;
        }
        let mut result = self.register_locked(&mut generation).await;
        if let Some(queue) = result.as_ref().err().and_then(Error::missing_queue)
            && self.carries(queue)
        {
            tracing::warn!(
                worker = %self.spec.id(),
                "queue `{queue}` is not declared any more (the backend lost its data): declaring the {} queue(s) this worker carries",
                self.declarations.len()
            );
            result = match self.declare_carried().await {
                Ok(()) => self.register_locked(&mut generation).await,
                Err(e) => Err(e),
            };
        }
        match result {
            Ok(()) => {
                self.lost_reported.store(false, Ordering::SeqCst);
                self.retry.reset();
                self.register_log.reset();
                tracing::warn!(worker = %self.spec.id(), "registered again; taking tasks");
            }
            Err(e @ (Error::WorkerIdInUse { .. } | Error::WorkerReplaced(_))) => self.fence(e),
            Err(e) => {
                let pause = self.retry.next();
                if let Some(held) = self.register_log.pass() {
                    let advice = match &e {
                        Error::UnknownQueue(_) | Error::DataLost { .. } => {
                            " (declare it again, or give the worker the queue's configuration \
                             with `declare` so that it does so itself)"
                        }
                        _ => "",
                    };
                    tracing::warn!(
                        worker = %self.spec.id(),
                        "cannot register again: {e}{advice}; retrying in {}{}",
                        duration(pause),
                        repeats(held)
                    );
                }
                drop(generation);
                tokio::select! {
                    _ = self.shutdown.cancelled() => {}
                    _ = self.fenced.cancelled() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// Says why the backend no longer knows this worker: it lost its data if one of the
    /// worker's queues is gone as well, or if the last heartbeat got through less than a TTL
    /// ago; else it reaped the worker.
    async fn report_loss(&self) {
        let ttl = Duration::from_millis(u64::from(self.spec.heartbeat_ttl_ms()));
        let since = self.since_contact();
        let mut gone = None;
        for queue in self.spec.queues() {
            if let Ok(None) = self.backend.queue_config(queue).await {
                gone = Some(queue);
                break;
            }
        }
        let lost = match gone {
            Some(queue) => format!("its queue `{queue}` is gone as well"),
            None if since < ttl => format!(
                "although its last heartbeat got through {} ago (heartbeat TTL {})",
                duration(since),
                duration(ttl)
            ),
            None => {
                tracing::warn!(
                    worker = %self.spec.id(),
                    "the backend reaped this worker: no heartbeat got through for {} \
                     (heartbeat TTL {}), so its tasks went back to their queues; registering \
                     again",
                    duration(since),
                    duration(ttl)
                );
                return;
            }
        };
        tracing::warn!(
            worker = %self.spec.id(),
            "the backend no longer knows this worker and {lost}: the backend has lost its \
             data (Redis restarted without persistence, was flushed, or failed over to a \
             replica that lacked it), and with it the tasks this worker held; registering \
             again"
        );
    }

    /// Another instance holds the id: stop every handler (their leases are gone) and end the
    /// worker with `error`.
    pub(super) fn fence(&self, error: Error) {
        tracing::error!(worker = %self.spec.id(), "stopping: {error}");
        self.fence_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(error);
        // Fired before the handlers are stopped: a handler about to start checks it under the
        // lock that `stop` takes, so none starts unstopped.
        self.fenced.cancel();
        self.stop(Stop::LeaseLost, |_| true);
    }

    /// The error the worker was fenced with, if it was.
    pub(super) fn take_fence_error(&self) -> Option<Error> {
        self.fence_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    pub(super) async fn generation(&self) -> u64 {
        *self.registration.lock().await
    }
}
