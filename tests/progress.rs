//! Progress reports (`switchyard_core::progress`), on the memory reference and on a real Redis,
//! each driven by the same manual clock.
//!
//! * A report under the current lease is stored and read back with its attempt, time and
//!   count; the attempt's first report is announced (a `progress` event).
//! * 1,000 reports within one second add one more event, at the second's end: the event log
//!   stays within one event per second per attempt, and the stored value is the newest.
//! * A report under a lease that is no longer current (the task waits for its retry; a new
//!   attempt runs under another token) is refused and changes nothing; a new attempt starts
//!   without progress, a throttled run's progress goes with it.
//! * A handle waiting for progress wakes on an announced report, and at once when what it has
//!   seen is already old.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::prelude::*;
use switchyard_core::{
    Ack, Backoff, Clock, EventKind, EventLevel, Lease, ManualClock, Millis, Progress, ProgressAck,
    QueueConfig, QueueName, Rejection, Strategy, TaskSpec, TaskState,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const START: Millis = 1_700_000_000_000;

async fn report(b: &dyn Backend, lease: &Lease, ppm: u32, message: &str) -> ProgressAck {
    let p = Progress::from_ppm(ppm, message).unwrap();
    b.progress(lease, &p).await.unwrap()
}

async fn receive_one(b: &dyn Backend) -> Lease {
    let got = b.receive(&me("w1"), 1).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].lease.clone()
}

async fn progress_events(b: &dyn Backend) -> Vec<String> {
    b.events(None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::Progress)
        .map(|e| e.detail.unwrap_or_default())
        .collect()
}

async fn reports(b: Arc<dyn Backend>, clock: &ManualClock) {
    let q = QueueName::new("work").unwrap();
    let config = QueueConfig::new(switchyard_core::Policy::Fcfs, Strategy::Pull)
        .with_events(EventLevel::All)
        .with_max_attempts(3)
        .with_backoff(Backoff {
            base_ms: 1_000,
            max_ms: 1_000,
            jitter_pct: 0,
        });
    b.declare_queue(&q, config).await.unwrap();
    b.register_worker(test_worker("w1", ["work"]).capacity(1))
        .await
        .unwrap();
    let id = b
        .submit(TaskSpec::builder("work", "resize").build().unwrap())
        .await
        .unwrap()
        .id;
    let first = receive_one(&*b).await;

    // The first report of the attempt: stored and announced.
    assert_eq!(
        report(&*b, &first, 100_000, "a").await,
        ProgressAck::Stored { announced: true }
    );
    let p = b.get_task(id).await.unwrap().unwrap().progress.unwrap();
    assert_eq!(
        (p.ppm(), p.message(), p.attempt(), p.at(), p.reports()),
        (100_000, "a", 1, START, 1)
    );

    // 1,000 reports over the next second: one more announcement, when the second is full.
    let mut announced = Vec::new();
    for i in 1..=1_000u32 {
        clock.set(START + Millis::from(i));
        if report(&*b, &first, i * 1_000, "step").await == (ProgressAck::Stored { announced: true })
        {
            announced.push(i);
        }
    }
    assert_eq!(announced, vec![1_000]);
    let p = b.get_task(id).await.unwrap().unwrap().progress.unwrap();
    assert_eq!(
        (p.ppm(), p.reports(), p.at()),
        (1_000_000, 1_001, START + 1_000)
    );
    assert_eq!(progress_events(&*b).await, ["10.0% a", "100.0% step"]);
    // Progress events are logged, not counted.
    let stats = b.stats().await.unwrap();
    assert_eq!(stats.queues[0].totals.submitted, 1);

    // A handle that has seen an old value returns at once; one that has seen the newest wakes
    // on the next announced report.
    let old = Progress::from_ppm(0, "").unwrap();
    let now = b
        .wait_progress(id, Some(&old), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(now.as_ref(), Some(&p));
    // Within the gap: stored, not announced.
    clock.set(START + 1_500);
    assert_eq!(
        report(&*b, &first, 900_000, "late").await,
        ProgressAck::Stored { announced: false }
    );
    let seen = b.get_task(id).await.unwrap().unwrap().progress.unwrap();
    assert_eq!(seen.message(), "late");
    let waiter = {
        let (b, seen) = (b.clone(), seen.clone());
        tokio::spawn(async move {
            b.wait_progress(id, Some(&seen), Duration::from_secs(20))
                .await
                .unwrap()
        })
    };
    clock.set(START + 2_000);
    assert_eq!(
        report(&*b, &first, 950_000, "wakes").await,
        ProgressAck::Stored { announced: true }
    );
    let woke = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter woke")
        .unwrap()
        .unwrap();
    assert_eq!((woke.ppm(), woke.message()), (950_000, "wakes"));

    // The attempt fails: its progress stays readable, a report under its lease is refused.
    let out = b.fail(&first, "boom", true).await.unwrap();
    assert!(matches!(out.ack, Ack::Retrying { .. }), "{out:?}");
    assert_eq!(
        report(&*b, &first, 1, "x").await,
        ProgressAck::Rejected(Rejection::NotRunning(TaskState::RetryScheduled))
    );
    let info = b.get_task(id).await.unwrap().unwrap();
    assert_eq!(info.progress.unwrap().message(), "wakes");

    // The second attempt starts without progress; the first one's lease is stale.
    clock.set(START + 4_000);
    b.maintain(100).await.unwrap();
    let second = receive_one(&*b).await;
    assert_ne!(second.token, first.token);
    assert_eq!(b.get_task(id).await.unwrap().unwrap().progress, None);
    assert_eq!(
        report(&*b, &first, 1, "stale").await,
        ProgressAck::Rejected(Rejection::StaleToken)
    );
    assert_eq!(b.get_task(id).await.unwrap().unwrap().progress, None);
    // Its first report is announced, however recent the last attempt's was.
    assert_eq!(
        report(&*b, &second, 500_000, "").await,
        ProgressAck::Stored { announced: true }
    );
    let p = b.get_task(id).await.unwrap().unwrap().progress.unwrap();
    assert_eq!(
        (p.attempt(), p.reports(), p.percent_text()),
        (2, 1, "50.0%".into())
    );

    // A throttled run does not count, nor does its progress.
    let out = b.throttle(&second, Duration::ZERO).await.unwrap();
    assert!(matches!(out.ack, Ack::Throttled { .. }), "{out:?}");
    assert_eq!(b.get_task(id).await.unwrap().unwrap().progress, None);
    let third = receive_one(&*b).await;
    assert_eq!(b.get_task(id).await.unwrap().unwrap().attempts, 2);
    assert_eq!(b.get_task(id).await.unwrap().unwrap().progress, None);
    report(&*b, &third, 250_000, "again").await;
    assert!(b.complete(&third, Vec::new()).await.unwrap().ack == Ack::Completed);
    let p = b.get_task(id).await.unwrap().unwrap().progress.unwrap();
    assert_eq!((p.message(), p.attempt()), ("again", 2));
    assert_eq!(
        progress_events(&*b).await,
        [
            "10.0% a",
            "100.0% step",
            "95.0% wakes",
            "50.0%",
            "25.0% again"
        ]
    );
}

fn memory() -> (Arc<MemoryBackend>, ManualClock) {
    let clock = ManualClock::new(START);
    (
        Arc::new(MemoryBackend::with_clock(Arc::new(clock.clone()))),
        clock,
    )
}

async fn redis(server: &RedisServer, ns: &str) -> (Arc<RedisBackend>, ManualClock) {
    let clock = ManualClock::new(START);
    let config =
        RedisConfig::new(server.url(), ns).with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    (
        Arc::new(RedisBackend::with_config(config).await.unwrap()),
        clock,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_progress_is_fenced_coalesced_and_awaited() {
    let (b, clock) = memory();
    reports(b.clone(), &clock).await;
    b.audit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_progress_is_fenced_coalesced_and_awaited() {
    let server = RedisServer::start().unwrap();
    let (b, clock) = redis(&server, "progress").await;
    reports(b.clone(), &clock).await;
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}
