//! The client and the worker runtime, on both backends: results and errors, panics, timeouts
//! (on the worker's clock, and enforced by the heartbeat), concurrency up to capacity, retries
//! and backoff with jitter, the dead-letter set, delays, deduplication, result expiry, learned
//! costs, events, cancellation, graceful shutdown (within and past its grace), a killed or
//! silent worker, a reaped worker that registers again, fencing.
//! Redis runs in a redis-server started by the test on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::backend::{lost_worker_error, timeout_error};
use switchyard::{
    Ack, Backoff, CancelOutcome, Client, Clock, Error, Event, EventKind, Lease, Policy,
    QueueConfig, RedisBackend, RedisConfig, Rejection, Strategy, SystemClock, TaskError, TaskId,
    TaskOutcome, TaskSpec, TaskState, Worker, WorkerSpec,
};
use switchyard_testkit::redis_server::RedisServer;

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
    let info = c.task(id).info().await.ok()??;
    let holder = info.worker?;
    if info.state != TaskState::Running || holder.as_str() != worker {
        return None;
    }
    Some(Lease {
        task: id,
        queue: info.queue,
        worker: holder,
        token: info.token?,
    })
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
        seen[1].1 - seen[0].1 >= Duration::from_millis(100),
        "{:?}",
        seen[1].1 - seen[0].1
    );
    assert!(
        seen[2].1 - seen[1].1 >= Duration::from_millis(200),
        "{:?}",
        seen[2].1 - seen[1].1
    );
    assert!(
        seen[2].1 - seen[0].1 < Duration::from_secs(3),
        "retries happen soon after their backoff"
    );
    let dead = c.dead("q", 10).await.unwrap();
    assert_eq!(dead.iter().map(|t| t.id).collect::<Vec<_>>(), [task.id()]);
    assert_eq!(dead[0].attempts, 3);
    // Fix the cause and re-drive.
    healthy.store(1, Ordering::SeqCst);
    let again = c.redrive(task.id()).await.unwrap();
    assert!(matches!(
        again.wait(Duration::from_secs(10)).await.unwrap(),
        TaskOutcome::Succeeded(_)
    ));
    assert!(c.dead("q", 10).await.unwrap().is_empty());
    stop.shutdown();
    run.await.unwrap().unwrap();
}

async fn delayed_tasks_run_on_time(c: Client) {
    c.declare("q", QueueConfig::default()).await.unwrap();
    let started = Arc::new(Mutex::new(None));
    let s = started.clone();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .maintenance(Some(Duration::from_millis(500)))
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
    task.wait(Duration::from_secs(10)).await.unwrap();
    let late = started.lock().unwrap().unwrap() - submitted;
    assert!(late >= Duration::from_millis(800), "ran early: {late:?}");
    // The maintenance loop sleeps until the task is due, so it runs within tens of ms after.
    assert!(
        late < Duration::from_millis(800 + 400),
        "ran late: {late:?}"
    );
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
    for _ in 0..100 {
        if running.state().await.unwrap() == Some(TaskState::Running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    tokio::time::sleep(Duration::from_millis(200)).await;
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

async fn a_killed_worker_s_tasks_finish_elsewhere(c: Client) {
    c.declare("q", QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin))
        .await
        .unwrap();
    let ran_on = Arc::new(Mutex::new(Vec::new()));
    let make = |id: &str, hang: bool| {
        let ran_on = ran_on.clone();
        Worker::builder(&c, id, ["q"])
            .unwrap()
            .capacity(4)
            .heartbeat_ttl(Duration::from_millis(400))
            .maintenance(Some(Duration::from_millis(100)))
            .handle("work", move |ctx, _p| {
                let ran_on = ran_on.clone();
                async move {
                    ran_on
                        .lock()
                        .unwrap()
                        .push((ctx.id, ctx.worker.to_string()));
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    Ok(Vec::new())
                }
            })
            .build()
            .unwrap()
    };
    let (_doomed_stop, doomed) = spawn(make("doomed", true));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(
            c.submit(TaskSpec::builder("q", "work").build().unwrap())
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Kill it: no deregistration, no more heartbeats.
    doomed.abort();
    let (stop, run) = spawn(make("survivor", false));
    for h in &handles {
        assert!(matches!(
            h.wait(Duration::from_secs(20)).await.unwrap(),
            TaskOutcome::Succeeded(_)
        ));
        let info = h.info().await.unwrap().unwrap();
        assert!(info.attempts >= 2, "the first attempt died with its worker");
    }
    let ran = ran_on.lock().unwrap().clone();
    for h in &handles {
        assert!(
            ran.contains(&(h.id(), "doomed".into())) && ran.contains(&(h.id(), "survivor".into()))
        );
    }
    stop.shutdown();
    run.await.unwrap().unwrap();
}

/// Fencing at the backend level: a worker that lost its lease cannot complete the task that
/// now belongs to another worker.
async fn late_completion_is_refused(c: Client) {
    let b = c.backend().clone();
    c.declare("q", QueueConfig::default()).await.unwrap();
    b.register_worker(
        WorkerSpec::new("old", ["q"])
            .unwrap()
            .heartbeat_ttl(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let task = c
        .submit(TaskSpec::builder("q", "k").build().unwrap())
        .await
        .unwrap();
    let old = b
        .receive(&"old".parse().unwrap(), 1)
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = b.maintain(10).await.unwrap();
    assert_eq!(report.workers_reaped.len(), 1);
    b.register_worker(WorkerSpec::new("new", ["q"]).unwrap())
        .await
        .unwrap();
    let new = b
        .receive(&"new".parse().unwrap(), 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(new.lease.task, task.id());
    let late = b.complete(&old.lease, b"late".to_vec()).await.unwrap();
    assert!(
        matches!(
            late.ack,
            Ack::Rejected(Rejection::StaleToken | Rejection::NotRunning(_))
        ),
        "{late:?}"
    );
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
    assert!(c.dead("q", 10).await.unwrap().is_empty());
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
    delayed_tasks_run_on_time,
    cancellation_of_ready_delayed_and_running,
    graceful_shutdown_loses_nothing,
    shutdown_past_its_grace_hands_running_tasks_back,
    a_slow_handler_times_out_and_is_retried_then_dead,
    a_killed_worker_s_tasks_finish_elsewhere,
    late_completion_is_refused;
    with a server:
    timeouts_ignore_clock_skew,
);
