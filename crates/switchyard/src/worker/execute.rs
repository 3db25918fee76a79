//! Running a task: its handler under its timeout and cancellation, the report, and the next
//! task the report brings back.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use switchyard_core::backend::timeout_error;
use switchyard_core::{Ack, Delivery};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::running::{Slot, Stop};
use super::{Inner, TaskContext, TaskError, recorded, report};

impl Inner {
    /// Runs a task, reports it, and keeps the slot for the next task the report brings back.
    /// `received` is when the worker got the task: its timeout runs from then, on this clock.
    pub(super) async fn slot(
        self: Arc<Self>,
        mut delivery: Delivery,
        mut received: Instant,
        permit: OwnedSemaphorePermit,
        shutdown: CancellationToken,
    ) {
        loop {
            let span = crate::trace::attempt_span(self.spec.id(), &delivery);
            let next = self
                .attempt(&delivery, received, &shutdown)
                .instrument(span)
                .await;
            self.release(&delivery);
            match next.into_iter().find(|d| self.claim(d)) {
                Some(d) => {
                    delivery = d;
                    received = Instant::now();
                }
                None => break,
            }
        }
        drop(permit);
    }

    /// One attempt: runs the handler, records it, reports it; answers the tasks the report
    /// brought back.
    pub(super) async fn attempt(
        &self,
        delivery: &Delivery,
        received: Instant,
        shutdown: &CancellationToken,
    ) -> Vec<Delivery> {
        recorded::attempt_started(self.spec.id(), delivery);
        let (outcome, stop) = self.run_handler(delivery, received).await;
        let ended = match (&outcome, stop) {
            (Ok(_), _) => recorded::Ended::Succeeded,
            (Err(_), Some(Stop::Shutdown)) => recorded::Ended::Stopped,
            (Err(_), _) => recorded::Ended::Failed,
        };
        recorded::attempt_ended(self.spec.id(), delivery, ended, received.elapsed());
        let lease = delivery.lease.clone();
        let until = report::lease_end(received, delivery.timeout_ms);
        match outcome {
            Ok(value) => {
                // While shutting down, take no new task with the report.
                let receive = !shutdown.is_cancelled();
                self.report_success(&lease, value, receive, until).await
            }
            // Stopped by shutdown: whatever the handler said (a fatal "cancelled" is
            // typical), the attempt did not fail on its own. Report nothing; the
            // deregistration hands the task back to its queue.
            Err(err) if stop == Some(Stop::Shutdown) => {
                tracing::info!(task = %lease.task, "stopped by shutdown ({err}); handing it back");
                Vec::new()
            }
            Err(err) => {
                match err.retry_in() {
                    Some(hold) => self.report_throttle(delivery, hold, until).await,
                    None => {
                        self.report_failure(delivery, err.message(), err.is_retryable(), until)
                            .await;
                    }
                }
                Vec::new()
            }
        }
    }

    pub(super) fn count(&self, lease: &switchyard_core::Lease, ack: &Ack, completed: bool) {
        recorded::acknowledged(&lease.queue, ack);
        match ack {
            Ack::Rejected(r) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("report refused ({r:?}): the lease was taken back");
            }
            _ if completed => {
                self.stats.completed.fetch_add(1, Ordering::Relaxed);
            }
            Ack::Throttled { .. } => {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Runs the handler of a delivery under its timeout and cancellation; a panic becomes a
    /// retryable failure carrying the panic message. Also answers why the runtime stopped the
    /// handler, if it did: the reason is read under the same lock that records it, so a
    /// handler is either stopped by shutdown (and reports nothing) or not, never half of each.
    pub(super) async fn run_handler(
        &self,
        delivery: &Delivery,
        received: Instant,
    ) -> (std::result::Result<Vec<u8>, TaskError>, Option<Stop>) {
        let token = CancellationToken::new();
        let key = (delivery.lease.task, delivery.lease.token);
        {
            let mut running = self.running();
            if running.stopping {
                // Shutdown already stopped every handler: this one never starts.
                return (
                    Err(TaskError::retry("not started: the worker is shutting down")),
                    Some(Stop::Shutdown),
                );
            }
            if self.fenced.is_cancelled() {
                // Another instance holds the id, so this lease is gone (see `fence`, which
                // fires the token before it stops the handlers under this lock).
                return (
                    Err(TaskError::retry(
                        "not started: another instance holds the id",
                    )),
                    Some(Stop::LeaseLost),
                );
            }
            running.slots.insert(
                key,
                Slot {
                    token: token.clone(),
                    stop: None,
                },
            );
        }
        let result = self.run_guarded(delivery, received, token).await;
        let stop = self.running().slots.remove(&key).and_then(|slot| slot.stop);
        (result, stop)
    }

    pub(super) async fn run_guarded(
        &self,
        delivery: &Delivery,
        received: Instant,
        token: CancellationToken,
    ) -> std::result::Result<Vec<u8>, TaskError> {
        let Some(handler) = self.handlers.get(delivery.kind.as_str()).cloned() else {
            return Err(TaskError::retry(format!(
                "worker {} has no handler for kind `{}`",
                self.spec.id(),
                delivery.kind
            )));
        };
        let ctx = TaskContext {
            id: delivery.lease.task,
            queue: delivery.lease.queue.clone(),
            kind: delivery.kind.clone(),
            attempt: delivery.attempt,
            max_attempts: delivery.max_attempts,
            deadline: delivery.deadline,
            worker: self.spec.id().clone(),
            cancel: token.clone(),
            reporter: super::context::Reporter {
                backend: self.backend.clone(),
                lease: delivery.lease.clone(),
            },
        };
        // The timeout runs on this worker's clock from when it received the task; the
        // backend's `deadline` is on the backend's clock and only its heartbeat compares it.
        let timeout_at = received + Duration::from_millis(u64::from(delivery.timeout_ms));
        let work = AssertUnwindSafe(handler(ctx, delivery.payload.clone())).catch_unwind();
        tokio::pin!(work);
        let finished = tokio::select! {
            biased;
            r = &mut work => Some(r),
            _ = token.cancelled() => None,
            _ = tokio::time::sleep_until(timeout_at) => {
                token.cancel();
                return Err(TaskError::retry(timeout_error(delivery.timeout_ms)));
            }
        };
        let result = match finished {
            Some(r) => r,
            // Cancelled: give the handler a moment to notice and return, then drop it.
            None => match tokio::time::timeout(self.settings.cancel_grace, &mut work).await {
                Ok(r) => r,
                Err(_) => return Err(TaskError::fatal("cancelled")),
            },
        };
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-text panic".to_owned());
                tracing::error!(task = %delivery.lease.task, "handler panicked: {message}");
                Err(TaskError::retry(format!("handler panicked: {message}")))
            }
        }
    }
}
