//! Large batches: applied in chunks, so that other callers are not stalled behind them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use switchyard_core::prelude::*;
use switchyard_core::{Policy, QueueConfig, QueueName, Strategy, TaskSpec};
use switchyard_memory::{MemoryBackend, SUBMIT_CHUNK};

/// On a single-threaded runtime, a caller that runs while a 50,000-task batch is being
/// submitted sees part of it: the batch let go of the lock between chunks. Before, the whole
/// batch held the lock (1.65 s for a million tasks), and this caller saw 0 or all.
#[tokio::test(flavor = "current_thread")]
async fn other_callers_run_between_the_chunks_of_a_large_batch() {
    const N: usize = 50_000;
    let b = MemoryBackend::new();
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::Pull))
        .await
        .unwrap();
    let specs: Vec<TaskSpec> = (0..N)
        .map(|_| TaskSpec::builder("q", "k").build().unwrap())
        .collect();
    let batch = {
        let b = b.clone();
        tokio::spawn(async move { b.submit_batch(specs).await })
    };
    let mut seen = Vec::new();
    loop {
        let ready = b.stats().await.unwrap().queues[0].ready;
        seen.push(ready);
        if ready as usize == N {
            break;
        }
        tokio::task::yield_now().await;
    }
    let outcomes = batch.await.unwrap().unwrap();
    assert_eq!(outcomes.len(), N);
    let partial: Vec<u64> = seen
        .iter()
        .copied()
        .filter(|r| *r > 0 && (*r as usize) < N)
        .collect();
    assert!(
        partial.len() >= N / SUBMIT_CHUNK / 2,
        "saw {} partial states: {:?}",
        partial.len(),
        &seen[..seen.len().min(10)]
    );
    assert!(
        partial
            .iter()
            .all(|r| (*r as usize).is_multiple_of(SUBMIT_CHUNK)),
        "chunks are whole: {partial:?}"
    );
    b.audit().unwrap();
}
