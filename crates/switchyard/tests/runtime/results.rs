//! Results and errors, result expiry, deduplication, learned costs and events.

use super::*;

pub(crate) async fn results_and_errors(c: Client) {
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

/// On a shortest-job-first queue, the learned cost of a kind is the moving average of its
/// measured run times, and a task submitted without a hint is ordered by it.
pub(crate) async fn learned_costs_are_the_moving_average_and_fill_missing_hints(c: Client) {
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
pub(crate) async fn results_expire_after_their_ttl(c: Client) {
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
pub(crate) async fn dedup_keys_hold_for_their_window(c: Client) {
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
pub(crate) async fn events_report_every_kind(c: Client) {
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
