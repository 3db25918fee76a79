//! Retention by count beside retention by age (`switchyard_core::admin::retention`), on the
//! memory reference and on a real Redis, each driven by the same manual clock: a queue that
//! keeps 3 finished and 2 dead tasks, left idle after 10 successes and 5 deaths, is trimmed by
//! maintenance in bounded steps (dead first, earliest first; then the oldest finished), keeps
//! exactly the newest, and ends empty once their retention times pass — with no task moving.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::prelude::*;
use switchyard_core::{
    Clock, ManualClock, Millis, Policy, QueueConfig, QueueName, Strategy, TaskId, TaskSpec,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const START: Millis = 1_700_000_000_000;

async fn present(b: &dyn Backend, ids: &[TaskId]) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        out.push(b.get_task(*id).await.unwrap().is_some());
    }
    out
}

async fn trims(b: &dyn Backend, clock: &ManualClock) {
    let q = QueueName::new("kept").unwrap();
    let config = QueueConfig::new(Policy::Fcfs, Strategy::Pull)
        .with_max_attempts(1)
        .with_result_ttl(Duration::from_secs(60))
        .with_dead_ttl(Duration::from_secs(120))
        .with_retention_counts(Some(3), Some(2));
    b.declare_queue(&q, config).await.unwrap();
    b.register_worker(test_worker("w", ["kept"]).capacity(1))
        .await
        .unwrap();
    let (mut done, mut dead) = (Vec::new(), Vec::new());
    for i in 0..15u64 {
        clock.set(START + i);
        b.submit(TaskSpec::builder("kept", "job").build().unwrap())
            .await
            .unwrap();
        let d = b.receive(&me("w"), 1).await.unwrap().remove(0);
        if i % 3 == 2 {
            b.fail(&d.lease, "boom", false).await.unwrap();
            dead.push(d.lease.task);
        } else {
            b.complete(&d.lease, Vec::new()).await.unwrap();
            done.push(d.lease.task);
        }
    }
    assert_eq!((done.len(), dead.len()), (10, 5));

    // Idle from here: only maintenance runs. Steps of 4: the 3 oldest dead and the oldest
    // finished; then 4 finished; then the last 2 beyond the count.
    clock.set(START + 1_000);
    let mut purged = Vec::new();
    loop {
        let report = b.maintain(4).await.unwrap();
        purged.push(report.records_purged);
        if !report.more {
            break;
        }
    }
    assert_eq!(purged, [4, 4, 2]);
    assert_eq!(
        present(b, &dead).await,
        [false, false, false, true, true],
        "the newest 2 dead"
    );
    let mut kept_done = vec![false; 7];
    kept_done.extend([true; 3]);
    assert_eq!(present(b, &done).await, kept_done, "the newest 3 finished");
    let stats = b.stats().await.unwrap();
    assert_eq!((stats.queues[0].succeeded, stats.queues[0].dead), (3, 2));
    assert_eq!(b.list_dead(&q, 10).await.unwrap().len(), 2);

    // Nothing more by count; by age, the finished after 60 s, the dead after 120 s.
    assert_eq!(b.maintain(100).await.unwrap().records_purged, 0);
    clock.set(START + 61_000);
    assert_eq!(b.maintain(100).await.unwrap().records_purged, 3);
    clock.set(START + 121_000);
    assert_eq!(b.maintain(100).await.unwrap().records_purged, 2);
    let stats = b.stats().await.unwrap();
    assert_eq!(stats.queues[0].total(), 0, "{stats:?}");
}

#[tokio::test]
async fn memory_keeps_the_newest_and_ages_out_the_rest() {
    let clock = ManualClock::new(START);
    let b = MemoryBackend::with_clock(Arc::new(clock.clone()));
    trims(&b, &clock).await;
    b.audit().unwrap();
}

#[tokio::test]
async fn redis_keeps_the_newest_and_ages_out_the_rest() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(START);
    let config = RedisConfig::new(server.url(), "kept")
        .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    let b = RedisBackend::with_config(config).await.unwrap();
    trims(&b, &clock).await;
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}
