//! Rate limits (`switchyard_core::flow::rate`) on the memory reference and on a real Redis.
//!
//! * On the manual clock the lockstep tests use: a queue limited to 100 dispatches per second,
//!   eight workers of four slots, 10,000 tasks. The test drives time itself, advancing the
//!   clock only to the next due time the backend names (no polling), and at each instant runs
//!   maintenance and lets every worker receive and complete what it has until nothing moves.
//!   No sliding one-second window holds more than 100 dispatches, and the throughput is the
//!   limit within 2%.
//! * End to end in real time, through the worker runtime on Redis: the same limit and eight
//!   workers for a few seconds; the dispatch times are the server's, from the event log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard::{Client, TaskOutcome, Worker};
use switchyard_core::prelude::*;
use switchyard_core::{
    Clock, EventKind, EventLevel, ManualClock, Millis, Policy, QueueConfig, QueueName, Strategy,
    TaskSpec,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const LIMIT: u32 = 100;
const WINDOW_MS: u64 = 1_000;
const WORKERS: usize = 8;

fn limited() -> QueueConfig {
    QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)
        .with_rate(LIMIT, Duration::from_millis(WINDOW_MS))
        .with_events(EventLevel::All)
}

/// The most dispatches any window of `WINDOW_MS` holds, given dispatch counts by time.
fn busiest_window(counts: &BTreeMap<Millis, u32>) -> u32 {
    counts
        .keys()
        .map(|&end| {
            counts
                .range(end.saturating_sub(WINDOW_MS - 1)..=end)
                .map(|(_, n)| n)
                .sum::<u32>()
        })
        .max()
        .unwrap_or(0)
}

/// Dispatches per second from the first window's start to the end of the last one.
fn throughput(counts: &BTreeMap<Millis, u32>) -> f64 {
    let (Some((first, _)), Some((last, _))) = (counts.first_key_value(), counts.last_key_value())
    else {
        return 0.0;
    };
    let total: u32 = counts.values().sum();
    f64::from(total) * 1_000.0 / (last - first + WINDOW_MS) as f64
}

/// 10,000 tasks through the limited queue on the manual clock; returns the dispatch counts
/// by time.
async fn on_the_manual_clock(b: &dyn Backend, clock: &ManualClock) -> BTreeMap<Millis, u32> {
    const TASKS: usize = 10_000;
    let q = QueueName::new("api").unwrap();
    b.declare_queue(&q, limited()).await.unwrap();
    for i in 0..WORKERS {
        b.register_worker(test_worker(&format!("w{i}"), ["api"]).capacity(4))
            .await
            .unwrap();
    }
    for chunk in 0..TASKS / 1_000 {
        let specs = (0..1_000)
            .map(|i| {
                TaskSpec::builder("api", "call")
                    .payload(format!("{}", chunk * 1_000 + i).into_bytes())
                    .build()
                    .unwrap()
            })
            .collect();
        b.submit_batch(specs).await.unwrap();
    }
    let mut counts: BTreeMap<Millis, u32> = BTreeMap::new();
    let mut done = 0;
    let mut instants = 0;
    while done < TASKS {
        instants += 1;
        assert!(instants < 1_000, "stuck after {done} tasks");
        let now = clock.now_ms();
        b.maintain(1_000).await.unwrap();
        // Every worker receives and completes until nothing moves at this instant: what is
        // received now was dispatched now.
        loop {
            let mut moved = 0;
            for i in 0..WORKERS {
                let worker = me(&format!("w{i}"));
                for d in b.receive(&worker, 4).await.unwrap() {
                    *counts.entry(now).or_default() += 1;
                    b.complete(&d.lease, Vec::new()).await.unwrap();
                    moved += 1;
                    done += 1;
                }
            }
            if moved == 0 {
                break;
            }
        }
        // Keep the workers alive across the jumps.
        for i in 0..WORKERS {
            b.heartbeat(&me(&format!("w{i}"))).await.unwrap();
        }
        if done < TASKS {
            let wait = b
                .until_due()
                .await
                .unwrap()
                .expect("a due time while tasks wait");
            clock.advance(wait.max(Duration::from_millis(1)));
        }
    }
    counts
}

fn check(counts: &BTreeMap<Millis, u32>, what: &str) {
    let busiest = busiest_window(counts);
    let rate = throughput(counts);
    let total: u32 = counts.values().sum();
    eprintln!(
        "{what}: {total} dispatches at {} instants, busiest window {busiest}, {rate:.2}/s",
        counts.len()
    );
    assert!(
        busiest <= LIMIT,
        "{what}: a window of {WINDOW_MS} ms holds {busiest} dispatches, over the limit of {LIMIT}"
    );
    assert!(
        (rate - f64::from(LIMIT)).abs() <= f64::from(LIMIT) * 0.02,
        "{what}: {rate:.2} dispatches per second, not within 2% of {LIMIT}"
    );
}

#[tokio::test]
async fn memory_holds_the_rate_on_the_manual_clock() {
    let clock = ManualClock::new(1_700_000_000_000);
    let b = MemoryBackend::with_clock(Arc::new(clock.clone()));
    let counts = on_the_manual_clock(&b, &clock).await;
    check(&counts, "memory");
    b.audit().unwrap();
}

#[tokio::test]
async fn redis_holds_the_rate_on_the_manual_clock() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let config = RedisConfig::new(server.url(), "rate")
        .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    let b = RedisBackend::with_config(config).await.unwrap();
    let counts = on_the_manual_clock(&b, &clock).await;
    check(&counts, "redis");
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}

/// Real time, through the runtime: 400 tasks at 100 per second take four
/// windows. The window bound is checked on the server's dispatch times; the throughput is
/// printed (a wall-clock figure, for the notes, not asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_the_rate_end_to_end() {
    const TASKS: usize = 400;
    let server = RedisServer::start().unwrap();
    let c = Client::connect(&server.url(), "rate-e2e").await.unwrap();
    c.declare("api", limited()).await.unwrap();
    let running: Vec<_> = (0..WORKERS)
        .map(|i| {
            let worker = Worker::builder(&c, &format!("w{i}"), ["api"])
                .unwrap()
                .capacity(4)
                .handle("call", |_ctx, _payload| async move { Ok(Vec::new()) })
                .build()
                .unwrap();
            (worker.shutdown_handle(), tokio::spawn(worker.run()))
        })
        .collect();
    let specs = (0..TASKS)
        .map(|_| TaskSpec::builder("api", "call").build().unwrap())
        .collect();
    let handles = c.submit_batch(specs).await.unwrap();
    for h in &handles {
        let outcome = h.wait(Duration::from_secs(30)).await.unwrap();
        assert!(matches!(outcome, TaskOutcome::Succeeded(_)), "{outcome:?}");
    }
    for (stop, _) in &running {
        stop.shutdown();
    }
    for (_, run) in running {
        run.await.unwrap().unwrap();
    }
    let mut counts: BTreeMap<Millis, u32> = BTreeMap::new();
    for e in c.backend().events(None, 10_000).await.unwrap() {
        if e.kind == EventKind::Dispatched {
            *counts.entry(e.at).or_default() += 1;
        }
    }
    let total: u32 = counts.values().sum();
    assert_eq!(total as usize, TASKS, "every task dispatched once");
    let busiest = busiest_window(&counts);
    eprintln!(
        "redis end to end: {total} dispatches, busiest window {busiest}, {:.2}/s over {} ms",
        throughput(&counts),
        counts.keys().last().unwrap() - counts.keys().next().unwrap() + WINDOW_MS
    );
    assert!(
        busiest <= LIMIT,
        "a window of {WINDOW_MS} ms holds {busiest} dispatches, over the limit of {LIMIT}"
    );
}
