//! Blocking waits: an idle worker sleeps until work arrives (push and pull), and a caller
//! awaiting an outcome wakes when the task ends — no polling.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::{Duration, Instant};

use switchyard_core::{
    Backend, Policy, QueueConfig, QueueName, Strategy, TaskOutcome, TaskSpec, WorkerSpec,
};
use switchyard_memory::MemoryBackend;

async fn setup(strategy: Strategy) -> MemoryBackend {
    let b = MemoryBackend::new();
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, strategy))
        .await
        .unwrap();
    b.register_worker(WorkerSpec::new("w", ["q"]).unwrap().capacity(2))
        .await
        .unwrap();
    b
}

async fn wakes_on_submit(strategy: Strategy) {
    let b = setup(strategy).await;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = b
                .receive_wait(&"w".parse().unwrap(), 1, Duration::from_secs(10))
                .await
                .unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = b
        .submit(TaskSpec::builder("q", "job").build().unwrap())
        .await
        .unwrap()
        .id;
    let (got, waited) = waiter.await.unwrap();
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
        .receive_wait(&"w".parse().unwrap(), 1, Duration::from_millis(30))
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
    let ds = b.receive(&"w".parse().unwrap(), 2).await.unwrap();
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
