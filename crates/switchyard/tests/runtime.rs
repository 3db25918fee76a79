//! The client and the worker runtime, on both backends: results and errors, retries and
//! backoff, the dead-letter set, delays, cancellation, graceful shutdown, a killed worker.
//! Redis runs in a redis-server started by the test on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::{
    Ack, Backoff, CancelOutcome, Client, Error, Policy, QueueConfig, Rejection, Strategy,
    TaskError, TaskOutcome, TaskSpec, TaskState, Worker, WorkerSpec,
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

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::client(None).await).await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let server = switchyard_testkit::redis_server::RedisServer::start().unwrap();
                super::$name(super::client(Some(&server)).await).await
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
    a_killed_worker_s_tasks_finish_elsewhere,
    late_completion_is_refused,
);
