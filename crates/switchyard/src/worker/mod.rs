//! The worker runtime: registers a worker, receives tasks, runs their handlers concurrently up
//! to its capacity, heartbeats, runs maintenance, and shuts down gracefully. See [`Worker`].
//!
//! A worker's life, and where each part of it lives:
//!
//! * it is configured by a [`WorkerBuilder`] (`builder`), whose handlers are made uniform and
//!   whose settings travel as one [`Settings`](builder::Settings);
//! * [`Worker::run`] (here) registers it (`registration`: also coming back after a reap or a
//!   loss of the backend's data, and stopping when another instance holds its id), starts the
//!   heartbeat and maintenance loops (`loops`) and receives while it has free slots
//!   (`receive`);
//! * each task runs in a slot (`execute`): its handler under its timeout and cancellation, then
//!   its report (`report`: retried while the lease may still be valid), which may bring the
//!   next task; what runs, and the leases taken, are tracked in `running`;
//! * failing calls wait and log through `recovery`; metrics and spans are in `recorded` and
//!   [`TaskContext`] (`context`);
//! * a stop drains the worker at once and ends it gracefully (`shutdown`).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use switchyard_core::prelude::*;
use switchyard_core::retry::Retry;
use switchyard_core::{Error, QueueConfig, QueueName, Result, WorkerId, WorkerRef, WorkerSpec};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Client;

mod builder;
mod context;
mod execute;
mod loops;
mod receive;
mod recorded;
mod recovery;
mod registration;
mod report;
mod running;
mod shutdown;

pub use builder::WorkerBuilder;
pub use context::{TaskContext, TaskError};
pub use report::WorkerReport;
pub use shutdown::ShutdownHandle;

use builder::{Handler, Settings};
use recovery::Throttle;
use report::Counters;
use running::Running;
use shutdown::stop_signal;

/// Failed attempts logged per 10 s at most (the rest are counted in the next line).
const FAILURE_LINES: u32 = 20;

/// A worker's state, shared by its loops and slots: what it is, what it runs, how it fares.
struct Inner {
    backend: Arc<dyn Backend>,
    spec: WorkerSpec,
    /// How the worker names itself in its calls (id and instance token).
    me: WorkerRef,
    /// Queues the worker declares at start and after the backend lost them.
    declarations: Vec<(QueueName, QueueConfig)>,
    handlers: HashMap<String, Handler>,
    /// What the builder set: grace periods, maintenance, the receive slice, metrics.
    settings: Settings,
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
///   [`Delivery::timeout_ms`](crate::backend::Delivery::timeout_ms) from the moment the worker received it. A handler still running
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
            settings: Settings::default(),
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
        if let Some(addr) = inner.settings.metrics {
            crate::metrics::serve(addr)?;
        }
        recorded::capacity(inner.spec.id(), inner.spec.get_capacity());
        recorded::start_at_zero(
            inner.spec.queues(),
            inner.handlers.keys().map(String::as_str),
        );
        inner.register_first().await?;
        let mut work = inner.start();
        inner.receive_loop(&mut work, &self.shutdown).await;
        if inner.fenced.is_cancelled() {
            return Err(inner.end_fenced(work).await);
        }
        inner.shut_down(work, &self.shutdown).await
    }
}

impl Inner {
    /// A worker that was not started yet, as `builder` made it.
    fn new(
        backend: Arc<dyn Backend>,
        spec: WorkerSpec,
        declarations: Vec<(QueueName, QueueConfig)>,
        handlers: HashMap<String, Handler>,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Self {
        Inner {
            backend,
            me: spec.worker_ref(),
            spec,
            declarations,
            handlers,
            settings,
            running: Mutex::new(Running::default()),
            draining: AtomicBool::new(false),
            registration: tokio::sync::Mutex::new(0),
            last_contact: Mutex::new(Instant::now()),
            lost_reported: AtomicBool::new(false),
            leases_dropped: AtomicBool::new(false),
            retry: recovery::retry(switchyard_core::rng::entropy()),
            register_log: Throttle::default(),
            receive_log: Throttle::default(),
            heartbeat_log: Throttle::default(),
            maintenance_log: Throttle::default(),
            failure_log: Throttle::with_burst(FAILURE_LINES),
            fenced: CancellationToken::new(),
            fence_error: Mutex::new(None),
            shutdown,
            stats: Counters::default(),
        }
    }
}
