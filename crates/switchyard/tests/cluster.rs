//! Redis Cluster under load: one namespace of three partitions whose hash tags land on the
//! three primaries of a Cluster, a producer submitting one task at a time (each repeated with
//! the same id until acknowledged) and three workers (the real runtime, one partition each).
//!
//! * **A slot moves**: the slot of one partition is moved to another primary and back, by
//!   hand and slowly (`CLUSTER SETSLOT … IMPORTING/MIGRATING`, then one `MIGRATE` per key with
//!   a pause after each), so that scripts meet the slot half-moved: redis-rs follows `ASK` and
//!   retries `TRYAGAIN` (a script whose keys are split between the two nodes); what outlasts
//!   its retries reaches the caller as a transient error, which the producer and the runtime
//!   repeat. The servers' own error counters (`INFO errorstats`) show that the move was met
//!   (`ASK`, `TRYAGAIN`) and that no `CROSSSLOT` ever happened.
//! * **A primary dies**: on a Cluster with a replica per primary, in durable mode (`WAIT` for
//!   the replica), the primary of one partition is SIGKILLed; the Cluster promotes its
//!   replica, the killed node rejoins (empty) as the new primary's replica, and work resumes
//!   with no worker restarted. The recovery times are printed.
//!
//! Counted by task id in both: every acknowledged submit ran and is succeeded at the end, every
//! partition got tasks; runs beyond one per task are counted and printed (at-least-once allows
//! them).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::backend::task_hash_key;
use switchyard::partition::route::partition_of;
use switchyard::{
    Client, Durable, Error, QueueConfig, RedisConfig, ShutdownHandle, TaskId, TaskSpec, TaskState,
    Worker, WorkerReport,
};
use switchyard_testkit::cluster::RedisCluster;
use switchyard_testkit::wait_until;

/// Upper bound on tasks the producer submits, whatever happens.
const MAX_TASKS: usize = 100_000;
/// Partitions of the namespace.
const P: u16 = 3;
/// Pause after each key moved: long enough that requests meet the slot half-moved.
const KEY_PAUSE: Duration = Duration::from_millis(150);

/// One Cluster at a time: the failover tests count on the Cluster's own timing (node timeout,
/// election), which a second set of servers on two cores could delay.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    /// Acknowledged submits, in order, with when.
    acked: Vec<(TaskId, Instant)>,
    runs: HashMap<TaskId, u32>,
    /// Handler starts, in order.
    run_log: Vec<(TaskId, Instant)>,
    submit_errors: u64,
}

/// A namespace whose partitions land on three primaries, and each partition's (slot, owner).
fn spread(cluster: &RedisCluster) -> (String, Vec<(u16, u16)>) {
    (0..10_000)
        .find_map(|i| {
            let ns = format!("shop{i}");
            let placed: Vec<(u16, u16)> = (0..P)
                .map(|p| {
                    let slot = cluster.slot_of(&task_hash_key(&ns, p).unwrap()).unwrap();
                    (slot, cluster.owner_of(slot).unwrap())
                })
                .collect();
            let owners: BTreeSet<u16> = placed.iter().map(|(_, o)| *o).collect();
            (owners.len() == 3).then_some((ns, placed))
        })
        .expect("a namespace spread over three primaries")
}

/// The producer and the workers, running.
struct Load {
    client: Client,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    producer: tokio::task::JoinHandle<()>,
    workers: Vec<(
        ShutdownHandle,
        tokio::task::JoinHandle<switchyard::Result<WorkerReport>>,
    )>,
}

async fn start(url: &str, namespace: &str, durable: Option<Durable>) -> Load {
    let mut config = RedisConfig::new(url, namespace);
    config.durable = durable;
    let client = Client::redis(config.clone(), Some(P)).await.unwrap();
    let queue = QueueConfig::default()
        .with_timeout(Duration::from_secs(5))
        .with_max_attempts(50);
    client.keep_declared("jobs", queue).await.unwrap();
    // The workers' client finds the partitions by itself; one naming another count is refused.
    let workers_client = Client::redis(config.clone(), None).await.unwrap();
    let refused = Client::redis(config, Some(4)).await.unwrap_err();
    assert!(refused.to_string().contains("has 3 partition(s), not 4"));

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut workers = Vec::new();
    for name in ["w0", "w1", "w2"] {
        let seen = seen.clone();
        let worker = Worker::builder(&workers_client, name, ["jobs"])
            .unwrap()
            .capacity(8)
            .heartbeat_ttl(Duration::from_secs(6))
            .declare("jobs", queue)
            .unwrap()
            .handle("noop", move |ctx, _payload| {
                let seen = seen.clone();
                async move {
                    let mut s = seen.lock().unwrap();
                    *s.runs.entry(ctx.id).or_default() += 1;
                    s.run_log.push((ctx.id, Instant::now()));
                    Ok(Vec::new())
                }
            })
            .build()
            .unwrap();
        workers.push((worker.shutdown_handle(), tokio::spawn(worker.run())));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (client, seen, stop) = (client.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            for _ in 0..MAX_TASKS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let spec = TaskSpec::builder("jobs", "noop").build().unwrap();
                loop {
                    match client.submit(spec.clone()).await {
                        Ok(_) => break,
                        Err(e) => {
                            assert!(
                                e.is_transient() || matches!(e, Error::NotReplicated { .. }),
                                "a submit failed for good: {e}"
                            );
                            seen.lock().unwrap().submit_errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                seen.lock().unwrap().acked.push((spec.id(), Instant::now()));
                // A steady trickle, so that the load spans what the test does to the Cluster.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    Load {
        client,
        seen,
        stop,
        producer,
        workers,
    }
}

impl Load {
    fn runs(&self) -> usize {
        self.seen.lock().unwrap().runs.len()
    }

    /// When, after `t`, a submit to partition `p` was first acknowledged and a task of `p`
    /// first started, whichever came later.
    fn resumed_after(&self, p: u16, t: Instant) -> Option<Instant> {
        let s = self.seen.lock().unwrap();
        let first = |log: &[(TaskId, Instant)]| {
            log.iter()
                .find(|(id, at)| *at > t && partition_of(*id, P) == p)
                .map(|(_, at)| *at)
        };
        Some(first(&s.acked)?.max(first(&s.run_log)?))
    }

    /// Stops producing; counts the acknowledged tasks that are not succeeded at the end (lost),
    /// which must be none when `lossless`; checks that every partition had its share; stops the
    /// workers (none may have ended before). Returns how many were lost.
    async fn finish(self, lossless: bool) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.producer.await.unwrap();
        for (_, run) in &self.workers {
            assert!(!run.is_finished(), "a worker stopped by itself");
        }
        let acked: Vec<TaskId> = self
            .seen
            .lock()
            .unwrap()
            .acked
            .iter()
            .map(|(id, _)| *id)
            .collect();
        if lossless {
            wait_until(
                Duration::from_secs(120),
                "every acknowledged task ran",
                || {
                    let s = self.seen.lock().unwrap();
                    acked.iter().all(|id| s.runs.contains_key(id))
                },
            )
            .await;
            // A handler's run is counted before its completion is acknowledged, and the last
            // acknowledgements may be retried across a slot move: wait for them (the check
            // below names any task that did not succeed within the bound).
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                let stats = self.client.stats().await.unwrap();
                let succeeded: u64 = stats.queues.iter().map(|q| q.succeeded).sum();
                if succeeded as usize >= acked.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            // A lost task never runs: wait until nothing is left to run instead.
            let start = Instant::now();
            loop {
                let stats = self.client.stats().await.unwrap();
                let left: u64 = stats
                    .queues
                    .iter()
                    .map(|q| q.scheduled + q.ready + q.dispatched + q.running + q.retry_scheduled)
                    .sum();
                if left == 0 {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "{left} tasks never ran"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut per_partition = [0usize; P as usize];
        let mut lost = 0;
        for id in &acked {
            per_partition[usize::from(partition_of(*id, P))] += 1;
            let state = self.client.task_handle(*id).state().await.unwrap();
            if state != Some(TaskState::Succeeded) {
                assert!(!lossless, "task {id} is {state:?}");
                lost += 1;
            }
        }
        let (extra, repeated) = {
            let s = self.seen.lock().unwrap();
            let extra: u32 = s.runs.values().map(|n| n - 1).sum();
            (extra, s.submit_errors)
        };
        eprintln!(
            "{} acknowledged, {lost} lost; per partition {per_partition:?}; {extra} extra runs; \
             {repeated} submit calls repeated",
            acked.len()
        );
        assert!(
            per_partition.iter().all(|n| *n > acked.len() / 10),
            "{per_partition:?}"
        );
        for (stop, run) in self.workers {
            stop.shutdown();
            let report = run.await.unwrap().unwrap();
            eprintln!("worker {report:?}");
        }
        lost
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_spread_over_primaries_and_one_moves_under_load() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = blocking(|| RedisCluster::start(3, 0)).unwrap();
    assert_eq!(cluster.primary_ports().len(), 3);
    let (namespace, placed) = spread(&cluster);
    let load = start(&cluster.url(), &namespace, None).await;

    // Partition 1 is busy: move its slot to partition 2's primary and back while tasks flow.
    let (slot, home) = placed[1];
    let away = placed[2].1;
    wait_until(Duration::from_secs(60), "the first tasks run", || {
        load.runs() >= 100
    })
    .await;
    let started = Instant::now();
    let there = blocking(|| cluster.move_slot(slot, away, KEY_PAUSE)).unwrap();
    assert_eq!(cluster.owner_of(slot).unwrap(), away);
    let back = blocking(|| cluster.move_slot(slot, home, KEY_PAUSE)).unwrap();
    assert_eq!(cluster.owner_of(slot).unwrap(), home);
    eprintln!(
        "partition 1 (slot {slot}) moved {home} -> {away} ({there} keys) and back ({back} keys) \
         in {:?}",
        started.elapsed()
    );
    assert!(there > 0 && back > 0, "the partition's keys moved");
    // Some more load after the moves, then the count.
    let after = load.runs();
    wait_until(Duration::from_secs(60), "work after the moves", || {
        load.runs() >= after + 300
    })
    .await;
    assert_eq!(load.finish(true).await, 0);

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

/// Kills the primary of partition 1 under load and waits for its replica's promotion, the
/// killed node's return as a replica, and work on partition 1 again; returns how many
/// acknowledged tasks were lost.
async fn failover(durable: Option<Durable>) -> usize {
    let mut cluster = blocking(|| RedisCluster::start(3, 1)).unwrap();
    assert_eq!(cluster.primary_ports().len(), 3);
    let (namespace, placed) = spread(&cluster);
    let load = start(&cluster.url(), &namespace, durable).await;

    wait_until(Duration::from_secs(60), "steady load", || {
        load.runs() >= 300
    })
    .await;
    let (slot, old) = placed[1];
    cluster.kill(old).unwrap();
    let killed = Instant::now();
    let new = blocking(|| cluster.wait_promoted(slot, old, Duration::from_secs(60))).unwrap();
    let promoted = killed.elapsed();
    let mut resumed = None;
    let mut wait_resumed = async || {
        wait_until(Duration::from_secs(60), "work after the failover", || {
            resumed = load.resumed_after(1, killed);
            resumed.is_some()
        })
        .await;
    };
    // Durable mode refuses the promoted primary's changes (NotReplicated) until it has a
    // replica again: the killed node must come back first.
    if durable.is_some() {
        blocking(|| cluster.rejoin(old, Duration::from_secs(60))).unwrap();
        wait_resumed().await;
    } else {
        wait_resumed().await;
        blocking(|| cluster.rejoin(old, Duration::from_secs(60))).unwrap();
    }
    let rejoined = killed.elapsed();
    let resumed = resumed.unwrap() - killed;
    let before = load.runs();
    wait_until(
        Duration::from_secs(60),
        "more work after the failover",
        || load.runs() >= before + 300,
    )
    .await;
    eprintln!(
        "durable {}: primary {old} of partition 1 killed: {new} promoted after {promoted:?}, \
         partition 1's work resumed after {resumed:?}, {old} back as a replica after \
         {rejoined:?}",
        durable.is_some()
    );
    load.finish(durable.is_some()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_and_work_resumes() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Without durable mode a change the primary had not yet sent to its replica is lost with
    // it: counted and printed, not hidden.
    let lost = failover(None).await;
    eprintln!("without durable mode: {lost} acknowledged tasks lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_durable_mode_a_killed_primary_loses_nothing_acknowledged() {
    let _serial = ONE_AT_A_TIME.lock().await;
    assert_eq!(
        failover(Some(Durable::new(1, Duration::from_secs(2)))).await,
        0
    );
}
