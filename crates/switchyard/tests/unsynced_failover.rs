//! A failover before the replicas' first sync: a primary, two replicas and three Sentinels
//! started together, and the primary SIGKILLed while the replicas still wait for their first
//! full sync (the primary delays it, as `repl-diskless-sync-delay` does). The Sentinels promote
//! a replica that has none of the data.
//!
//! * Before the kill, `stats` says that the primary has no replica in sync.
//! * In durable mode (`WAIT` for one replica) nothing was acknowledged — every write was
//!   refused with `NotReplicated` — so nothing acknowledged is lost.
//! * Without it, every acknowledged task is lost, and the loss is reported as such: the
//!   producer that wrote them, and a process that connects afterwards, are told that the
//!   backend lost its data, not merely that the queue is not declared.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use switchyard::{
    Client, Durable, Error, QueueConfig, RedisBackend, RedisConfig, TaskId, TaskSpec,
};
use switchyard_testkit::redis_server::ServerOptions;
use switchyard_testkit::sentinel::SentinelSet;

/// One drill at a time: each starts six processes and counts on one failover.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

struct Outcome {
    acked: Vec<TaskId>,
    lost: usize,
    /// What a submit says after the failover: from the producer, and from a new process.
    after: (Error, Error),
}

async fn drill(durable: bool, namespace: &str) -> Outcome {
    let _serial = ONE_AT_A_TIME.lock().await;
    // The replicas' first sync waits a minute: the kill comes long before.
    let primary = ServerOptions::default().arg("repl-diskless-sync-delay", "60");
    let mut set = blocking(|| SentinelSet::start_unsynced(2, 3, &primary)).unwrap();
    let mut config = RedisConfig::new(set.url(), namespace);
    if durable {
        config = config.with_durable(Durable::new(1, Duration::from_millis(300)));
    }
    let client = Client::new(RedisBackend::with_config(config.clone()).await.unwrap());

    // Acknowledged or refused: a refusal is an error (in durable mode, NotReplicated).
    let declared = client.declare("jobs", QueueConfig::default()).await;
    assert_eq!(declared.is_ok(), !durable, "{declared:?}");
    let warnings = client.stats().await.unwrap().warnings;
    assert!(
        warnings.iter().any(|w| w.contains("no replica in sync")),
        "{warnings:?}"
    );
    let mut acked = Vec::new();
    for _ in 0..50 {
        let spec = TaskSpec::builder("jobs", "k").build().unwrap();
        match client.submit(spec).await {
            Ok(h) => acked.push(h.id()),
            Err(Error::NotReplicated { confirmed: 0, .. }) if durable => {}
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }

    let old = blocking(|| set.kill_primary()).unwrap();
    blocking(|| set.wait_failover(old, Duration::from_secs(60))).unwrap();

    // Acknowledged tasks, looked for on the new primary (the client followed it).
    let mut lost = 0;
    for id in &acked {
        let state = loop {
            match client.task_handle(*id).state().await {
                Ok(state) => break state,
                Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("{e}"),
            }
        };
        lost += usize::from(state.is_none());
    }
    let submit_once = |c: Client| async move {
        loop {
            match c
                .submit(TaskSpec::builder("jobs", "k").build().unwrap())
                .await
            {
                Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return e,
                Ok(h) => panic!("{} accepted on a namespace the failover emptied", h.id()),
            }
        }
    };
    let from_producer = submit_once(client.clone()).await;
    let newcomer = Client::new(RedisBackend::with_config(config).await.unwrap());
    let from_newcomer = submit_once(newcomer).await;
    Outcome {
        acked,
        lost,
        after: (from_producer, from_newcomer),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_acknowledges_nothing_a_failover_to_an_unsynced_replica_could_lose() {
    let out = drill(true, "unsynced-durable").await;
    assert!(out.acked.is_empty(), "acknowledged: {:?}", out.acked);
    assert_eq!(out.lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_mode_the_loss_is_reported_as_a_loss() {
    let out = drill(false, "unsynced-async").await;
    eprintln!(
        "{} acknowledged, {} lost; the producer was told: {}; a new process was told: {}",
        out.acked.len(),
        out.lost,
        out.after.0,
        out.after.1
    );
    assert_eq!(out.acked.len(), 50);
    assert_eq!(out.lost, 50, "the replica had none of them");
    for said in [&out.after.0, &out.after.1] {
        assert!(matches!(said, Error::DataLost { .. }), "{said}");
    }
    assert!(
        out.after.0.to_string().contains("lost its data"),
        "{}",
        out.after.0
    );
    assert!(
        out.after.1.to_string().contains("took over in a failover"),
        "{}",
        out.after.1
    );
}
