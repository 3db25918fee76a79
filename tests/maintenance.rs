//! Maintenance without a leader: many workers running `maintain` at the same moment reap each
//! dead worker once, promote each due task once, and leave every invariant intact — on the
//! memory backend and on a real Redis (several connections, concurrent scripts).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::prelude::*;
use switchyard_core::{
    Clock, MaintenanceReport, ManualClock, Policy, QueueConfig, QueueName, Strategy, TaskId,
    TaskSpec, TaskState, WorkerSpec,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;

const DEAD_WORKERS: usize = 3;
const PER_WORKER: usize = 4;
const DELAYED: usize = 200;
const MAINTAINERS: usize = 8;

/// Sets up dead workers holding tasks (some running, some in the inbox) and due delayed tasks,
/// then lets `MAINTAINERS` callers run maintenance concurrently until nothing is left; checks
/// that everything was done exactly once.
async fn concurrent_maintenance(backends: Vec<Arc<dyn Backend>>, clock: ManualClock) {
    let b = backends[0].clone();
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin))
        .await
        .unwrap();
    let mut dead = Vec::new();
    for i in 0..DEAD_WORKERS {
        let spec = WorkerSpec::new(format!("dead-{i}"), ["q"])
            .unwrap()
            .capacity(PER_WORKER as u32)
            .heartbeat_ttl(Duration::from_secs(1));
        b.register_worker(spec.clone()).await.unwrap();
        dead.push(spec.worker_ref());
    }
    let mut held = Vec::new();
    for _ in 0..DEAD_WORKERS * PER_WORKER {
        held.push(
            b.submit(TaskSpec::builder("q", "k").build().unwrap())
                .await
                .unwrap()
                .id,
        );
    }
    // Two workers start their tasks; the third leaves them in its inbox.
    let mut running = HashSet::new();
    for worker in &dead[..2] {
        for d in b.receive(worker, PER_WORKER).await.unwrap() {
            running.insert(d.lease.task);
        }
    }
    let mut delayed: Vec<TaskId> = Vec::new();
    for i in 0..DELAYED {
        let spec = TaskSpec::builder("q", "k")
            .delay(Duration::from_millis(100 + i as u64))
            .build()
            .unwrap();
        delayed.push(b.submit(spec).await.unwrap().id);
    }
    clock.advance(Duration::from_secs(5));

    // Every maintainer loops with a small limit until it sees nothing more to do.
    let mut runs = Vec::new();
    for m in 0..MAINTAINERS {
        let b = backends[m % backends.len()].clone();
        runs.push(tokio::spawn(async move {
            let mut reports: Vec<MaintenanceReport> = Vec::new();
            for _ in 0..1_000 {
                let r = b.maintain(7).await.unwrap();
                let more = r.more;
                reports.push(r);
                if !more {
                    break;
                }
            }
            reports
        }));
    }
    let mut reaped = Vec::new();
    let (mut promoted, mut returned) = (0, 0);
    for run in runs {
        for r in run.await.unwrap() {
            reaped.extend(r.workers_reaped);
            promoted += r.promoted;
            returned += r.tasks_returned;
        }
    }
    reaped.sort();
    let expected: Vec<_> = (0..DEAD_WORKERS)
        .map(|i| format!("dead-{i}").parse().unwrap())
        .collect();
    assert_eq!(reaped, expected, "each dead worker reaped exactly once");
    assert_eq!(promoted, DELAYED, "each due task promoted exactly once");
    assert_eq!(
        returned,
        DEAD_WORKERS * PER_WORKER,
        "each held task returned once"
    );

    for id in &held {
        let t = b.get_task(*id).await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Ready);
        if running.contains(id) {
            assert_eq!(t.attempts, 1, "the lost attempt counts");
            assert!(t.last_error.unwrap().contains("was lost during attempt 1"));
        } else {
            assert_eq!(t.attempts, 0, "inbox tasks never started");
        }
    }
    for id in &delayed {
        assert_eq!(
            b.get_task(*id).await.unwrap().unwrap().state,
            TaskState::Ready
        );
    }
    let stats = b.stats().await.unwrap();
    assert!(stats.workers.is_empty());
    assert_eq!(
        stats.queues[0].ready as usize,
        DEAD_WORKERS * PER_WORKER + DELAYED
    );
    assert_eq!(
        stats.queues[0].total() as usize,
        DEAD_WORKERS * PER_WORKER + DELAYED
    );
    assert_eq!(running.len(), 2 * PER_WORKER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_maintenance_on_memory() {
    let clock = ManualClock::new(1_700_000_000_000);
    let memory = Arc::new(MemoryBackend::with_clock(Arc::new(clock.clone())));
    concurrent_maintenance(vec![memory.clone()], clock).await;
    memory.audit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_maintenance_on_redis() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    // Four clients, as four worker processes would have.
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    let mut first = None;
    for _ in 0..4 {
        let config = RedisConfig::new(server.url(), "maint")
            .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
        let b = RedisBackend::with_config(config).await.unwrap();
        first.get_or_insert_with(|| b.clone());
        backends.push(Arc::new(b));
    }
    concurrent_maintenance(backends, clock).await;
    assert_eq!(first.unwrap().audit().await.unwrap(), Vec::<String>::new());
}
