//! Redis Cluster under load: one namespace of three partitions whose hash tags land on the
//! three primaries of a Cluster, a producer and three workers (the real runtime, one partition
//! each). While they run, the slot of one partition is moved to another primary and back, by
//! hand and slowly (`CLUSTER
//! SETSLOT … IMPORTING/MIGRATING`, then one `MIGRATE` per key with a pause after each), so
//! that scripts meet the slot half-moved: redis-rs follows `ASK`, and retries `TRYAGAIN` (a
//! script whose keys are split between the two nodes); what outlasts its retries reaches the
//! caller as a transient error, which the producer and the runtime repeat.
//!
//! Counted by task id: every acknowledged submit ran and is succeeded at the end; every
//! partition got tasks; runs beyond one per task are counted and printed (at-least-once allows
//! them). Read from the servers'
//! own error counters (`INFO errorstats`): no `CROSSSLOT` on any node, and the move was met
//! (`ASK` or `TRYAGAIN` replies were sent).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::partition::route::partition_of;
use switchyard::{Client, QueueConfig, RedisConfig, TaskId, TaskSpec, TaskState, Worker};
use switchyard_testkit::cluster::RedisCluster;

/// Tasks the producer submits.
const TASKS: usize = 1500;
/// Partitions of the namespace.
const P: u16 = 3;
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

/// The hash tag of partition `p` of `namespace`, as the Redis backend names its keys.
fn partition_key(namespace: &str, p: u16) -> String {
    match p {
        0 => format!("sy:{{{namespace}}}:tasks"),
        p => format!("sy:{{{namespace}/{p}}}:tasks"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_spread_over_primaries_and_one_moves_under_load() {
    let cluster = blocking(|| RedisCluster::start(3, 0)).unwrap();
    assert_eq!(cluster.primary_ports().len(), 3);

    // A namespace whose three partitions land on three primaries: (slot, owner) of each.
    let (namespace, placed) = (0..10_000)
        .find_map(|i| {
            let ns = format!("shop{i}");
            let placed: Vec<(u16, u16)> = (0..P)
                .map(|p| {
                    let slot = cluster.slot_of(&partition_key(&ns, p)).unwrap();
                    (slot, cluster.owner_of(slot).unwrap())
                })
                .collect();
            let owners: BTreeSet<u16> = placed.iter().map(|(_, o)| *o).collect();
            (owners.len() == 3).then_some((ns, placed))
        })
        .expect("a namespace spread over three primaries");

    let url = cluster.url();
    let client = Client::redis(RedisConfig::new(&url, &namespace), Some(P))
        .await
        .unwrap();
    let queue = QueueConfig::default()
        .with_timeout(Duration::from_secs(5))
        .with_max_attempts(50);
    client.keep_declared("jobs", queue).await.unwrap();
    // A second client finds the partitions by itself.
    let other = Client::connect(&url, &namespace).await.unwrap();
    assert!(
        Client::redis(RedisConfig::new(&url, &namespace), Some(4))
            .await
            .unwrap_err()
            .to_string()
            .contains("has 3 partitions, not 4")
    );

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut workers = Vec::new();
    for name in ["w0", "w1", "w2"] {
        let seen = seen.clone();
        let worker = Worker::builder(&other, name, ["jobs"])
            .unwrap()
            .capacity(8)
            .heartbeat_ttl(Duration::from_secs(3))
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
            .unwrap();
        workers.push((worker.shutdown_handle(), tokio::spawn(worker.run())));
    }
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
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    // Partition 1 is busy: move its slot to partition 2's primary and back while tasks flow.
    let (slot, home) = placed[1];
    let away = placed[2].1;
    eventually(Duration::from_secs(60), "the first tasks run", || {
        seen.lock().unwrap().runs.len() >= 100
    })
    .await;
    let started = Instant::now();
    let there = blocking(|| cluster.move_slot(slot, away, KEY_PAUSE)).unwrap();
    assert_eq!(cluster.owner_of(slot).unwrap(), away);
    let runs_between = seen.lock().unwrap().runs.len();
    let back = blocking(|| cluster.move_slot(slot, home, KEY_PAUSE)).unwrap();
    assert_eq!(cluster.owner_of(slot).unwrap(), home);
    eprintln!(
        "partition 1 (slot {slot}) moved {home} -> {away} ({there} keys) and back ({back} keys) \
         in {:?}; {runs_between} tasks had run by the first move's end",
        started.elapsed()
    );
    assert!(there > 0 && back > 0, "the partition's keys moved");

    // Everything acknowledged ran and succeeded; every partition had its share.
    producer.await.unwrap();
    let acked = seen.lock().unwrap().acked.clone();
    assert_eq!(acked.len(), TASKS);
    eventually(
        Duration::from_secs(120),
        "every acknowledged task ran",
        || {
            let s = seen.lock().unwrap();
            acked.iter().all(|id| s.runs.contains_key(id))
        },
    )
    .await;
    let mut per_partition = [0usize; P as usize];
    for id in &acked {
        per_partition[usize::from(partition_of(*id, P))] += 1;
        assert_eq!(
            client.task(*id).state().await.unwrap(),
            Some(TaskState::Succeeded),
            "task {id}"
        );
    }
    let (extra, repeated) = {
        let s = seen.lock().unwrap();
        let extra: u32 = s.runs.values().map(|n| n - 1).sum();
        (extra, s.submit_errors)
    };
    eprintln!(
        "{} acknowledged, all succeeded; per partition {per_partition:?}; {extra} extra runs; \
         {repeated} submit calls repeated",
        acked.len()
    );
    assert!(
        per_partition.iter().all(|n| *n > TASKS / 10),
        "{per_partition:?}"
    );
    for (stop, run) in workers {
        stop.shutdown();
        let report = run.await.unwrap().unwrap();
        eprintln!("worker {report:?}");
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
