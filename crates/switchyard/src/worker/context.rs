//! What a handler sees: the [`TaskContext`] of the task it runs, and the [`TaskError`] it
//! answers a failure with.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::{
    Backend, Lease, Millis, Progress, ProgressAck, QueueName, Result, TaskId, TaskKind, WorkerId,
};
use tokio_util::sync::CancellationToken;

/// Why a handler failed, and whether the task may be retried.
///
/// Any `std::error::Error` converts into a retryable failure, so handlers can use `?`.
///
/// ```
/// use switchyard::TaskError;
/// fn parse(payload: &[u8]) -> Result<u32, TaskError> {
///     let text = std::str::from_utf8(payload)?; // retryable, via `From`
///     text.trim().parse().map_err(|_| TaskError::fatal(format!("`{text}` is not a number")))
/// }
/// assert_eq!(parse(b"42").unwrap(), 42);
/// assert!(!parse(b"x").unwrap_err().is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    message: String,
    retry: bool,
    /// Set by [`rate_limited`](TaskError::rate_limited): how long to hold the queue.
    hold: Option<Duration>,
}

impl TaskError {
    /// A failure worth retrying (within the task's attempts and the queue's backoff).
    pub fn retry(message: impl std::fmt::Display) -> Self {
        TaskError {
            message: message.to_string(),
            retry: true,
            hold: None,
        }
    }

    /// A failure not worth retrying: the task goes to the dead-letter set at once.
    pub fn fatal(message: impl std::fmt::Display) -> Self {
        TaskError {
            message: message.to_string(),
            retry: false,
            hold: None,
        }
    }

    /// Downstream is throttling: the task goes back to its place in its queue without using
    /// an attempt (it is not a failure), and its queue dispatches nothing more until
    /// `retry_in` from now (at most a day), to any worker (`Leases::throttle`). The task is
    /// then the first one dispatched again, in its place in the queue's order.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchyard::TaskError;
    /// let e = TaskError::rate_limited(Duration::from_secs(2));
    /// assert_eq!(e.retry_in(), Some(Duration::from_secs(2)));
    /// assert!(e.is_retryable());
    /// ```
    pub fn rate_limited(retry_in: Duration) -> Self {
        TaskError {
            message: format!(
                "rate limited for {}",
                switchyard_core::display::duration(retry_in)
            ),
            retry: true,
            hold: Some(retry_in),
        }
    }

    /// For [`rate_limited`](TaskError::rate_limited): how long its queue is held.
    pub fn retry_in(&self) -> Option<Duration> {
        self.hold
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether a retry is allowed.
    pub fn is_retryable(&self) -> bool {
        self.retry
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    fn from(e: E) -> Self {
        TaskError::retry(e)
    }
}

/// What a handler knows about the task it runs.
///
/// A long handler should watch for cancellation (the task was cancelled, its lease was lost,
/// or the worker is shutting down past its grace period). What it returns then matters little:
/// a user's cancel ends the task cancelled, a lost lease refuses the report, and a shutdown
/// hands the task back to its queue whatever the handler says, so returning
/// `TaskError::fatal` is fine:
///
/// ```
/// use std::time::Duration;
/// use switchyard::{Client, TaskError, Worker};
/// let client = Client::memory();
/// let worker = Worker::builder(&client, "worker-1", ["exports"])?
///     .handle("export", |ctx, _payload| async move {
///         for _chunk in 0..100 {
///             tokio::select! {
///                 _ = ctx.cancelled() => return Err(TaskError::fatal("cancelled")),
///                 _ = tokio::time::sleep(Duration::from_millis(10)) => {}
///             }
///         }
///         Ok(format!("exported on attempt {}", ctx.attempt).into_bytes())
///     })
///     .build()?;
/// # Ok::<(), switchyard::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task.
    pub id: TaskId,
    /// Its queue.
    pub queue: QueueName,
    /// Its kind.
    pub kind: TaskKind,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When the lease runs out (ms since the epoch, on the backend's clock, which may differ
    /// from this machine's). The runtime measures the task's timeout on its own clock from
    /// when it received the task; the backend's heartbeat enforces this deadline.
    pub deadline: Millis,
    /// The worker running it.
    pub worker: WorkerId,
    pub(super) cancel: CancellationToken,
    pub(super) reporter: Reporter,
}

/// What [`TaskContext::progress`] reports through: the backend and the attempt's lease.
#[derive(Clone)]
pub(super) struct Reporter {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) lease: Lease,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    /// The children of this task, if it is a flow's task with children (`crate::tree`): each
    /// with its end as counted for this task — its result, or how it failed — in the order
    /// they were submitted. Empty for a task without children.
    pub async fn children(&self) -> Result<Vec<crate::tree::ChildResult>> {
        Ok(self
            .reporter
            .backend
            .children(self.id)
            .await?
            .unwrap_or_default())
    }

    /// Whether the task was cancelled (or its lease lost): stop working on it.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the task is cancelled (or its lease lost); use it in `tokio::select!`.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// The cancellation token itself, to hand to code that takes one.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Reports how far the task has come: `fraction` of it done (`0.0..=1.0`) and a message
    /// (at most 1,024 bytes; may be empty). Stored under this attempt's lease and readable from
    /// [`TaskHandle::progress`](crate::TaskHandle::progress), `switchyard task` and the
    /// dashboard; announced (an event, waiting handles woken) at most once a second, so it may
    /// be called as often as is convenient ([`crate::progress`]).
    ///
    /// `Ok(false)`: refused, because the lease is no longer this attempt's (it was taken back;
    /// the task is, or will be, cancelled for this worker). An invalid fraction or message, or
    /// a backend that cannot be reached, is an error.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use switchyard::{Client, QueueConfig, TaskSpec, Worker};
    /// let client = Client::memory();
    /// client.declare("images", QueueConfig::default()).await?;
    /// let task = client.submit(TaskSpec::builder("images", "resize").build()?).await?;
    /// let worker = Worker::builder(&client, "w", ["images"])?
    ///     .handle("resize", |ctx, _payload| async move {
    ///         for done in 1..=4 {
    ///             ctx.progress(f64::from(done) / 4.0, format!("{done} of 4 sizes")).await?;
    ///         }
    ///         Ok(Vec::new())
    ///     })
    ///     .build()?;
    /// let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    /// task.wait(Duration::from_secs(5)).await?;
    /// let progress = task.progress().await?.expect("reported");
    /// assert_eq!((progress.fraction(), progress.message()), (1.0, "4 of 4 sizes"));
    /// assert_eq!(progress.reports(), 4);
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn progress(&self, fraction: f64, message: impl Into<String>) -> Result<bool> {
        let report = Progress::new(fraction, message)?;
        let ack = self
            .reporter
            .backend
            .progress(&self.reporter.lease, &report)
            .await?;
        Ok(matches!(ack, ProgressAck::Stored { .. }))
    }
}
