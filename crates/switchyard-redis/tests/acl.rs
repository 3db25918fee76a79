//! Security: an ACL user allowed only its namespace's keys and channels (`~sy:{ns}*`,
//! `&sy:{ns}*`) runs every kind of call — scripts, awaited outcomes, waiting workers, due
//! wake-ups, maintenance, inspection — and cannot touch another namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use switchyard_core::prelude::*;
use switchyard_core::{
    BackendErrorKind, Error, Policy, QueueConfig, QueueName, Strategy, TaskSpec, TaskState,
};
use switchyard_redis::RedisBackend;
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{awaited_round_trip, me};

/// The user `app` (password `s3cret`) limited to namespace `shop`'s keys and channels.
const SHOP_ONLY: &[&str] = &[
    "reset",
    "on",
    ">s3cret",
    "~sy:{shop}*",
    "&sy:{shop}*",
    "+@all",
];

async fn add_user(server: &RedisServer, rules: &[&str]) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg(rules)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_limited_to_its_namespace_runs_everything_and_nothing_else() {
    let server = RedisServer::start().unwrap();
    add_user(&server, SHOP_ONLY).await;
    let url = format!("redis://app:s3cret@127.0.0.1:{}", server.port());
    let b = RedisBackend::connect(&url, "shop").await.unwrap();
    // Declare, register, and an awaited task received by a waiting worker: the shared
    // listener subscribes `sy:{shop}:done:<id>`, the worker its wake-up channel.
    awaited_round_trip(&b, "jobs").await;
    let q = QueueName::new("jobs").unwrap();

    // A delayed task wakes sleeping maintenance (`sy:{shop}:due`), is promoted, fails for
    // good, is redriven and cancelled; inspection works throughout.
    let delayed = TaskSpec::builder("jobs", "k")
        .delay(Duration::from_millis(200))
        .max_attempts(1)
        .build()
        .unwrap();
    let delayed_id = delayed.id();
    b.submit(delayed).await.unwrap();
    b.sleep_until_due(Duration::from_secs(10)).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..100 {
        b.maintain(100).await.unwrap();
        got = b.receive(&me("w"), 1).await.unwrap();
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got.len(), 1, "the delayed task was never promoted");
    b.fail(&got[0].lease, "broken", false).await.unwrap();
    assert_eq!(b.list_dead(&q, 10).await.unwrap().len(), 1);
    b.redrive(delayed_id).await.unwrap();
    b.cancel(delayed_id).await.unwrap();
    let info = b.get_task(delayed_id).await.unwrap().unwrap();
    assert_eq!(info.state, TaskState::Cancelled);
    assert!(b.stats().await.unwrap().queues.len() == 1);
    b.events(None, 100).await.unwrap();
    b.heartbeat(&me("w")).await.unwrap();
    b.deregister_worker(&me("w")).await.unwrap();

    // The same user in another namespace is refused, with the reason.
    let other = RedisBackend::connect(&url, "other").await.unwrap();
    let err = other
        .declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::Pull))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Backend {
                kind: BackendErrorKind::Auth,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("NOPERM"), "{err}");
    let err = other
        .wait_outcome(delayed_id, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NOPERM"), "{err}");
}

/// A partitioned namespace: partition `i` has the tag `{shop/i}`, so the user needs the
/// partitions' patterns too (`~sy:{shop/*`, `&sy:{shop/*`; docs/scaling.md), and with them
/// runs every partition; without them, partition 0 only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_namespace_needs_the_partitions_patterns() {
    let server = RedisServer::start().unwrap();
    let url = format!("redis://app:s3cret@127.0.0.1:{}", server.port());
    add_user(&server, SHOP_ONLY).await;
    let b = RedisBackend::connect(&url, "shop").await.unwrap();
    let err = b
        .partition(1)
        .unwrap()
        .declare_queue(&QueueName::new("jobs").unwrap(), QueueConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Backend {
                kind: BackendErrorKind::Auth,
                ..
            }
        ),
        "{err}"
    );
    add_user(&server, &["~sy:{shop/*", "&sy:{shop/*"]).await;
    for p in 0..3 {
        awaited_round_trip(&b.partition(p).unwrap(), "jobs").await;
    }
}
