//! Reporting a finished attempt (a completion or a failure) to the backend.
//!
//! A report that fails for a reason that may pass — the connection dropped, the primary is
//! failing over ([`Error::is_transient`]) — is sent again after a jittered pause, for as long
//! as the lease can still be valid (its timeout, counted from when the worker received the
//! task), and at most a minute. Giving up early would throw the attempt's work away: the task would sit leased until
//! its timeout and then run again, spending an attempt. Repeating a report is safe: one that
//! took effect before its reply was lost answers "refused" the second time.
//!
//! What could not be delivered is counted in the [`WorkerReport`](super::WorkerReport):
//! `unreported` (gave up: the task runs again once its lease expires) and `unconfirmed`
//! (durable mode: applied on the primary, but too few replicas confirmed it).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_core::{Ack, AckOutcome, Delivery, Error, Lease, Result};
use tokio::time::Instant;

use super::Inner;
use super::recovery;

/// What a report call answered, once retries are over.
pub(super) enum Reported<T> {
    /// The backend's answer.
    Answer(T),
    /// Nothing usable: counted and logged already.
    Lost,
}

impl Inner {
    /// Reports a success; with `receive`, asks for the next task in the same call. Returns
    /// the tasks received with it.
    pub(super) async fn report_success(
        &self,
        lease: &Lease,
        value: Vec<u8>,
        receive: bool,
        until: Instant,
    ) -> Vec<Delivery> {
        // Only the first attempt receives: one whose reply was lost may have received a task
        // (leased to this worker) that a repeated receive would not bring back.
        let first = AtomicBool::new(true);
        let answer = self
            .reporting(lease, until, "complete", || {
                let value = value.clone();
                let receive = receive && first.swap(false, Ordering::Relaxed);
                async move {
                    if receive {
                        self.backend.complete_and_receive(lease, value, 1).await
                    } else {
                        let ack = self.backend.complete(lease, value).await?;
                        Ok((ack, Vec::new()))
                    }
                }
            })
            .await;
        match answer {
            Reported::Answer((ack, next)) => {
                self.count(lease, &ack.ack, true);
                next
            }
            Reported::Lost => Vec::new(),
        }
    }

    /// Reports a failed attempt of `delivery`, and logs it at warn with what the backend made
    /// of it (retried, dead-lettered, cancelled): at most 20 lines per
    /// [`recovery::LOG_PERIOD`], the next one saying how many were held back.
    pub(super) async fn report_failure(
        &self,
        delivery: &Delivery,
        message: &str,
        retry: bool,
        until: Instant,
    ) {
        let lease = &delivery.lease;
        let answer = self
            .reporting(lease, until, "report the failure", || {
                self.backend.fail(lease, message, retry)
            })
            .await;
        let Reported::Answer(AckOutcome { ack, .. }) = answer else {
            return;
        };
        self.count(lease, &ack, false);
        let then = match &ack {
            Ack::Retrying { run_at } => {
                let wait = run_at.saturating_sub(super::now_ms());
                format!(
                    "retried in {}",
                    switchyard_core::display::duration(Duration::from_millis(wait))
                )
            }
            Ack::Dead => "dead-lettered".to_owned(),
            Ack::Cancelled => "cancelled".to_owned(),
            Ack::Completed | Ack::Rejected(_) => return,
        };
        if let Some(held) = self.failure_log.pass() {
            tracing::warn!(
                task = %lease.task,
                queue = %lease.queue,
                kind = %delivery.kind,
                attempt = delivery.attempt,
                max_attempts = delivery.max_attempts,
                "attempt {} of {} failed: {message}; {then}{}",
                delivery.attempt,
                delivery.max_attempts,
                recovery::repeats(held)
            );
        }
    }

    async fn reporting<T, F, Fut>(
        &self,
        lease: &Lease,
        until: Instant,
        what: &str,
        mut call: F,
    ) -> Reported<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let pauses = recovery::retry(lease.token.0);
        loop {
            let error = match call().await {
                Ok(answer) => return Reported::Answer(answer),
                Err(e) => e,
            };
            if let Error::NotReplicated { .. } = error {
                self.stats.unconfirmed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(task = %lease.task, "{what}: {error}");
                return Reported::Lost;
            }
            super::recorded::backend_error("report");
            let pause = pauses.next();
            if error.is_transient() && Instant::now() + pause < until {
                tracing::debug!(task = %lease.task, "cannot {what} yet ({error}); again in {pause:?}");
                tokio::time::sleep(pause).await;
                continue;
            }
            self.stats.unreported.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                task = %lease.task,
                "cannot {what}: {error}; the task runs again once its lease expires"
            );
            return Reported::Lost;
        }
    }
}

/// The longest a report is retried, whatever the task's timeout: a worker shutting down waits
/// for its reports.
const REPORT_RETRY_MAX: Duration = Duration::from_secs(60);

/// Until when a report for a task received at `received` is worth retrying: the end of its
/// lease, on the worker's clock, and at most [`REPORT_RETRY_MAX`] from now.
pub(super) fn lease_end(received: Instant, timeout_ms: u32) -> Instant {
    (received + Duration::from_millis(u64::from(timeout_ms))).min(Instant::now() + REPORT_RETRY_MAX)
}
