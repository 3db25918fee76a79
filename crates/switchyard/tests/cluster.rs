//! Redis Cluster under load: three namespaces whose hash tags land on the three primaries of a
//! Cluster, each with a producer and a worker (the real runtime). While they run, the slot of
//! the first namespace is moved to another primary and back, by hand and slowly (`CLUSTER
//! SETSLOT … IMPORTING/MIGRATING`, then one `MIGRATE` per key with a pause after each), so
//! that scripts meet the slot half-moved: redis-rs follows `ASK`, and retries `TRYAGAIN` (a
//! script whose keys are split between the two nodes); what outlasts its retries reaches the
//! caller as a transient error, which the producer and the runtime repeat.
//!
//! Counted by task id: every acknowledged submit ran and is succeeded at the end; runs beyond
//! one per task are counted and printed (at-least-once allows them). Read from the servers'
//! own error counters (`INFO errorstats`): no `CROSSSLOT` on any node, and the move was met
//! (`ASK` or `TRYAGAIN` replies were sent).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::{
    Client, QueueConfig, RedisBackend, RedisConfig, Result, ShutdownHandle, TaskId, TaskSpec,
    TaskState, Worker, WorkerReport,
};
use switchyard_testkit::cluster::RedisCluster;

/// Tasks each producer submits.
const TASKS: usize = 600;
/// Pause after each key moved: long enough that requests meet the slot half-moved.
const KEY_PAUSE: Duration = Duration::from_millis(150);

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// `errorstat_<code>` counts of the node at `port`.
fn error_counts(port: u16) -> HashMap<String, u64> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("errorstats")
        .query(&mut conn)
        .unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("errorstat_"))
        .filter_map(|l| {
            let (code, rest) = l.split_once(":count=")?;
            Some((code.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

#[derive(Default)]
struct Seen {
    acked: Vec<TaskId>,
    runs: HashMap<TaskId, u32>,
    submit_errors: u64,
}

/// One namespace's producer and worker.
struct Load {
    client: Client,
    seen: Arc<Mutex<Seen>>,
    producer: tokio::task::JoinHandle<()>,
    worker: (
        ShutdownHandle,
        tokio::task::JoinHandle<Result<WorkerReport>>,
    ),
}

async fn start_load(url: &str, namespace: &str) -> Load {
    let client = Client::new(
        RedisBackend::with_config(RedisConfig::new(url, namespace))
            .await
            .unwrap(),
    );
    let queue = QueueConfig::default()
        .with_timeout(Duration::from_secs(5))
        .with_max_attempts(50);
    client.keep_declared("jobs", queue).await.unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let worker = {
        let seen = seen.clone();
        Worker::builder(&client, &format!("{namespace}-w"), ["jobs"])
            .unwrap()
            .capacity(8)
            .declare("jobs", queue)
            .unwrap()
            .handle("noop", move |ctx, _payload| {
                let seen = seen.clone();
                async move {
                    *seen.lock().unwrap().runs.entry(ctx.id).or_default() += 1;
                    Ok(Vec::new())
                }
            })
            .build()
            .unwrap()
    };
    let worker = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    let producer = {
        let (client, seen) = (client.clone(), seen.clone());
        tokio::spawn(async move {
            for _ in 0..TASKS {
                let spec = TaskSpec::builder("jobs", "noop").build().unwrap();
                // Repeated with the same id until acknowledged: a repeat is a duplicate, not a
                // second task.
                loop {
                    match client.submit(spec.clone()).await {
                        Ok(_) => break,
                        Err(e) => {
                            assert!(e.is_transient(), "a submit failed for good: {e}");
                            seen.lock().unwrap().submit_errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                seen.lock().unwrap().acked.push(spec.id());
                // A steady trickle, so that the load spans the moves.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    Load {
        client,
        seen,
        producer,
        worker,
    }
}

async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < within,
            "gave up after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_namespace_moves_between_primaries_under_load() {
    let cluster = blocking(|| RedisCluster::start(3, 0)).unwrap();
    let primaries = cluster.primary_ports();
    assert_eq!(primaries.len(), 3);

    // Three namespaces, one on each primary.
    let mut spread: Vec<(String, u16, u16)> = Vec::new(); // namespace, slot, owner
    for i in 0..1000 {
        let ns = format!("shop{i}");
        let slot = cluster.slot_of(&format!("sy:{{{ns}}}:tasks")).unwrap();
        let owner = cluster.owner_of(slot).unwrap();
        if spread.iter().all(|(_, _, o)| *o != owner) {
            spread.push((ns, slot, owner));
        }
        if spread.len() == 3 {
            break;
        }
    }
    assert_eq!(spread.len(), 3, "no namespaces found on three primaries");

    let url = cluster.url();
    let mut loads = Vec::new();
    for (ns, _, _) in &spread {
        loads.push(start_load(&url, ns).await);
    }

    // The first namespace is busy: move its slot away and back while tasks flow.
    let (_, slot, home) = spread[0].clone();
    let away = spread[1].2;
    let busy = loads[0].seen.clone();
    eventually(Duration::from_secs(60), "the first tasks run", || {
        busy.lock().unwrap().runs.len() >= 50
    })
    .await;
    let started = Instant::now();
    let there = blocking(|| cluster.move_slot(slot, away, KEY_PAUSE)).unwrap();
    assert_eq!(cluster.owner_of(slot).unwrap(), away);
    let runs_between = busy.lock().unwrap().runs.len();
    let back = blocking(|| cluster.move_slot(slot, home, KEY_PAUSE)).unwrap();
    assert_eq!(cluster.owner_of(slot).unwrap(), home);
    eprintln!(
        "slot {slot} moved {home} -> {away} ({there} keys) and back ({back} keys) in {:?}; \
         {runs_between} tasks of the busy namespace had run between the moves",
        started.elapsed()
    );
    assert!(there > 0 && back > 0, "the namespace's keys moved");

    // Everything acknowledged ran and succeeded.
    for (load, (ns, _, _)) in loads.into_iter().zip(&spread) {
        load.producer.await.unwrap();
        let acked = load.seen.lock().unwrap().acked.clone();
        assert_eq!(acked.len(), TASKS);
        eventually(
            Duration::from_secs(120),
            "every acknowledged task ran",
            || {
                let s = load.seen.lock().unwrap();
                acked.iter().all(|id| s.runs.contains_key(id))
            },
        )
        .await;
        for id in &acked {
            assert_eq!(
                load.client.task(*id).state().await.unwrap(),
                Some(TaskState::Succeeded),
                "{ns}: task {id}"
            );
        }
        let (extra, repeated) = {
            let s = load.seen.lock().unwrap();
            let extra: u32 = s.runs.values().map(|n| n - 1).sum();
            (extra, s.submit_errors)
        };
        eprintln!(
            "{ns}: {} acknowledged, all succeeded; {extra} extra runs; {repeated} submit calls \
             repeated",
            acked.len()
        );
        load.worker.0.shutdown();
        let report = load.worker.1.await.unwrap().unwrap();
        eprintln!("{ns}: worker {report:?}");
    }

    let mut met = 0;
    for port in cluster.primary_ports() {
        let counts = error_counts(port);
        eprintln!("errorstats of {port}: {counts:?}");
        assert_eq!(counts.get("CROSSSLOT"), None, "CROSSSLOT on {port}");
        met +=
            counts.get("ASK").copied().unwrap_or(0) + counts.get("TRYAGAIN").copied().unwrap_or(0);
    }
    assert!(met > 0, "no request met the slot half-moved");
}
