//! The client and the worker runtime, on both backends: results and errors, panics, timeouts
//! (on the worker's clock, and enforced by the heartbeat), concurrency up to capacity, retries
//! and backoff with jitter, the dead-letter set, delays, deduplication, result expiry, learned
//! costs, events, cancellation, graceful shutdown (within and past its grace), a killed or
//! silent worker, a reaped worker that registers again, fencing.
//! Redis runs in a redis-server started by the test on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchyard::backend::prelude::*;
use switchyard::backend::{
    Ack, AckOutcome, Assignment, Clock, Delivery, HandBack, HeartbeatReply, Lease,
    MaintenanceReport, RegisterOutcome, Rejection, SubmitOutcome, SystemClock, WorkerRef,
    WorkerSpec, lost_worker_error, next_average, timeout_error,
};
use switchyard::{
    Backoff, CancelOutcome, Client, Error, Event, EventKind, EventLevel, Policy, QueueConfig,
    QueueName, RedisBackend, RedisConfig, Stats, Strategy, TaskError, TaskId, TaskInfo, TaskKind,
    TaskOutcome, TaskSpec, TaskState, Worker, WorkerId,
};
use switchyard_testkit::redis_server::RedisServer;

/// Backends keep due times in whole milliseconds of the system clock, so a task can fall
/// due up to a millisecond before its delay has passed on `Instant`; lower bounds on
/// waiting allow this much.
const CLOCK_GRAIN: Duration = Duration::from_millis(2);

/// A client of a fresh memory backend, or of a fresh namespace on a test redis-server.
async fn client(redis: Option<&RedisServer>) -> Client {
    static NS: AtomicU64 = AtomicU64::new(0);
    match redis {
        None => Client::memory(),
        Some(server) => Client::connect(
            &server.url(),
            &format!("rt{}", NS.fetch_add(1, Ordering::SeqCst)),
        )
        .await
        .unwrap(),
    }
}

/// Polls `check` every 20 ms until it answers `Some`, for at most `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < within,
            "gave up after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lease of a task running on `worker`, read from its record.
async fn running_on(c: &Client, id: TaskId, worker: &str) -> Option<Lease> {
    let info = c.task_handle(id).info().await.ok()??;
    let lease = info.lease()?;
    (info.state == TaskState::Running && lease.worker.as_str() == worker).then_some(lease)
}

/// The events of one task, oldest first.
async fn events_of(c: &Client, id: TaskId) -> Vec<Event> {
    let all = c.events(None, 10_000).await.unwrap();
    all.into_iter().filter(|e| e.task == id).collect()
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

fn quick(config: QueueConfig) -> QueueConfig {
    config.with_backoff(Backoff {
        base_ms: 100,
        max_ms: 1_000,
        jitter_pct: 0,
    })
}

/// Runs a worker in the background; returns its stop handle and join handle.
fn spawn(
    worker: Worker,
) -> (
    switchyard::ShutdownHandle,
    tokio::task::JoinHandle<switchyard::Result<switchyard::WorkerReport>>,
) {
    let stop = worker.shutdown_handle();
    (stop, tokio::spawn(worker.run()))
}

/// A backend that passes every call through, except the heartbeats of the workers it was told
/// to silence: those answer as if all was well but never reach the backend — a worker whose
/// heartbeats are lost while it goes on working. It counts the maintenance passes.
struct Tap {
    inner: Arc<dyn Backend>,
    silenced: Mutex<HashSet<WorkerId>>,
    /// Workers whose heartbeats fail with a connection error (a network partition).
    cut: Mutex<HashSet<WorkerId>>,
    /// Workers whose waits for tasks take effect but never answer (a reply lost on the way):
    /// the tasks start on the worker, which does not know it.
    swallowed: Mutex<HashSet<WorkerId>>,
    maintains: AtomicU64,
}

impl Tap {
    fn new(inner: Arc<dyn Backend>) -> Self {
        Tap {
            inner,
            silenced: Mutex::new(HashSet::new()),
            cut: Mutex::new(HashSet::new()),
            swallowed: Mutex::new(HashSet::new()),
            maintains: AtomicU64::new(0),
        }
    }

    /// Makes `worker`'s heartbeats fail (or work again), as a network partition would.
    fn cut(&self, worker: &str, cut: bool) {
        let id: WorkerId = worker.parse().unwrap();
        let mut set = self.cut.lock().unwrap();
        if cut {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    /// Makes `worker`'s waits for tasks take effect and then never answer.
    fn swallow(&self, worker: &str) {
        let id: WorkerId = worker.parse().unwrap();
        self.swallowed.lock().unwrap().insert(id);
    }

    fn silence(&self, worker: &str, silent: bool) {
        let id: WorkerId = worker.parse().unwrap();
        let mut set = self.silenced.lock().unwrap();
        if silent {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }
}

#[async_trait]
impl Queues for Tap {
    async fn declare_queue(&self, q: &QueueName, config: QueueConfig) -> switchyard::Result<()> {
        self.inner.declare_queue(q, config).await
    }

    async fn queue_config(&self, q: &QueueName) -> switchyard::Result<Option<QueueConfig>> {
        self.inner.queue_config(q).await
    }

    async fn set_paused(
        &self,
        queue: &QueueName,
        paused: bool,
    ) -> switchyard::Result<Vec<Assignment>> {
        self.inner.set_paused(queue, paused).await
    }

    async fn purge_queue(
        &self,
        queue: &QueueName,
        what: switchyard::admin::Purge,
        limit: usize,
    ) -> switchyard::Result<switchyard::admin::PurgeReport> {
        self.inner.purge_queue(queue, what, limit).await
    }

    async fn reconfigure_queue(
        &self,
        queue: &QueueName,
        config: switchyard::QueueConfig,
    ) -> switchyard::Result<bool> {
        self.inner.reconfigure_queue(queue, config).await
    }

    async fn delete_queue(&self, queue: &QueueName) -> switchyard::Result<()> {
        self.inner.delete_queue(queue).await
    }
}

#[async_trait]
impl Produce for Tap {
    async fn submit(&self, spec: TaskSpec) -> switchyard::Result<SubmitOutcome> {
        self.inner.submit(spec).await
    }

    async fn submit_batch(&self, specs: Vec<TaskSpec>) -> switchyard::Result<Vec<SubmitOutcome>> {
        self.inner.submit_batch(specs).await
    }
}

#[async_trait]
impl Membership for Tap {
    async fn register_worker(&self, spec: WorkerSpec) -> switchyard::Result<RegisterOutcome> {
        self.inner.register_worker(spec).await
    }

    async fn heartbeat(&self, worker: &WorkerRef) -> switchyard::Result<HeartbeatReply> {
        if self.silenced.lock().unwrap().contains(&worker.id) {
            return Ok(HeartbeatReply::default());
        }
        if self.cut.lock().unwrap().contains(&worker.id) {
            return Err(Error::backend(
                switchyard::BackendErrorKind::Connection,
                "cut off by the test",
            ));
        }
        self.inner.heartbeat(worker).await
    }

    async fn drain_worker(&self, worker: &WorkerRef) -> switchyard::Result<HandBack> {
        self.inner.drain_worker(worker).await
    }

    async fn deregister_worker(&self, worker: &WorkerRef) -> switchyard::Result<HandBack> {
        self.inner.deregister_worker(worker).await
    }
}

#[async_trait]
impl Leases for Tap {
    async fn dispatch(&self, q: &QueueName, limit: usize) -> switchyard::Result<Vec<Assignment>> {
        self.inner.dispatch(q, limit).await
    }

    async fn receive(&self, worker: &WorkerRef, max: usize) -> switchyard::Result<Vec<Delivery>> {
        self.inner.receive(worker, max).await
    }

    async fn receive_wait(
        &self,
        worker: &WorkerRef,
        max: usize,
        timeout: Duration,
    ) -> switchyard::Result<Vec<Delivery>> {
        let received = self.inner.receive_wait(worker, max, timeout).await;
        if self.swallowed.lock().unwrap().contains(&worker.id) {
            return std::future::pending().await;
        }
        received
    }

    async fn running(&self, worker: &WorkerRef) -> switchyard::Result<Vec<Delivery>> {
        self.inner.running(worker).await
    }

    async fn complete(&self, lease: &Lease, value: Vec<u8>) -> switchyard::Result<AckOutcome> {
        self.inner.complete(lease, value).await
    }

    async fn complete_and_receive(
        &self,
        lease: &Lease,
        value: Vec<u8>,
        max: usize,
    ) -> switchyard::Result<(AckOutcome, Vec<Delivery>)> {
        self.inner.complete_and_receive(lease, value, max).await
    }

    async fn fail(
        &self,
        lease: &Lease,
        error: &str,
        retry: bool,
    ) -> switchyard::Result<AckOutcome> {
        self.inner.fail(lease, error, retry).await
    }

    async fn throttle(&self, lease: &Lease, hold: Duration) -> switchyard::Result<AckOutcome> {
        self.inner.throttle(lease, hold).await
    }
}

#[async_trait]
impl Tasks for Tap {
    async fn get_task(&self, id: TaskId) -> switchyard::Result<Option<TaskInfo>> {
        self.inner.get_task(id).await
    }

    async fn get_outcome(&self, id: TaskId) -> switchyard::Result<Option<TaskOutcome>> {
        self.inner.get_outcome(id).await
    }

    async fn wait_outcome(
        &self,
        id: TaskId,
        timeout: Duration,
    ) -> switchyard::Result<Option<TaskOutcome>> {
        self.inner.wait_outcome(id, timeout).await
    }

    async fn cancel(&self, id: TaskId) -> switchyard::Result<CancelOutcome> {
        self.inner.cancel(id).await
    }

    async fn list_dead(&self, q: &QueueName, limit: usize) -> switchyard::Result<Vec<TaskInfo>> {
        self.inner.list_dead(q, limit).await
    }

    async fn redrive(&self, id: TaskId) -> switchyard::Result<SubmitOutcome> {
        self.inner.redrive(id).await
    }

    async fn delete_task(&self, id: TaskId) -> switchyard::Result<()> {
        self.inner.delete_task(id).await
    }
}

#[async_trait]
impl Inspect for Tap {
    async fn stats(&self) -> switchyard::Result<Stats> {
        self.inner.stats().await
    }

    async fn peek_ready(&self, q: &QueueName, limit: usize) -> switchyard::Result<Vec<TaskId>> {
        self.inner.peek_ready(q, limit).await
    }

    async fn events(&self, after: Option<&str>, limit: usize) -> switchyard::Result<Vec<Event>> {
        self.inner.events(after, limit).await
    }

    async fn learned_cost(
        &self,
        q: &QueueName,
        kind: &TaskKind,
    ) -> switchyard::Result<Option<u32>> {
        self.inner.learned_cost(q, kind).await
    }

    async fn memory(&self) -> switchyard::Result<Vec<(QueueName, u64)>> {
        self.inner.memory().await
    }

    async fn browse(&self, query: &switchyard::Browse) -> switchyard::Result<switchyard::TaskPage> {
        self.inner.browse(query).await
    }
}

#[async_trait]
impl Maintain for Tap {
    async fn until_due(&self) -> switchyard::Result<Option<Duration>> {
        self.inner.until_due().await
    }

    async fn sleep_until_due(&self, at_most: Duration) -> switchyard::Result<()> {
        self.inner.sleep_until_due(at_most).await
    }

    async fn maintain(&self, limit: usize) -> switchyard::Result<MaintenanceReport> {
        self.maintains.fetch_add(1, Ordering::SeqCst);
        self.inner.maintain(limit).await
    }
}

/// A clock `by` ms ahead of (or, negative, behind) the system clock.
#[derive(Debug)]
struct Skewed(i64);

impl Clock for Skewed {
    fn now_ms(&self) -> u64 {
        SystemClock.now_ms().saturating_add_signed(self.0)
    }
}

/// A client whose backend's clock is skewed by `by` ms against this process's clock.
async fn skewed_client(redis: Option<&RedisServer>, by: i64) -> Client {
    static NS: AtomicU64 = AtomicU64::new(0);
    let clock: Arc<dyn Clock> = Arc::new(Skewed(by));
    match redis {
        None => Client::new(switchyard::MemoryBackend::with_clock(clock)),
        Some(server) => {
            let ns = format!("skew{}", NS.fetch_add(1, Ordering::SeqCst));
            let config = RedisConfig::new(server.url(), ns).with_clock(clock);
            Client::new(RedisBackend::with_config(config).await.unwrap())
        }
    }
}

async fn results_and_errors(c: Client) {
    c.declare("q", quick(QueueConfig::default())).await.unwrap();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .capacity(2)
        .maintenance(Some(Duration::from_millis(100)))
        .handle_json(
            "double",
            |_ctx, n: u64| async move { Ok::<_, TaskError>(n * 2) },
        )
        .handle("refuse", |_ctx, _p| async move {
            Err(TaskError::fatal("no such mailbox"))
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let ok = c.submit_json("q", "double", &21u64).await.unwrap();
    let bad = c.submit_json("q", "refuse", &()).await.unwrap();
    assert_eq!(ok.result::<u64>(Duration::from_secs(10)).await.unwrap(), 42);
    match bad.result_bytes(Duration::from_secs(10)).await {
        Err(Error::TaskFailed { error, .. }) => assert_eq!(error, "no such mailbox"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        bad.attempts().await.unwrap(),
        Some(1),
        "fatal errors are not retried"
    );
    stop.shutdown();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.completed, 1);
}

async fn retries_back_off_then_dead_letter_and_redrive(c: Client) {
    c.declare("q", quick(QueueConfig::default()).with_max_attempts(3))
        .await
        .unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let healthy = Arc::new(AtomicU32::new(0));
    let (s, h) = (starts.clone(), healthy.clone());
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .maintenance(Some(Duration::from_millis(20)))
        .handle("flaky", move |ctx, _p| {
            let (s, h) = (s.clone(), h.clone());
            async move {
                s.lock().unwrap().push((ctx.attempt, Instant::now()));
                if h.load(Ordering::SeqCst) == 1 {
                    Ok(Vec::new())
                } else {
                    Err(TaskError::retry("try again"))
                }
            }
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let task = c
        .submit(TaskSpec::builder("q", "flaky").build().unwrap())
        .await
        .unwrap();
    assert!(
        matches!(task.wait(Duration::from_secs(10)).await.unwrap(), TaskOutcome::Dead(e) if e == "try again")
    );
    let seen = starts.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|(a, _)| *a).collect::<Vec<_>>(), [1, 2, 3]);
    // Backoff: 100 ms after the first failure, 200 ms after the second (no jitter).
    assert!(
        seen[1].1 - seen[0].1 >= Duration::from_millis(100) - CLOCK_GRAIN,
        "{:?}",
        seen[1].1 - seen[0].1
    );
    assert!(
        seen[2].1 - seen[1].1 >= Duration::from_millis(200) - CLOCK_GRAIN,
        "{:?}",
        seen[2].1 - seen[1].1
    );
    assert!(
        seen[2].1 - seen[0].1 < Duration::from_secs(3),
        "retries happen soon after their backoff"
    );
    let dead = c.dead_letters("q", 10).await.unwrap();
    assert_eq!(dead.iter().map(|t| t.id).collect::<Vec<_>>(), [task.id()]);
    assert_eq!(dead[0].attempts, 3);
    // Fix the cause and re-drive.
    healthy.store(1, Ordering::SeqCst);
    let again = c.redrive(task.id()).await.unwrap();
    assert!(matches!(
        again.wait(Duration::from_secs(10)).await.unwrap(),
        TaskOutcome::Succeeded(_)
    ));
    assert!(c.dead_letters("q", 10).await.unwrap().is_empty());
    stop.shutdown();
    run.await.unwrap().unwrap();
}

async fn delayed_tasks_run_on_time(c: Client) {
    c.declare("q", QueueConfig::default()).await.unwrap();
    let started = Arc::new(Mutex::new(None));
    let s = started.clone();
    // A maintenance interval far longer than the delay: the task runs on time only because the
    // sleeping maintenance loop is woken by the new due time and then sleeps until it.
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .maintenance(Some(Duration::from_secs(30)))
        .handle("tick", move |_ctx, _p| {
            let s = s.clone();
            async move {
                *s.lock().unwrap() = Some(Instant::now());
                Ok(Vec::new())
            }
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    // Let its maintenance loop fall asleep first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let submitted = Instant::now();
    let task = c
        .submit(
            TaskSpec::builder("q", "tick")
                .delay(Duration::from_millis(800))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(task.state().await.unwrap(), Some(TaskState::Scheduled));
    task.wait(Duration::from_secs(20)).await.unwrap();
    let late = started.lock().unwrap().unwrap() - submitted;
    assert!(
        late >= Duration::from_millis(800) - CLOCK_GRAIN,
        "ran early: {late:?}"
    );
    // Normally tens of ms after it is due; a loop not woken by the new due time would sleep
    // until its own heartbeat expiry (about 15 s, the default TTL) or its 24-36 s interval.
    // The slack is for a loaded test machine.
    assert!(
        late < Duration::from_millis(800) + Duration::from_secs(5),
        "ran late: {late:?}"
    );
    stop.shutdown();
    run.await.unwrap().unwrap();
}

/// A retry backed off while every maintenance loop sleeps runs on time too: the failure that
/// schedules it wakes them.
async fn a_backed_off_retry_wakes_sleeping_maintenance(c: Client) {
    c.declare("q", quick(QueueConfig::default()).with_max_attempts(2))
        .await
        .unwrap();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .maintenance(Some(Duration::from_secs(30)))
        .handle("flaky", |ctx, _p| async move {
            if ctx.attempt == 1 {
                Err(TaskError::retry("first attempt fails"))
            } else {
                Ok(b"second".to_vec())
            }
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    // Let its maintenance loop fall asleep first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let task = c
        .submit(TaskSpec::builder("q", "flaky").build().unwrap())
        .await
        .unwrap();
    assert_eq!(
        task.wait(Duration::from_secs(20)).await.unwrap(),
        TaskOutcome::Succeeded(b"second".to_vec())
    );
    // The backoff is 100 ms; without the wake-up the retry waits for the worker's heartbeat
    // expiry (about 15 s) or its 24-36 s interval.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "retried late: {took:?}");
    stop.shutdown();
    run.await.unwrap().unwrap();
}

async fn cancellation_of_ready_delayed_and_running(c: Client) {
    c.declare("q", QueueConfig::default()).await.unwrap();
    let ready = c
        .submit(TaskSpec::builder("q", "wait").build().unwrap())
        .await
        .unwrap();
    let delayed = c
        .submit(
            TaskSpec::builder("q", "wait")
                .delay(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(
        ready.cancel().await.unwrap(),
        CancelOutcome::Cancelled { .. }
    ));
    assert!(matches!(
        delayed.cancel().await.unwrap(),
        CancelOutcome::Cancelled { .. }
    ));
    assert!(matches!(
        ready.result_bytes(Duration::from_secs(1)).await,
        Err(Error::TaskCancelled(_))
    ));
    assert_eq!(delayed.state().await.unwrap(), Some(TaskState::Cancelled));

    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .heartbeat_ttl(Duration::from_millis(300))
        // Nothing here needs maintenance; without it a late heartbeat cannot get the worker
        // reaped by its own maintenance loop on a loaded machine.
        .maintenance(None)
        .handle("wait", |ctx, _p| async move {
            ctx.cancelled().await;
            Err(TaskError::retry("stopped on request"))
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let running = c
        .submit(TaskSpec::builder("q", "wait").build().unwrap())
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the task to run", || async {
        (running.state().await.unwrap() == Some(TaskState::Running)).then_some(())
    })
    .await;
    assert_eq!(running.cancel().await.unwrap(), CancelOutcome::Requested);
    // The next heartbeat (every 100 ms) reaches the handler through its token.
    assert!(matches!(
        running.result_bytes(Duration::from_secs(5)).await,
        Err(Error::TaskCancelled(_))
    ));
    stop.shutdown();
    run.await.unwrap().unwrap();
}

async fn graceful_shutdown_loses_nothing(c: Client) {
    c.declare("q", QueueConfig::default()).await.unwrap();
    let done = Arc::new(AtomicU32::new(0));
    let make = |id: &str, done: Arc<AtomicU32>| {
        Worker::builder(&c, id, ["q"])
            .unwrap()
            .capacity(4)
            .shutdown_grace(Duration::from_secs(5))
            .handle("work", move |_ctx, _p| {
                let done = done.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok(Vec::new())
                }
            })
            .build()
            .unwrap()
    };
    let mut handles = Vec::new();
    for _ in 0..24 {
        handles.push(
            c.submit(TaskSpec::builder("q", "work").build().unwrap())
                .await
                .unwrap(),
        );
    }
    let (stop, run) = spawn(make("first", done.clone()));
    // Stop once all four slots run a task: those four must finish during the grace period.
    eventually(Duration::from_secs(10), "four tasks in flight", || async {
        let q = c.stats().await.ok()?.queues.into_iter().next()?;
        (q.running >= 4).then_some(())
    })
    .await;
    stop.shutdown();
    let report = run.await.unwrap().unwrap();
    assert!(
        report.completed >= 4,
        "in-flight tasks finished during the grace period: {report:?}"
    );
    assert_eq!(
        report.handed_back, 0,
        "nothing was left running: {report:?}"
    );
    let stats = c.stats().await.unwrap();
    assert_eq!(
        stats.queues[0].succeeded, report.completed,
        "no completion after the stop"
    );
    assert_eq!(
        stats.queues[0].ready + stats.queues[0].succeeded,
        24,
        "the rest waits, none lost"
    );
    // The rest waits for the next worker.
    let (stop, run) = spawn(make("second", done.clone()));
    for h in &handles {
        assert!(matches!(
            h.wait(Duration::from_secs(20)).await.unwrap(),
            TaskOutcome::Succeeded(_)
        ));
    }
    assert_eq!(
        done.load(Ordering::SeqCst),
        24,
        "each task ran exactly once"
    );
    stop.shutdown();
    run.await.unwrap().unwrap();
}

/// A stop drains the worker before anything else: an idle worker waiting for tasks (here for
/// up to a minute per wait) shows draining at once, and a task submitted after that never
/// reaches it.
async fn a_stop_drains_at_once_even_while_the_worker_waits(c: Client) {
    c.declare("q", QueueConfig::default()).await.unwrap();
    let ran = Arc::new(AtomicU32::new(0));
    let worker = {
        let ran = ran.clone();
        Worker::builder(&c, "idle", ["q"])
            .unwrap()
            .receive_slice(Duration::from_secs(60))
            .handle("work", move |_ctx, _p| {
                let ran = ran.clone();
                async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok(Vec::new())
                }
            })
            .build()
            .unwrap()
    };
    let (stop, run) = spawn(worker);
    // Registered and waiting (one task ran, so it is past its first receive).
    let first = c
        .submit(TaskSpec::builder("q", "work").build().unwrap())
        .await
        .unwrap();
    first.wait(Duration::from_secs(10)).await.unwrap();
    stop.shutdown();
    // Within one wait of the worker (a minute) only if the stop ended the wait.
    eventually(
        Duration::from_secs(10),
        "the worker draining or gone",
        || async {
            let workers = c.stats().await.ok()?.workers;
            workers.iter().all(|w| w.draining).then_some(())
        },
    )
    .await;
    let late = c
        .submit(TaskSpec::builder("q", "work").build().unwrap())
        .await
        .unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(ran.load(Ordering::SeqCst), 1, "nothing ran after the stop");
    assert_eq!(late.state().await.unwrap(), Some(TaskState::Ready));
}

/// A killed worker's tasks finish on another worker; while that one holds them, the dead
/// worker's leases are refused with exactly `StaleToken` and change nothing.
async fn a_killed_worker_s_tasks_finish_elsewhere(c: Client) {
    c.declare(
        "q",
        quick(QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)),
    )
    .await
    .unwrap();
    let ran_on = Arc::new(Mutex::new(Vec::new()));
    // The survivor's handlers wait here until the test has tried the stale leases.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let make = |id: &str, hang: bool| {
        let (ran_on, gate) = (ran_on.clone(), gate.clone());
        Worker::builder(&c, id, ["q"])
            .unwrap()
            .capacity(4)
            // Doomed's heartbeat expires soon after the kill and the survivor's maintenance
            // reaps it; the survivor's own long TTL keeps a loaded machine from expiring it.
            .heartbeat_ttl(Duration::from_millis(if hang { 400 } else { 10_000 }))
            .maintenance((!hang).then_some(Duration::from_millis(100)))
            .handle("work", move |ctx, _p| {
                let (ran_on, gate) = (ran_on.clone(), gate.clone());
                async move {
                    ran_on
                        .lock()
                        .unwrap()
                        .push((ctx.id, ctx.worker.to_string()));
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    gate.acquire().await.unwrap().forget();
                    Ok(ctx.worker.to_string().into_bytes())
                }
            })
            .build()
            .unwrap()
    };
    let (_doomed_stop, doomed) = spawn(make("doomed", true));
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(
            c.submit(TaskSpec::builder("q", "work").build().unwrap())
                .await
                .unwrap(),
        );
    }
    let mut old_leases = Vec::new();
    for h in &handles {
        old_leases.push(
            eventually(
                Duration::from_secs(10),
                "the tasks to run on doomed",
                || running_on(&c, h.id(), "doomed"),
            )
            .await,
        );
    }
    // The backend leases a task when it dispatches it to the inbox; wait until each handler
    // has really started on doomed, so that the kill interrupts running work.
    for h in &handles {
        let started = (h.id(), "doomed".to_string());
        eventually(
            Duration::from_secs(10),
            "the handlers to start on doomed",
            || {
                let seen = ran_on.lock().unwrap().contains(&started);
                async move { seen.then_some(()) }
            },
        )
        .await;
    }
    // Kill it: no deregistration, no more heartbeats.
    doomed.abort();
    let (stop, run) = spawn(make("survivor", false));
    for (h, old) in handles.iter().zip(&old_leases) {
        let new = eventually(Duration::from_secs(20), "the survivor to take over", || {
            running_on(&c, h.id(), "survivor")
        })
        .await;
        assert_ne!(new.token, old.token, "a new dispatch carries a new token");
        let late = c.backend().complete(old, b"late".to_vec()).await.unwrap();
        assert_eq!(late.ack, Ack::Rejected(Rejection::StaleToken));
        let late = c.backend().fail(old, "late failure", false).await.unwrap();
        assert_eq!(late.ack, Ack::Rejected(Rejection::StaleToken));
        assert_eq!(
            running_on(&c, h.id(), "survivor").await,
            Some(new),
            "the refused reports left the survivor's lease alone"
        );
    }
    gate.add_permits(handles.len());
    for h in &handles {
        assert_eq!(
            h.wait(Duration::from_secs(20)).await.unwrap(),
            TaskOutcome::Succeeded(b"survivor".to_vec())
        );
        let info = h.info().await.unwrap().unwrap();
        assert_eq!(info.attempts, 2, "the first attempt died with its worker");
    }
    let ran = ran_on.lock().unwrap().clone();
    for h in &handles {
        assert!(
            ran.contains(&(h.id(), "doomed".into())) && ran.contains(&(h.id(), "survivor".into()))
        );
    }
    // Once the task finished, the old lease is refused as not running.
    let late = c
        .backend()
        .complete(&old_leases[0], b"late".to_vec())
        .await
        .unwrap();
    assert_eq!(
        late.ack,
        Ack::Rejected(Rejection::NotRunning(TaskState::Succeeded))
    );
    stop.shutdown();
    run.await.unwrap().unwrap();
}

/// Fencing at the backend level: a worker that lost its lease cannot complete the task that
/// now belongs to another worker.
async fn late_completion_is_refused(c: Client) {
    let b = c.backend().clone();
    c.declare("q", QueueConfig::default()).await.unwrap();
    let old_spec = WorkerSpec::new("old", ["q"])
        .unwrap()
        .heartbeat_ttl(Duration::from_millis(200));
    b.register_worker(old_spec.clone()).await.unwrap();
    let task = c
        .submit(TaskSpec::builder("q", "k").build().unwrap())
        .await
        .unwrap();
    let old = b
        .receive(&old_spec.worker_ref(), 1)
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = b.maintain(10).await.unwrap();
    assert_eq!(report.workers_reaped.len(), 1);
    let new_spec = WorkerSpec::new("new", ["q"]).unwrap();
    b.register_worker(new_spec.clone()).await.unwrap();
    let new = b
        .receive(&new_spec.worker_ref(), 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(new.lease.task, task.id());
    let late = b.complete(&old.lease, b"late".to_vec()).await.unwrap();
    assert_eq!(late.ack, Ack::Rejected(Rejection::StaleToken));
    let late = b.fail(&old.lease, "late", true).await.unwrap();
    assert_eq!(late.ack, Ack::Rejected(Rejection::StaleToken));
    assert_eq!(
        task.state().await.unwrap(),
        Some(TaskState::Running),
        "the late report changed nothing"
    );
    assert_eq!(
        b.complete(&new.lease, b"ok".to_vec()).await.unwrap().ack,
        Ack::Completed
    );
    assert_eq!(
        task.result_bytes(Duration::from_secs(1)).await.unwrap(),
        b"ok"
    );
}

/// Shutdown past its grace period: a handler that ignores cancellation and one that answers it
/// with a fatal error both have their tasks handed back (attempt counted), not dead-lettered; a
/// task a user cancelled still ends cancelled; a second worker finishes the rest.
async fn shutdown_past_its_grace_hands_running_tasks_back(c: Client) {
    c.declare("q", quick(QueueConfig::default()).with_max_attempts(3))
        .await
        .unwrap();
    let make = |id: &str, first: bool| {
        Worker::builder(&c, id, ["q"])
            .unwrap()
            .capacity(3)
            .heartbeat_ttl(Duration::from_millis(300))
            // No maintenance needed (handed-back tasks are ready at once), and none that could
            // reap a worker whose heartbeat a loaded machine delayed.
            .maintenance(None)
            .shutdown_grace(Duration::from_millis(200))
            .cancel_grace(Duration::from_millis(200))
            .handle("stubborn", move |_ctx, _p| async move {
                if first {
                    // Ignores its cancellation token altogether.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok(b"stubborn done".to_vec())
            })
            .handle("fatal", move |ctx, _p| async move {
                if first {
                    // The documented pattern: give up for good when cancelled.
                    ctx.cancelled().await;
                    return Err(TaskError::fatal("cancelled"));
                }
                Ok(b"fatal done".to_vec())
            })
            .build()
            .unwrap()
    };
    let (stop, run) = spawn(make("first", true));
    let submit = |kind: &'static str| {
        let c = c.clone();
        async move {
            c.submit(TaskSpec::builder("q", kind).build().unwrap())
                .await
                .unwrap()
        }
    };
    let stubborn = submit("stubborn").await;
    let fatal = submit("fatal").await;
    let cancelled = submit("fatal").await;
    for t in [&stubborn, &fatal, &cancelled] {
        eventually(Duration::from_secs(10), "the tasks to run", || async {
            running_on(&c, t.id(), "first").await
        })
        .await;
    }
    assert_eq!(cancelled.cancel().await.unwrap(), CancelOutcome::Requested);
    stop.shutdown();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.completed, 0, "{report:?}");
    // The cancelled task ends through its failure report or through the hand-back, whichever
    // stop reached its handler first; the two others only through the hand-back.
    assert!(report.handed_back >= 2, "{report:?}");
    assert_eq!(report.handed_back as u64 + report.failed, 3, "{report:?}");
    for t in [&stubborn, &fatal] {
        let info = t.info().await.unwrap().unwrap();
        assert_eq!(info.state, TaskState::Ready, "{info:?}");
        assert_eq!(info.attempts, 1, "the interrupted attempt counts");
        assert_eq!(
            info.last_error.as_deref(),
            Some(lost_worker_error(&"first".parse().unwrap(), 1).as_str())
        );
    }
    assert_eq!(cancelled.state().await.unwrap(), Some(TaskState::Cancelled));
    assert!(c.dead_letters("q", 10).await.unwrap().is_empty());
    let events = c.events(None, 1000).await.unwrap();
    assert!(
        !events.iter().any(|e| e.kind == EventKind::Dead),
        "{events:?}"
    );
    // Nothing lost: the next worker runs them.
    let (stop, run) = spawn(make("second", false));
    assert_eq!(
        stubborn.wait(Duration::from_secs(20)).await.unwrap(),
        TaskOutcome::Succeeded(b"stubborn done".to_vec())
    );
    assert_eq!(
        fatal.wait(Duration::from_secs(20)).await.unwrap(),
        TaskOutcome::Succeeded(b"fatal done".to_vec())
    );
    assert_eq!(stubborn.attempts().await.unwrap(), Some(2));
    assert_eq!(
        cancelled.wait(Duration::from_secs(1)).await.unwrap(),
        TaskOutcome::Cancelled
    );
    stop.shutdown();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.completed, 2);
}

/// A task started on a worker that never heard of it (the reply of its wait was lost) is
/// found when the worker stops, runs within the grace period, and past it is stopped and
/// handed back like any running task: no attempt is reported failed for it.
async fn a_hand_off_the_worker_never_saw_is_stopped_with_the_rest(c: Client) {
    let tap = Arc::new(Tap::new(c.backend().clone()));
    let c = Client::from_arc(tap.clone());
    // A timeout far inside the test's patience: a handler that nothing stops would end
    // through it, reported as a failed attempt.
    let config = quick(QueueConfig::default()).with_timeout(Duration::from_secs(3));
    c.declare("q", config).await.unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let worker = {
        let started = started.clone();
        Worker::builder(&c, "deaf", ["q"])
            .unwrap()
            .maintenance(None)
            .shutdown_grace(Duration::from_millis(100))
            .cancel_grace(Duration::from_millis(500))
            .handle("wait", move |ctx, _p| {
                let started = started.clone();
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    ctx.cancelled().await;
                    Err::<Vec<u8>, _>(TaskError::fatal("cancelled"))
                }
            })
            .build()
            .unwrap()
    };
    tap.swallow("deaf");
    let (stop, run) = spawn(worker);
    let task = c
        .submit(TaskSpec::builder("q", "wait").build().unwrap())
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the task to start on deaf", || {
        running_on(&c, task.id(), "deaf")
    })
    .await;
    assert_eq!(started.load(Ordering::SeqCst), 0, "the worker never saw it");
    stop.shutdown();
    let report = run.await.unwrap().unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 1, "it ran during the stop");
    assert_eq!(
        (report.completed, report.failed, report.handed_back),
        (0, 0, 1),
        "{report:?}"
    );
    let info = task.info().await.unwrap().unwrap();
    assert_eq!(info.state, TaskState::Ready, "{info:?}");
    assert_eq!(info.attempts, 1, "{info:?}");
}

/// A panicking handler fails its attempt with the panic message; the worker goes on.
async fn a_panicking_handler_fails_its_task_and_the_worker_goes_on(c: Client) {
    c.declare("q", QueueConfig::default()).await.unwrap();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .handle("explode", |ctx, _p| async move {
            if ctx.attempt > 0 {
                panic!("boom on attempt {}", ctx.attempt);
            }
            Ok(Vec::new())
        })
        .handle("echo", |_ctx, p| async move { Ok(p) })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let bad = c
        .submit(
            TaskSpec::builder("q", "explode")
                .max_attempts(2)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        bad.wait(Duration::from_secs(20)).await.unwrap(),
        TaskOutcome::Dead("handler panicked: boom on attempt 2".into())
    );
    let info = bad.info().await.unwrap().unwrap();
    assert_eq!(info.attempts, 2, "a panic is retryable");
    assert_eq!(
        info.last_error.as_deref(),
        Some("handler panicked: boom on attempt 2")
    );
    let failures: Vec<String> = events_of(&c, bad.id())
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::Failed)
        .filter_map(|e| e.detail)
        .collect();
    assert_eq!(
        failures,
        [
            "handler panicked: boom on attempt 1",
            "handler panicked: boom on attempt 2"
        ]
    );
    // The same worker still runs tasks.
    let good = c
        .submit(
            TaskSpec::builder("q", "echo")
                .payload(b"still here".to_vec())
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        good.result_bytes(Duration::from_secs(10)).await.unwrap(),
        b"still here"
    );
    stop.shutdown();
    let report = run.await.unwrap().unwrap();
    assert_eq!((report.completed, report.failed), (1, 2), "{report:?}");
}

/// A handler slower than its task's timeout: each attempt fails as timed out (the backend's
/// text), is retried while attempts remain, then the task is dead.
async fn a_slow_handler_times_out_and_is_retried_then_dead(c: Client) {
    c.declare("q", quick(QueueConfig::default())).await.unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let s = started.clone();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .maintenance(Some(Duration::from_millis(50)))
        .handle("slow", move |_ctx, _p| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Vec::new())
            }
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let task = c
        .submit(
            TaskSpec::builder("q", "slow")
                .timeout(Duration::from_millis(300))
                .max_attempts(2)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    // Far less than the handler's 60 s: the runtime stopped it.
    let outcome = task.wait(Duration::from_secs(20)).await.unwrap();
    assert_eq!(outcome, TaskOutcome::Dead(timeout_error(300)));
    assert_eq!(timeout_error(300), "timed out after 300 ms");
    assert_eq!(task.attempts().await.unwrap(), Some(2));
    assert_eq!(started.load(Ordering::SeqCst), 2);
    let events = events_of(&c, task.id()).await;
    assert_eq!(
        kinds(&events),
        [
            EventKind::Failed,
            EventKind::Retried,
            EventKind::Failed,
            EventKind::Dead
        ]
    );
    assert_eq!(events[0].detail.as_deref(), Some("timed out after 300 ms"));
    assert_eq!(events[2].detail.as_deref(), Some("timed out after 300 ms"));
    stop.shutdown();
    let report = run.await.unwrap().unwrap();
    assert_eq!((report.failed, report.refused), (2, 0), "{report:?}");
}

/// A worker of capacity N runs N handlers at once, never more.
async fn a_worker_runs_up_to_its_capacity_at_once(c: Client) {
    const CAPACITY: u32 = 3;
    c.declare("q", QueueConfig::default()).await.unwrap();
    let now = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (n, p) = (now.clone(), peak.clone());
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .capacity(CAPACITY)
        .handle("work", move |_ctx, _p| {
            let (n, p) = (n.clone(), p.clone());
            async move {
                let running = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(running, Ordering::SeqCst);
                // Hold the slot until the peak reached the capacity (or a long while passed),
                // so that a slow machine cannot hide concurrency; then a little longer.
                let start = Instant::now();
                while p.load(Ordering::SeqCst) < CAPACITY
                    && start.elapsed() < Duration::from_secs(10)
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                Ok(Vec::new())
            }
        })
        .build()
        .unwrap();
    let specs = (0..12)
        .map(|_| TaskSpec::builder("q", "work").build().unwrap())
        .collect();
    let handles = c.submit_batch(specs).await.unwrap();
    let (stop, run) = spawn(worker);
    for h in &handles {
        assert!(matches!(
            h.wait(Duration::from_secs(30)).await.unwrap(),
            TaskOutcome::Succeeded(_)
        ));
    }
    assert_eq!(peak.load(Ordering::SeqCst), CAPACITY);
    assert_eq!(now.load(Ordering::SeqCst), 0);
    stop.shutdown();
    assert_eq!(run.await.unwrap().unwrap().completed, 12);
}

/// A worker whose heartbeats stopped reaching the backend is reaped; the runtime notices,
/// stops the handler whose lease went with the reap, registers again and goes on.
async fn a_reaped_worker_registers_again_and_goes_on(c: Client) {
    let tap = Arc::new(Tap::new(c.backend().clone()));
    let c = Client::from_arc(tap.clone());
    c.declare("q", quick(QueueConfig::default())).await.unwrap();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .capacity(2)
        .heartbeat_ttl(Duration::from_millis(300))
        .maintenance(None)
        .handle("work", |ctx, _p| async move {
            if ctx.attempt == 1 {
                ctx.cancelled().await;
                return Err(TaskError::retry("stopped: the lease is gone"));
            }
            Ok(format!("attempt {} on {}", ctx.attempt, ctx.worker).into_bytes())
        })
        .handle("echo", |_ctx, p| async move { Ok(p) })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let task = c
        .submit(TaskSpec::builder("q", "work").build().unwrap())
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the task to run on w", || {
        running_on(&c, task.id(), "w")
    })
    .await;
    tap.silence("w", true);
    let reaped = eventually(Duration::from_secs(10), "w to be reaped", || async {
        let report = c.backend().maintain(100).await.unwrap();
        report
            .workers_reaped
            .iter()
            .any(|w| w.as_str() == "w")
            .then_some(report)
    })
    .await;
    assert_eq!(reaped.tasks_returned, 1);
    tap.silence("w", false);
    assert_eq!(
        task.wait(Duration::from_secs(20)).await.unwrap(),
        TaskOutcome::Succeeded(b"attempt 2 on w".to_vec())
    );
    let stats = c.stats().await.unwrap();
    assert_eq!(
        stats
            .workers
            .iter()
            .map(|w| w.id.as_str())
            .collect::<Vec<_>>(),
        ["w"]
    );
    let next = c
        .submit(
            TaskSpec::builder("q", "echo")
                .payload(b"after".to_vec())
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        next.result_bytes(Duration::from_secs(10)).await.unwrap(),
        b"after"
    );
    stop.shutdown();
    let report = run.await.unwrap().unwrap();
    assert_eq!(
        (report.completed, report.refused),
        (2, 1),
        "the first attempt's late failure report was refused: {report:?}"
    );
}

/// Two workers with one id at once: the second does not start (it waits once for the first
/// registration to expire, which it does not while the first heartbeats), and the first goes
/// on alone.
async fn a_second_worker_with_the_same_id_does_not_start(c: Client) {
    c.declare("q", QueueConfig::default()).await.unwrap();
    let build = || {
        Worker::builder(&c, "same", ["q"])
            .unwrap()
            .heartbeat_ttl(Duration::from_millis(400))
            .maintenance(None)
            .handle("echo", |_ctx, p| async move { Ok(p) })
            .build()
            .unwrap()
    };
    let (stop, first) = spawn(build());
    eventually(Duration::from_secs(10), "the first to register", || async {
        let stats = c.stats().await.ok()?;
        (stats.workers.len() == 1).then_some(())
    })
    .await;
    match build().run().await {
        Err(Error::WorkerIdInUse { worker, .. }) => assert_eq!(worker.as_str(), "same"),
        other => panic!("expected WorkerIdInUse, got {other:?}"),
    }
    let task = c.submit_json("q", "echo", "still here").await.unwrap();
    assert_eq!(
        task.result::<String>(Duration::from_secs(10))
            .await
            .unwrap(),
        "still here"
    );
    stop.shutdown();
    assert_eq!(first.await.unwrap().unwrap().completed, 1);
}

/// A worker cut off from the backend (its heartbeats fail) is presumed dead once its TTL
/// passed: it stops its own running handlers then (their leases may be handed to others), and
/// another instance takes its id over. When the first one's heartbeats get through again, it
/// learns that it was replaced and ends with `WorkerReplaced`; the task completes on the
/// newcomer.
async fn a_replaced_worker_stops_and_says_why(c: Client) {
    let tap = Arc::new(Tap::new(c.backend().clone()));
    let c = Client::from_arc(tap.clone());
    c.declare("q", quick(QueueConfig::default())).await.unwrap();
    let build = |c: &Client, name: &'static str| {
        Worker::builder(c, "same", ["q"])
            .unwrap()
            .heartbeat_ttl(Duration::from_millis(300))
            // The newcomer promotes the retry of the attempt the first one gave up.
            .maintenance((name == "second").then_some(Duration::from_millis(50)))
            .handle("work", move |ctx, _p| async move {
                if name == "first" {
                    ctx.cancelled().await;
                    return Err(TaskError::retry("stopped"));
                }
                Ok(name.as_bytes().to_vec())
            })
            .build()
            .unwrap()
    };
    let (_stop_first, first) = spawn(build(&c, "first"));
    let task = c
        .submit(TaskSpec::builder("q", "work").build().unwrap())
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the task to run", || {
        running_on(&c, task.id(), "same")
    })
    .await;
    tap.cut("same", true);
    // The newcomer talks to the backend directly; it takes the id over once the first
    // registration expired, and the task (handed back with it) then runs there.
    let direct = Client::from_arc(tap.inner.clone());
    let (stop_second, second) = spawn(build(&direct, "second"));
    assert_eq!(
        task.wait(Duration::from_secs(20)).await.unwrap(),
        TaskOutcome::Succeeded(b"second".to_vec())
    );
    tap.cut("same", false);
    match first.await.unwrap() {
        Err(Error::WorkerReplaced(w)) => assert_eq!(w.as_str(), "same"),
        other => panic!("expected WorkerReplaced, got {other:?}"),
    }
    stop_second.shutdown();
    second.await.unwrap().unwrap();
}

/// A client that keeps its queue declared submits again after Redis restarted empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_keeping_its_queue_declared_survives_an_empty_restart() {
    let mut server = RedisServer::start().unwrap();
    let c = client(Some(&server)).await;
    let config = QueueConfig::new(Policy::PRIORITY, Strategy::Pull);
    c.keep_declared("q", config).await.unwrap();
    c.submit_json("q", "k", "before").await.unwrap();
    server.restart_empty().unwrap();
    let q = QueueName::new("q").unwrap();
    // The pool reconnects on the first call that finds its connection broken.
    let submitted = eventually(
        Duration::from_secs(20),
        "a submit after the restart",
        || async { c.submit_json("q", "k", "after").await.ok() },
    )
    .await;
    assert_eq!(c.backend().queue_config(&q).await.unwrap(), Some(config));
    assert_eq!(submitted.state().await.unwrap(), Some(TaskState::Ready));
    // Without keeping it, the error stands, and says that the backend lost its data (the
    // namespace this process saw is gone), not merely that the queue is not declared.
    let plain = Client::from_arc(c.backend().clone());
    server.restart_empty().unwrap();
    let err = eventually(
        Duration::from_secs(20),
        "an answer after the restart",
        || async {
            match plain.submit_json("q", "k", "lost").await {
                Err(e @ Error::DataLost { .. }) => Some(e),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(err.missing_queue().map(|q| q.as_str()), Some("q"));
    assert!(err.to_string().contains("lost its data"), "{err}");
}

/// Per-task timeouts run on the worker's clock: with the backend's clock an hour behind or
/// ahead, a quick task still succeeds and a slow one still times out on time.
async fn timeouts_ignore_clock_skew(redis: Option<&RedisServer>) {
    for skew in [-3_600_000, 3_600_000] {
        let c = skewed_client(redis, skew).await;
        c.declare("q", QueueConfig::default()).await.unwrap();
        let worker = Worker::builder(&c, "w", ["q"])
            .unwrap()
            .capacity(2)
            .handle("sleep", |_ctx, p| async move {
                let ms: u64 = String::from_utf8(p).unwrap().parse().unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(b"done".to_vec())
            })
            .build()
            .unwrap();
        let (stop, run) = spawn(worker);
        let spec = |ms: &str, timeout_ms: u64| {
            TaskSpec::builder("q", "sleep")
                .payload(ms.as_bytes().to_vec())
                .timeout(Duration::from_millis(timeout_ms))
                .max_attempts(1)
                .build()
                .unwrap()
        };
        let quick_task = c.submit(spec("50", 10_000)).await.unwrap();
        let slow_task = c.submit(spec("60000", 300)).await.unwrap();
        assert_eq!(
            quick_task.wait(Duration::from_secs(20)).await.unwrap(),
            TaskOutcome::Succeeded(b"done".to_vec()),
            "skew {skew}"
        );
        assert_eq!(
            slow_task.wait(Duration::from_secs(20)).await.unwrap(),
            TaskOutcome::Dead(timeout_error(300)),
            "skew {skew}"
        );
        stop.shutdown();
        run.await.unwrap().unwrap();
    }
}

/// The maintenance loop sleeps until the backend says something is due, on the backend's
/// clock: a worker whose clock is an hour off neither spins (due times all in its past) nor
/// oversleeps its interval.
async fn maintenance_keeps_its_pace_under_clock_skew(redis: Option<&RedisServer>) {
    for skew in [-3_600_000, 3_600_000] {
        let c = skewed_client(redis, skew).await;
        let tap = Arc::new(Tap::new(c.backend().clone()));
        let c = Client::from_arc(tap.clone());
        c.declare("q", QueueConfig::default()).await.unwrap();
        let worker = Worker::builder(&c, "w", ["q"])
            .unwrap()
            .maintenance(Some(Duration::from_millis(200)))
            .handle("noop", |_ctx, _p| async move { Ok(Vec::new()) })
            .build()
            .unwrap();
        let (stop, run) = spawn(worker);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        // Counted before the shutdown, which can take a receive slice (seconds) more.
        let passes = tap.maintains.load(Ordering::SeqCst);
        stop.shutdown();
        run.await.unwrap().unwrap();
        // About 5 passes (every 160-240 ms); a loop that took the backend's due times for its
        // own clock's would run one every 5 ms with the backend behind (about 200).
        assert!(
            (2..=20).contains(&passes),
            "skew {skew}: {passes} maintenance passes in 1 s"
        );
    }
}

/// A worker that keeps heartbeating while its handler overruns (stuck in blocking code, so the
/// runtime cannot enforce the timeout itself): its heartbeat fails the attempt as timed out.
async fn the_heartbeat_fails_an_overrunning_task(c: Client) {
    c.declare("q", QueueConfig::default()).await.unwrap();
    let returned = Arc::new(AtomicBool::new(false));
    let r = returned.clone();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .heartbeat_ttl(Duration::from_millis(300))
        // Without maintenance, a heartbeat delayed on a loaded machine cannot get this worker
        // reaped (which would fail the task as lost instead of timed out).
        .maintenance(None)
        .handle("stuck", move |_ctx, _p| {
            let r = r.clone();
            async move {
                tokio::task::block_in_place(|| std::thread::sleep(Duration::from_secs(6)));
                r.store(true, Ordering::SeqCst);
                Ok(b"too late".to_vec())
            }
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let task = c
        .submit(
            TaskSpec::builder("q", "stuck")
                .timeout(Duration::from_millis(300))
                .max_attempts(1)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        task.wait(Duration::from_secs(5)).await.unwrap(),
        TaskOutcome::Dead(timeout_error(300))
    );
    assert!(
        !returned.load(Ordering::SeqCst),
        "failed while the handler was still stuck: the heartbeat did it"
    );
    let failed: Vec<Event> = events_of(&c, task.id())
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].worker.as_ref().map(|w| w.as_str()), Some("w"));
    stop.shutdown();
    let report = run.await.unwrap().unwrap();
    assert!(returned.load(Ordering::SeqCst));
    assert_eq!(
        (report.completed, report.refused),
        (0, 1),
        "the handler's late result was refused: {report:?}"
    );
    assert_eq!(
        task.wait(Duration::from_secs(1)).await.unwrap(),
        TaskOutcome::Dead(timeout_error(300))
    );
}

/// A worker that stops heartbeating (killed) is reaped by another worker's maintenance once
/// its TTL passed; its running task comes back and runs there.
async fn a_silent_worker_s_task_is_returned_by_another_worker_s_maintenance(c: Client) {
    c.declare("q", quick(QueueConfig::default())).await.unwrap();
    let silent = Worker::builder(&c, "silent", ["q"])
        .unwrap()
        .heartbeat_ttl(Duration::from_millis(400))
        .maintenance(None)
        .handle("work", |_ctx, _p| async move {
            std::future::pending::<()>().await;
            Ok(Vec::new())
        })
        .build()
        .unwrap();
    let (_silent_stop, silent_run) = spawn(silent);
    let task = c
        .submit(TaskSpec::builder("q", "work").build().unwrap())
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the task to run on silent", || {
        running_on(&c, task.id(), "silent")
    })
    .await;
    silent_run.abort();
    let other = Worker::builder(&c, "other", ["q"])
        .unwrap()
        .maintenance(Some(Duration::from_millis(100)))
        .handle("work", |ctx, _p| async move {
            Ok(ctx.worker.to_string().into_bytes())
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(other);
    assert_eq!(
        task.wait(Duration::from_secs(20)).await.unwrap(),
        TaskOutcome::Succeeded(b"other".to_vec())
    );
    assert_eq!(task.attempts().await.unwrap(), Some(2));
    let events = events_of(&c, task.id()).await;
    assert_eq!(kinds(&events), [EventKind::Failed, EventKind::Retried]);
    assert_eq!(
        events[0].worker.as_ref().map(|w| w.as_str()),
        Some("silent")
    );
    assert_eq!(
        events[0].detail.as_deref(),
        Some(lost_worker_error(&"silent".parse().unwrap(), 1).as_str())
    );
    let workers: Vec<String> = c
        .stats()
        .await
        .unwrap()
        .workers
        .into_iter()
        .map(|w| w.id.to_string())
        .collect();
    assert_eq!(workers, ["other"], "the silent worker was reaped");
    stop.shutdown();
    run.await.unwrap().unwrap();
}

/// Retries with jitter: each retry's delay (the `retried` event's run-at minus the failure
/// time, both on the backend's clock) lies in `[d − ⌊d·pct/100⌋, d]` with
/// `d = min(base·2^(k−1), max)` for the k-th failure — the cap included.
async fn retry_delays_respect_jitter_and_cap(c: Client) {
    let backoff = Backoff {
        base_ms: 100,
        max_ms: 300,
        jitter_pct: 50,
    };
    c.declare(
        "q",
        QueueConfig::default()
            .with_backoff(backoff)
            .with_max_attempts(5),
    )
    .await
    .unwrap();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .capacity(3)
        .maintenance(Some(Duration::from_millis(20)))
        .handle("flaky", |_ctx, _p| async move {
            Err::<Vec<u8>, _>(TaskError::retry("again"))
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let specs = (0..3)
        .map(|_| TaskSpec::builder("q", "flaky").build().unwrap())
        .collect();
    let tasks = c.submit_batch(specs).await.unwrap();
    for t in &tasks {
        assert_eq!(
            t.wait(Duration::from_secs(30)).await.unwrap(),
            TaskOutcome::Dead("again".into())
        );
    }
    let mut jittered = 0;
    for t in &tasks {
        let retried: Vec<Event> = events_of(&c, t.id())
            .await
            .into_iter()
            .filter(|e| e.kind == EventKind::Retried)
            .collect();
        assert_eq!(retried.len(), 4, "four retries, then dead");
        for (k, e) in (1u32..).zip(&retried) {
            let nominal = (100u64 << (k - 1)).min(300);
            let lowest = nominal - nominal * 50 / 100;
            let run_at: u64 = e.detail.as_deref().unwrap().parse().unwrap();
            let delay = run_at - e.at;
            assert!(
                (lowest..=nominal).contains(&delay),
                "retry {k}: {delay} ms outside {lowest}..={nominal}"
            );
            if delay != nominal {
                jittered += 1;
            }
        }
    }
    assert!(jittered > 0, "some jitter was drawn over 12 retries");
    // Each retry ran no earlier than its run-at: the attempts' failures are spaced by at
    // least the drawn delays.
    for t in &tasks {
        let events = events_of(&c, t.id()).await;
        let failures: Vec<u64> = events
            .iter()
            .filter(|e| e.kind == EventKind::Failed)
            .map(|e| e.at)
            .collect();
        let run_ats: Vec<u64> = events
            .iter()
            .filter(|e| e.kind == EventKind::Retried)
            .map(|e| e.detail.as_deref().unwrap().parse().unwrap())
            .collect();
        for (run_at, next_failure) in run_ats.iter().zip(&failures[1..]) {
            assert!(next_failure >= run_at, "ran before its run-at");
        }
    }
    stop.shutdown();
    run.await.unwrap().unwrap();
}

/// On a shortest-job-first queue, the learned cost of a kind is the moving average of its
/// measured run times, and a task submitted without a hint is ordered by it.
async fn learned_costs_are_the_moving_average_and_fill_missing_hints(c: Client) {
    let config = QueueConfig::new(
        Policy::ShortestJobFirst { aging_factor: None },
        Strategy::RoundRobin,
    )
    .with_events(EventLevel::All)
    .with_default_cost(Duration::from_millis(5_000));
    c.declare("sjf", config).await.unwrap();
    let queue = QueueName::new("sjf").unwrap();
    let kind = TaskKind::new("job").unwrap();
    assert_eq!(c.backend().learned_cost(&queue, &kind).await.unwrap(), None);
    let worker = Worker::builder(&c, "w", ["sjf"])
        .unwrap()
        .handle("job", |_ctx, p| async move {
            let ms: u64 = String::from_utf8(p).unwrap().parse().unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Vec::new())
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    // One after the other, so each run is measured alone. Each sample lies between the
    // handler's sleep (less 1 ms of rounding) and the time from dispatch to success, both
    // read from the events on the backend's clock.
    let (mut low, mut high) = (None, None);
    for ms in [60u64, 400, 60] {
        let task = c
            .submit(
                TaskSpec::builder("sjf", "job")
                    .payload(ms.to_string().into_bytes())
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
        task.result_bytes(Duration::from_secs(20)).await.unwrap();
        let events = events_of(&c, task.id()).await;
        assert_eq!(
            kinds(&events),
            [
                EventKind::Submitted,
                EventKind::Dispatched,
                EventKind::Succeeded
            ]
        );
        let span = events[2].at - events[1].at;
        low = Some(next_average(low, ms - 1, 5_000));
        high = Some(next_average(high, span, 5_000));
    }
    let (low, high) = (low.unwrap(), high.unwrap());
    let learned = u64::from(
        c.backend()
            .learned_cost(&queue, &kind)
            .await
            .unwrap()
            .unwrap(),
    );
    assert!(
        (low..=high).contains(&learned),
        "learned {learned} ms, expected ⌊(7a+s)/8⌋ over the runs: {low}..={high}"
    );
    // The bounds are tight: (60, 400, 60) folds to about 78 ms (the 400 ms run counts as at
    // most four times the average, 236), while a plain mean of the lower bounds alone (172),
    // the last sample (59) or the uncapped average (96) would fall outside them unless the
    // machine added tens of ms to every run.
    stop.shutdown();
    run.await.unwrap().unwrap();
    // Without a worker, new tasks wait in the queue with the cost they were given.
    let unhinted = c
        .submit(TaskSpec::builder("sjf", "job").build().unwrap())
        .await
        .unwrap();
    let hinted = c
        .submit(
            TaskSpec::builder("sjf", "job")
                .cost_hint(Duration::from_millis(7))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let unknown = c
        .submit(TaskSpec::builder("sjf", "other").build().unwrap())
        .await
        .unwrap();
    let cost = |h: switchyard::TaskHandle| async move { h.info().await.unwrap().unwrap().cost_ms };
    assert_eq!(u64::from(cost(unhinted.clone()).await), learned);
    assert_eq!(cost(hinted.clone()).await, 7);
    assert_eq!(cost(unknown.clone()).await, 5_000, "no run of its kind yet");
    assert_eq!(
        c.backend().peek_ready(&queue, 10).await.unwrap(),
        [hinted.id(), unhinted.id(), unknown.id()],
        "ordered by cost"
    );
}

/// After the result TTL, maintenance purges the outcome and the record.
async fn results_expire_after_their_ttl(c: Client) {
    c.declare(
        "q",
        QueueConfig::default().with_result_ttl(Duration::from_millis(1_000)),
    )
    .await
    .unwrap();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .maintenance(None)
        .handle("echo", |_ctx, p| async move { Ok(p) })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let task = c
        .submit(
            TaskSpec::builder("q", "echo")
                .payload(b"kept a while".to_vec())
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        task.result_bytes(Duration::from_secs(10)).await.unwrap(),
        b"kept a while"
    );
    assert_eq!(
        c.backend().get_outcome(task.id()).await.unwrap(),
        Some(TaskOutcome::Succeeded(b"kept a while".to_vec()))
    );
    stop.shutdown();
    run.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    c.backend().maintain(100).await.unwrap();
    assert_eq!(c.backend().get_outcome(task.id()).await.unwrap(), None);
    assert_eq!(task.info().await.unwrap(), None);
    assert!(matches!(
        task.wait(Duration::from_millis(100)).await,
        Err(Error::TaskNotFound(id)) if id == task.id()
    ));
    assert_eq!(c.stats().await.unwrap().queues[0].succeeded, 0);
}

/// Deduplication through the facade: within the window a second submit answers with the first
/// task; after it, a new task is created.
async fn dedup_keys_hold_for_their_window(c: Client) {
    c.declare(
        "q",
        // Long enough for the duplicates below to land inside it on a loaded machine.
        QueueConfig::default().with_dedup_window(Duration::from_millis(3_000)),
    )
    .await
    .unwrap();
    let spec = || {
        TaskSpec::builder("q", "charge")
            .dedup_key("order-7")
            .delay(Duration::from_secs(3_600))
            .build()
            .unwrap()
    };
    let first = c.submit(spec()).await.unwrap();
    assert!(!first.was_duplicate());
    let second = c.submit(spec()).await.unwrap();
    assert!(second.was_duplicate());
    assert_eq!(second.id(), first.id());
    let batch = c.submit_batch(vec![spec()]).await.unwrap();
    assert!(batch[0].was_duplicate());
    assert_eq!(batch[0].id(), first.id());
    assert_eq!(c.stats().await.unwrap().queues[0].total(), 1);
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    let third = c.submit(spec()).await.unwrap();
    assert!(!third.was_duplicate(), "the window is over");
    assert_ne!(third.id(), first.id());
    assert_eq!(c.stats().await.unwrap().queues[0].scheduled, 2);
    // The new task holds the key now.
    let fourth = c.submit(spec()).await.unwrap();
    assert!(fourth.was_duplicate());
    assert_eq!(fourth.id(), third.id());
}

/// `Client::events` reports each task's steps, in order, with their details.
async fn events_report_every_kind(c: Client) {
    c.declare(
        "q",
        quick(QueueConfig::default())
            .with_events(EventLevel::All)
            .with_max_attempts(3),
    )
    .await
    .unwrap();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .capacity(4)
        .maintenance(Some(Duration::from_millis(20)))
        .handle("ok", |_ctx, p| async move { Ok(p) })
        .handle("refuse", |_ctx, _p| async move {
            Err::<Vec<u8>, _>(TaskError::fatal("no such mailbox"))
        })
        .handle("twice", |ctx, _p| async move {
            if ctx.attempt == 1 {
                return Err(TaskError::retry("first try fails"));
            }
            Ok(Vec::new())
        })
        .build()
        .unwrap();
    let (stop, run) = spawn(worker);
    let submit = |spec: TaskSpec| {
        let c = c.clone();
        async move { c.submit(spec).await.unwrap() }
    };
    let ok = submit(TaskSpec::builder("q", "ok").build().unwrap()).await;
    let refuse = submit(TaskSpec::builder("q", "refuse").build().unwrap()).await;
    let twice = submit(TaskSpec::builder("q", "twice").build().unwrap()).await;
    let later = submit(
        TaskSpec::builder("q", "ok")
            .delay(Duration::from_secs(3_600))
            .build()
            .unwrap(),
    )
    .await;
    later.cancel().await.unwrap();
    for t in [&ok, &refuse, &twice] {
        t.wait(Duration::from_secs(20)).await.unwrap();
    }
    use EventKind::*;
    let ok_events = events_of(&c, ok.id()).await;
    assert_eq!(kinds(&ok_events), [Submitted, Dispatched, Succeeded]);
    assert_eq!(ok_events[1].worker.as_ref().map(|w| w.as_str()), Some("w"));
    let refuse_events = events_of(&c, refuse.id()).await;
    assert_eq!(kinds(&refuse_events), [Submitted, Dispatched, Failed, Dead]);
    assert_eq!(refuse_events[2].detail.as_deref(), Some("no such mailbox"));
    let twice_events = events_of(&c, twice.id()).await;
    assert_eq!(
        kinds(&twice_events),
        [
            Submitted, Dispatched, Failed, Retried, Dispatched, Succeeded
        ]
    );
    assert_eq!(twice_events[2].detail.as_deref(), Some("first try fails"));
    let run_at: u64 = twice_events[3].detail.as_deref().unwrap().parse().unwrap();
    assert_eq!(run_at - twice_events[3].at, 100, "the queue's backoff");
    assert_eq!(
        kinds(&events_of(&c, later.id()).await),
        [Submitted, Cancelled]
    );
    for e in ok_events.iter().chain(&refuse_events).chain(&twice_events) {
        assert_eq!(e.queue.as_str(), "q");
    }
    // Reading on from a position gives exactly what follows it.
    let all = c.events(None, 1_000).await.unwrap();
    let rest = c.events(Some(&all[2].id), 1_000).await.unwrap();
    assert_eq!(rest, all[3..]);
    assert_eq!(c.events(None, 2).await.unwrap(), all[..2]);
    stop.shutdown();
    run.await.unwrap().unwrap();
}

macro_rules! on_both {
    ($($name:ident),* $(,)?; with a server: $($with_server:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::client(None).await).await })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $with_server() { super::$with_server(None).await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let server = switchyard_testkit::redis_server::RedisServer::start().unwrap();
                super::$name(super::client(Some(&server)).await).await
            })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $with_server() {
                let server = switchyard_testkit::redis_server::RedisServer::start().unwrap();
                super::$with_server(Some(&server)).await
            })*
        }
    };
}

on_both!(
    results_and_errors,
    retries_back_off_then_dead_letter_and_redrive,
    retry_delays_respect_jitter_and_cap,
    delayed_tasks_run_on_time,
    a_backed_off_retry_wakes_sleeping_maintenance,
    cancellation_of_ready_delayed_and_running,
    graceful_shutdown_loses_nothing,
    a_stop_drains_at_once_even_while_the_worker_waits,
    shutdown_past_its_grace_hands_running_tasks_back,
    a_hand_off_the_worker_never_saw_is_stopped_with_the_rest,
    a_panicking_handler_fails_its_task_and_the_worker_goes_on,
    a_slow_handler_times_out_and_is_retried_then_dead,
    a_worker_runs_up_to_its_capacity_at_once,
    a_reaped_worker_registers_again_and_goes_on,
    a_second_worker_with_the_same_id_does_not_start,
    a_replaced_worker_stops_and_says_why,
    the_heartbeat_fails_an_overrunning_task,
    a_silent_worker_s_task_is_returned_by_another_worker_s_maintenance,
    a_killed_worker_s_tasks_finish_elsewhere,
    late_completion_is_refused,
    learned_costs_are_the_moving_average_and_fill_missing_hints,
    results_expire_after_their_ttl,
    dedup_keys_hold_for_their_window,
    events_report_every_kind;
    with a server:
    timeouts_ignore_clock_skew,
    maintenance_keeps_its_pace_under_clock_skew,
);
