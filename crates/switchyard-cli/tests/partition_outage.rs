//! A partitioned namespace on a Redis Cluster whose partition 0 loses its primary (SIGKILL, no
//! replica to take over): partition 0 stops, the others go on. New processes still connect —
//! `switchyard status` (which names the partition it cannot reach) and a new worker — and the
//! other partitions' tasks run as before.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{WorkerProcess, eventually, registered, switchyard};
use switchyard::backend::task_hash_key;
use switchyard::partition::route::partition_of;
use switchyard::{Client, RedisConfig, TaskOutcome, TaskSpec};
use switchyard_testkit::cluster::RedisCluster;
use switchyard_testkit::redis_server::ServerOptions;

const P: u16 = 3;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// `switchyard <args>` against the Cluster; its output.
fn cli(url: &str, ns: &str, args: &[&str]) -> std::process::Output {
    switchyard()
        .args(args)
        .env("SWITCHYARD_URL", url)
        .env("SWITCHYARD_NAMESPACE", ns)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A namespace whose three partitions land on the three primaries, and each one's primary.
fn spread(cluster: &RedisCluster) -> (String, Vec<u16>) {
    (0..10_000)
        .find_map(|i| {
            let ns = format!("out{i}");
            let owners: Vec<u16> = (0..P)
                .map(|p| {
                    let slot = cluster.slot_of(&task_hash_key(&ns, p).unwrap()).unwrap();
                    cluster.owner_of(slot).unwrap()
                })
                .collect();
            let distinct: BTreeSet<u16> = owners.iter().copied().collect();
            (distinct.len() == 3).then_some((ns, owners))
        })
        .expect("a namespace spread over three primaries")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_s_outage_stops_only_that_partition() {
    let options = ServerOptions::default().arg("cluster-require-full-coverage", "no");
    let mut cluster = blocking(|| RedisCluster::start_with(3, 0, options)).unwrap();
    let (ns, owners) = spread(&cluster);
    let url = cluster.url();
    let declared = cli(&url, &ns, &["declare", "jobs", "--partitions", "3"]);
    assert!(declared.status.success(), "{declared:?}");
    let flags = [
        "--queue",
        "jobs",
        "--capacity",
        "4",
        "--heartbeat-ttl-ms",
        "3000",
    ];
    let first = WorkerProcess::start_at(&url, cluster.dir(), &ns, "first", &flags, "warn");
    let client = Client::redis(RedisConfig::new(&url, &ns), None)
        .await
        .unwrap();
    registered(&client, "first").await;

    blocking(|| cluster.kill(owners[0])).unwrap();

    // A new `status` connects, and names the partition it cannot reach.
    let started = Instant::now();
    let status = blocking(|| cli(&url, &ns, &["status"]));
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        said.contains("unreachable") && said.contains("partition 0"),
        "{said}"
    );
    eprintln!("status with partition 0 down took {:?}", started.elapsed());

    // A new worker and a new client connect.
    let second = WorkerProcess::start_at(&url, cluster.dir(), &ns, "second", &flags, "warn");
    let fresh = Client::redis(RedisConfig::new(&url, &ns), None)
        .await
        .unwrap();
    registered(&fresh, "second").await;
    // Settled: each serves one partition that answers (`first` gave partition 1 to `second`
    // and keeps 2; partition 0, which would be its too, is down).
    eventually(
        Duration::from_secs(20),
        "the partitions shared out",
        || async {
            let workers = fresh.stats().await.ok()?.workers;
            (workers.len() == 2 && workers.iter().all(|w| w.capacity == 4)).then_some(())
        },
    )
    .await;

    // The other partitions' tasks run within a second.
    let mut slowest = Duration::ZERO;
    let mut ran = 0;
    while ran < 20 {
        let spec = TaskSpec::builder("jobs", "echo")
            .payload(b"1".to_vec())
            .build()
            .unwrap();
        if partition_of(spec.id(), P) == 0 {
            continue;
        }
        let at = Instant::now();
        let task = eventually(Duration::from_secs(10), "a submit accepted", || async {
            fresh.submit(spec.clone()).await.ok()
        })
        .await;
        let outcome = match task.wait(Duration::from_secs(10)).await {
            Ok(o) => o,
            Err(e) => panic!(
                "task {} of partition {}: {e}\nfirst:\n{}\nsecond:\n{}\nstats: {:?}",
                task.id(),
                partition_of(task.id(), P),
                first.log(),
                second.log(),
                fresh.stats().await
            ),
        };
        assert!(matches!(outcome, TaskOutcome::Succeeded(_)), "{outcome:?}");
        slowest = slowest.max(at.elapsed());
        ran += 1;
    }
    eprintln!("partitions 1 and 2: the slowest of {ran} tasks took {slowest:?}");
    assert!(
        slowest <= Duration::from_secs(1),
        "a task of a partition that is up took {slowest:?}"
    );
    // Partition 0's own tasks fail, and say why.
    let spec = loop {
        let spec = TaskSpec::builder("jobs", "echo").build().unwrap();
        if partition_of(spec.id(), P) == 0 {
            break spec;
        }
    };
    let err = fresh.submit(spec).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    // The workers' logs say what happened, without redis-rs's own recovery lines (hundreds a
    // second while a node is down).
    for w in [&first, &second] {
        let log = w.log();
        assert!(!log.contains("redis::cluster"), "{log}");
        assert!(log.lines().count() <= 12, "{log}");
    }
    drop((first, second));
}
