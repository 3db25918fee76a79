//! Prometheus metrics, scraped from a running `switchyard worker --metrics` and from
//! `switchyard dashboard`'s `/metrics`, parsed, and compared with what `stats` says.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "support/browser.rs"]
mod browser;
#[path = "support/prometheus.rs"]
mod prometheus;
mod support;

use std::time::Duration;

use prometheus::{Sample, parse, sum};
use support::{DashboardProcess, WorkerProcess, eventually, ok, registered};
use switchyard::{Client, QueueStats, Stats};
use switchyard_testkit::redis_server::{RedisServer, free_port};

const NS: &str = "metrics";
const WAIT: Duration = Duration::from_secs(30);

fn scrape(port: u16) -> Vec<Sample> {
    let (status, body) = browser::http(port, "GET", "/metrics", None, &[]);
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

fn queue<'a>(stats: &'a Stats, name: &str) -> &'a QueueStats {
    stats
        .queues
        .iter()
        .find(|q| q.queue.as_ref().is_some_and(|n| n.as_str() == name))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_dashboard_metrics_agree_with_stats() {
    let server = RedisServer::start().unwrap();
    ok(
        &server,
        NS,
        &[
            "declare",
            "jobs",
            "--max-attempts",
            "2",
            "--backoff-ms",
            "10",
        ],
    );
    let client = Client::connect(&server.url(), NS).await.unwrap();
    let port = free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let _worker = WorkerProcess::start(
        &server,
        NS,
        "w-metrics",
        &["-q", "jobs", "-c", "3", "--metrics", &addr],
    );
    registered(&client, "w-metrics").await;

    ok(
        &server,
        NS,
        &[
            "submit",
            "jobs",
            "echo",
            "1",
            "-n",
            "20",
            "--wait-ms",
            "20000",
            "--quiet",
        ],
    );
    ok(
        &server,
        NS,
        &["submit", "jobs", "fail", "\"no\"", "-n", "3", "--quiet"],
    );
    let stats = eventually(WAIT, "the failing tasks to be dead", || async {
        let stats = client.stats().await.ok()?;
        (queue(&stats, "jobs").dead == 3).then_some(stats)
    })
    .await;
    let jobs = queue(&stats, "jobs");
    let me = stats
        .workers
        .iter()
        .find(|w| w.id.as_str() == "w-metrics")
        .unwrap();

    // The worker's own view, once its last reports are in (they precede the dead count).
    let samples = eventually(WAIT, "the worker's counts to settle", || async {
        let samples = scrape(port);
        (sum(
            &samples,
            "switchyard_attempts_total",
            &[("outcome", "failed")],
        ) == 6.0)
            .then_some(samples)
    })
    .await;
    let succeeded = sum(
        &samples,
        "switchyard_attempts_total",
        &[
            ("queue", "jobs"),
            ("kind", "echo"),
            ("outcome", "succeeded"),
        ],
    );
    assert_eq!(succeeded, me.completed as f64);
    assert_eq!(succeeded, jobs.totals.succeeded as f64);
    // 3 tasks, 2 attempts each: 6 failed attempts, 3 retries, 3 dead letters.
    assert_eq!(
        sum(&samples, "switchyard_attempts_total", &[]),
        jobs.totals.dispatched as f64
    );
    assert_eq!(
        sum(&samples, "switchyard_retries_total", &[("queue", "jobs")]),
        jobs.totals.retried as f64
    );
    assert_eq!(
        sum(
            &samples,
            "switchyard_dead_letters_total",
            &[("queue", "jobs")]
        ),
        jobs.dead as f64
    );
    assert_eq!(
        sum(&samples, "switchyard_attempts_started_total", &[]),
        me.dispatched as f64
    );
    assert_eq!(
        sum(
            &samples,
            "switchyard_worker_in_flight",
            &[("worker", "w-metrics")]
        ),
        f64::from(me.inflight)
    );
    assert_eq!(
        sum(
            &samples,
            "switchyard_worker_capacity",
            &[("worker", "w-metrics")]
        ),
        f64::from(me.capacity)
    );
    // The run-time histogram counted every attempt, in buckets up to +Inf.
    assert_eq!(
        sum(
            &samples,
            "switchyard_attempt_duration_seconds_count",
            &[("outcome", "succeeded")]
        ),
        succeeded
    );
    assert_eq!(
        sum(
            &samples,
            "switchyard_attempt_duration_seconds_bucket",
            &[("outcome", "succeeded"), ("le", "+Inf")]
        ),
        succeeded
    );
    // The wait-time histogram: one sample per attempt started (tests/wait_time.rs checks the
    // values on a manual clock).
    assert_eq!(
        sum(
            &samples,
            "switchyard_wait_duration_seconds_count",
            &[("queue", "jobs")]
        ),
        me.dispatched as f64
    );
    assert!(
        sum(
            &samples,
            "switchyard_wait_duration_seconds_bucket",
            &[("le", "+Inf")]
        ) == me.dispatched as f64
    );

    // The dashboard's view of the whole namespace.
    let dashboard = DashboardProcess::start(&server, NS, &[]);
    let samples = scrape(dashboard.port);
    drop(dashboard);
    let stats = client.stats().await.unwrap();
    let jobs = queue(&stats, "jobs");
    for (state, want) in [
        ("ready", jobs.ready),
        ("inbox", jobs.dispatched),
        ("running", jobs.running),
        ("retrying", jobs.retry_scheduled),
        ("succeeded", jobs.succeeded),
        ("dead", jobs.dead),
    ] {
        assert_eq!(
            sum(
                &samples,
                "switchyard_queue_tasks",
                &[("queue", "jobs"), ("state", state)]
            ),
            want as f64,
            "state {state}"
        );
    }
    for (kind, want) in [
        ("submitted", jobs.totals.submitted),
        ("dispatched", jobs.totals.dispatched),
        ("failed", jobs.totals.failed),
        ("dead", jobs.totals.dead),
    ] {
        assert_eq!(
            sum(
                &samples,
                "switchyard_queue_events_total",
                &[("queue", "jobs"), ("kind", kind)]
            ),
            want as f64,
            "events {kind}"
        );
    }
    assert_eq!(
        sum(
            &samples,
            "switchyard_queue_info",
            &[
                ("queue", "jobs"),
                ("policy", "fcfs"),
                ("strategy", "round-robin")
            ]
        ),
        1.0
    );
    let me = stats
        .workers
        .iter()
        .find(|w| w.id.as_str() == "w-metrics")
        .unwrap();
    assert_eq!(
        sum(
            &samples,
            "switchyard_registered_worker_completed_total",
            &[("worker", "w-metrics")]
        ),
        me.completed as f64
    );
}
