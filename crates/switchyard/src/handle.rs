//! [`TaskHandle`]: following one task after it was submitted.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use switchyard_core::prelude::*;
use switchyard_core::{
    CancelOutcome, Error, Progress, Result, SubmitOutcome, TaskId, TaskInfo, TaskOutcome, TaskState,
};

use crate::json::from_json;

/// Follows one task: its state, its result, its cancellation.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use switchyard::{CancelOutcome, Client, Error, QueueConfig, TaskSpec, TaskState};
/// let client = Client::memory();
/// client.declare("reports", QueueConfig::default()).await?;
/// let spec = TaskSpec::builder("reports", "monthly").delay(Duration::from_secs(3600)).build()?;
/// let task = client.submit(spec).await?;
/// assert_eq!(task.state().await?, Some(TaskState::Scheduled));
///
/// // Nobody serves the queue: waiting times out, and says so.
/// assert!(matches!(task.wait(Duration::from_millis(10)).await, Err(Error::Timeout { .. })));
///
/// // Not started yet, so the cancel takes effect at once; the result says it was cancelled.
/// assert!(matches!(task.cancel().await?, CancelOutcome::Cancelled { .. }));
/// assert!(matches!(task.result_bytes(Duration::from_secs(1)).await, Err(Error::TaskCancelled(_))));
/// # Ok::<(), switchyard::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct TaskHandle {
    id: TaskId,
    /// What the submit that made this handle answered (none for a handle made from an id).
    answer: Option<SubmitOutcome>,
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id)
            .field("duplicate", &self.was_duplicate())
            .finish_non_exhaustive()
    }
}

impl TaskHandle {
    /// A handle on task `id` of `backend`.
    pub(crate) fn new(id: TaskId, backend: Arc<dyn Backend>) -> Self {
        TaskHandle {
            id,
            answer: None,
            backend,
        }
    }

    /// A handle on the task a submit answered.
    pub(crate) fn submitted(out: &SubmitOutcome, backend: Arc<dyn Backend>) -> Self {
        TaskHandle {
            id: out.id,
            answer: Some(out.clone()),
            backend,
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Whether the submit found the task already there (same id, or same dedup key: then this
    /// handle follows the existing task).
    pub fn was_duplicate(&self) -> bool {
        self.answer.as_ref().is_some_and(|a| a.duplicate)
    }

    /// Whether the submit found the task already there with another payload than the one it
    /// brought: under a throttling dedup key, the work asked for may not be the work that will
    /// run ([`crate::flow::dedup`]).
    pub fn payload_differed(&self) -> bool {
        self.answer.as_ref().is_some_and(|a| a.payload_differs)
    }

    /// Whether the submit was debounced into the task holding its dedup key: that task, which
    /// had not started, took the submit's payload and run time
    /// ([`crate::flow::dedup`]).
    pub fn was_replaced(&self) -> bool {
        self.answer.as_ref().is_some_and(|a| a.replaced)
    }

    /// What the submit that made this handle answered (`None` for a handle made from an id,
    /// [`Client::task_handle`](crate::Client::task_handle)).
    pub fn submit_answer(&self) -> Option<&SubmitOutcome> {
        self.answer.as_ref()
    }

    /// Everything the backend knows about the task (`None` once its record expired).
    pub async fn info(&self) -> Result<Option<TaskInfo>> {
        self.backend.get_task(self.id).await
    }

    /// The task's state.
    pub async fn state(&self) -> Result<Option<TaskState>> {
        Ok(self.info().await?.map(|i| i.state))
    }

    /// Attempts started so far.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use switchyard::{Backoff, Client, QueueConfig, TaskError, TaskSpec, Worker};
    /// let client = Client::memory();
    /// let fast_retries = Backoff { base_ms: 10, max_ms: 10, jitter_pct: 0 };
    /// client.declare("q", QueueConfig::default().with_backoff(fast_retries)).await?;
    /// let task = client.submit(TaskSpec::builder("q", "flaky").build()?).await?;
    /// assert_eq!(task.attempts().await?, Some(0));
    /// let worker = Worker::builder(&client, "w", ["q"])?
    ///     .maintenance(Some(Duration::from_millis(10)))
    ///     .handle("flaky", |ctx, _p| async move {
    ///         if ctx.attempt == 1 { Err(TaskError::retry("not yet")) } else { Ok(Vec::new()) }
    ///     })
    ///     .build()?;
    /// let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    /// task.wait(Duration::from_secs(5)).await?;
    /// assert_eq!(task.attempts().await?, Some(2));
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn attempts(&self) -> Result<Option<u32>> {
        Ok(self.info().await?.map(|i| i.attempts))
    }

    /// The progress its latest attempt reported ([`TaskContext::progress`](crate::TaskContext::progress)),
    /// if any.
    pub async fn progress(&self) -> Result<Option<Progress>> {
        Ok(self.info().await?.and_then(|i| i.progress))
    }

    /// Waits up to `timeout`, without polling, for an announcement of the task's progress
    /// newer than `seen` (what an earlier call returned; `None` at first) or for the task to
    /// finish; returns the progress then (its newest report). Announcements come at most once a second
    /// per attempt ([`crate::progress`]), so a progress bar built on this loop redraws at most
    /// that often:
    ///
    /// ```no_run
    /// # async fn bar(task: switchyard::TaskHandle) -> switchyard::Result<()> {
    /// use std::time::Duration;
    /// let mut seen = None;
    /// while !task.state().await?.is_some_and(|s| s.is_terminal()) {
    ///     let now = task.wait_progress(seen.as_ref(), Duration::from_secs(30)).await?;
    ///     if let Some(p) = &now {
    ///         println!("{} {}", p.percent_text(), p.message());
    ///     }
    ///     seen = now;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_progress(
        &self,
        seen: Option<&Progress>,
        timeout: Duration,
    ) -> Result<Option<Progress>> {
        self.backend.wait_progress(self.id, seen, timeout).await
    }

    /// Changes the task while it has not started: its priority, payload or run time
    /// ([`TaskChange`](crate::TaskChange), whose module states the rule); refused with
    /// [`Error::WrongState`] once it has been dispatched. Answers where it is now.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Client, Policy, QueueConfig, Strategy, TaskChange, TaskSpec, TaskState};
    /// let client = Client::memory();
    /// let config = QueueConfig::new(Policy::Priority { aging_step_ms: None }, Strategy::Pull);
    /// client.declare("q", config).await?;
    /// let first = client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// let second = client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// // The second overtakes the first, with another payload; the first waits an hour.
    /// second.change(&TaskChange::new().priority(5).payload(b"urgent".to_vec())).await?;
    /// let in_an_hour = second.info().await?.unwrap().created_at + 3_600_000;
    /// let moved = first.change(&TaskChange::new().run_at(in_an_hour)).await?;
    /// assert_eq!(moved.state, Some(TaskState::Scheduled));
    /// assert_eq!(second.info().await?.unwrap().payload, b"urgent");
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn change(&self, change: &crate::TaskChange) -> Result<SubmitOutcome> {
        self.backend.change_task(self.id, change).await
    }

    /// Cancels the task: at once if it has not started, by asking its worker if it runs
    /// (the worker learns of it at its next heartbeat; the answer is then
    /// [`CancelOutcome::Requested`]).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{CancelOutcome, Client, QueueConfig, TaskOutcome, TaskSpec};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// let task = client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// assert!(matches!(task.cancel().await?, CancelOutcome::Cancelled { .. }));
    /// assert_eq!(task.wait(std::time::Duration::from_secs(1)).await?, TaskOutcome::Cancelled);
    /// // Cancelling again changes nothing.
    /// assert!(matches!(task.cancel().await?, CancelOutcome::AlreadyFinished(_)));
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn cancel(&self) -> Result<CancelOutcome> {
        self.backend.cancel(self.id).await
    }

    /// Waits (without polling the backend) for the task to end, up to `timeout`; then
    /// [`Error::Timeout`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use switchyard::{Client, QueueConfig, TaskError, TaskOutcome, TaskSpec, Worker};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// let worker = Worker::builder(&client, "w", ["q"])?
    ///     .handle("echo", |_ctx, payload| async move { Ok::<_, TaskError>(payload) })
    ///     .build()?;
    /// let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    /// let spec = TaskSpec::builder("q", "echo").payload(b"hi".to_vec()).build()?;
    /// let task = client.submit(spec).await?;
    /// assert_eq!(task.wait(Duration::from_secs(5)).await?, TaskOutcome::Succeeded(b"hi".to_vec()));
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn wait(&self, timeout: Duration) -> Result<TaskOutcome> {
        match self.backend.wait_outcome(self.id, timeout).await? {
            Some(outcome) => Ok(outcome),
            None => Err(Error::Timeout {
                operation: "waiting for the task",
                after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Waits for the task and returns its raw result; a dead task is
    /// [`Error::TaskFailed`], a cancelled one [`Error::TaskCancelled`]: the task's own failure,
    /// told from a failed call (a timeout, a lost connection) by
    /// [`Error::is_task_failure`]. ([`wait`](TaskHandle::wait) returns how the task ended as
    /// a value instead.)
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use switchyard::{Client, QueueConfig, TaskError, Worker};
    /// let client = Client::memory();
    /// let q = client.queue("q")?;
    /// q.declare(QueueConfig::default()).await?;
    /// let worker = Worker::builder(&client, "w", [&q])?
    ///     .handle("parse", |_ctx, _p| async move { Err::<Vec<u8>, _>(TaskError::fatal("bad input")) })
    ///     .build()?;
    /// let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    /// let task = q.submit_json("parse", "{").await?;
    /// match task.result_bytes(Duration::from_secs(5)).await {
    ///     Err(e) if e.is_task_failure() => assert_eq!(e.failed_task(), Some(task.id())),
    ///     other => panic!("expected the task's own failure, got {other:?}"),
    /// }
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn result_bytes(&self, timeout: Duration) -> Result<Vec<u8>> {
        match self.wait(timeout).await? {
            TaskOutcome::Succeeded(bytes) => Ok(bytes),
            TaskOutcome::Dead(error) => Err(Error::TaskFailed { id: self.id, error }),
            TaskOutcome::Cancelled => Err(Error::TaskCancelled(self.id)),
            TaskOutcome::Expired => Err(Error::TaskExpired(self.id)),
            other => Err(Error::backend(
                switchyard_core::BackendErrorKind::Other,
                format!(
                    "task {} ended in a way this version does not know: {other:?}",
                    self.id
                ),
            )),
        }
    }

    /// Waits for the task and decodes its JSON result; a dead task is
    /// [`Error::TaskFailed`], a cancelled one [`Error::TaskCancelled`], an expired one
    /// [`Error::TaskExpired`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use switchyard::{Client, Error, QueueConfig, TaskError, Worker};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// let worker = Worker::builder(&client, "w", ["q"])?
    ///     .handle_json("half", |_ctx, n: u32| async move {
    ///         if n % 2 == 1 { return Err(TaskError::fatal(format!("{n} is odd"))); }
    ///         Ok(n / 2)
    ///     })
    ///     .build()?;
    /// let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    /// let even = client.submit_json("q", "half", &10).await?;
    /// assert_eq!(even.result::<u32>(Duration::from_secs(5)).await?, 5);
    /// let odd = client.submit_json("q", "half", &7).await?;
    /// let err = odd.result::<u32>(Duration::from_secs(5)).await.unwrap_err();
    /// assert!(matches!(err, Error::TaskFailed { error, .. } if error == "7 is odd"));
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn result<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        from_json("result", &self.result_bytes(timeout).await?)
    }
}
