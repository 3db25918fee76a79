//! Reporting a finished attempt (a completion or a failure) to the backend.
//!
//! A report that fails for a reason that may pass — the connection dropped, the primary is
//! failing over ([`Error::is_transient`]) — is sent again after a jittered pause, for as long
//! as the lease can still be valid (its timeout, counted from when the worker received the
//! task), and at most a minute. Giving up early would throw the attempt's work away: the task would sit leased until
//! its timeout and then run again, spending an attempt. Repeating a report is safe: one that
//! took effect before its reply was lost answers "refused" the second time.
//!
//! What could not be delivered is counted in the [`WorkerReport`]:
//! `unreported` (gave up: the task runs again once its lease expires) and `unconfirmed`
//! (durable mode: applied on the primary, but too few replicas confirmed it).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use switchyard_core::{Ack, AckOutcome, Delivery, Error, Lease, Result};
use tokio::time::Instant;

use super::Inner;
use super::recovery;

/// What a worker did before it stopped.
///
/// A handler still running when the grace period ends is stopped, and its task goes back to
/// its queue (`handed_back`), not to the dead-letter set, even if the handler answers its
/// cancellation with a fatal error:
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use switchyard::{Client, QueueConfig, TaskError, TaskSpec, TaskState, Worker};
/// let client = Client::memory();
/// client.declare("jobs", QueueConfig::default()).await?;
/// let worker = Worker::builder(&client, "worker-1", ["jobs"])?
///     .shutdown_grace(Duration::from_millis(50))
///     .handle("long", |ctx, _payload| async move {
///         ctx.cancelled().await;
///         Err::<Vec<u8>, _>(TaskError::fatal("cancelled"))
///     })
///     .build()?;
/// let stop = worker.shutdown_handle();
/// let running = tokio::spawn(worker.run());
/// let task = client.submit(TaskSpec::builder("jobs", "long").build()?).await?;
/// while task.state().await? != Some(TaskState::Running) {
///     tokio::time::sleep(Duration::from_millis(5)).await;
/// }
/// stop.shutdown();
/// let report = running.await.unwrap()?;
/// assert_eq!((report.completed, report.failed, report.handed_back), (0, 0, 1));
/// assert_eq!(task.state().await?, Some(TaskState::Ready)); // for the next worker
/// # Ok::<(), switchyard::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Tasks whose completion was accepted.
    pub completed: u64,
    /// Failed attempts reported (retries, dead, cancellations).
    pub failed: u64,
    /// Attempts handed back by [`TaskError::rate_limited`](crate::TaskError::rate_limited)
    /// (not failures: the attempt was not counted).
    pub throttled: u64,
    /// Completions or failures refused because the lease had been taken back.
    pub refused: u64,
    /// Completions or failures that could not be delivered, after retrying for as long as the
    /// lease could be valid (the backend was unreachable): those tasks run again once their
    /// leases expire.
    pub unreported: u64,
    /// Durable mode: completions or failures applied on the primary that too few replicas
    /// confirmed in time (see `switchyard_redis::Durable`).
    pub unconfirmed: u64,
    /// Tasks in the worker's inbox, not started, given back to their queues when it began to
    /// drain.
    pub drained: usize,
    /// Tasks handed back when the worker deregistered (running tasks past the grace period).
    pub handed_back: usize,
}

/// The counts behind a [`WorkerReport`], kept while the worker runs.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) completed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) throttled: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) unreported: AtomicU64,
    pub(super) unconfirmed: AtomicU64,
}

impl Counters {
    /// The report of a worker that stopped, with what its drain and deregistration returned.
    pub(super) fn report(&self, drained: usize, handed_back: usize) -> WorkerReport {
        WorkerReport {
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            unreported: self.unreported.load(Ordering::Relaxed),
            unconfirmed: self.unconfirmed.load(Ordering::Relaxed),
            drained,
            handed_back,
        }
    }
}

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
                let wait = run_at.saturating_sub(super::loops::now_ms());
                format!(
                    "retried in {}",
                    switchyard_core::display::duration(Duration::from_millis(wait))
                )
            }
            Ack::Dead => "dead-lettered".to_owned(),
            Ack::Cancelled => "cancelled".to_owned(),
            _ => return,
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

    /// Reports that downstream throttles `delivery`'s task: back in its place, its queue held
    /// for `hold` (`Leases::throttle`); logged at info, throttled like the failures.
    pub(super) async fn report_throttle(
        &self,
        delivery: &Delivery,
        hold: Duration,
        until: Instant,
    ) {
        let lease = &delivery.lease;
        let answer = self
            .reporting(lease, until, "report the throttle", || {
                self.backend.throttle(lease, hold)
            })
            .await;
        let Reported::Answer(AckOutcome { ack, .. }) = answer else {
            return;
        };
        self.count(lease, &ack, false);
        if matches!(ack, Ack::Throttled { .. })
            && let Some(held) = self.failure_log.pass()
        {
            tracing::info!(
                task = %lease.task,
                queue = %lease.queue,
                kind = %delivery.kind,
                attempt = delivery.attempt,
                "rate limited downstream: {} holds for {}{}",
                lease.queue,
                switchyard_core::display::duration(hold),
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
