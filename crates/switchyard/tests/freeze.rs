//! The freeze drill: the primary stops answering without dropping a connection (`CLIENT PAUSE
//! 4000 ALL`, the way a long fork or a network partition looks from outside), the Sentinels
//! promote a replica, and the old primary comes back still believing it is the primary until
//! they demote it (about ten seconds later). Writes it takes in between are thrown away.
//!
//! A worker (one process's backend) and a producer (another's) must follow the Sentinels as
//! soon as they announce the switch: tasks run again within a second of it, a task runs twice
//! only if its run was cut off by the freeze (at most the worker's capacity), and every
//! acknowledged task succeeds. The same with `min-replicas-to-write 1`, which makes the old
//! primary answer `NOREPLICAS` once its replicas follow the new one.
//!
//! Timings are printed; `docs/operations.md` quotes them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::{
    Client, QueueConfig, RedisBackend, RedisConfig, TaskId, TaskSpec, TaskState, Worker,
};
use switchyard_testkit::sentinel::{MASTER_NAME, SentinelSet};

const CAPACITY: u32 = 4;
const TASKS: usize = 400;
const LATE: usize = 5;

/// One drill at a time: each starts six processes and must see exactly one failover.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn command(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    cmd.query(&mut conn)
}

/// Starts a thread that waits for the first `+switch-master` announcement of the Sentinel on
/// `port` and sends when it came.
fn watch_switch(port: u16) -> std::sync::mpsc::Receiver<Instant> {
    let (tx, rx) = std::sync::mpsc::channel();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_connection().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe("+switch-master").unwrap();
        let _ = ready_tx.send(());
        loop {
            let Ok(message) = pubsub.get_message() else {
                return;
            };
            let payload: String = message.get_payload().unwrap_or_default();
            if payload.starts_with(&format!("{MASTER_NAME} ")) {
                let _ = tx.send(Instant::now());
                return;
            }
        }
    });
    ready_rx.recv().unwrap();
    rx
}

async fn backend(set: &SentinelSet, namespace: &str) -> Client {
    Client::new(
        RedisBackend::with_config(RedisConfig::new(set.url(), namespace))
            .await
            .unwrap(),
    )
}

/// Handler runs per task, with when each started.
type Runs = Arc<Mutex<HashMap<TaskId, Vec<Instant>>>>;

async fn freeze_drill(min_replicas: bool, namespace: &str) {
    let _serial = ONE_AT_A_TIME.lock().await;
    // `RUST_LOG=info` shows what the topologies did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let set = blocking(|| SentinelSet::start(2, 3)).unwrap();
    let old = set.primary_port().unwrap();
    if min_replicas {
        for port in set.server_ports() {
            blocking(|| {
                command(
                    port,
                    redis::cmd("CONFIG")
                        .arg("SET")
                        .arg("min-replicas-to-write")
                        .arg("1"),
                )
            })
            .unwrap();
        }
    }
    // Producer and worker each have a connection set of their own, as two processes would.
    let producer = backend(&set, namespace).await;
    let workers = backend(&set, namespace).await;
    let queue = QueueConfig::default()
        .with_timeout(Duration::from_secs(5))
        .with_max_attempts(10);
    producer.declare("jobs", queue).await.unwrap();

    let runs: Runs = Arc::new(Mutex::new(HashMap::new()));
    let worker = {
        let runs = runs.clone();
        Worker::builder(&workers, "w", ["jobs"])
            .unwrap()
            .capacity(CAPACITY)
            .handle("work", move |ctx, _payload| {
                let runs = runs.clone();
                async move {
                    runs.lock()
                        .unwrap()
                        .entry(ctx.id)
                        .or_default()
                        .push(Instant::now());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Vec::new())
                }
            })
            .build()
            .unwrap()
    };
    let stop = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());

    let specs: Vec<TaskSpec> = (0..TASKS)
        .map(|_| TaskSpec::builder("jobs", "work").build().unwrap())
        .collect();
    let mut acked: Vec<TaskId> = producer
        .submit_batch(specs)
        .await
        .unwrap()
        .iter()
        .map(|h| h.id())
        .collect();
    // Freeze mid-way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs.lock().unwrap().len() < TASKS / 4 {
        assert!(Instant::now() < deadline, "the worker did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let switched = watch_switch(set.sentinel_ports()[0]);
    let frozen_at = Instant::now();
    blocking(|| {
        command(
            old,
            redis::cmd("CLIENT").arg("PAUSE").arg("4000").arg("ALL"),
        )
    })
    .unwrap();
    let switch_at = blocking(|| switched.recv_timeout(Duration::from_secs(30)))
        .expect("the Sentinels switched to a replica");

    // New work, submitted once the Sentinels named the new primary.
    let mut late = Vec::new();
    for _ in 0..LATE {
        let spec = TaskSpec::builder("jobs", "work").build().unwrap();
        let id = spec.id();
        loop {
            match producer.submit(spec.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(e.is_transient(), "{e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        late.push(id);
    }
    acked.extend(&late);

    // Every acknowledged task succeeds.
    let deadline = Instant::now() + Duration::from_secs(90);
    for id in &acked {
        loop {
            match producer.task_handle(*id).state().await {
                Ok(Some(TaskState::Succeeded)) => break,
                Ok(None) => panic!("acknowledged task {id} lost"),
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("task {id} not done 90 s after the freeze: {other:?}"),
            }
        }
    }
    stop.shutdown();
    let report = running.await.unwrap().unwrap();

    let runs = runs.lock().unwrap();
    // The first handler start after the switch (the backlog is FCFS: the new tasks wait
    // behind it, and run at the end).
    let first_start = runs
        .values()
        .flatten()
        .filter(|t| **t > switch_at)
        .min()
        .copied()
        .unwrap();
    let followed = first_start.saturating_duration_since(switch_at);
    let twice = runs.values().filter(|r| r.len() > 1).count();
    eprintln!(
        "min-replicas-to-write {}: switch {:?} after the freeze; first task started {:?} after \
         the switch; {twice} tasks ran twice; worker report {report:?}",
        u8::from(min_replicas),
        switch_at - frozen_at,
        followed,
    );
    assert!(
        followed <= Duration::from_secs(1),
        "tasks ran again only {followed:?} after the Sentinels' switch"
    );
    assert!(
        twice <= CAPACITY as usize,
        "{twice} tasks ran twice: more than were running when the primary froze"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_producers_follow_a_frozen_primary_s_replacement_at_once() {
    freeze_drill(false, "freeze").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_min_replicas_to_write() {
    freeze_drill(true, "freeze-min").await;
}
