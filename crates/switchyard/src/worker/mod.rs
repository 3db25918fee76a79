//! The worker runtime: registers a worker, receives tasks, runs their handlers concurrently up
//! to its capacity, heartbeats, runs maintenance, and shuts down gracefully. See [`Worker`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_core::backend::timeout_error;
use switchyard_core::display::duration;
use switchyard_core::prelude::*;
use switchyard_core::{
    Ack, Clock, Delivery, Error, LeaseToken, Millis, QueueConfig, QueueName, Result, SystemClock,
    TaskId, WorkerId, WorkerRef, WorkerSpec,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{Client, Task, from_json, to_json};

mod context;
mod recorded;
mod recovery;
mod registration;
mod report;

pub use context::{TaskContext, TaskError};
use recovery::{Throttle, repeats};
use switchyard_core::retry::Retry;

type HandlerFuture = Pin<Box<dyn Future<Output = std::result::Result<Vec<u8>, TaskError>> + Send>>;
type Handler = Arc<dyn Fn(TaskContext, Vec<u8>) -> HandlerFuture + Send + Sync>;

/// Stops a running [`Worker`]. Cheap to clone.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use switchyard::{Client, QueueConfig, TaskError, Worker, WorkerReport};
/// let client = Client::memory();
/// client.declare("jobs", QueueConfig::default()).await?;
/// let worker = Worker::builder(&client, "worker-1", ["jobs"])?
///     .handle("noop", |_ctx, _payload| async move { Ok::<_, TaskError>(Vec::new()) })
///     .build()?;
/// let stop = worker.shutdown_handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_millis(50)).await;
///     stop.shutdown();
/// });
/// let report = worker.run().await?; // returns once the handle fired
/// assert_eq!(report, WorkerReport::default());
/// # Ok::<(), switchyard::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Asks the worker to stop: no new tasks, running ones finish within the grace period.
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

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
pub struct WorkerReport {
    /// Tasks whose completion was accepted.
    pub completed: u64,
    /// Failed attempts reported (retries, dead, cancellations).
    pub failed: u64,
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
    backend: Arc<dyn Backend>,
    spec: WorkerSpec,
    declarations: Vec<(QueueName, QueueConfig)>,
    handlers: HashMap<String, Handler>,
    shutdown_grace: Duration,
    cancel_grace: Duration,
    maintenance: Option<Duration>,
    receive_slice: Duration,
    metrics: Option<std::net::SocketAddr>,
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
        self.shutdown_grace = grace;
        self
    }

    /// How long a cancelled handler may take to return before it is dropped (default 5 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Serves this process's metrics for Prometheus on `addr` (`GET /metrics`) while the
    /// worker runs: attempts and their outcomes, run times, retries, dead letters, tasks in
    /// flight, backend errors and reconnects (the list is in `docs/operations.md`). It
    /// installs the process's `metrics` recorder, so at most one worker of a process can say
    /// it; [`run`](Worker::run) fails with the reason otherwise (or when `addr` is taken). An
    /// application with a `metrics` recorder of its own gets the same series without this.
    pub fn metrics(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics = Some(addr);
        self
    }

    /// How long one wait for tasks may last before the worker asks the backend again (default
    /// 500 ms). An idle worker is woken as soon as a task arrives for it, so this bounds only
    /// how late it notices a wake-up that was lost (a dropped connection, say); a stop ends the
    /// wait at once whatever its length.
    pub fn receive_slice(mut self, slice: Duration) -> Self {
        self.receive_slice = slice;
        self
    }

    /// How often, at most, this worker runs maintenance (default every second, jittered, and
    /// sooner when a delayed task falls due); `None` to leave maintenance to others.
    pub fn maintenance(mut self, every: Option<Duration>) -> Self {
        self.maintenance = every;
        self
    }

    /// Carries the configuration of `queue`: the worker declares it when it starts, and again
    /// whenever the backend has lost it (Redis restarted without persistence, was flushed, or
    /// failed over to a replica without the data), so that it recovers by itself. Declaring
    /// is a no-op while the queue exists with this configuration; with another one the worker
    /// does not start ([`Error::QueueConflict`]). The queue need not be one the worker serves.
    /// Queues the client keeps declared ([`Client::keep_declared`]) are carried already.
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
    /// [`Client::enqueue`].
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
    ///     .task(|_ctx, add: Add| async move { Ok::<_, TaskError>(add.a + add.b) })
    ///     .build()?;
    /// # let stop = worker.shutdown_handle();
    /// # let running = tokio::spawn(worker.run());
    /// let task = client.enqueue("math", &Add { a: 2, b: 3 }).await?;
    /// assert_eq!(task.result::<i64>(Duration::from_secs(5)).await?, 5);
    /// # stop.shutdown();
    /// # running.await.unwrap()?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn task<T, R, F, Fut>(self, f: F) -> Self
    where
        T: Task,
        R: Serialize + Send + 'static,
        F: Fn(TaskContext, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, TaskError>> + Send + 'static,
    {
        self.handle_json(T::KIND, f)
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
        if self.receive_slice.is_zero() {
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
        let seed = switchyard_core::rng::entropy();
        Ok(Worker {
            inner: Arc::new(Inner {
                backend: self.backend,
                me: self.spec.worker_ref(),
                spec: self.spec,
                declarations: self.declarations,
                handlers: self.handlers,
                shutdown_grace: self.shutdown_grace,
                cancel_grace: self.cancel_grace,
                maintenance: self.maintenance,
                receive_slice: self.receive_slice,
                metrics: self.metrics,
                running: Mutex::new(Running::default()),
                draining: AtomicBool::new(false),
                registration: tokio::sync::Mutex::new(0),
                last_contact: Mutex::new(Instant::now()),
                lost_reported: AtomicBool::new(false),
                leases_dropped: AtomicBool::new(false),
                retry: recovery::retry(seed),
                register_log: Throttle::default(),
                receive_log: Throttle::default(),
                heartbeat_log: Throttle::default(),
                maintenance_log: Throttle::default(),
                failure_log: Throttle::with_burst(FAILURE_LINES),
                fenced: CancellationToken::new(),
                fence_error: Mutex::new(None),
                shutdown: shutdown.clone(),
                stats: Counters::default(),
            }),
            shutdown,
        })
    }
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    unreported: AtomicU64,
    unconfirmed: AtomicU64,
}

struct Inner {
    backend: Arc<dyn Backend>,
    spec: WorkerSpec,
    /// How the worker names itself in its calls (id and instance token).
    me: WorkerRef,
    /// Queues the worker declares at start and after the backend lost them.
    declarations: Vec<(QueueName, QueueConfig)>,
    handlers: HashMap<String, Handler>,
    shutdown_grace: Duration,
    cancel_grace: Duration,
    maintenance: Option<Duration>,
    receive_slice: Duration,
    /// Where to serve metrics (see `WorkerBuilder::metrics`).
    metrics: Option<std::net::SocketAddr>,
    /// Running handlers, and whether shutdown has stopped them.
    running: Mutex<Running>,
    /// Set when shutdown begins (before the drain): a reaped worker does not register again.
    draining: AtomicBool,
    /// Registration generation, so that concurrent discoveries of a reap register once.
    registration: tokio::sync::Mutex<u64>,
    /// When a registration or heartbeat last got through (tells a reap from lost data).
    last_contact: Mutex<Instant>,
    /// Whether the current loss of the registration was reported already.
    lost_reported: AtomicBool,
    /// Whether the running handlers were stopped because no heartbeat got through for a TTL.
    leases_dropped: AtomicBool,
    /// The pause before the next attempt of a failing call (every error path shares it).
    retry: Retry,
    register_log: Throttle,
    receive_log: Throttle,
    heartbeat_log: Throttle,
    maintenance_log: Throttle,
    /// Failed attempts (see `report_failure`).
    failure_log: Throttle,
    /// Fired when another instance holds the id: the worker stops (see `Inner::fence`).
    fenced: CancellationToken,
    fence_error: Mutex<Option<Error>>,
    /// The worker's shutdown handle's token.
    shutdown: CancellationToken,
    stats: Counters,
}

/// Why the runtime fired a running handler's cancellation token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// A user cancelled the task: the failure report ends it as cancelled.
    Cancelled,
    /// The lease is gone (the heartbeat failed the attempt as timed out, or the worker was
    /// reaped): a report will be refused, and changes nothing.
    LeaseLost,
    /// Shutdown passed its grace period: nothing is reported, the deregistration hands the
    /// task back to its queue.
    Shutdown,
}

/// One running handler.
struct Slot {
    token: CancellationToken,
    /// The first reason its token fired for, if it did.
    stop: Option<Stop>,
}

/// Failed attempts logged per 10 s at most (the rest are counted in the next line).
const FAILURE_LINES: u32 = 20;

/// How many finished leases a worker remembers (see `Running::done`).
const DONE_KEPT: usize = 4_096;

/// The running handlers, keyed by task and lease token (after a reap, the same task may come
/// back to this worker under a new lease while the old handler is still winding down).
#[derive(Default)]
struct Running {
    slots: HashMap<(TaskId, LeaseToken), Slot>,
    /// Every delivery taken and not yet done with, from the moment it was received: a
    /// backend that lost its connection may deliver a lease again (see `Leases::receive_wait`),
    /// and a second copy is skipped.
    held: HashSet<(TaskId, LeaseToken)>,
    /// The latest leases done with (at most [`DONE_KEPT`]): a list of running tasks taken
    /// before one of them ended still names it, and it must not run again.
    done: HashSet<(TaskId, LeaseToken)>,
    done_order: VecDeque<(TaskId, LeaseToken)>,
    /// Set (under the same lock) when shutdown stops every handler: a handler that would start
    /// after that never runs, so no task escapes the stop.
    stopping: bool,
}

impl Running {
    /// Fires the tokens of the matching handlers, recording `why` unless a reason is there.
    fn stop(&mut self, why: Stop, matches: impl Fn(TaskId) -> bool) {
        for ((id, _), slot) in &mut self.slots {
            if matches(*id) {
                slot.stop.get_or_insert(why);
                slot.token.cancel();
            }
        }
    }
}

/// A worker: build it with [`Worker::builder`], then [`Worker::run`] it (or
/// [`Worker::run_until_signal`] in a process of its own). While it runs, it registers,
/// receives tasks, runs their handlers concurrently up to its capacity, heartbeats, runs
/// maintenance, and at the end shuts down gracefully:
///
/// * Each received task runs in its own tokio task, with a [`TaskContext`] whose cancellation
///   token fires when the task is cancelled, its lease is lost, it outruns its timeout, or the
///   worker shuts down past its grace period. A panicking handler fails its task with the panic
///   message; the worker carries on.
/// * **Timeouts** are measured on the worker's own clock: an attempt may run for
///   [`Delivery::timeout_ms`] from the moment the worker received it. A handler still running
///   then is dropped and the attempt fails with the backend's own text,
///   [`timeout_error`](switchyard_core::backend::timeout_error) (`timed out after <t> ms`),
///   so clock skew between the worker and the backend (Redis) moves nothing.
/// * A slot that finishes a task completes it and receives the next one in the same call.
/// * **Leases and heartbeats.** A task's lease lives as long as its worker heartbeats. The
///   heartbeat loop (every third of the heartbeat TTL) extends the worker's expiry; the same
///   call fails, as timed out, this worker's running tasks whose backend deadline passed (the
///   hard limit for a worker too stuck to enforce its own timeout) and reports cancel
///   requests. A worker that stops heartbeating is reaped by any worker's maintenance once its
///   TTL has passed, and its tasks go back to their queues. So every expired lease ends within
///   about `max(heartbeat interval, heartbeat TTL)` (plus one maintenance interval), either
///   way, without any global scan of leases (see [`Membership::heartbeat`](switchyard_core::Membership::heartbeat) and
///   [`Maintain::maintain`](switchyard_core::Maintain::maintain)). If the worker finds it was reaped, it stops its handlers (their
///   leases are gone) and registers again.
/// * The maintenance loop promotes due delayed tasks, reaps dead workers and purges expired
///   records — every worker runs it on a jittered timer; the scripts make that safe.
/// * **Shutdown** (a [`ShutdownHandle`], or a signal with [`Worker::run_until_signal`]) drains
///   the worker (no new tasks; its inbox goes back to the queues), lets running handlers finish
///   within the grace period, then stops the rest: their tokens fire, each gets the cancel
///   grace to return, and whatever it returns — an error of any kind, a panic, or nothing
///   because it was dropped — the runtime reports **nothing** for it; the deregistration that
///   follows hands the task back to its queue (attempt counted). A handler that returns `Ok`
///   after being stopped still completes its task. Only a user's
///   [`TaskHandle::cancel`](crate::TaskHandle::cancel) ends a running task as cancelled.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use switchyard::{Client, QueueConfig, TaskError, Worker};
/// let client = Client::memory();
/// client.declare("jobs", QueueConfig::default()).await?;
/// let worker = Worker::builder(&client, "worker-1", ["jobs"])?
///     .capacity(2)
///     .handle_json("shout", |_ctx, text: String| async move {
///         Ok::<_, TaskError>(text.to_uppercase())
///     })
///     .build()?;
/// let stop = worker.shutdown_handle();
/// let running = tokio::spawn(worker.run());
/// let task = client.submit_json("jobs", "shout", "hello").await?;
/// assert_eq!(task.result::<String>(Duration::from_secs(5)).await?, "HELLO");
/// stop.shutdown();
/// assert_eq!(running.await.unwrap()?.completed, 1);
/// # Ok::<(), switchyard::Error>(())
/// # }).unwrap();
/// ```
pub struct Worker {
    inner: Arc<Inner>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", self.inner.spec.id())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> Millis {
    SystemClock.now_ms()
}

/// Listens for the signals that ask a worker to stop, and resolves with the first one's name.
/// The listeners are in place when this returns.
fn stop_signal() -> std::io::Result<impl Future<Output = &'static str> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                // Without a working listener, only the shutdown handle stops the worker.
                Err(_) => std::future::pending().await,
            }
        })
    }
}

/// A pause of `base` ± 20 %, drawn from `rng`, so that many workers do not act in step.
fn jittered(base: Duration, rng: &mut switchyard_core::rng::SplitMix64) -> Duration {
    base.mul_f64(0.8 + 0.4 * rng.next_f64())
}

impl Worker {
    /// Starts configuring a worker with id `id` serving `queues` (in preference order).
    pub fn builder<I, Q>(client: &Client, id: &str, queues: I) -> Result<WorkerBuilder>
    where
        I: IntoIterator<Item = Q>,
        Q: AsRef<str>,
    {
        let spec = WorkerSpec::new(id, queues)?;
        Ok(WorkerBuilder {
            backend: client.backend().clone(),
            declarations: client.kept_declarations(spec.queues()),
            spec,
            handlers: HashMap::new(),
            shutdown_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(5),
            maintenance: Some(Duration::from_secs(1)),
            receive_slice: Duration::from_millis(500),
            metrics: None,
        })
    }

    /// The worker's id.
    pub fn id(&self) -> &WorkerId {
        self.inner.spec.id()
    }

    /// A handle that stops the worker.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Runs until the process is asked to stop — SIGINT (Ctrl-C) or, on unix, SIGTERM (what
    /// `kill`, systemd, Docker and Kubernetes send) — or until the shutdown handle fires; then
    /// shuts down gracefully as [`Worker::run`] describes. The signal listeners are installed
    /// when the future is first polled, before the worker registers, and removed when it ends.
    ///
    /// ```no_run
    /// use switchyard::{Client, TaskError, Worker};
    /// #[tokio::main]
    /// async fn main() -> Result<(), switchyard::Error> {
    ///     let client = Client::connect("redis://127.0.0.1:6380", "shop").await?;
    ///     let report = Worker::builder(&client, "worker-1", ["emails"])?
    ///         .capacity(8)
    ///         .handle("send", |_ctx, payload| async move { Ok::<_, TaskError>(payload) })
    ///         .build()?
    ///         .run_until_signal()
    ///         .await?;
    ///     println!("{} tasks done", report.completed);
    ///     Ok(())
    /// }
    /// ```
    pub async fn run_until_signal(self) -> Result<WorkerReport> {
        let handle = self.shutdown_handle();
        let id = self.id().clone();
        let listener = match stop_signal() {
            Ok(signal) => Some(tokio::spawn(async move {
                let name = signal.await;
                tracing::info!(worker = %id, "{name}: shutting down");
                handle.shutdown();
            })),
            Err(e) => {
                tracing::warn!(worker = %id, "cannot listen for stop signals: {e}");
                None
            }
        };
        let report = self.run().await;
        if let Some(listener) = listener {
            listener.abort();
        }
        report
    }

    /// The former name of [`Worker::run_until_signal`], kept for compatibility: the same
    /// behaviour, so it also stops on SIGTERM on unix, not only on Ctrl-C.
    pub async fn run_until_ctrl_c(self) -> Result<WorkerReport> {
        self.run_until_signal().await
    }

    /// Registers, then works until the shutdown handle fires; then stops taking tasks (its
    /// inbox goes back to the queues), lets running handlers finish within the grace period,
    /// stops the rest, and deregisters, which hands their tasks back to their queues. Fails
    /// only if the first registration or the deregistration fails.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use switchyard::{Client, QueueConfig, TaskError, TaskSpec, TaskState, Worker};
    /// let client = Client::memory();
    /// client.declare("jobs", QueueConfig::default()).await?;
    /// let worker = Worker::builder(&client, "worker-1", ["jobs"])?
    ///     .handle("slow", |_ctx, _payload| async move {
    ///         tokio::time::sleep(Duration::from_millis(100)).await;
    ///         Ok::<_, TaskError>(b"done".to_vec())
    ///     })
    ///     .build()?;
    /// let stop = worker.shutdown_handle();
    /// let running = tokio::spawn(worker.run());
    /// let task = client.submit(TaskSpec::builder("jobs", "slow").build()?).await?;
    /// while task.state().await? != Some(TaskState::Running) {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// stop.shutdown(); // the running task still finishes, within the grace period
    /// let report = running.await.unwrap()?;
    /// assert_eq!(report.completed, 1);
    /// assert_eq!(task.result_bytes(Duration::from_secs(1)).await?, b"done");
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn run(self) -> Result<WorkerReport> {
        let inner = self.inner.clone();
        let shutdown = self.shutdown.clone();
        if let Some(addr) = inner.metrics {
            crate::metrics::serve(addr)?;
        }
        recorded::capacity(inner.spec.id(), inner.spec.get_capacity());
        inner.register_first().await?;
        let background = CancellationToken::new();
        // If this future is dropped (the worker is killed), the loops it spawned stop with it.
        let _stop_on_drop = background.clone().drop_guard();
        let heartbeat = tokio::spawn(inner.clone().heartbeat_loop(background.clone()));
        let maintenance = inner
            .maintenance
            .map(|every| tokio::spawn(inner.clone().maintenance_loop(every, background.clone())));
        let slots = Arc::new(Semaphore::new(inner.spec.get_capacity() as usize));
        let mut tasks = JoinSet::new();
        let mut pending = VecDeque::new();
        inner
            .receive_loop(&slots, &mut tasks, &mut pending, &shutdown)
            .await;

        if inner.fenced.is_cancelled() {
            // Another instance holds the id: every lease of this one is gone (its handlers were
            // stopped), and draining or deregistering would act on the other's registration.
            while tasks.join_next().await.is_some() {}
            background.cancel();
            let _ = heartbeat.await;
            if let Some(m) = maintenance {
                let _ = m.await;
            }
            return Err(inner
                .take_fence_error()
                .unwrap_or_else(|| Error::WorkerReplaced(inner.spec.id().clone())));
        }

        // Graceful shutdown, in a fixed order:
        // 1. take no new tasks (the inbox goes back to the queues at once);
        inner.draining.store(true, Ordering::SeqCst);
        let drained = match inner.backend.drain_worker(&inner.me).await {
            Ok(back) => back.returned.len(),
            Err(e) => {
                tracing::warn!(worker = %inner.spec.id(), "cannot drain: {e}");
                0
            }
        };
        //    what was handed to it and not started yet runs now, within the grace period:
        //    deliveries that waited for a slot, and hand-offs it may not have seen (asked
        //    for once no more can come);
        inner.adopt(&slots, &mut tasks, pending, &shutdown).await;
        // 2. let running handlers finish within the grace period, reporting as usual;
        let capacity = inner.spec.get_capacity();
        let all_free = slots.clone().acquire_many_owned(capacity);
        if tokio::time::timeout(inner.shutdown_grace, all_free)
            .await
            .is_err()
        {
            // 3. then stop the rest: under one lock, every running handler is marked stopped by
            //    shutdown and its token fires, and no handler starts any more. Each slot drops
            //    its handler at most `cancel_grace` later and reports nothing for a stopped
            //    task (unless the handler returned a value), so no slot is aborted half-way
            //    through a report;
            tracing::warn!(worker = %inner.spec.id(), "grace period over: stopping running tasks; they go back to their queues");
            inner.stop_for_shutdown();
        }
        while tasks.join_next().await.is_some() {}
        // 4. only when every slot is done, stop heartbeating and deregister: the tasks of the
        //    stopped handlers go back to their queues, attempt counted.
        background.cancel();
        let _ = heartbeat.await;
        if let Some(m) = maintenance {
            let _ = m.await;
        }
        let handed_back = match inner.backend.deregister_worker(&inner.me).await {
            Ok(back) => back.returned.len(),
            Err(Error::UnknownWorker(_) | Error::WorkerReplaced(_)) => 0,
            Err(e) => return Err(e),
        };
        Ok(WorkerReport {
            completed: inner.stats.completed.load(Ordering::Relaxed),
            failed: inner.stats.failed.load(Ordering::Relaxed),
            refused: inner.stats.refused.load(Ordering::Relaxed),
            unreported: inner.stats.unreported.load(Ordering::Relaxed),
            unconfirmed: inner.stats.unconfirmed.load(Ordering::Relaxed),
            drained,
            handed_back,
        })
    }
}

impl Inner {
    /// Takes a delivery: false if this worker holds its lease already, or was done with it
    /// lately (a repeated delivery).
    fn claim(&self, delivery: &Delivery) -> bool {
        let key = (delivery.lease.task, delivery.lease.token);
        let mut running = self.running();
        !running.done.contains(&key) && running.held.insert(key)
    }

    /// Done with a delivery (see [`claim`](Self::claim)).
    fn release(&self, delivery: &Delivery) {
        let key = (delivery.lease.task, delivery.lease.token);
        let mut running = self.running();
        if running.held.remove(&key) && running.done.insert(key) {
            running.done_order.push_back(key);
            if running.done_order.len() > DONE_KEPT
                && let Some(old) = running.done_order.pop_front()
            {
                running.done.remove(&old);
            }
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        // A panic never happens while the lock is held (handlers run outside it).
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fires the tokens of the running handlers `matches` selects, for `why`.
    fn stop(&self, why: Stop, matches: impl Fn(TaskId) -> bool) {
        self.running().stop(why, matches);
    }

    /// After a failed heartbeat: once none got through for a whole TTL, the backend may have
    /// reaped this worker and handed its tasks to others at any moment, so its running
    /// handlers are stopped (once) rather than left to run a task twice at once.
    fn drop_expired_leases(&self) {
        let ttl = Duration::from_millis(u64::from(self.spec.heartbeat_ttl_ms()));
        let since = self.since_contact();
        if since > ttl && !self.leases_dropped.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                worker = %self.spec.id(),
                "no heartbeat got through for {} (heartbeat TTL {}): this worker's leases may \
                 have been handed to other workers; stopping its running tasks",
                duration(since),
                duration(ttl)
            );
            self.stop(Stop::LeaseLost, |_| true);
        }
    }

    /// Past the grace period: every running handler is stopped for shutdown and none starts
    /// any more.
    fn stop_for_shutdown(&self) {
        let mut running = self.running();
        running.stopping = true;
        running.stop(Stop::Shutdown, |_| true);
    }

    async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        let every = Duration::from_millis(u64::from(self.spec.heartbeat_ttl_ms()) / 3);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let seen = self.generation().await;
            match self.backend.heartbeat(&self.me).await {
                Ok(reply) => {
                    self.touch();
                    self.heartbeat_log.reset();
                    self.leases_dropped.store(false, Ordering::SeqCst);
                    self.stop(Stop::Cancelled, |id| reply.cancel.contains(&id));
                    self.stop(Stop::LeaseLost, |id| reply.expired.contains(&id));
                }
                Err(Error::UnknownWorker(_)) => self.reregister(seen).await,
                Err(e @ Error::WorkerReplaced(_)) => {
                    self.fence(e);
                    return;
                }
                Err(e) => {
                    recorded::backend_error("heartbeat");
                    if let Some(held) = self.heartbeat_log.pass() {
                        tracing::warn!(worker = %self.spec.id(), "heartbeat failed: {e}{}", repeats(held));
                    }
                    self.drop_expired_leases();
                }
            }
        }
    }

    async fn maintenance_loop(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut rng = switchyard_core::rng::SplitMix64::new(
            now_ms()
                ^ u64::from(std::process::id())
                ^ switchyard_core::strategy::hash52(self.spec.id().as_str().as_bytes()),
        );
        loop {
            let at_most = jittered(every, &mut rng);
            let slept = tokio::select! {
                _ = stop.cancelled() => return,
                slept = self.backend.sleep_until_due(at_most) => slept,
            };
            if let Err(e) = slept {
                // The backend could not say when: fall back to the interval.
                tracing::debug!(worker = %self.spec.id(), "sleep until due failed: {e}");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(at_most) => {}
                }
            }
            for _ in 0..16 {
                match self.backend.maintain(256).await {
                    Ok(report) if report.more => continue,
                    Ok(_) => break,
                    Err(e) => {
                        recorded::backend_error("maintenance");
                        if let Some(held) = self.maintenance_log.pass() {
                            tracing::warn!(worker = %self.spec.id(), "maintenance failed: {e}{}", repeats(held));
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Receives while slots are free, until shutdown. A delivery that finds no free slot (the
    /// backend handed off a task as a slot freed) waits in `pending` for the next one.
    async fn receive_loop(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        pending: &mut VecDeque<(Delivery, Instant)>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.fenced.cancelled() => return,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let mut permits = vec![first];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            while let Some((delivery, received)) = pending.pop_front() {
                let Some(permit) = permits.pop() else {
                    pending.push_front((delivery, received));
                    break;
                };
                tasks.spawn(
                    self.clone()
                        .slot(delivery, received, permit, shutdown.clone()),
                );
            }
            if permits.is_empty() {
                continue;
            }
            let seen = self.generation().await;
            // A stop ends the wait at once, so that the drain that follows comes before any
            // further delivery. A wait dropped half-way may have started tasks here (its reply
            // unread): the drain's `adopt` finds and runs them.
            let asked = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = self.fenced.cancelled() => return,
                asked = self.backend.receive_wait(&self.me, permits.len(), self.receive_slice) => asked,
            };
            match asked {
                Ok(deliveries) => {
                    self.retry.reset();
                    self.receive_log.reset();
                    let received = Instant::now();
                    for delivery in deliveries {
                        if !self.claim(&delivery) {
                            continue;
                        }
                        match permits.pop() {
                            Some(permit) => {
                                tasks.spawn(self.clone().slot(
                                    delivery,
                                    received,
                                    permit,
                                    shutdown.clone(),
                                ));
                            }
                            None => pending.push_back((delivery, received)),
                        }
                    }
                }
                Err(Error::UnknownWorker(_)) => self.reregister(seen).await,
                Err(e @ Error::WorkerReplaced(_)) => {
                    self.fence(e);
                    return;
                }
                Err(e) => {
                    recorded::backend_error("receive");
                    let pause = self.retry.next();
                    if let Some(held) = self.receive_log.pass() {
                        tracing::warn!(
                            worker = %self.spec.id(),
                            "receive failed: {e}; retrying in {}{}",
                            duration(pause),
                            repeats(held)
                        );
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = self.fenced.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
            // Reap finished slot tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
        }
    }

    /// After the drain: runs the deliveries that waited for a slot, and any task running on
    /// this worker in the backend that it does not hold (a hand-off it never saw), each as a
    /// slot frees.
    async fn adopt(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        pending: VecDeque<(Delivery, Instant)>,
        shutdown: &CancellationToken,
    ) {
        let mut adopted: Vec<(Delivery, Instant)> = pending.into();
        match self.backend.running(&self.me).await {
            Ok(running) => {
                let now = Instant::now();
                adopted.extend(
                    running
                        .into_iter()
                        .filter(|d| self.claim(d))
                        .map(|d| (d, now)),
                );
            }
            Err(e) => {
                tracing::warn!(worker = %self.spec.id(), "cannot list its running tasks: {e}");
            }
        }
        for (delivery, received) in adopted {
            let (inner, slots, shutdown) = (self.clone(), slots.clone(), shutdown.clone());
            tasks.spawn(async move {
                if let Ok(permit) = slots.acquire_owned().await {
                    inner.slot(delivery, received, permit, shutdown).await;
                }
            });
        }
    }

    /// Runs a task, reports it, and keeps the slot for the next task the report brings back.
    /// `received` is when the worker got the task: its timeout runs from then, on this clock.
    async fn slot(
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
    async fn attempt(
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
                self.report_failure(delivery, err.message(), err.is_retryable(), until)
                    .await;
                Vec::new()
            }
        }
    }

    fn count(&self, lease: &switchyard_core::Lease, ack: &Ack, completed: bool) {
        recorded::acknowledged(&lease.queue, ack);
        match ack {
            Ack::Rejected(r) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("report refused ({r:?}): the lease was taken back");
            }
            _ if completed => {
                self.stats.completed.fetch_add(1, Ordering::Relaxed);
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
    async fn run_handler(
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

    async fn run_guarded(
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
            None => match tokio::time::timeout(self.cancel_grace, &mut work).await {
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
