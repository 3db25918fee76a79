//! Sentinel failover under load. A producer submits tasks one at a time while two workers (the
//! real runtime, never restarted) run them; the primary is killed with SIGKILL three times in a
//! row, and each time the killed server rejoins, empty, as a replica of the new primary.
//!
//! Counted by task id: every submit the producer saw acknowledged must be found, succeeded, at
//! the end. In durable mode (`WAIT` for one of the two replicas; Sentinel prefers the replica
//! furthest ahead as of its last look, which in this set-up is the one that confirmed) nothing
//! acknowledged may be lost, and a task may run twice only where a report of its first run was not
//! acknowledged. (`WAIT` for both would refuse every change while the killed server is away.) Without
//! durable mode, what was lost is counted and printed, not hidden.
//!
//! Recovery time per failover (kill → first submit acknowledged and first task started after
//! it) is printed; `docs/operations.md` quotes it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::{
    Client, Durable, Error, QueueConfig, RedisBackend, RedisConfig, TaskId, TaskSpec, TaskState,
    Worker, WorkerReport,
};
use switchyard_testkit::sentinel::SentinelSet;

const KILLS: usize = 3;
/// Task timeout: a task whose report was lost runs again this long after it started.
const TASK_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound on tasks submitted, whatever happens.
const MAX_TASKS: u64 = 200_000;

/// The two tests run one after the other: each starts six processes and counts on failovers
/// only when it kills a primary (on 2 cores, two at once could delay heartbeats into extra
/// failovers).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the test saw, for its assertions and its printout.
#[derive(Debug, Default)]
struct Seen {
    /// Acknowledged submits, in order.
    acked: Vec<TaskId>,
    /// When each submit was acknowledged, in order.
    ack_times: Vec<Instant>,
    /// Handler runs per task.
    runs: HashMap<TaskId, u32>,
    /// When each handler run started, in order.
    run_times: Vec<Instant>,
    /// Submit calls that failed (and were repeated).
    submit_errors: u64,
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "gave up after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Outcome {
    /// `WAIT` calls the last primary ran (durable mode sends one per script call).
    waits: u64,
    acked: usize,
    lost: usize,
    recoveries: Vec<Duration>,
    redone: usize,
    reports: Vec<WorkerReport>,
    submit_errors: u64,
}

/// `cmdstat_wait` calls of the server on `port`.
fn wait_calls(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn three_failovers(durable: Option<Durable>, namespace: &str) -> Outcome {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut set = blocking(|| SentinelSet::start(2, 3)).unwrap();
    let mut config = RedisConfig::new(set.url(), namespace);
    config.durable = durable;
    let client = Client::new(RedisBackend::with_config(config).await.unwrap());
    let queue = QueueConfig::default()
        .with_timeout(TASK_TIMEOUT)
        .with_max_attempts(50);
    client.keep_declared("jobs", queue).await.unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut workers = Vec::new();
    for name in ["w-a", "w-b"] {
        let seen = seen.clone();
        let worker = Worker::builder(&client, name, ["jobs"])
            .unwrap()
            .capacity(4)
            .heartbeat_ttl(Duration::from_secs(3))
            .declare("jobs", queue)
            .unwrap()
            .handle("noop", move |ctx, _payload| {
                let seen = seen.clone();
                async move {
                    let mut s = seen.lock().unwrap();
                    *s.runs.entry(ctx.id).or_default() += 1;
                    s.run_times.push(Instant::now());
                    Ok(Vec::new())
                }
            })
            .build()
            .unwrap();
        let stop = worker.shutdown_handle();
        workers.push((stop, tokio::spawn(worker.run())));
    }

    // The producer: one submit at a time, each repeated until acknowledged (same id).
    let stop_producing = Arc::new(AtomicBool::new(false));
    let producer = {
        let (client, seen, stop) = (client.clone(), seen.clone(), stop_producing.clone());
        tokio::spawn(async move {
            for _ in 0..MAX_TASKS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let spec = TaskSpec::builder("jobs", "noop").build().unwrap();
                let id = spec.id();
                loop {
                    match client.submit(spec.clone()).await {
                        Ok(_) => break,
                        Err(e) => {
                            assert!(
                                e.is_transient() || matches!(e, Error::NotReplicated { .. }),
                                "a submit failed for a reason other than the failover: {e}"
                            );
                            seen.lock().unwrap().submit_errors += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                let mut s = seen.lock().unwrap();
                s.acked.push(id);
                s.ack_times.push(Instant::now());
            }
        })
    };

    let mut recoveries = Vec::new();
    for round in 1..=KILLS {
        // Steady load first: 200 more tasks run since the last round.
        let base = seen.lock().unwrap().runs.len();
        eventually(Duration::from_secs(60), "steady load", || {
            (seen.lock().unwrap().runs.len() >= base + 200).then_some(())
        })
        .await;
        let old = blocking(|| set.kill_primary()).unwrap();
        let killed_at = Instant::now();
        let new = blocking(|| set.wait_failover(old, Duration::from_secs(60))).unwrap();
        let promoted = killed_at.elapsed();
        // The first acknowledged submit and the first handler start after the kill.
        let recovered = eventually(Duration::from_secs(60), "work after the failover", || {
            let s = seen.lock().unwrap();
            let first_after = |times: &[Instant]| {
                let i = times.partition_point(|t| *t <= killed_at);
                times.get(i).copied()
            };
            Some(first_after(&s.ack_times)?.max(first_after(&s.run_times)?))
        })
        .await;
        recoveries.push(recovered - killed_at);
        eprintln!(
            "failover {round}: primary {old} killed, {new} promoted after {promoted:?} (as the \
             Sentinels tell), work resumed after {:?}",
            recovered - killed_at
        );
        blocking(|| set.rejoin(old, Duration::from_secs(60))).unwrap();
    }
    stop_producing.store(true, Ordering::SeqCst);
    producer.await.unwrap();

    // Every worker is still the one started at the beginning.
    for (_, running) in &workers {
        assert!(
            !running.is_finished(),
            "a worker stopped during the failovers"
        );
    }

    // Every acknowledged task must succeed (a lost report makes it run again after its
    // timeout); the ones that cannot be found or never finish are the losses.
    let acked = seen.lock().unwrap().acked.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lost = 0;
    for id in &acked {
        loop {
            let state = client.task_handle(*id).state().await.unwrap();
            match state {
                Some(TaskState::Succeeded) => break,
                None => {
                    lost += 1;
                    break;
                }
                Some(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(other) => panic!("task {id} still {other:?} a minute after the load"),
            }
        }
    }
    let mut reports = Vec::new();
    for (stop, running) in workers {
        stop.shutdown();
        reports.push(running.await.unwrap().unwrap());
    }
    let primary = blocking(|| set.primary_port()).unwrap();
    let waits = blocking(|| wait_calls(primary));
    let s = seen.lock().unwrap();
    let redone = s.runs.values().filter(|n| **n > 1).count();
    let outcome = Outcome {
        waits,
        acked: acked.len(),
        lost,
        recoveries,
        redone,
        reports,
        submit_errors: s.submit_errors,
    };
    eprintln!(
        "durable {durable:?}: {} submits acknowledged, {} lost, {} tasks ran more than once, \
         {} submit calls repeated; recovery {:?}; worker reports {:?}",
        outcome.acked,
        outcome.lost,
        outcome.redone,
        outcome.submit_errors,
        outcome.recoveries,
        outcome.reports
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_loses_nothing_acknowledged_across_three_failovers() {
    let durable = Durable::new(1, Duration::from_secs(2));
    let outcome = three_failovers(Some(durable), "fo-durable").await;
    assert_eq!(outcome.recoveries.len(), KILLS);
    assert!(outcome.acked > 600, "too little load: {}", outcome.acked);
    assert!(outcome.waits > 0, "durable mode sent no WAIT");
    assert_eq!(outcome.lost, 0, "acknowledged submits lost in durable mode");
    // A task runs again only when a report of an earlier run was not acknowledged: refused
    // (its lease taken back), given up, or not confirmed by the replicas.
    let unacknowledged: u64 = outcome
        .reports
        .iter()
        .map(|r| r.refused + r.unreported + r.unconfirmed)
        .sum();
    assert!(
        outcome.redone as u64 <= unacknowledged,
        "{} tasks ran twice but only {unacknowledged} reports were not acknowledged: an \
         acknowledged completion was lost",
        outcome.redone
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_mode_losses_are_counted() {
    let outcome = three_failovers(None, "fo-async").await;
    assert_eq!(outcome.recoveries.len(), KILLS);
    assert!(outcome.acked > 600, "too little load: {}", outcome.acked);
    assert_eq!(outcome.waits, 0, "WAIT sent outside durable mode");
    // Asynchronous replication may lose the last writes before each kill: the number lost is
    // the finding, printed above, not a failure. Every task not lost succeeded (checked by
    // task id above).
}
