//! Operating queues from a [`Client`]: pausing and resuming, the dead-letter set, re-driving,
//! deleting and purging tasks, reading, changing and deleting a queue's configuration, and the
//! reads behind `switchyard status` (events, stats). Submitting is in `client.rs`, the task
//! browser in `browse.rs`.

use switchyard_core::admin::{Purge, PurgeReport};
use switchyard_core::{Event, QueueConfig, Result, Stats, TaskId, TaskInfo};

use crate::client::Client;
use crate::handle::TaskHandle;

impl Client {
    /// Pauses `queue`: nothing is dispatched from it until [`resume`](Client::resume);
    /// submissions are still accepted (they wait, ready), running tasks finish and report.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::backend::WorkerSpec;
    /// use switchyard::{Client, QueueConfig, TaskSpec, TaskState};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// // A registered worker (as a running `Worker` would be) with a free slot.
    /// client.backend().register_worker(WorkerSpec::new("w", ["q"])?).await?;
    /// client.pause("q").await?;
    /// let task = client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// assert_eq!(task.state().await?, Some(TaskState::Ready)); // w has a free slot, but waits
    /// assert_eq!(client.resume("q").await?, 1); // dispatched at once
    /// assert_eq!(task.state().await?, Some(TaskState::Dispatched));
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn pause(&self, queue: &str) -> Result<()> {
        self.queue(queue)?.pause().await
    }

    /// Resumes a paused `queue`; answers how many waiting tasks it dispatched at once (workers
    /// waiting on a pull queue are woken instead).
    pub async fn resume(&self, queue: &str) -> Result<usize> {
        self.queue(queue)?.resume().await
    }

    /// Dead tasks of a queue, oldest first.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use switchyard::{Client, QueueConfig, TaskError, TaskSpec, Worker};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// let worker = Worker::builder(&client, "w", ["q"])?
    ///     .handle("parse", |_ctx, _p| async move { Err::<Vec<u8>, _>(TaskError::fatal("bad input")) })
    ///     .build()?;
    /// let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    /// let task = client.submit(TaskSpec::builder("q", "parse").build()?).await?;
    /// task.wait(Duration::from_secs(5)).await?;
    /// let dead = client.dead_letters("q", 10).await?;
    /// assert_eq!(dead[0].id, task.id());
    /// assert_eq!(dead[0].last_error.as_deref(), Some("bad input"));
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<TaskInfo>> {
        self.queue(queue)?.dead_letters(limit).await
    }

    /// Renamed [`dead_letters`](Client::dead_letters).
    #[deprecated(since = "0.2.0", note = "renamed to `Client::dead_letters`")]
    pub async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<TaskInfo>> {
        self.dead_letters(queue, limit).await
    }

    /// Moves a dead task back to its queue with its attempts reset (same id).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// # use std::time::Duration;
    /// use switchyard::{Client, QueueConfig, TaskError, TaskSpec, TaskState, Worker};
    /// # let client = Client::memory();
    /// # client.declare("q", QueueConfig::default()).await?;
    /// # let worker = Worker::builder(&client, "w", ["q"])?
    /// #     .handle("parse", |_ctx, _p| async move { Err::<Vec<u8>, _>(TaskError::fatal("bad input")) })
    /// #     .build()?;
    /// # let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    /// # let task = client.submit(TaskSpec::builder("q", "parse").build()?).await?;
    /// # task.wait(Duration::from_secs(5)).await?;
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// // `task` died (see `Client::dead_letters`); once the cause is fixed:
    /// let again = client.redrive(task.id()).await?;
    /// assert_eq!(again.id(), task.id());
    /// assert_eq!(again.state().await?, Some(TaskState::Ready));
    /// assert_eq!(again.attempts().await?, Some(0));
    /// assert!(client.dead_letters("q", 10).await?.is_empty());
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn redrive(&self, id: TaskId) -> Result<TaskHandle> {
        let out = self.backend().redrive(id).await?;
        Ok(self.handle(&out))
    }

    /// Deletes a finished task (succeeded, dead or cancelled) with its outcome; a task that can
    /// still run is refused ([`Error::WrongState`]): cancel it first.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Client, Error, QueueConfig, TaskSpec};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// let task = client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// assert!(matches!(client.delete_task(task.id()).await, Err(Error::WrongState { .. })));
    /// task.cancel().await?;
    /// client.delete_task(task.id()).await?;
    /// assert_eq!(task.info().await?, None);
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn delete_task(&self, id: TaskId) -> Result<()> {
        self.backend().delete_task(id).await
    }

    /// Removes up to `limit` tasks of one [`Purge`] class of `queue`: waiting tasks are
    /// cancelled (whoever awaits them learns it), dead or finished ones deleted. Call again
    /// while [`PurgeReport::more`] says tasks are left, so that a large queue is emptied in
    /// bounded steps.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::admin::Purge;
    /// use switchyard::{Client, QueueConfig, TaskSpec};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// for _ in 0..3 {
    ///     client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// }
    /// let first = client.purge("q", Purge::Waiting, 2).await?;
    /// assert_eq!((first.removed, first.more), (2, true));
    /// let rest = client.purge("q", Purge::Waiting, 2).await?;
    /// assert_eq!((rest.removed, rest.more), (1, false));
    /// assert_eq!(client.stats().await?.queues[0].cancelled, 3);
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn purge(&self, queue: &str, what: Purge, limit: usize) -> Result<PurgeReport> {
        self.queue(queue)?.purge(what, limit).await
    }

    /// A declared queue's configuration (`None` when it is not declared).
    pub async fn queue_config(&self, queue: &str) -> Result<Option<QueueConfig>> {
        self.queue(queue)?.config().await
    }

    /// Changes a declared queue's configuration; `false` if it already had this one. Limits,
    /// retries, timeouts, retention and events change at any time; a new policy needs an empty
    /// ready set and a new strategy or seed a queue no worker serves
    /// ([`Reshape`](switchyard_core::admin::Reshape)), otherwise [`Error::QueueInUse`] says
    /// what stands in the way. A queue this client [keeps declared](Client::keep_declared)
    /// is kept with its new configuration.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Client, Error, Policy, QueueConfig, TaskSpec};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// let more = QueueConfig::default().with_max_attempts(10);
    /// assert!(client.reconfigure("q", more).await?);
    /// assert_eq!(client.queue_config("q").await?, Some(more));
    ///
    /// client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// let mut by_priority = more;
    /// by_priority.policy = Policy::PRIORITY;
    /// let refused = client.reconfigure("q", by_priority).await;
    /// assert!(matches!(refused, Err(Error::QueueInUse { .. })), "a task is ready");
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn reconfigure(&self, queue: &str, config: QueueConfig) -> Result<bool> {
        self.queue(queue)?.reconfigure(config).await
    }

    /// Deletes a queue that holds no task and that no registered worker serves (otherwise
    /// [`Error::QueueInUse`]), with its counters, pause flag and learned costs. This client
    /// stops keeping it declared.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Client, QueueConfig};
    /// let client = Client::memory();
    /// client.declare("old", QueueConfig::default()).await?;
    /// client.delete_queue("old").await?;
    /// assert_eq!(client.queue_config("old").await?, None);
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn delete_queue(&self, queue: &str) -> Result<()> {
        self.queue(queue)?.delete().await
    }

    /// Events after position `after` (from the oldest kept when `None`), at most `limit`.
    /// Which kinds a queue records is its [`EventLevel`](switchyard_core::EventLevel).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Client, EventKind, EventLevel, QueueConfig, TaskSpec};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default().with_events(EventLevel::All)).await?;
    /// let task = client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// task.cancel().await?;
    /// let events = client.events(None, 100).await?;
    /// let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    /// assert_eq!(kinds, [EventKind::Submitted, EventKind::Cancelled]);
    /// // Read on from the last event seen:
    /// assert!(client.events(Some(&events[1].id), 100).await?.is_empty());
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        self.backend().events(after, limit).await
    }

    /// Counts per queue and per worker.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Client, QueueConfig, TaskSpec};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// let stats = client.stats().await?;
    /// assert_eq!(stats.queues[0].queue.as_ref().unwrap().as_str(), "q");
    /// assert_eq!((stats.queues[0].ready, stats.queues[0].total()), (1, 1));
    /// assert!(stats.workers.is_empty());
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn stats(&self) -> Result<Stats> {
        self.backend().stats().await
    }
}
