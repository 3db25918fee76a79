//! One program, every topology: the same facade code (declare, two workers, a hundred awaited
//! tasks, then one handed off to a waiting worker) runs against a standalone Redis, a primary
//! behind Sentinels and a Redis Cluster of three primaries, with only the URL changed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use switchyard::{Client, Policy, QueueConfig, Strategy, TaskError, Worker};
use switchyard_testkit::cluster::RedisCluster;
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::sentinel::SentinelSet;

/// The program: what an application would write, given only a URL.
async fn program(url: &str) -> Vec<u64> {
    let client = Client::connect(url, "one-program").await.unwrap();
    client
        .declare(
            "squares",
            QueueConfig::new(Policy::Fcfs, Strategy::LeastLoaded),
        )
        .await
        .unwrap();
    let mut running = Vec::new();
    for name in ["a", "b"] {
        let worker = Worker::builder(&client, name, ["squares"])
            .unwrap()
            .capacity(4)
            .handle_json(
                "square",
                |_ctx, n: u64| async move { Ok::<_, TaskError>(n * n) },
            )
            .build()
            .unwrap();
        running.push((worker.shutdown_handle(), tokio::spawn(worker.run())));
    }
    let mut handles = Vec::new();
    for n in 0..100u64 {
        handles.push(client.submit_json("squares", "square", &n).await.unwrap());
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.result::<u64>(Duration::from_secs(30)).await.unwrap());
    }
    // Idle, the workers wait; a task for one of them is started on it by the submit itself (a
    // hand-off: on a Cluster too, where the wake-up subscription must be on the slot's
    // primary for the script to see it).
    let mut handed_off = false;
    for _ in 0..100 {
        let spec = switchyard::TaskSpec::builder("squares", "square")
            .payload(b"3".to_vec())
            .build()
            .unwrap();
        let out = client.backend().submit(spec).await.unwrap();
        client
            .task_handle(out.id)
            .result::<u64>(Duration::from_secs(30))
            .await
            .unwrap();
        if out.state == Some(switchyard::TaskState::Running) {
            handed_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        handed_off,
        "no submit was handed off to a waiting worker at {url}"
    );
    for (stop, run) in running {
        stop.shutdown();
        run.await.unwrap().unwrap();
    }
    results
}

fn expected() -> Vec<u64> {
    (0..100u64).map(|n| n * n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_program_runs_on_standalone_sentinel_and_cluster() {
    let standalone = RedisServer::start().unwrap();
    assert_eq!(program(&standalone.url()).await, expected());
    drop(standalone);

    let set = tokio::task::block_in_place(|| SentinelSet::start(2, 3)).unwrap();
    assert_eq!(program(&set.url()).await, expected());
    drop(set);

    let cluster = tokio::task::block_in_place(|| RedisCluster::start(3, 0)).unwrap();
    assert_eq!(cluster.primary_ports().len(), 3);
    assert_eq!(program(&cluster.url()).await, expected());
}
