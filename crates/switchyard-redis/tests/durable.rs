//! Durable mode against a primary with one replica: a change is acknowledged once the replica
//! confirmed it; with the replica frozen (SIGSTOP) the change is applied but the caller gets
//! `NotReplicated`, and repeating it after the replica is back answers "duplicate". Receiving
//! works meanwhile (receives are not confirmed), and a task received by an unconfirmed
//! completion is handed out by the next receive.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_core::prelude::*;
use switchyard_core::{Error, Policy, QueueConfig, QueueName, Strategy, TaskSpec};
use switchyard_redis::{Durable, RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::{RedisServer, ServerOptions};
use switchyard_testkit::{me, test_worker};

fn signal(server: &RedisServer, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(server.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until the replica reports its link to the primary up.
fn wait_linked(replica: &RedisServer) {
    let client = redis::Client::open(replica.url()).unwrap();
    let started = Instant::now();
    loop {
        let mut conn = client.get_connection().unwrap();
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut conn)
            .unwrap();
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "replica never linked: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A primary with one linked replica, and a durable backend (1 replica, 300 ms) on it with
/// queue `jobs` (pull) declared and worker `w` (capacity 4) registered.
async fn primary_with_replica(namespace: &str) -> (RedisServer, RedisServer, RedisBackend) {
    let primary = RedisServer::start().unwrap();
    let replica = RedisServer::start_with(
        &ServerOptions::default().arg("replicaof", &format!("127.0.0.1 {}", primary.port())),
    )
    .unwrap();
    tokio::task::block_in_place(|| wait_linked(&replica));
    let config = RedisConfig::new(primary.url(), namespace)
        .with_durable(Durable::new(1, Duration::from_millis(300)));
    let b = RedisBackend::with_config(config).await.unwrap();
    let q = QueueName::new("jobs").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::Pull))
        .await
        .unwrap();
    b.register_worker(test_worker("w", ["jobs"]).capacity(4))
        .await
        .unwrap();
    (primary, replica, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_replica_did_not_confirm_is_reported_and_safe_to_repeat() {
    let (_primary, replica, b) = primary_with_replica("dur").await;
    b.submit(TaskSpec::builder("jobs", "k").build().unwrap())
        .await
        .unwrap();

    signal(&replica, "STOP");
    let spec = TaskSpec::builder("jobs", "k").build().unwrap();
    let err = b.submit(spec.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotReplicated {
                confirmed: 0,
                wanted: 1,
                timeout_ms: 300
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("applied on the primary"), "{err}");
    assert!(
        b.get_task(spec.id()).await.unwrap().is_some(),
        "the submit was applied"
    );
    // Receiving needs no confirmation.
    let first = b.receive(&me("w"), 1).await.unwrap();
    assert_eq!(first.len(), 1);
    // A completion that receives the next task fails unconfirmed; the task it received is
    // not lost: the worker's next receive hands it out.
    let err = b
        .complete_and_receive(&first[0].lease, Vec::new(), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotReplicated { .. }), "{err}");
    let second = b.receive(&me("w"), 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].lease.task, spec.id());

    signal(&replica, "CONT");
    let again = b.submit(spec).await.unwrap();
    assert!(again.duplicate, "repeating the submit finds it stored");
    let done = b.complete(&second[0].lease, Vec::new()).await.unwrap();
    assert_eq!(done.ack, switchyard_core::Ack::Completed);
}

/// Tasks kept from an unconfirmed completion belong to the registration that received them:
/// once the worker deregisters and registers again, its receive gets the task afresh (a new
/// lease), never the old lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_tasks_do_not_outlive_their_registration() {
    let (_primary, replica, b) = primary_with_replica("dur2").await;
    for _ in 0..2 {
        b.submit(TaskSpec::builder("jobs", "k").build().unwrap())
            .await
            .unwrap();
    }
    let first = b.receive(&me("w"), 1).await.unwrap();
    signal(&replica, "STOP");
    let err = b
        .complete_and_receive(&first[0].lease, Vec::new(), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotReplicated { .. }), "{err}");
    signal(&replica, "CONT");
    b.deregister_worker(&me("w")).await.unwrap();
    b.register_worker(test_worker("w", ["jobs"]).capacity(4))
        .await
        .unwrap();
    let again = b.receive(&me("w"), 10).await.unwrap();
    assert_eq!(again.len(), 1, "the handed-back task is received afresh");
    let info = b.get_task(again[0].lease.task).await.unwrap().unwrap();
    assert_eq!(info.token, Some(again[0].lease.token), "a current lease");
    let done = b.complete(&again[0].lease, Vec::new()).await.unwrap();
    assert_eq!(done.ack, switchyard_core::Ack::Completed);
}
