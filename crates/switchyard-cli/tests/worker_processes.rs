//! Worker processes on Redis, killed for real: a SIGKILLed worker's tasks are finished by
//! another process and its late reports are refused (fencing); a soak of 10,000 tasks through
//! four worker processes, one killed and restarted every two seconds, loses none.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::{WorkerProcess, eventually, ok, registered};
use switchyard::backend::{Ack, Lease, Rejection};
use switchyard::{Client, TaskHandle, TaskId, TaskOutcome, TaskSpec, TaskState};
use switchyard_testkit::redis_server::RedisServer;

async fn connect(server: &RedisServer, namespace: &str) -> Client {
    Client::connect(&server.url(), namespace).await.unwrap()
}

/// The lease a task is held under right now, if it runs on `worker`.
async fn lease_on(client: &Client, id: TaskId, worker: &str) -> Option<Lease> {
    let info = client.task_handle(id).info().await.ok()??;
    let lease = info.lease()?;
    (info.state == TaskState::Running && lease.worker.as_str() == worker).then_some(lease)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_worker_s_tasks_finish_elsewhere_and_its_late_reports_are_refused() {
    let server = RedisServer::start().unwrap();
    let ns = "kill";
    ok(
        &server,
        ns,
        &["declare", "q", "--backoff-ms", "50", "--jitter-pct", "0"],
    );
    let client = connect(&server, ns).await;
    // Doomed's heartbeat expires soon after the kill and the survivor's maintenance reaps it.
    // Doomed runs no maintenance and the survivor has a long TTL, so that neither can be
    // reaped while alive when the other test of this file loads the machine.
    let doomed_flags = [
        "--queue",
        "q",
        "--capacity",
        "4",
        "--heartbeat-ttl-ms",
        "600",
        "--maintenance-ms",
        "0",
    ];
    let survivor_flags = [
        "--queue",
        "q",
        "--capacity",
        "4",
        "--heartbeat-ttl-ms",
        "10000",
        "--maintenance-ms",
        "100",
    ];
    let mut doomed = WorkerProcess::start(&server, ns, "doomed", &doomed_flags);
    registered(&client, "doomed").await;

    // Four tasks that take 3 s each, so the survivor still holds them while the checks below
    // run: all four start on the doomed worker.
    let specs = (0..4)
        .map(|_| {
            TaskSpec::builder("q", "sleep")
                .payload(b"3000".to_vec())
                .build()
                .unwrap()
        })
        .collect();
    let tasks: Vec<TaskHandle> = client.submit_batch(specs).await.unwrap();
    let mut old_leases = Vec::new();
    for t in &tasks {
        let lease = eventually(Duration::from_secs(10), "a task to start on doomed", || {
            lease_on(&client, t.id(), "doomed")
        })
        .await;
        old_leases.push(lease);
    }

    doomed.kill();
    let survivor = WorkerProcess::start(&server, ns, "survivor", &survivor_flags);

    // Each task is taken over by the survivor (once the doomed worker's heartbeat expired and
    // some worker's maintenance reaped it). While it runs there, the dead worker's lease is
    // refused and changes nothing.
    for (t, old) in tasks.iter().zip(&old_leases) {
        let new = eventually(
            Duration::from_secs(20),
            "the survivor to take a task",
            || lease_on(&client, t.id(), "survivor"),
        )
        .await;
        assert_ne!(new.token, old.token, "a new dispatch carries a new token");
        let late = client
            .backend()
            .complete(old, b"late".to_vec())
            .await
            .unwrap();
        assert_eq!(late.ack, Ack::Rejected(Rejection::StaleToken));
        let late = client
            .backend()
            .fail(old, "late failure", true)
            .await
            .unwrap();
        assert_eq!(late.ack, Ack::Rejected(Rejection::StaleToken));
        assert_eq!(
            lease_on(&client, t.id(), "survivor").await,
            Some(new),
            "the refused reports left the survivor's lease alone"
        );
    }
    for t in &tasks {
        let outcome = t.wait(Duration::from_secs(20)).await.unwrap();
        assert_eq!(outcome, TaskOutcome::Succeeded(b"3000".to_vec()));
        let info = t.info().await.unwrap().unwrap();
        assert_eq!(info.attempts, 2, "one attempt died with its worker");
    }
    // After the task finished, the old lease is still refused.
    let late = client
        .backend()
        .complete(&old_leases[0], b"late".to_vec())
        .await
        .unwrap();
    assert_eq!(
        late.ack,
        Ack::Rejected(Rejection::NotRunning(TaskState::Succeeded))
    );
    assert_eq!(
        tasks[0].result_bytes(Duration::from_secs(1)).await.unwrap(),
        b"3000"
    );
    let log = survivor.terminate(Duration::from_secs(10));
    assert!(log.contains("4 completed"), "{log}");
}

/// The soak's task `n` sleeps 20-60 ms (so 10,000 tasks keep 32 slots busy for ~12 s, long
/// enough for several kills) and returns its payload.
fn run_ms(n: usize) -> String {
    (20 + (n % 5) * 10).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_ten_thousand_tasks_while_workers_are_killed_and_restarted() {
    const TASKS: usize = 10_000;
    const BATCH: usize = 250;
    let server = RedisServer::start().unwrap();
    let ns = "soak";
    // Many attempts: a task may be caught by several kills in a row.
    ok(
        &server,
        ns,
        &[
            "declare",
            "soak",
            "--strategy",
            "least-loaded",
            "--max-attempts",
            "100",
            "--backoff-ms",
            "10",
            "--backoff-max-ms",
            "100",
        ],
    );
    let client = connect(&server, ns).await;
    let flags = [
        "--queue",
        "soak",
        "--capacity",
        "8",
        "--heartbeat-ttl-ms",
        "1000",
        "--maintenance-ms",
        "200",
        "--grace-ms",
        "2000",
    ];
    let mut workers: Vec<WorkerProcess> = (0..4)
        .map(|i| WorkerProcess::start(&server, ns, &format!("w{i}"), &flags))
        .collect();
    for w in &workers {
        registered(&client, &w.id).await;
    }

    // A producer submits in batches while the workers run and get killed.
    let producer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(TASKS);
            for b in 0..TASKS / BATCH {
                let specs = (0..BATCH)
                    .map(|i| {
                        TaskSpec::builder("soak", "sleep")
                            .payload(run_ms(b * BATCH + i).into_bytes())
                            .build()
                            .unwrap()
                    })
                    .collect();
                for h in client.submit_batch(specs).await.unwrap() {
                    ids.push(h.id());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ids
        })
    };

    // Every two seconds one worker is SIGKILLed and a new process started: half the time under
    // the same id (the new registration replaces the old and hands its tasks back), half the
    // time under a new id (the old one is found dead by heartbeat expiry and reaped).
    let started = Instant::now();
    let deadline = Duration::from_secs(240);
    let mut kills = 0usize;
    let mut next_kill = Instant::now() + Duration::from_secs(2);
    loop {
        let stats = client.stats().await.unwrap();
        let q = stats
            .queues
            .iter()
            .find(|q| q.queue.as_ref().is_some_and(|n| n.as_str() == "soak"));
        let succeeded = q.map_or(0, |q| q.succeeded);
        if producer.is_finished() && succeeded as usize >= TASKS {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "after {kills} kills and {:?}, only {succeeded} of {TASKS} succeeded: {q:?}\n{}",
            started.elapsed(),
            workers
                .iter()
                .map(|w| w.log())
                .collect::<Vec<_>>()
                .join("\n")
        );
        if Instant::now() >= next_kill {
            let slot = kills % workers.len();
            workers[slot].kill();
            let id = if kills.is_multiple_of(2) {
                workers[slot].id.clone()
            } else {
                format!("w{slot}-r{kills}")
            };
            workers[slot] = WorkerProcess::start(&server, ns, &id, &flags);
            kills += 1;
            next_kill = Instant::now() + Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = producer.await.unwrap();
    assert!(
        kills >= 3,
        "the soak ran long enough to kill workers ({kills} kills)"
    );

    // Check by id: every task succeeded with its own payload as its result; none is missing.
    assert_eq!(ids.len(), TASKS);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        TASKS,
        "ids are unique"
    );
    let mut retried = 0;
    for (n, id) in ids.iter().enumerate() {
        let outcome = client.backend().get_outcome(*id).await.unwrap();
        assert_eq!(
            outcome,
            Some(TaskOutcome::Succeeded(run_ms(n).into_bytes())),
            "task {n} ({id})"
        );
        let info = client.task_handle(*id).info().await.unwrap().unwrap();
        assert_eq!(info.state, TaskState::Succeeded);
        if info.attempts > 1 {
            retried += 1;
        }
    }
    let stats = client.stats().await.unwrap();
    let q = &stats.queues[0];
    assert_eq!(
        (q.ready, q.dispatched, q.running, q.retry_scheduled, q.dead),
        (0, 0, 0, 0, 0),
        "nothing left behind"
    );
    eprintln!(
        "soak: {TASKS} tasks, {kills} kills, {retried} tasks needed more than one attempt, {:?}",
        started.elapsed()
    );
    assert!(retried > 0, "the kills caught tasks mid-flight");
}

/// Every failed attempt is in the worker's log at warn — the task, its queue and kind, the
/// attempt, the error, and what became of it — the timed-out ones too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_timed_out_attempts_are_logged() {
    let server = RedisServer::start().unwrap();
    let ns = "logged";
    ok(
        &server,
        ns,
        &[
            "declare",
            "q",
            "--max-attempts",
            "2",
            "--backoff-ms",
            "10",
            "--jitter-pct",
            "0",
        ],
    );
    let worker = WorkerProcess::start(&server, ns, "w", &["--queue", "q"]);
    let client = connect(&server, ns).await;
    registered(&client, "w").await;
    let failing = client.submit_json("q", "fail", "boom").await.unwrap();
    let slow = client
        .submit(
            TaskSpec::builder("q", "sleep")
                .payload(b"5000".to_vec())
                .timeout(Duration::from_millis(200))
                .max_attempts(1)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    for task in [&failing, &slow] {
        assert!(matches!(
            task.wait(Duration::from_secs(20)).await.unwrap(),
            TaskOutcome::Dead(_)
        ));
    }
    let log = eventually(Duration::from_secs(10), "the dead-lettered lines", || {
        let log = worker.log();
        std::future::ready((log.matches("dead-lettered").count() >= 2).then_some(log))
    })
    .await;
    let id = failing.id().to_string();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains(&id)
            && l.contains("kind=fail")
            && l.contains("attempt 1 of 2 failed: boom; retried in")),
        "{log}"
    );
    assert!(
        log.contains("attempt 2 of 2 failed: boom; dead-lettered"),
        "{log}"
    );
    let slow_line = log
        .lines()
        .find(|l| l.contains(&slow.id().to_string()))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        slow_line.contains("timed out after 200 ms") && slow_line.contains("dead-lettered"),
        "{slow_line}"
    );
}
