//! `Worker::run_until_signal` stops gracefully on SIGTERM (unix). A test binary of its own: the
//! signal goes to the whole process.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::{Duration, Instant};

use switchyard::{Client, QueueConfig, TaskOutcome, TaskSpec, TaskState, Worker};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_a_worker_down_gracefully() {
    // Keep a listener of our own for the whole test, so that a SIGTERM that arrives before the
    // worker's listener exists cannot kill the test process.
    let _ours = signal(SignalKind::terminate()).unwrap();
    let c = Client::memory();
    c.declare("q", QueueConfig::default()).await.unwrap();
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .handle("work", |_ctx, _p| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(b"finished during the grace period".to_vec())
        })
        .build()
        .unwrap();
    let mut run = tokio::spawn(worker.run_until_signal());
    let task = c
        .submit(TaskSpec::builder("q", "work").build().unwrap())
        .await
        .unwrap();
    let start = Instant::now();
    while task.state().await.unwrap() != Some(TaskState::Running) {
        assert!(start.elapsed() < Duration::from_secs(10), "never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The worker's listener is in place before it registers, so before the task could run;
    // still, signal again until the worker stops, in case the first one was early.
    let pid = std::process::id().to_string();
    let report = loop {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        match tokio::time::timeout(Duration::from_secs(2), &mut run).await {
            Ok(joined) => break joined.unwrap().unwrap(),
            Err(_) => assert!(start.elapsed() < Duration::from_secs(30), "SIGTERM ignored"),
        }
    };
    assert_eq!(
        report.completed, 1,
        "the running task finished first: {report:?}"
    );
    assert_eq!(
        task.wait(Duration::from_secs(1)).await.unwrap(),
        TaskOutcome::Succeeded(b"finished during the grace period".to_vec())
    );
    assert!(c.stats().await.unwrap().workers.is_empty(), "deregistered");
}
