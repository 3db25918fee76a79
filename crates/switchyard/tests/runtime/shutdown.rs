//! Cancellation and shutdown: ready, delayed and running tasks cancelled; graceful stops
//! within and past their grace, and while the worker waits or holds a hand-off.

use super::*;

pub(crate) async fn cancellation_of_ready_delayed_and_running(c: Client) {
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

pub(crate) async fn graceful_shutdown_loses_nothing(c: Client) {
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
pub(crate) async fn a_stop_drains_at_once_even_while_the_worker_waits(c: Client) {
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

/// Shutdown past its grace period: a handler that ignores cancellation and one that answers it
/// with a fatal error both have their tasks handed back (attempt counted), not dead-lettered; a
/// task a user cancelled still ends cancelled; a second worker finishes the rest.
pub(crate) async fn shutdown_past_its_grace_hands_running_tasks_back(c: Client) {
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
pub(crate) async fn a_hand_off_the_worker_never_saw_is_stopped_with_the_rest(c: Client) {
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
