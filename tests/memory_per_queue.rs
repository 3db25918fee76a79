//! Memory per queue (`Inspect::memory`), on the memory reference and on a real Redis: a queue
//! holding 2,000 tasks of 1 kB each is estimated at more than their payloads and far more than
//! an empty queue; purging its tasks (cancelled, then deleted) brings it back down.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use switchyard_core::admin::Purge;
use switchyard_core::prelude::*;
use switchyard_core::{QueueConfig, QueueName, TaskSpec};
use switchyard_memory::MemoryBackend;
use switchyard_redis::RedisBackend;
use switchyard_testkit::redis_server::RedisServer;

const TASKS: usize = 2_000;
const PAYLOAD: usize = 1_000;

async fn bytes_of(b: &dyn Backend, queue: &str) -> u64 {
    let all = b.memory().await.unwrap();
    all.iter()
        .find(|(q, _)| q.as_str() == queue)
        .map(|(_, n)| *n)
        .unwrap_or_else(|| panic!("{queue} missing from {all:?}"))
}

async fn grows_with_its_tasks(b: &dyn Backend, what: &str) {
    let (full, empty) = (
        QueueName::new("full").unwrap(),
        QueueName::new("empty").unwrap(),
    );
    for q in [&full, &empty] {
        b.declare_queue(q, QueueConfig::default()).await.unwrap();
    }
    for chunk in 0..TASKS / 500 {
        let specs = (0..500)
            .map(|i| {
                TaskSpec::builder("full", "k")
                    .payload(vec![b'x' + ((chunk * 500 + i) % 3) as u8; PAYLOAD])
                    .build()
                    .unwrap()
            })
            .collect();
        b.submit_batch(specs).await.unwrap();
    }
    let (f, e) = (bytes_of(b, "full").await, bytes_of(b, "empty").await);
    eprintln!("{what}: {TASKS} tasks of {PAYLOAD} B: {f} B; an empty queue: {e} B");
    let payloads = (TASKS * PAYLOAD) as u64;
    assert!(f > payloads, "{what}: {f} B for {payloads} B of payloads");
    assert!(
        f < 4 * payloads,
        "{what}: {f} B is far above the payloads' {payloads} B"
    );
    assert!(e < f / 100, "{what}: an empty queue at {e} B");
    // Cancelled, then the cancelled records deleted.
    for what in [Purge::Waiting, Purge::Finished] {
        let mut purged = 0;
        loop {
            let r = b.purge_queue(&full, what, 1_000).await.unwrap();
            purged += r.removed;
            if !r.more {
                break;
            }
        }
        assert_eq!(purged as usize, TASKS);
    }
    let after = bytes_of(b, "full").await;
    eprintln!("{what}: after the purge {after} B");
    assert!(
        after < f / 10,
        "{what}: {after} B after purging {f} B worth"
    );
}

#[tokio::test]
async fn memory_estimates_each_queue() {
    grows_with_its_tasks(&MemoryBackend::new(), "memory").await;
}

#[tokio::test]
async fn redis_measures_each_queue() {
    let server = RedisServer::start().unwrap();
    let b = RedisBackend::connect(&server.url(), "mem").await.unwrap();
    grows_with_its_tasks(&b, "redis").await;
}
