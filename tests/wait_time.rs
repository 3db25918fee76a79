//! How long a task waited: every delivery says when its task last became ready, on the
//! backend's clock — at its submit, at the due time of a delay or of a retry's backoff (not
//! when maintenance came round to it), at a re-drive, at a hand-back — so that a worker's
//! `switchyard_wait_duration_seconds` is exact whatever the clocks of the hosts. On the memory
//! backend and on a real Redis, with a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::prelude::*;
use switchyard_core::{
    Backoff, Clock, Delivery, ManualClock, Policy, QueueConfig, QueueName, Strategy, TaskSpec,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const START: u64 = 1_700_000_000_000;

async fn one(b: &dyn Backend) -> Delivery {
    let mut got = b.receive(&me("w"), 1).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

async fn waits_are_measured_from_readiness(b: Arc<dyn Backend>, clock: ManualClock) {
    let q = QueueName::new("q").unwrap();
    let config = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)
        .with_max_attempts(2)
        .with_backoff(Backoff {
            base_ms: 100,
            max_ms: 100,
            jitter_pct: 0,
        });
    b.declare_queue(&q, config).await.unwrap();

    // Submitted while nobody serves the queue: it waits until a worker comes.
    b.submit(TaskSpec::builder("q", "k").build().unwrap())
        .await
        .unwrap();
    clock.advance(Duration::from_millis(250));
    b.register_worker(test_worker("w", ["q"]).capacity(1))
        .await
        .unwrap();
    clock.advance(Duration::from_millis(50));
    let first = one(&*b).await;
    assert_eq!(first.ready_since, Some(START));
    assert_eq!(first.waited_ms(), Some(300));
    b.complete(&first.lease, Vec::new()).await.unwrap();

    // A delayed task waits from its due time, not from its submit nor from its promotion.
    let spec = TaskSpec::builder("q", "k")
        .delay(Duration::from_millis(1_000))
        .build()
        .unwrap();
    b.submit(spec).await.unwrap();
    let due = START + 300 + 1_000;
    clock.set(due + 350);
    b.maintain(100).await.unwrap();
    let delayed = one(&*b).await;
    assert_eq!(delayed.ready_since, Some(due));
    assert_eq!(delayed.waited_ms(), Some(350));

    // A retry waits from the end of its backoff.
    let failed_at = due + 350;
    b.fail(&delayed.lease, "once", true).await.unwrap();
    clock.set(failed_at + 100 + 40);
    b.maintain(100).await.unwrap();
    let retried = one(&*b).await;
    assert_eq!(retried.attempt, 2);
    assert_eq!(retried.ready_since, Some(failed_at + 100));
    assert_eq!(retried.waited_ms(), Some(40));

    // Dead, then re-driven: it waits from the re-drive.
    b.fail(&retried.lease, "twice", true).await.unwrap();
    let redriven_at = failed_at + 140 + 500;
    clock.set(redriven_at);
    b.redrive(retried.lease.task).await.unwrap();
    clock.advance(Duration::from_millis(20));
    let again = one(&*b).await;
    assert_eq!(again.lease.task, retried.lease.task);
    assert_eq!(again.ready_since, Some(redriven_at));
    assert_eq!(again.waited_ms(), Some(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_on_memory() {
    let clock = ManualClock::new(START);
    let memory = Arc::new(MemoryBackend::with_clock(Arc::new(clock.clone())));
    waits_are_measured_from_readiness(memory.clone(), clock).await;
    memory.audit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_on_redis() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(START);
    let config = RedisConfig::new(server.url(), "waits")
        .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    let redis = RedisBackend::with_config(config).await.unwrap();
    waits_are_measured_from_readiness(Arc::new(redis.clone()), clock).await;
    assert_eq!(redis.audit().await.unwrap(), Vec::<String>::new());
}
