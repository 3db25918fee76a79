//! Configuring a worker: [`WorkerBuilder`], its settings, and handlers made uniform (every
//! handler, typed or raw, becomes one function from a context and bytes to bytes).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_core::prelude::*;
use switchyard_core::{Error, QueueConfig, QueueName, Result, WorkerSpec};
use tokio_util::sync::CancellationToken;

use super::{Inner, TaskContext, TaskError, Worker};
use crate::client::Task;
use crate::json::{from_json, to_json};

/// What a handler returns, whatever its kind.
pub(super) type HandlerFuture =
    Pin<Box<dyn Future<Output = std::result::Result<Vec<u8>, TaskError>> + Send>>;
/// Every handler, typed or raw, as one function from a context and a payload to a result.
pub(super) type Handler = Arc<dyn Fn(TaskContext, Vec<u8>) -> HandlerFuture + Send + Sync>;

/// Configures a [`Worker`].
///
/// ```
/// use std::time::Duration;
/// use switchyard::{Client, TaskError, Worker};
/// let client = Client::memory();
/// let worker = Worker::builder(&client, "worker-1", ["emails"])?
///     .capacity(8)
///     .handle("send", |_ctx, payload| async move { Ok::<_, TaskError>(payload) })
///     .shutdown_grace(Duration::from_secs(10))
///     .build()?;
/// # Ok::<(), switchyard::Error>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct WorkerBuilder {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) spec: WorkerSpec,
    pub(super) declarations: Vec<(QueueName, QueueConfig)>,
    pub(super) handlers: HashMap<String, Handler>,
    pub(super) settings: Settings,
}

/// How a worker behaves beyond its spec, as its builder set it.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// How long a stop waits for running handlers (default 30 s).
    pub(super) shutdown_grace: Duration,
    /// How long a stopped handler may take to return (default 5 s).
    pub(super) cancel_grace: Duration,
    /// How often, at most, the worker runs maintenance (default every second; `None`: never).
    pub(super) maintenance: Option<Duration>,
    /// How long one wait for tasks lasts (default 500 ms).
    pub(super) receive_slice: Duration,
    /// Where to serve metrics (default nowhere).
    pub(super) metrics: Option<std::net::SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shutdown_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(5),
            maintenance: Some(Duration::from_secs(1)),
            receive_slice: Duration::from_millis(500),
            metrics: None,
        }
    }
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("spec", &self.spec)
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Slots: tasks run at once (default 1).
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.spec = self.spec.capacity(capacity);
        self
    }

    /// Weight for the weighted strategy (default 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.spec = self.spec.weight(weight);
        self
    }

    /// How long the worker may stay silent before it counts as dead (default 15 s); it
    /// heartbeats every third of that.
    pub fn heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.spec = self.spec.heartbeat_ttl(ttl);
        self
    }

    /// How long shutdown waits for running handlers before stopping them (default 30 s); the
    /// tasks of stopped handlers go back to their queues.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.settings.shutdown_grace = grace;
        self
    }

    /// How long a cancelled handler may take to return before it is dropped (default 5 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.settings.cancel_grace = grace;
        self
    }

    /// Serves this process's metrics for Prometheus on `addr` (`GET /metrics`) while the
    /// worker runs: attempts and their outcomes, run times, retries, dead letters, tasks in
    /// flight, backend errors and reconnects (the list is in `docs/operations.md`). It
    /// installs the process's `metrics` recorder, so at most one worker of a process can say
    /// it; [`run`](Worker::run) fails with the reason otherwise (or when `addr` is taken). An
    /// application with a `metrics` recorder of its own gets the same series without this.
    pub fn metrics(mut self, addr: std::net::SocketAddr) -> Self {
        self.settings.metrics = Some(addr);
        self
    }

    /// How long one wait for tasks may last before the worker asks the backend again (default
    /// 500 ms). An idle worker is woken as soon as a task arrives for it, so this bounds only
    /// how late it notices a wake-up that was lost (a dropped connection, say); a stop ends the
    /// wait at once whatever its length.
    pub fn receive_slice(mut self, slice: Duration) -> Self {
        self.settings.receive_slice = slice;
        self
    }

    /// How often, at most, this worker runs maintenance (default every second, jittered, and
    /// sooner when a delayed task falls due); `None` to leave maintenance to others.
    pub fn maintenance(mut self, every: Option<Duration>) -> Self {
        self.settings.maintenance = every;
        self
    }

    /// Carries the configuration of `queue`: the worker declares it when it starts, and again
    /// whenever the backend has lost it (Redis restarted without persistence, was flushed, or
    /// failed over to a replica without the data), so that it recovers by itself. Declaring
    /// is a no-op while the queue exists with this configuration; with another one the worker
    /// does not start ([`Error::QueueConflict`]). The queue need not be one the worker serves.
    /// Queues the client keeps declared ([`Client::keep_declared`](crate::Client::keep_declared)) are carried already.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use switchyard::{Client, Policy, QueueConfig, Strategy, TaskError, Worker};
    /// let client = Client::memory();
    /// let worker = Worker::builder(&client, "w", ["emails"])?
    ///     .declare("emails", QueueConfig::new(Policy::PRIORITY, Strategy::LeastLoaded))?
    ///     .handle("send", |_ctx, payload| async move { Ok::<_, TaskError>(payload) })
    ///     .build()?;
    /// let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    /// // No one else declares `emails`: the worker does, as it starts.
    /// while client.backend().queue_config(&"emails".parse()?).await?.is_none() {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// let task = client.submit_json("emails", "send", "hi").await?;
    /// assert_eq!(task.result::<String>(Duration::from_secs(5)).await?, "hi");
    /// stop.shutdown();
    /// running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn declare(mut self, queue: &str, config: QueueConfig) -> Result<Self> {
        config.validate()?;
        let queue = QueueName::new(queue)?;
        self.declarations.retain(|(q, _)| *q != queue);
        self.declarations.push((queue, config));
        Ok(self)
    }

    /// Registers a handler for `kind` on raw bytes.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// # use std::time::Duration;
    /// # use switchyard::{Client, QueueConfig, TaskError, TaskSpec, Worker};
    /// # let client = Client::memory();
    /// # client.declare("q", QueueConfig::default()).await?;
    /// let worker = Worker::builder(&client, "w", ["q"])?
    ///     .handle("reverse", |_ctx, mut payload: Vec<u8>| async move {
    ///         payload.reverse();
    ///         Ok::<_, TaskError>(payload)
    ///     })
    ///     .build()?;
    /// # let stop = worker.shutdown_handle();
    /// # let running = tokio::spawn(worker.run());
    /// let spec = TaskSpec::builder("q", "reverse").payload(b"abc".to_vec()).build()?;
    /// let task = client.submit(spec).await?;
    /// assert_eq!(task.result_bytes(Duration::from_secs(5)).await?, b"cba");
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn handle<F, Fut>(mut self, kind: &str, f: F) -> Self
    where
        F: Fn(TaskContext, Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Vec<u8>, TaskError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |ctx, payload| Box::pin(f(ctx, payload)));
        self.handlers.insert(kind.to_owned(), handler);
        self
    }

    /// Registers a handler for `kind` whose payload and result are JSON (a payload that does
    /// not decode fails the task without retry).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// # use std::time::Duration;
    /// # use switchyard::{Client, QueueConfig, TaskError, Worker};
    /// # let client = Client::memory();
    /// # client.declare("q", QueueConfig::default()).await?;
    /// let worker = Worker::builder(&client, "w", ["q"])?
    ///     .handle_json("sum", |_ctx, numbers: Vec<i64>| async move {
    ///         Ok::<_, TaskError>(numbers.iter().sum::<i64>())
    ///     })
    ///     .build()?;
    /// # let stop = worker.shutdown_handle();
    /// # let running = tokio::spawn(worker.run());
    /// let task = client.submit_json("q", "sum", &[1, 2, 3]).await?;
    /// assert_eq!(task.result::<i64>(Duration::from_secs(5)).await?, 6);
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn handle_json<T, R, F, Fut>(self, kind: &str, f: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(TaskContext, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, TaskError>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.handle(kind, move |ctx, payload| {
            let f = f.clone();
            async move {
                let input: T = from_json("payload", &payload).map_err(TaskError::fatal)?;
                let output = f(ctx, input).await?;
                to_json("result", &output).map_err(TaskError::fatal)
            }
        })
    }

    /// Registers the handler of a typed task (see [`Task`]); producers submit it with
    /// [`Queue::enqueue`](crate::Queue::enqueue).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// # use std::time::Duration;
    /// # use switchyard::{Client, QueueConfig, TaskError, Worker};
    /// use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// struct Add { a: i64, b: i64 }
    /// impl switchyard::Task for Add { const KIND: &'static str = "add"; }
    ///
    /// # let client = Client::memory();
    /// # client.declare("math", QueueConfig::default()).await?;
    /// let worker = Worker::builder(&client, "w", ["math"])?
    ///     .handle_task(|_ctx, add: Add| async move { Ok::<_, TaskError>(add.a + add.b) })
    ///     .build()?;
    /// # let stop = worker.shutdown_handle();
    /// # let running = tokio::spawn(worker.run());
    /// let task = client.queue("math")?.enqueue(&Add { a: 2, b: 3 }).await?;
    /// assert_eq!(task.result::<i64>(Duration::from_secs(5)).await?, 5);
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn handle_task<T, R, F, Fut>(self, f: F) -> Self
    where
        T: Task,
        R: Serialize + Send + 'static,
        F: Fn(TaskContext, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, TaskError>> + Send + 'static,
    {
        self.handle_json(T::KIND, f)
    }

    /// Renamed [`handle_task`](WorkerBuilder::handle_task): it registers a handler, as
    /// [`handle`](WorkerBuilder::handle) and [`handle_json`](WorkerBuilder::handle_json) do.
    #[deprecated(since = "0.2.0", note = "renamed to `WorkerBuilder::handle_task`")]
    pub fn task<T, R, F, Fut>(self, f: F) -> Self
    where
        T: Task,
        R: Serialize + Send + 'static,
        F: Fn(TaskContext, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, TaskError>> + Send + 'static,
    {
        self.handle_task(f)
    }

    /// Checks the configuration and makes the worker (it registers when it runs).
    ///
    /// ```
    /// use switchyard::{Client, TaskError, Worker};
    /// let client = Client::memory();
    /// let no_handler = Worker::builder(&client, "w", ["q"])?.build();
    /// assert!(no_handler.unwrap_err().to_string().contains("at least one handler"));
    /// let worker = Worker::builder(&client, "w", ["q"])?
    ///     .capacity(4)
    ///     .handle("noop", |_ctx, _payload| async move { Ok::<_, TaskError>(Vec::new()) })
    ///     .build()?;
    /// assert_eq!(worker.id().as_str(), "w");
    /// # Ok::<(), switchyard::Error>(())
    /// ```
    pub fn build(self) -> Result<Worker> {
        self.spec.validate()?;
        if self.settings.receive_slice.is_zero() {
            return Err(Error::invalid(
                "receive slice",
                "0: a worker waiting for tasks must wait for some time (500 ms by default)",
            ));
        }
        if self.handlers.is_empty() {
            return Err(Error::invalid(
                "worker handlers",
                "register at least one handler",
            ));
        }
        let shutdown = CancellationToken::new();
        let inner = Inner::new(
            self.backend,
            self.spec,
            self.declarations,
            self.handlers,
            self.settings,
            shutdown.clone(),
        );
        Ok(Worker {
            inner: Arc::new(inner),
            shutdown,
        })
    }
}
