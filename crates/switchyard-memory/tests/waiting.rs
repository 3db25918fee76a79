//! Blocking waits: an idle worker sleeps until work arrives (push and pull), and a caller
//! awaiting an outcome wakes when the task ends — no polling.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::prelude::*;
use switchyard_core::{
    Error, InstanceToken, ManualClock, Policy, QueueConfig, QueueName, Strategy, TaskOutcome,
    TaskSpec, WorkerRef, WorkerSpec,
};
use switchyard_memory::MemoryBackend;

/// Worker `w` on queue `q`, registered as instance 1.
fn spec() -> WorkerSpec {
    WorkerSpec::new("w", ["q"])
        .unwrap()
        .instance(InstanceToken::new(1).unwrap())
}

/// Worker `w` as it names itself.
fn me() -> WorkerRef {
    spec().worker_ref()
}

async fn setup(strategy: Strategy) -> MemoryBackend {
    let b = MemoryBackend::new();
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, strategy))
        .await
        .unwrap();
    b.register_worker(spec().capacity(2)).await.unwrap();
    b
}

/// Worker `w` waiting up to 10 s for one task, in its own tokio task: what it got, and after
/// how long. Started 50 ms before returning, so that it is asleep when the caller acts.
async fn waiting_worker(
    b: &MemoryBackend,
) -> tokio::task::JoinHandle<(
    switchyard_core::Result<Vec<switchyard_core::Delivery>>,
    Duration,
)> {
    let b = b.clone();
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let got = b.receive_wait(&me(), 1, Duration::from_secs(10)).await;
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    waiter
}

async fn wakes_on_submit(strategy: Strategy) {
    let b = setup(strategy).await;
    let waiter = waiting_worker(&b).await;
    let id = b
        .submit(TaskSpec::builder("q", "job").build().unwrap())
        .await
        .unwrap()
        .id;
    let (got, waited) = waiter.await.unwrap();
    let got = got.unwrap();
    assert_eq!(got.len(), 1, "{strategy:?}");
    assert_eq!(got[0].lease.task, id);
    assert!(
        waited < Duration::from_secs(5),
        "woken by the submit, not the timeout: {waited:?}"
    );
}

#[tokio::test]
async fn idle_push_worker_wakes_on_dispatch() {
    wakes_on_submit(Strategy::RoundRobin).await;
}

#[tokio::test]
async fn idle_pull_worker_wakes_on_submit() {
    wakes_on_submit(Strategy::Pull).await;
}

#[tokio::test]
async fn receive_wait_times_out_empty() {
    let b = setup(Strategy::LeastLoaded).await;
    let got = b
        .receive_wait(&me(), 1, Duration::from_millis(30))
        .await
        .unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn awaiting_an_outcome_wakes_on_completion_and_on_death() {
    let b = setup(Strategy::RoundRobin).await;
    let ok = b
        .submit(TaskSpec::builder("q", "job").build().unwrap())
        .await
        .unwrap()
        .id;
    let bad = b
        .submit(
            TaskSpec::builder("q", "job")
                .max_attempts(1)
                .build()
                .unwrap(),
        )
        .await
        .unwrap()
        .id;
    let waits = {
        let b = b.clone();
        tokio::spawn(async move {
            let a = b.wait_outcome(ok, Duration::from_secs(10)).await.unwrap();
            let c = b.wait_outcome(bad, Duration::from_secs(10)).await.unwrap();
            (a, c)
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let ds = b.receive(&me(), 2).await.unwrap();
    for d in ds {
        if d.lease.task == ok {
            b.complete(&d.lease, b"fine".to_vec()).await.unwrap();
        } else {
            b.fail(&d.lease, "broken", true).await.unwrap();
        }
    }
    let (a, c) = waits.await.unwrap();
    assert_eq!(a, Some(TaskOutcome::Succeeded(b"fine".to_vec())));
    assert_eq!(c, Some(TaskOutcome::Dead("broken".into())));
}

/// A worker that leaves while it waits in `receive_wait` is woken at once — it gets
/// `UnknownWorker` instead of sleeping out its timeout — and its notifier is forgotten (the
/// audit checks that only registered workers keep one).
async fn leaving_wakes_the_waiter(strategy: Strategy, reap: bool) {
    let clock = ManualClock::new(1_700_000_000_000);
    let b = MemoryBackend::with_clock(Arc::new(clock.clone()));
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, strategy))
        .await
        .unwrap();
    b.register_worker(spec().heartbeat_ttl(Duration::from_secs(5)))
        .await
        .unwrap();
    let waiter = waiting_worker(&b).await;
    if reap {
        clock.advance(Duration::from_secs(6));
        let report = b.maintain(16).await.unwrap();
        assert_eq!(report.workers_reaped.len(), 1);
    } else {
        b.deregister_worker(&me()).await.unwrap();
    }
    let (got, waited) = waiter.await.unwrap();
    assert!(
        matches!(got, Err(Error::UnknownWorker(_))),
        "{strategy:?}: {got:?}"
    );
    assert!(waited < Duration::from_secs(5), "woken, not timed out");
    b.audit().unwrap();
}

#[tokio::test]
async fn a_deregistered_push_worker_stops_waiting() {
    leaving_wakes_the_waiter(Strategy::RoundRobin, false).await;
}

#[tokio::test]
async fn a_deregistered_pull_worker_stops_waiting() {
    leaving_wakes_the_waiter(Strategy::Pull, false).await;
}

#[tokio::test]
async fn a_reaped_worker_stops_waiting() {
    leaving_wakes_the_waiter(Strategy::LeastLoaded, true).await;
    leaving_wakes_the_waiter(Strategy::Pull, true).await;
}

/// Re-registering under the same id wakes the waiter, which keeps waiting on a fresh notifier
/// and is woken by the next task.
#[tokio::test]
async fn a_reregistered_worker_keeps_waiting_and_gets_the_next_task() {
    for strategy in [Strategy::RoundRobin, Strategy::Pull] {
        let b = setup(strategy).await;
        let waiter = waiting_worker(&b).await;
        let again = b.register_worker(spec().capacity(2)).await.unwrap();
        assert!(again.replaced);
        b.audit().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "{strategy:?}: still waiting for work"
        );
        let id = b
            .submit(TaskSpec::builder("q", "job").build().unwrap())
            .await
            .unwrap()
            .id;
        let (got, waited) = waiter.await.unwrap();
        let got = got.unwrap();
        assert_eq!(got.len(), 1, "{strategy:?}");
        assert_eq!(got[0].lease.task, id);
        assert!(waited < Duration::from_secs(5), "woken by the submit");
        b.audit().unwrap();
    }
}

/// Another instance that takes the id over (once the first one's registration expired) wakes
/// the first one's waiter, which learns that it was replaced instead of taking the new
/// instance's tasks.
#[tokio::test]
async fn a_waiter_replaced_by_another_instance_learns_it() {
    let clock = ManualClock::new(1_700_000_000_000);
    let b = MemoryBackend::with_clock(Arc::new(clock.clone()));
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin))
        .await
        .unwrap();
    b.register_worker(spec().heartbeat_ttl(Duration::from_secs(5)))
        .await
        .unwrap();
    let waiter = waiting_worker(&b).await;
    let newcomer = spec().instance(InstanceToken::new(2).unwrap());
    let refused = b.register_worker(newcomer.clone()).await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::WorkerIdInUse {
                expires_in_ms: 5_000,
                ..
            }
        ),
        "{refused}"
    );
    clock.advance(Duration::from_secs(6));
    assert!(b.register_worker(newcomer).await.unwrap().replaced);
    let (got, waited) = waiter.await.unwrap();
    assert!(matches!(got, Err(Error::WorkerReplaced(_))), "{got:?}");
    assert!(waited < Duration::from_secs(5), "woken, not timed out");
    b.audit().unwrap();
}
