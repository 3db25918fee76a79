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

    // A schedule ticking every 200 ms, paused after some ticks; and one that never ran.
    ok(
        &server,
        NS,
        &[
            "schedule",
            "add",
            "often",
            "--queue",
            "jobs",
            "--kind",
            "echo",
            "--every-ms",
            "200",
        ],
    );
    ok(
        &server,
        NS,
        &[
            "schedule",
            "add",
            "nightly",
            "--queue",
            "jobs",
            "--kind",
            "echo",
            "--cron",
            "0 30 2 * * *",
            "--tz",
            "Europe/Berlin",
        ],
    );
    let often = switchyard::ScheduleName::new("often").unwrap();
    eventually(WAIT, "the schedule to tick", || async {
        let s = client.backend().get_schedule(&often).await.ok()??;
        (s.state.runs >= 3).then_some(())
    })
    .await;
    ok(&server, NS, &["schedule", "pause", "often"]);
    let often_runs = client
        .backend()
        .get_schedule(&often)
        .await
        .unwrap()
        .unwrap()
        .state
        .runs;

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
    for (event, want) in [
        ("submitted", jobs.totals.submitted),
        ("dispatched", jobs.totals.dispatched),
        ("failed", jobs.totals.failed),
        ("dead", jobs.totals.dead),
    ] {
        assert_eq!(
            sum(
                &samples,
                "switchyard_queue_events_total",
                &[("queue", "jobs"), ("event", event)]
            ),
            want as f64,
            "events {event}"
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
    // Schedules: runs, paused, and the time to the next tick (a nightly one: within a day).
    let one = |name: &str, schedule: &str| sum(&samples, name, &[("schedule", schedule)]);
    assert_eq!(
        one("switchyard_schedule_runs_total", "often"),
        often_runs as f64
    );
    assert_eq!(one("switchyard_schedule_paused", "often"), 1.0);
    assert_eq!(one("switchyard_schedule_paused", "nightly"), 0.0);
    let next = one("switchyard_schedule_next_tick_seconds", "nightly");
    assert!(next > 0.0 && next <= 86_400.0, "{next}");
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

/// Every family a scrape shows has a `# HELP` line (and a `# TYPE` one).
fn every_family_helped(body: &str) {
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap();
            assert!(
                body.contains(&format!("# HELP {name} ")),
                "no HELP for {name}:\n{body}"
            );
        }
    }
}

/// A scrape right after start: every family with its HELP line, and the counters an alert
/// would watch already there at 0 (a worker's for each queue and kind it serves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_right_after_start_has_help_and_counters_at_zero() {
    let server = RedisServer::start().unwrap();
    let ns = "fresh";
    ok(&server, ns, &["declare", "jobs"]);
    let client = Client::connect(&server.url(), ns).await.unwrap();
    let port = free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let _worker = WorkerProcess::start(&server, ns, "w-fresh", &["-q", "jobs", "--metrics", &addr]);
    registered(&client, "w-fresh").await;
    let (status, body) = browser::http(port, "GET", "/metrics", None, &[]);
    assert_eq!(status, 200, "{body}");
    every_family_helped(&body);
    for family in switchyard::metrics::FAMILIES
        .iter()
        .filter(|f| f.kind == switchyard::metrics::Kind::Counter)
    {
        assert!(
            body.contains(&format!("# HELP {} ", family.name)),
            "counter {} is missing:\n{body}",
            family.name
        );
    }
    let samples = parse(&body);
    let zero = |name: &str, labels: &[(&str, &str)]| {
        let found = samples.iter().any(|s| {
            s.name == name
                && s.value == 0.0
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        });
        assert!(found, "{name} {labels:?} at 0 is missing:\n{body}");
    };
    for outcome in ["succeeded", "failed", "stopped"] {
        zero(
            "switchyard_attempts_total",
            &[("queue", "jobs"), ("kind", "echo"), ("outcome", outcome)],
        );
    }
    zero(
        "switchyard_attempts_started_total",
        &[("queue", "jobs"), ("kind", "fail")],
    );
    for name in [
        "switchyard_retries_total",
        "switchyard_dead_letters_total",
        "switchyard_reports_refused_total",
        "switchyard_throttled_total",
    ] {
        zero(name, &[("queue", "jobs")]);
    }
    for operation in ["receive", "heartbeat", "report", "maintenance"] {
        zero(
            "switchyard_backend_errors_total",
            &[("operation", operation)],
        );
    }
    zero("switchyard_redis_reconnects_total", &[]);
    zero("switchyard_redis_failovers_followed_total", &[]);

    // The dashboard: its own families described too, its error counter at 0.
    let dashboard = DashboardProcess::start(&server, ns, &[]);
    let (status, body) = browser::http(dashboard.port, "GET", "/metrics", None, &[]);
    drop(dashboard);
    assert_eq!(status, 200, "{body}");
    every_family_helped(&body);
    assert!(
        body.contains("# HELP switchyard_queue_events_total "),
        "{body}"
    );
    assert!(
        parse(&body)
            .iter()
            .any(|s| s.name == "switchyard_dashboard_read_errors_total" && s.value == 0.0),
        "{body}"
    );
}
