//! Failures: retries with backoff and jitter, the dead-letter set, delays, timeouts (by the
//! worker and by the heartbeat), panicking handlers.

use super::*;

pub(crate) async fn retries_back_off_then_dead_letter_and_redrive(c: Client) {
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

pub(crate) async fn delayed_tasks_run_on_time(c: Client) {
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
pub(crate) async fn a_backed_off_retry_wakes_sleeping_maintenance(c: Client) {
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

/// A panicking handler fails its attempt with the panic message; the worker goes on.
pub(crate) async fn a_panicking_handler_fails_its_task_and_the_worker_goes_on(c: Client) {
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
pub(crate) async fn a_slow_handler_times_out_and_is_retried_then_dead(c: Client) {
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

/// A worker that keeps heartbeating while its handler overruns (stuck in blocking code, so the
/// runtime cannot enforce the timeout itself): its heartbeat fails the attempt as timed out.
pub(crate) async fn the_heartbeat_fails_an_overrunning_task(c: Client) {
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

/// Retries with jitter: each retry's delay (the `retried` event's run-at minus the failure
/// time, both on the backend's clock) lies in `[d − ⌊d·pct/100⌋, d]` with
/// `d = min(base·2^(k−1), max)` for the k-th failure — the cap included.
pub(crate) async fn retry_delays_respect_jitter_and_cap(c: Client) {
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
