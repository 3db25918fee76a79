//! Rate limits (`switchyard_core::flow::rate`, and per group: `switchyard_core::flow::groups`)
//! on the memory reference and on a real Redis.
//!
//! * On the manual clock the lockstep tests use: a queue limited to 100 dispatches per second,
//!   eight workers of four slots, 10,000 tasks. The test drives time itself, advancing the
//!   clock only to the next due time the backend names (no polling), and at each instant runs
//!   maintenance and lets every worker receive and complete what it has until nothing moves.
//!   No sliding one-second window holds more than 100 dispatches, and the throughput is the
//!   limit within 2%.
//! * The same with 50 group keys each limited to 5 per second in one shared queue (10,000
//!   tasks, 200 per group): each group's windows and throughput, and the queue's 250 per
//!   second in all.
//! * End to end in real time, through the worker runtime on Redis: the same limits and eight
//!   workers for a few seconds; the dispatch times are the server's, from the event log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard::{Client, TaskOutcome, Worker};
use switchyard_core::flow::groups::GroupShare;
use switchyard_core::flow::rate::RateLimit;
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
const TASKS: usize = 10_000;
/// The grouped case: this many group keys, each limited to `GROUP_LIMIT` per window.
const GROUPS: usize = 50;
const GROUP_LIMIT: u32 = 5;

/// A limited queue: the whole queue at `LIMIT` per second, or (`grouped`) each group at
/// `GROUP_LIMIT` per second.
fn limited(grouped: bool) -> QueueConfig {
    let base = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin).with_events(EventLevel::All);
    if grouped {
        base.with_groups(GroupShare::default().with_rate(RateLimit::new(
            GROUP_LIMIT,
            Duration::from_millis(WINDOW_MS),
        )))
    } else {
        base.with_rate(LIMIT, Duration::from_millis(WINDOW_MS))
    }
}

/// The task `i` of a run: its group key (`""` in the plain case) is its payload.
fn task(i: usize, grouped: bool) -> TaskSpec {
    let builder = TaskSpec::builder("api", "call");
    if grouped {
        let group = format!("customer-{:02}", i % GROUPS);
        builder
            .payload(group.clone().into_bytes())
            .group_key(group)
            .build()
            .unwrap()
    } else {
        builder.build().unwrap()
    }
}

/// Dispatch counts by time, of each group (`""` in the plain case).
type Counts = BTreeMap<String, BTreeMap<Millis, u32>>;

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

/// All groups' counts together.
fn merged(counts: &Counts) -> BTreeMap<Millis, u32> {
    let mut all = BTreeMap::new();
    for c in counts.values() {
        for (at, n) in c {
            *all.entry(*at).or_default() += n;
        }
    }
    all
}

/// 10,000 tasks through the limited queue on the manual clock; returns the dispatch counts.
async fn on_the_manual_clock(b: &dyn Backend, clock: &ManualClock, grouped: bool) -> Counts {
    let q = QueueName::new("api").unwrap();
    b.declare_queue(&q, limited(grouped)).await.unwrap();
    for i in 0..WORKERS {
        b.register_worker(test_worker(&format!("w{i}"), ["api"]).capacity(4))
            .await
            .unwrap();
    }
    for chunk in 0..TASKS / 1_000 {
        let specs = (0..1_000)
            .map(|i| task(chunk * 1_000 + i, grouped))
            .collect();
        b.submit_batch(specs).await.unwrap();
    }
    let mut counts = Counts::new();
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
                    let group = String::from_utf8(d.payload.clone()).unwrap();
                    *counts.entry(group).or_default().entry(now).or_default() += 1;
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

/// No window over `limit`, and the throughput within 2% of it.
fn check_one(counts: &BTreeMap<Millis, u32>, limit: u32, what: &str) -> (u32, f64) {
    let busiest = busiest_window(counts);
    let rate = throughput(counts);
    assert!(
        busiest <= limit,
        "{what}: a window of {WINDOW_MS} ms holds {busiest} dispatches, over the limit of {limit}"
    );
    assert!(
        (rate - f64::from(limit)).abs() <= f64::from(limit) * 0.02,
        "{what}: {rate:.2} dispatches per second, not within 2% of {limit}"
    );
    (busiest, rate)
}

fn check(counts: &Counts, grouped: bool, what: &str) {
    let all = merged(counts);
    let total: u32 = all.values().sum();
    assert_eq!(total as usize, TASKS, "{what}: every task dispatched once");
    if !grouped {
        let (busiest, rate) = check_one(&all, LIMIT, what);
        eprintln!(
            "{what}: {total} dispatches at {} instants, busiest window {busiest}, {rate:.2}/s",
            all.len()
        );
        return;
    }
    assert_eq!(counts.len(), GROUPS, "{what}: every group dispatched");
    let mut worst = (0, f64::MAX, 0.0f64);
    for (group, c) in counts {
        let (busiest, rate) = check_one(c, GROUP_LIMIT, &format!("{what} {group}"));
        worst = (worst.0.max(busiest), worst.1.min(rate), worst.2.max(rate));
    }
    let groups_limit = GROUP_LIMIT * GROUPS as u32;
    let (busiest, rate) = check_one(&all, groups_limit, &format!("{what} (all groups)"));
    eprintln!(
        "{what}: {total} dispatches in {GROUPS} groups at {} instants; per group busiest window \
         {}, {:.2}..{:.2}/s; all groups busiest window {busiest}, {rate:.2}/s",
        all.len(),
        worst.0,
        worst.1,
        worst.2
    );
}

async fn memory_on_the_manual_clock(grouped: bool) {
    let clock = ManualClock::new(1_700_000_000_000);
    let b = MemoryBackend::with_clock(Arc::new(clock.clone()));
    let counts = on_the_manual_clock(&b, &clock, grouped).await;
    check(&counts, grouped, "memory");
    b.audit().unwrap();
}

async fn redis_on_the_manual_clock(grouped: bool) {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let config = RedisConfig::new(server.url(), "rate")
        .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    let b = RedisBackend::with_config(config).await.unwrap();
    let counts = on_the_manual_clock(&b, &clock, grouped).await;
    check(&counts, grouped, "redis");
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn memory_holds_the_rate_on_the_manual_clock() {
    memory_on_the_manual_clock(false).await;
}

#[tokio::test]
async fn redis_holds_the_rate_on_the_manual_clock() {
    redis_on_the_manual_clock(false).await;
}

#[tokio::test]
async fn memory_holds_fifty_group_rates_on_the_manual_clock() {
    memory_on_the_manual_clock(true).await;
}

#[tokio::test]
async fn redis_holds_fifty_group_rates_on_the_manual_clock() {
    redis_on_the_manual_clock(true).await;
}

/// Real time, through the runtime: 400 tasks at 100 per second take four windows; grouped,
/// 500 tasks in 50 groups at 5 per second each take two. The window bounds are checked on the
/// server's dispatch times; the throughput is printed (a wall-clock figure, for the notes, not
/// asserted).
async fn end_to_end(grouped: bool) {
    let tasks = if grouped { 500 } else { 400 };
    let server = RedisServer::start().unwrap();
    let c = Client::connect(&server.url(), "rate-e2e").await.unwrap();
    c.declare("api", limited(grouped)).await.unwrap();
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
    let specs: Vec<TaskSpec> = (0..tasks).map(|i| task(i, grouped)).collect();
    let group_of: BTreeMap<_, _> = specs
        .iter()
        .map(|s| (s.id(), s.group_key().unwrap_or_default().to_owned()))
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
    let mut counts = Counts::new();
    for e in c.backend().events(None, 10_000).await.unwrap() {
        if e.kind == EventKind::Dispatched {
            let group = group_of[&e.task].clone();
            *counts.entry(group).or_default().entry(e.at).or_default() += 1;
        }
    }
    let all = merged(&counts);
    let total: u32 = all.values().sum();
    assert_eq!(total as usize, tasks, "every task dispatched once");
    let limit = if grouped { GROUP_LIMIT } else { LIMIT };
    let busiest = counts.values().map(busiest_window).max().unwrap_or(0);
    eprintln!(
        "redis end to end{}: {total} dispatches, busiest window {busiest}{}, {:.2}/s over {} ms",
        if grouped { " (50 groups)" } else { "" },
        if grouped { " of a group" } else { "" },
        throughput(&all),
        all.keys().last().unwrap() - all.keys().next().unwrap() + WINDOW_MS
    );
    assert!(
        busiest <= limit,
        "a window of {WINDOW_MS} ms holds {busiest} dispatches, over the limit of {limit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_the_rate_end_to_end() {
    end_to_end(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_fifty_group_rates_end_to_end() {
    end_to_end(true).await;
}
