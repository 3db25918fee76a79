//! Fair share between group keys (`switchyard_core::flow::groups`) on the memory reference and
//! on a real Redis, driven step by step: workers receive and complete by hand, so the dispatch
//! order is exact.
//!
//! * Group A has 100,000 tasks waiting; group B submits 10: B's first dispatch comes within one
//!   round (after at most one of A's), and B's ten go out interleaved with A's.
//! * Weights 3:1 under contention give 3:1 (exactly, in every full round); a group alone gets
//!   every free slot (work-conserving); the queue's policy orders each group.
//! * A per-group limit holds a group's further tasks while the others run; a change of the
//!   limit by reconfigure opens and closes groups in the same step.
//! * A group's own limits (`set_group_limits`) replace the queue's per-group ones for that
//!   group alone, at once, and give them back when taken off.
//! * A handler's throttle (`TaskError::rate_limited`) in a shared queue holds its group only:
//!   the others go on; when the hold ends (on the manual clock, taken up by maintenance) the
//!   throttled task is its group's first dispatch, its attempt not counted.
//! * After every phase the backend's audit holds (the groups mirror the ready set, the ring is
//!   exactly the open groups with ready tasks, the active counts match the records).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::flow::groups::{GroupLimits, GroupShare};
use switchyard_core::prelude::*;
use switchyard_core::{
    Ack, Clock, ManualClock, Policy, QueueConfig, QueueName, Strategy, TaskId, TaskSpec,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

/// A fresh backend of either kind, and its audit.
enum Under {
    Memory(MemoryBackend),
    Redis(RedisBackend, #[allow(dead_code)] RedisServer),
}

impl Under {
    async fn new(redis: bool) -> Under {
        Under::with_clock(redis, None).await
    }

    /// On `clock` (the system clock without one).
    async fn with_clock(redis: bool, clock: Option<&ManualClock>) -> Under {
        let clock = clock.map(|c| Arc::new(c.clone()) as Arc<dyn Clock>);
        if !redis {
            return Under::Memory(match clock {
                Some(c) => MemoryBackend::with_clock(c),
                None => MemoryBackend::new(),
            });
        }
        let server = RedisServer::start().unwrap();
        let mut config = RedisConfig::new(server.url(), "fair");
        if let Some(c) = clock {
            config = config.with_clock(c);
        }
        let b = RedisBackend::with_config(config).await.unwrap();
        Under::Redis(b, server)
    }

    fn b(&self) -> &dyn Backend {
        match self {
            Under::Memory(b) => b,
            Under::Redis(b, _) => b,
        }
    }

    async fn audit(&self) {
        match self {
            Under::Memory(b) => b.audit().unwrap(),
            Under::Redis(b, _) => assert_eq!(b.audit().await.unwrap(), Vec::<String>::new()),
        }
    }
}

fn q() -> QueueName {
    QueueName::new("q").unwrap()
}

async fn shared(b: &dyn Backend, policy: Policy, share: GroupShare) {
    b.declare_queue(
        &q(),
        QueueConfig::new(policy, Strategy::RoundRobin).with_groups(share),
    )
    .await
    .unwrap();
}

async fn submit(b: &dyn Backend, group: &str, n: usize) -> Vec<TaskId> {
    let mut ids = Vec::new();
    let mut left = n;
    while left > 0 {
        let step = left.min(10_000);
        let specs = (0..step)
            .map(|_| {
                TaskSpec::builder("q", "job")
                    .group_key(group)
                    .payload(group.as_bytes().to_vec())
                    .build()
                    .unwrap()
            })
            .collect();
        ids.extend(
            b.submit_batch(specs)
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.id),
        );
        left -= step;
    }
    ids
}

/// Worker `w` takes what it was given and completes it, returning the groups (payloads) in
/// the order received; completing refills its slots from the ring.
async fn serve(b: &dyn Backend, w: &str, rounds: usize) -> Vec<String> {
    let mut order = Vec::new();
    for _ in 0..rounds {
        let got = b.receive(&me(w), 64).await.unwrap();
        if got.is_empty() {
            break;
        }
        for d in got {
            order.push(String::from_utf8(d.payload.clone()).unwrap());
            b.complete(&d.lease, Vec::new()).await.unwrap();
        }
    }
    order
}

async fn a_newcomer_is_served_within_one_round(u: Under) {
    let b = u.b();
    shared(b, Policy::Fcfs, GroupShare::default()).await;
    b.register_worker(test_worker("w", ["q"]).capacity(1))
        .await
        .unwrap();
    submit(b, "A", 100_000).await;
    submit(b, "B", 10).await;
    u.audit().await;
    // The worker holds A's first task (dispatched on arrival); 40 more dispatches follow.
    let order = serve(b, "w", 41).await;
    assert_eq!(order[0], "A", "A's first task, dispatched before B arrived");
    let first_b = order.iter().position(|g| g == "B").unwrap();
    assert!(
        first_b <= 2,
        "B's first dispatch came after {} of A's: {order:?}",
        first_b - 1
    );
    // Then turns alternate until B's ten are out.
    let b_at: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, g)| *g == "B")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(b_at.len(), 10, "{order:?}");
    assert!(b_at.windows(2).all(|w| w[1] - w[0] == 2), "{b_at:?}");
    u.audit().await;
    let groups = b.groups(&q()).await.unwrap();
    let a = groups.iter().find(|g| g.key == "A").unwrap();
    assert_eq!(a.ready as usize, 100_000 - (order.len() - 10) - 1);
    assert!(!groups.iter().any(|g| g.key == "B" && g.ready > 0));
}

async fn weights_three_to_one(u: Under) {
    let b = u.b();
    shared(b, Policy::Fcfs, GroupShare::default()).await;
    b.set_group_weight(&q(), "A", 3).await.unwrap();
    // Both backlogs are whole before a worker comes: every dispatch is under contention.
    submit(b, "A", 6_000).await;
    submit(b, "B", 6_000).await;
    for i in 0..8 {
        b.register_worker(test_worker(&format!("w{i}"), ["q"]).capacity(4))
            .await
            .unwrap();
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut served = 0;
    let mut rounds = 0;
    while served < 4_000 {
        for i in 0..8 {
            for g in serve(b, &format!("w{i}"), 1).await {
                *counts.entry(g).or_default() += 1;
                served += 1;
            }
        }
        rounds += 1;
        if rounds % 25 == 0 {
            u.audit().await;
        }
    }
    u.audit().await;
    let (a, bb) = (counts["A"] as f64, counts["B"] as f64);
    eprintln!(
        "weights 3:1 over {served} dispatches: A {a}, B {bb}, ratio {:.3}",
        a / bb
    );
    assert!((a / bb - 3.0).abs() <= 0.15, "A:B = {a}:{bb}");
    let groups = b.groups(&q()).await.unwrap();
    assert_eq!(groups.iter().find(|g| g.key == "A").unwrap().weight, 3);
    assert_eq!(groups.iter().find(|g| g.key == "B").unwrap().weight, 1);
}

async fn a_group_alone_fills_every_slot_and_keeps_its_policy(u: Under, second: Under) {
    let b = u.b();
    shared(b, Policy::PRIORITY, GroupShare::default()).await;
    for i in 0..8 {
        b.register_worker(test_worker(&format!("w{i}"), ["q"]).capacity(4))
            .await
            .unwrap();
    }
    submit(b, "A", 1_000).await;
    let stats = b.stats().await.unwrap();
    assert_eq!(
        (stats.queues[0].dispatched, stats.queues[0].ready),
        (32, 968),
        "a group alone takes all 32 slots"
    );
    u.audit().await;

    // Priority within a group: one worker of one slot, group C's tasks by priority.
    let u = second;
    let b = u.b();
    shared(b, Policy::PRIORITY, GroupShare::default()).await;
    for (g, prio) in [("C", 1), ("C", 5), ("C", 3), ("D", 9)] {
        b.submit(
            TaskSpec::builder("q", "job")
                .group_key(g)
                .priority(prio)
                .payload(format!("{g}{prio}").into_bytes())
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    }
    b.register_worker(test_worker("w", ["q"]).capacity(1))
        .await
        .unwrap();
    let order = serve(b, "w", 10).await;
    assert_eq!(
        order,
        ["C5", "D9", "C3", "C1"],
        "C by priority, turns between C and D"
    );
    u.audit().await;
}

async fn a_group_limit_holds_its_group_only(u: Under) {
    let b = u.b();
    let one = GroupShare::default().with_concurrency(1);
    shared(b, Policy::Fcfs, one).await;
    b.register_worker(test_worker("w", ["q"]).capacity(4))
        .await
        .unwrap();
    submit(b, "A", 5).await;
    submit(b, "B", 5).await;
    let stats = b.stats().await.unwrap();
    assert_eq!(
        (stats.queues[0].dispatched, stats.queues[0].ready),
        (2, 8),
        "one of each group, two slots left free"
    );
    u.audit().await;
    let groups = b.groups(&q()).await.unwrap();
    assert!(
        groups.iter().all(|g| g.active == 1 && !g.in_ring),
        "{groups:?}"
    );
    // Raised to 3: each group takes up to its new limit at once (the worker's 4 slots).
    let config = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)
        .with_groups(GroupShare::default().with_concurrency(3));
    assert!(b.reconfigure_queue(&q(), config).await.unwrap());
    let stats = b.stats().await.unwrap();
    assert_eq!(stats.queues[0].dispatched, 4, "the worker's four slots");
    u.audit().await;
    // Every task ends.
    let order = serve(b, "w", 20).await;
    assert_eq!(order.len(), 10);
    u.audit().await;
    let groups = b.groups(&q()).await.unwrap();
    assert!(
        groups.iter().all(|g| g.ready == 0 && g.active == 0),
        "{groups:?}"
    );
}

async fn own_limits_replace_the_queues(u: Under) {
    let b = u.b();
    shared(b, Policy::Fcfs, GroupShare::default().with_concurrency(1)).await;
    b.register_worker(test_worker("w", ["q"]).capacity(8))
        .await
        .unwrap();
    // A big customer may run three at once; the others one, as the queue says.
    let big = GroupLimits::default().with_concurrency(3);
    b.set_group_limits(&q(), "big", big).await.unwrap();
    submit(b, "big", 5).await;
    submit(b, "small", 5).await;
    let active = |groups: &[switchyard_core::flow::groups::GroupInfo], key: &str| {
        groups.iter().find(|g| g.key == key).map(|g| g.active)
    };
    let groups = b.groups(&q()).await.unwrap();
    assert_eq!(
        (active(&groups, "big"), active(&groups, "small")),
        (Some(3), Some(1)),
        "{groups:?}"
    );
    assert_eq!(groups.iter().find(|g| g.key == "big").unwrap().limits, big);
    u.audit().await;
    // Raised to 4 while it runs: taken up at once.
    b.set_group_limits(&q(), "big", GroupLimits::default().with_concurrency(4))
        .await
        .unwrap();
    assert_eq!(active(&b.groups(&q()).await.unwrap(), "big"), Some(4));
    // Taken off: the queue's limit again; running tasks finish, no new one starts over it.
    b.set_group_limits(&q(), "big", GroupLimits::default())
        .await
        .unwrap();
    let groups = b.groups(&q()).await.unwrap();
    let g = groups.iter().find(|g| g.key == "big").unwrap();
    assert_eq!(
        (g.active, g.limits, g.in_ring),
        (4, GroupLimits::default(), false)
    );
    u.audit().await;
    let order = serve(b, "w", 20).await;
    assert_eq!(order.len(), 10, "{order:?}");
    u.audit().await;
    // A plain queue refuses own limits.
    let plain = QueueName::new("plain").unwrap();
    b.declare_queue(&plain, QueueConfig::default())
        .await
        .unwrap();
    let e = b.set_group_limits(&plain, "big", big).await.unwrap_err();
    assert!(e.to_string().contains("does not share"), "{e}");
    let e = b
        .set_group_limits(&q(), "big", GroupLimits::default().with_concurrency(0))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
}

#[tokio::test]
async fn memory_gives_a_group_its_own_limits() {
    own_limits_replace_the_queues(Under::new(false).await).await;
}

#[tokio::test]
async fn redis_gives_a_group_its_own_limits() {
    own_limits_replace_the_queues(Under::new(true).await).await;
}

async fn a_throttle_holds_its_group_only(redis: bool) {
    let clock = ManualClock::new(1_700_000_000_000);
    let u = Under::with_clock(redis, Some(&clock)).await;
    let b = u.b();
    shared(b, Policy::Fcfs, GroupShare::default()).await;
    b.register_worker(test_worker("w", ["q"]).capacity(1))
        .await
        .unwrap();
    let a = submit(b, "A", 3).await;
    submit(b, "B", 3).await;
    // A's first task went out on arrival; its handler meets a downstream limit.
    let got = b.receive(&me("w"), 1).await.unwrap();
    assert_eq!((got.len(), got[0].lease.task), (1, a[0]));
    let attempt = got[0].attempt;
    let out = b
        .throttle(&got[0].lease, Duration::from_secs(2))
        .await
        .unwrap();
    let until = clock.now_ms() + 2_000;
    assert_eq!(out.ack, Ack::Throttled { until });
    u.audit().await;
    // Group A is closed until then; B's three run meanwhile, and then nothing.
    let groups = b.groups(&q()).await.unwrap();
    let ga = groups.iter().find(|g| g.key == "A").unwrap();
    assert_eq!(
        (ga.ready, ga.in_ring, ga.closed_until),
        (3, false, Some(until))
    );
    assert_eq!(serve(b, "w", 10).await, ["B", "B", "B"]);
    b.maintain(100).await.unwrap();
    assert!(b.receive(&me("w"), 1).await.unwrap().is_empty(), "A held");
    // The hold ends at the due time the backend names: maintenance takes A up.
    let wait = b
        .until_due()
        .await
        .unwrap()
        .expect("the group's mark is due");
    assert!(wait <= Duration::from_secs(2), "{wait:?}");
    clock.advance(wait);
    b.maintain(100).await.unwrap();
    let got = b.receive(&me("w"), 1).await.unwrap();
    assert_eq!(got[0].lease.task, a[0], "the throttled task first");
    assert_eq!(got[0].attempt, attempt, "its attempt not counted");
    b.complete(&got[0].lease, Vec::new()).await.unwrap();
    assert_eq!(serve(b, "w", 10).await, ["A", "A"]);
    u.audit().await;
    let groups = b.groups(&q()).await.unwrap();
    assert!(
        groups.iter().all(|g| g.closed_until.is_none()),
        "{groups:?}"
    );
}

#[tokio::test]
async fn memory_throttles_a_group_only() {
    a_throttle_holds_its_group_only(false).await;
}

#[tokio::test]
async fn redis_throttles_a_group_only() {
    a_throttle_holds_its_group_only(true).await;
}

#[tokio::test]
async fn memory_serves_a_newcomer_within_one_round() {
    a_newcomer_is_served_within_one_round(Under::new(false).await).await;
}

#[tokio::test]
async fn redis_serves_a_newcomer_within_one_round() {
    a_newcomer_is_served_within_one_round(Under::new(true).await).await;
}

#[tokio::test]
async fn memory_weights_three_to_one() {
    weights_three_to_one(Under::new(false).await).await;
}

#[tokio::test]
async fn redis_weights_three_to_one() {
    weights_three_to_one(Under::new(true).await).await;
}

#[tokio::test]
async fn memory_lets_a_group_alone_fill_every_slot() {
    a_group_alone_fills_every_slot_and_keeps_its_policy(
        Under::new(false).await,
        Under::new(false).await,
    )
    .await;
}

#[tokio::test]
async fn redis_lets_a_group_alone_fill_every_slot() {
    a_group_alone_fills_every_slot_and_keeps_its_policy(
        Under::new(true).await,
        Under::new(true).await,
    )
    .await;
}

#[tokio::test]
async fn memory_holds_a_group_at_its_limit_only() {
    a_group_limit_holds_its_group_only(Under::new(false).await).await;
}

#[tokio::test]
async fn redis_holds_a_group_at_its_limit_only() {
    a_group_limit_holds_its_group_only(Under::new(true).await).await;
}
