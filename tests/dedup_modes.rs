//! Dedup keys that throttle and dedup keys that debounce (`switchyard_core::flow::dedup`), on
//! the memory reference and on a real Redis, each driven by the same manual clock.
//!
//! * Throttle: one task per key per window; a later submit is answered with the task there and
//!   says whether its payload differs (a resubmitted id too); after the window a new task.
//! * Debounce: a burst of delayed submits runs once, after the last, with the last payload; the
//!   window starts again at each; a task that has started is not changed — the next submit
//!   creates a new task; a ready task keeps its place; within one batch the second submit
//!   debounces the first.
//! * A bounded queue counts a debounced submit as no new task.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::flow::dedup::DedupMode;
use switchyard_core::prelude::*;
use switchyard_core::{
    Clock, Error, ManualClock, Millis, Policy, QueueConfig, QueueName, Strategy, SubmitOutcome,
    TaskId, TaskSpec, TaskSpecBuilder, TaskState,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const START: Millis = 1_700_000_000_000;

fn spec(queue: &str, key: &str, payload: &str) -> TaskSpecBuilder {
    TaskSpec::builder(queue, "job")
        .dedup_key(key)
        .payload(payload.as_bytes().to_vec())
}

async fn submit(b: &dyn Backend, spec: TaskSpecBuilder) -> SubmitOutcome {
    b.submit(spec.build().unwrap()).await.unwrap()
}

async fn declare(b: &dyn Backend, queue: &str, mode: DedupMode, window_ms: u64) {
    let config = QueueConfig::new(Policy::Fcfs, Strategy::Pull)
        .with_dedup_window(Duration::from_millis(window_ms))
        .with_dedup_mode(mode);
    b.declare_queue(&QueueName::new(queue).unwrap(), config)
        .await
        .unwrap();
}

async fn task(b: &dyn Backend, id: TaskId) -> (TaskState, Option<Millis>, Vec<u8>) {
    let t = b.get_task(id).await.unwrap().unwrap();
    (t.state, t.run_at, t.payload)
}

async fn ready_order(b: &dyn Backend, queue: &str) -> Vec<TaskId> {
    b.peek_ready(&QueueName::new(queue).unwrap(), 10)
        .await
        .unwrap()
}

/// The flags of an answer: (duplicate, payload differs, replaced).
fn flags(out: &SubmitOutcome) -> (bool, bool, bool) {
    (out.duplicate, out.payload_differs, out.replaced)
}

async fn throttles(b: &dyn Backend, clock: &ManualClock) {
    declare(b, "thr", DedupMode::Throttle, 60_000).await;
    let first = submit(b, spec("thr", "k", "one")).await;
    assert_eq!(flags(&first), (false, false, false));
    let same = submit(b, spec("thr", "k", "one")).await;
    assert_eq!((same.id, flags(&same)), (first.id, (true, false, false)));
    let other = submit(b, spec("thr", "k", "two")).await;
    assert_eq!((other.id, flags(&other)), (first.id, (true, true, false)));
    assert_eq!(other.state, Some(TaskState::Ready));
    // The task there is untouched.
    assert_eq!(task(b, first.id).await.2, b"one");
    // A resubmitted id says the same.
    let again = submit(b, spec("thr", "x", "three").id(first.id)).await;
    assert_eq!((again.id, flags(&again)), (first.id, (true, true, false)));
    let again = submit(b, spec("thr", "x", "one").id(first.id)).await;
    assert_eq!(flags(&again), (true, false, false));
    // The window does not move: it ends a minute after the first submit.
    clock.set(START + 59_999);
    assert!(submit(b, spec("thr", "k", "one")).await.duplicate);
    clock.set(START + 60_000);
    let next = submit(b, spec("thr", "k", "one")).await;
    assert_eq!(flags(&next), (false, false, false));
    assert_ne!(next.id, first.id);
}

async fn debounces(b: &dyn Backend, clock: &ManualClock) {
    let t0 = START + 100_000;
    clock.set(t0);
    declare(b, "deb", DedupMode::Debounce, 10_000).await;
    let five = Duration::from_secs(5);
    let first = submit(b, spec("deb", "k", "v1").delay(five)).await;
    assert_eq!(flags(&first), (false, false, false));
    assert_eq!(first.state, Some(TaskState::Scheduled));
    // Two seconds later: the waiting task takes the new payload and runs 5 s from now.
    clock.set(t0 + 2_000);
    let second = submit(b, spec("deb", "k", "v2").delay(five)).await;
    assert_eq!((second.id, flags(&second)), (first.id, (true, true, true)));
    assert_eq!(
        task(b, first.id).await,
        (TaskState::Scheduled, Some(t0 + 7_000), b"v2".to_vec())
    );
    let same = submit(b, spec("deb", "k", "v2").delay(five)).await;
    assert_eq!((same.id, flags(&same)), (first.id, (true, false, true)));
    let stats = b.stats().await.unwrap();
    let deb = QueueName::new("deb").unwrap();
    let row = stats
        .queues
        .iter()
        .find(|r| r.queue.as_ref() == Some(&deb))
        .unwrap();
    assert_eq!((row.scheduled, row.ready), (1, 0), "one task for the burst");
    // Not due before the last submit's time; then once, with the last payload.
    clock.set(t0 + 6_999);
    b.maintain(100).await.unwrap();
    assert_eq!(task(b, first.id).await.0, TaskState::Scheduled);
    clock.set(t0 + 7_000);
    b.maintain(100).await.unwrap();
    b.register_worker(test_worker("w1", ["deb"]).capacity(1))
        .await
        .unwrap();
    let got = b.receive(&me("w1"), 1).await.unwrap();
    assert_eq!(
        (got[0].lease.task, &got[0].payload[..]),
        (first.id, &b"v2"[..])
    );
    // Started: it may not see a later request's data, so the next submit creates a task, which
    // takes the key; the one after debounces into it.
    clock.set(t0 + 8_000);
    let third = submit(b, spec("deb", "k", "v3").delay(five)).await;
    assert_eq!(flags(&third), (false, false, false));
    assert_ne!(third.id, first.id);
    assert_eq!(
        task(b, first.id).await.2,
        b"v2",
        "a started task is not changed"
    );
    clock.set(t0 + 9_000);
    let fourth = submit(b, spec("deb", "k", "v3").delay(five)).await;
    assert_eq!((fourth.id, flags(&fourth)), (third.id, (true, false, true)));
    // The window started again at 9 s: at 18.999 s the key is still held; a submit without a
    // delay makes the waiting task ready now.
    clock.set(t0 + 18_999);
    let fifth = submit(b, spec("deb", "k", "v4")).await;
    assert_eq!((fifth.id, flags(&fifth)), (third.id, (true, true, true)));
    assert_eq!(fifth.state, Some(TaskState::Ready));
    // The window lapses 10 s after the last submit: then the key is free, even though its
    // task still waits.
    let later = submit(b, spec("deb", "j", "a").delay(Duration::from_secs(60))).await;
    clock.set(t0 + 28_999);
    let free = submit(b, spec("deb", "j", "b").delay(Duration::from_secs(60))).await;
    assert_eq!(flags(&free), (false, false, false));
    assert_ne!(free.id, later.id);
    // A ready task keeps its place: ready tasks a, then c; c debounced without a delay.
    let a = submit(b, spec("deb", "a", "a")).await;
    let c = submit(b, spec("deb", "c", "c1")).await;
    assert_eq!(ready_order(b, "deb").await, [third.id, a.id, c.id]);
    let c2 = submit(b, spec("deb", "c", "c2")).await;
    assert_eq!((c2.id, flags(&c2)), (c.id, (true, true, true)));
    assert_eq!(ready_order(b, "deb").await, [third.id, a.id, c.id]);
    assert_eq!(task(b, c.id).await.2, b"c2");
    // Within one batch the second debounces the first.
    let outs = b
        .submit_batch(vec![
            spec("deb", "m", "p1")
                .delay(Duration::from_secs(1))
                .build()
                .unwrap(),
            spec("deb", "m", "p2")
                .delay(Duration::from_secs(2))
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(flags(&outs[0]), (false, false, false));
    assert_eq!(
        (outs[1].id, flags(&outs[1])),
        (outs[0].id, (true, true, true))
    );
    assert_eq!(
        task(b, outs[0].id).await,
        (
            TaskState::Scheduled,
            Some(t0 + 28_999 + 2_000),
            b"p2".to_vec()
        )
    );
}

async fn bounded(b: &dyn Backend, clock: &ManualClock) {
    clock.set(START + 500_000);
    let config = QueueConfig::new(Policy::Fcfs, Strategy::Pull)
        .with_dedup_mode(DedupMode::Debounce)
        .with_max_waiting(1);
    b.declare_queue(&QueueName::new("bd").unwrap(), config)
        .await
        .unwrap();
    let first = submit(b, spec("bd", "k", "1").delay(Duration::from_secs(5))).await;
    // Full, but a debounced submit adds no task.
    let second = submit(b, spec("bd", "k", "2").delay(Duration::from_secs(5))).await;
    assert_eq!((second.id, flags(&second)), (first.id, (true, true, true)));
    let refused = b
        .submit(spec("bd", "other", "3").build().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::QueueFull { .. }), "{refused}");
}

async fn all(b: &dyn Backend, clock: &ManualClock) {
    throttles(b, clock).await;
    debounces(b, clock).await;
    bounded(b, clock).await;
}

#[tokio::test]
async fn memory_throttles_and_debounces() {
    let clock = ManualClock::new(START);
    let b = MemoryBackend::with_clock(Arc::new(clock.clone()));
    all(&b, &clock).await;
    b.audit().unwrap();
}

#[tokio::test]
async fn redis_throttles_and_debounces() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(START);
    let config = RedisConfig::new(server.url(), "dedup")
        .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    let b = RedisBackend::with_config(config).await.unwrap();
    all(&b, &clock).await;
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}
