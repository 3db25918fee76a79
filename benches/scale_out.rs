//! Scale-out on Redis Cluster: the same load on a Cluster of 1 primary and of 3 primaries.
//!
//! The load: one namespace of three partitions (its name chosen so that, on 3 primaries, each
//! partition's hash tag lands on its own primary), three producers submitting in batches of
//! 100 (a batch is split by partition) and three workers of 50 slots (one partition each)
//! running a no-op handler, all in this process. Printed per Cluster: tasks per second end to
//! end, and each primary's CPU (`used_cpu_sys + used_cpu_user` of `INFO cpu`, before and after)
//! per task it carried. From the per-primary CPU it projects the throughput Redis allows: a
//! primary saturates at 1 s of CPU per second, so a primary that spends `c` µs per task caps its
//! share at `1e6 / c` tasks/s. On a 2-core machine the clients, not Redis, bound the measured
//! throughput; the projection says what the Redis side allows.
//!
//! `cargo bench --bench scale_out` (set `SY_SCALE_TASKS` to change the 60,000 tasks).
#![allow(clippy::expect_used, clippy::unwrap_used)] // set-up failures should abort the bench

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchyard::backend::task_hash_key;
use switchyard::partition::route::partition_for;
use switchyard::{Client, Policy, QueueConfig, RedisConfig, Strategy, TaskSpec, Worker};
use switchyard_testkit::cluster::RedisCluster;

const BATCH: usize = 100;
const PARTITIONS: u16 = 3;

/// CPU seconds the server on `port` has used.
fn cpu_seconds(port: u16) -> f64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut conn).unwrap();
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| *k == "used_cpu_sys" || *k == "used_cpu_user")
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}

/// A namespace whose three partitions are owned by three different primaries of `cluster`.
fn spread_namespace(cluster: &RedisCluster) -> String {
    (0..10_000)
        .map(|i| format!("scale{i}"))
        .find(|ns| {
            let owners: std::collections::BTreeSet<u16> = (0..PARTITIONS)
                .map(|p| {
                    let slot = cluster.slot_of(&task_hash_key(ns, p).unwrap()).unwrap();
                    cluster.owner_of(slot).unwrap()
                })
                .collect();
            owners.len() == 3
        })
        .expect("a namespace spread over three primaries")
}

struct Run {
    tasks: u64,
    elapsed: Duration,
    /// CPU seconds used per primary port, and which partitions it held.
    cpu: BTreeMap<u16, (f64, Vec<u16>)>,
    /// Tasks submitted to each partition.
    per_partition: Vec<u64>,
}

async fn run(cluster: &RedisCluster, namespace: &str, tasks: usize, key: Option<&str>) -> Run {
    let url = cluster.url();
    let done = Arc::new(AtomicU64::new(0));
    let per_partition: Arc<Vec<AtomicU64>> =
        Arc::new((0..PARTITIONS).map(|_| AtomicU64::new(0)).collect());
    let key = key.map(str::to_owned);
    let client = Client::redis(RedisConfig::new(&url, namespace), Some(PARTITIONS))
        .await
        .unwrap();
    let queue = QueueConfig::new(Policy::Fcfs, Strategy::Pull);
    client.declare("jobs", queue).await.unwrap();
    let mut workers = Vec::new();
    for w in 0..PARTITIONS {
        let done = done.clone();
        let worker = Worker::builder(&client, &format!("w{w}"), ["jobs"])
            .unwrap()
            .capacity(50)
            .handle("noop", move |_ctx, _payload| {
                let done = done.clone();
                async move {
                    done.fetch_add(1, Ordering::Relaxed);
                    Ok(Vec::new())
                }
            })
            .build()
            .unwrap();
        workers.push((worker.shutdown_handle(), tokio::spawn(worker.run())));
    }
    let mut cpu: BTreeMap<u16, (f64, Vec<u16>)> = cluster
        .primary_ports()
        .iter()
        .map(|p| (*p, (cpu_seconds(*p), Vec::new())))
        .collect();
    for p in 0..PARTITIONS {
        let slot = cluster
            .slot_of(&task_hash_key(namespace, p).unwrap())
            .unwrap();
        let owner = cluster.owner_of(slot).unwrap();
        cpu.get_mut(&owner).unwrap().1.push(p);
    }
    let started = Instant::now();
    let mut producers = Vec::new();
    for _ in 0..PARTITIONS {
        let (client, key, per_partition) = (client.clone(), key.clone(), per_partition.clone());
        producers.push(tokio::spawn(async move {
            for _ in 0..tasks / BATCH / usize::from(PARTITIONS) {
                let specs: Vec<TaskSpec> = (0..BATCH)
                    .map(|_| {
                        let b = TaskSpec::builder("jobs", "noop");
                        let b = match &key {
                            Some(k) => b.affinity_key(k),
                            None => b,
                        };
                        let spec = b.build().unwrap();
                        let p = partition_for(&spec, PARTITIONS);
                        per_partition[usize::from(p)].fetch_add(1, Ordering::Relaxed);
                        spec
                    })
                    .collect();
                client.submit_batch(specs).await.unwrap();
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let total = (tasks / BATCH / usize::from(PARTITIONS) * BATCH * usize::from(PARTITIONS)) as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while done.load(Ordering::Relaxed) < total {
        assert!(
            Instant::now() < deadline,
            "the load did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    for (port, (before, _)) in cpu.iter_mut() {
        *before = cpu_seconds(*port) - *before;
    }
    for (stop, running) in workers {
        stop.shutdown();
        running.await.unwrap().unwrap();
    }
    Run {
        tasks: total,
        elapsed,
        cpu,
        per_partition: per_partition
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect(),
    }
}

fn main() {
    let tasks: usize = std::env::var("SY_SCALE_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000)
        .max(BATCH * usize::from(PARTITIONS));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "# Scale-out: one namespace of {PARTITIONS} partitions, {tasks} tasks (batches of \
         {BATCH}, three producers, three 50-slot workers)\n"
    );
    println!(
        "| primaries | tasks/s | Redis CPU µs/task, all primaries | per primary: CPU µs per task \
         it carried (partitions) | busiest primary's CPU per second | Redis-side ceiling (tasks/s) |"
    );
    println!("|---|---|---|---|---|---|");
    // A name whose partitions spread on 3 primaries; the 1-primary Cluster holds all three.
    let three = RedisCluster::start(3, 0).expect("a 3-primary Cluster");
    let namespace = spread_namespace(&three);
    drop(three);
    let rows = [
        (1, None, "1"),
        (3, None, "3"),
        (3, Some("hot"), "3, every task with one affinity key"),
    ];
    for (masters, key, label) in rows {
        let cluster = RedisCluster::start(masters, 0).expect("a Cluster");
        let r = rt.block_on(run(&cluster, &namespace, tasks, key));
        let secs = r.elapsed.as_secs_f64();
        let all: f64 = r.cpu.values().map(|(c, _)| c).sum();
        let mut parts = Vec::new();
        let mut busiest: f64 = 0.0;
        let mut ceiling = f64::INFINITY;
        for (port, (c, held)) in &r.cpu {
            let carried: f64 = held
                .iter()
                .map(|p| r.per_partition[usize::from(*p)] as f64)
                .sum();
            busiest = busiest.max(c / secs);
            if carried > 0.0 {
                let per_task = c * 1e6 / carried;
                let held: Vec<String> = held.iter().map(|p| format!("p{p}")).collect();
                parts.push(format!("{port}: {per_task:.1} ({})", held.join(", ")));
                // At T tasks/s this primary needs T * c / tasks CPU seconds per second, and
                // saturates at 1: T <= tasks / c.
                ceiling = ceiling.min(r.tasks as f64 / c);
            } else {
                parts.push(format!("{port}: idle"));
            }
        }
        println!(
            "| {label} | {:.0} | {:.1} | {} | {:.2} s | {:.0} |",
            r.tasks as f64 / secs,
            all * 1e6 / r.tasks as f64,
            parts.join("; "),
            busiest,
            ceiling
        );
    }
}
