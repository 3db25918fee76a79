//! Scale-out on Redis Cluster: the same load on a Cluster of 1 primary and of 3 primaries.
//!
//! The load: three namespaces (chosen so that, on 3 primaries, each hash tag lands on its own
//! primary), each with a producer submitting in batches of 100 and one worker of 50 slots
//! running a no-op handler, all in this process. Printed per Cluster: tasks per second end to
//! end, and each primary's CPU (`used_cpu_sys + used_cpu_user` of `INFO cpu`, before and after)
//! per task it carried. From the per-primary CPU it projects the throughput Redis allows: a
//! primary saturates at 1 s of CPU per second, so a primary that spends `c` µs per task caps its
//! share at `1e6 / c` tasks/s. On a 2-core machine the clients, not Redis, bound the measured
//! throughput; the projection says what the Redis side allows.
//!
//! `cargo bench --bench scale_out` (set `SY_SCALE_TASKS` to change the 20,000 tasks per
//! namespace).
#![allow(clippy::expect_used, clippy::unwrap_used)] // set-up failures should abort the bench

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchyard::{Client, Policy, QueueConfig, Strategy, TaskSpec, Worker};
use switchyard_testkit::cluster::RedisCluster;

const BATCH: usize = 100;

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

/// Three namespaces whose slots are owned by three different primaries of `cluster`.
fn spread_namespaces(cluster: &RedisCluster) -> Vec<String> {
    let mut owners = Vec::new();
    let mut names = Vec::new();
    for i in 0..1000 {
        let ns = format!("scale{i}");
        let slot = cluster.slot_of(&format!("sy:{{{ns}}}:tasks")).unwrap();
        let owner = cluster.owner_of(slot).unwrap();
        if !owners.contains(&owner) {
            owners.push(owner);
            names.push(ns);
        }
        if names.len() == 3 {
            break;
        }
    }
    assert_eq!(names.len(), 3);
    names
}

struct Run {
    tasks: u64,
    elapsed: Duration,
    /// CPU seconds used per primary port, and which namespaces it held.
    cpu: BTreeMap<u16, (f64, Vec<String>)>,
}

async fn run(cluster: &RedisCluster, namespaces: &[String], per_namespace: usize) -> Run {
    let url = cluster.url();
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    let mut workers = Vec::new();
    let queue = QueueConfig::new(Policy::Fcfs, Strategy::Pull);
    for ns in namespaces {
        let client = Client::connect(&url, ns).await.unwrap();
        client.declare("jobs", queue).await.unwrap();
        let done = done.clone();
        let worker = Worker::builder(&client, &format!("{ns}-w"), ["jobs"])
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
        clients.push(client);
    }
    let primaries = cluster.primary_ports();
    let mut cpu: BTreeMap<u16, (f64, Vec<String>)> = primaries
        .iter()
        .map(|p| (*p, (cpu_seconds(*p), Vec::new())))
        .collect();
    for ns in namespaces {
        let slot = cluster.slot_of(&format!("sy:{{{ns}}}:tasks")).unwrap();
        let owner = cluster.owner_of(slot).unwrap();
        cpu.get_mut(&owner).unwrap().1.push(ns.clone());
    }
    let total = (per_namespace * namespaces.len()) as u64;
    let started = Instant::now();
    let mut producers = Vec::new();
    for client in &clients {
        let client = client.clone();
        producers.push(tokio::spawn(async move {
            for _ in 0..per_namespace / BATCH {
                let specs = (0..BATCH)
                    .map(|_| TaskSpec::builder("jobs", "noop").build().unwrap())
                    .collect();
                client.submit_batch(specs).await.unwrap();
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
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
    }
}

fn main() {
    let per_namespace: usize = std::env::var("SY_SCALE_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
        .max(BATCH);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "# Scale-out: 3 namespaces x {per_namespace} tasks (batches of {BATCH}, one 50-slot \
         worker each)\n"
    );
    println!(
        "| primaries | tasks/s | Redis CPU µs/task, all primaries | per primary: CPU µs per task \
         it carried (namespaces) | busiest primary's CPU per second | Redis-side ceiling (tasks/s) |"
    );
    println!("|---|---|---|---|---|---|");
    // Names that spread on 3 primaries; the 1-primary Cluster holds all three on one.
    let three = RedisCluster::start(3, 0).expect("a 3-primary Cluster");
    let names = spread_namespaces(&three);
    drop(three);
    for masters in [1, 3] {
        let cluster = RedisCluster::start(masters, 0).expect("a Cluster");
        let r = rt.block_on(run(&cluster, &names, per_namespace));
        let secs = r.elapsed.as_secs_f64();
        let all: f64 = r.cpu.values().map(|(c, _)| c).sum();
        let mut parts = Vec::new();
        let mut busiest: f64 = 0.0;
        let mut ceiling = f64::INFINITY;
        for (port, (c, held)) in &r.cpu {
            let carried = (held.len() * per_namespace) as f64;
            busiest = busiest.max(c / secs);
            if carried > 0.0 {
                let per_task = c * 1e6 / carried;
                parts.push(format!("{port}: {per_task:.1} ({})", held.join(", ")));
                // At T tasks/s this primary needs T * c / tasks CPU seconds per second, and
                // saturates at 1: T <= tasks / c.
                ceiling = ceiling.min(r.tasks as f64 / c);
            } else {
                parts.push(format!("{port}: idle"));
            }
        }
        println!(
            "| {masters} | {:.0} | {:.1} | {} | {:.2} s | {:.0} |",
            r.tasks as f64 / secs,
            all * 1e6 / r.tasks as f64,
            parts.join("; "),
            busiest,
            ceiling
        );
    }
}
