//! Workers that die, stall, come back or collide: their tasks finish elsewhere, late
//! completions are refused, capacity holds, a replaced or duplicate worker stops, a producer
//! survives an empty restart.

use super::*;

/// A killed worker's tasks finish on another worker; while that one holds them, the dead
/// worker's leases are refused with exactly `StaleToken` and change nothing.
pub(crate) async fn a_killed_worker_s_tasks_finish_elsewhere(c: Client) {
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
pub(crate) async fn late_completion_is_refused(c: Client) {
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

/// A worker of capacity N runs N handlers at once, never more.
pub(crate) async fn a_worker_runs_up_to_its_capacity_at_once(c: Client) {
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
pub(crate) async fn a_reaped_worker_registers_again_and_goes_on(c: Client) {
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
pub(crate) async fn a_second_worker_with_the_same_id_does_not_start(c: Client) {
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
pub(crate) async fn a_replaced_worker_stops_and_says_why(c: Client) {
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
pub(crate) async fn a_producer_keeping_its_queue_declared_survives_an_empty_restart() {
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

/// A worker that stops heartbeating (killed) is reaped by another worker's maintenance once
/// its TTL passed; its running task comes back and runs there.
pub(crate) async fn a_silent_worker_s_task_is_returned_by_another_worker_s_maintenance(c: Client) {
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
