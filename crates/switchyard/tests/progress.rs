//! Progress through the worker runtime, in real time, on a real Redis and on the memory
//! backend: a handler reports as fast as it can for three seconds (thousands of reports); the
//! event log gains about one `progress` event a second, the stored value is the newest report,
//! and a handle waiting on the task's progress sees it move once per announcement, not once
//! per report.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchyard::{Client, EventKind, EventLevel, QueueConfig, TaskSpec, Worker};
use switchyard_testkit::redis_server::RedisServer;

const RUN: Duration = Duration::from_secs(3);

async fn flood(client: Client) {
    client
        .declare("q", QueueConfig::default().with_events(EventLevel::All))
        .await
        .unwrap();
    let reports = Arc::new(AtomicU64::new(0));
    let counted = reports.clone();
    let worker = Worker::builder(&client, "w", ["q"])
        .unwrap()
        .handle("long", move |ctx, _payload| {
            let counted = counted.clone();
            async move {
                let started = Instant::now();
                while started.elapsed() < RUN {
                    let done = started.elapsed().as_secs_f64() / RUN.as_secs_f64();
                    let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(ctx.progress(done.min(1.0), format!("report {n}")).await?);
                }
                Ok(Vec::new())
            }
        })
        .build()
        .unwrap();
    let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    let task = client
        .submit(TaskSpec::builder("q", "long").build().unwrap())
        .await
        .unwrap();

    // A caller awaiting the outcome meanwhile is not fooled by the announcements (on Redis
    // they wake it through the same channel).
    let outcome = {
        let task = client.task_handle(task.id());
        tokio::spawn(async move { task.wait(Duration::from_secs(20)).await })
    };
    // A handle following the progress sees it move, each change at least ~a second apart.
    let mut seen = None;
    let mut changes = Vec::new();
    loop {
        let now = task
            .wait_progress(seen.as_ref(), Duration::from_secs(10))
            .await
            .unwrap();
        if now != seen
            && let Some(p) = &now
        {
            changes.push(p.ppm());
        }
        seen = now;
        if task.state().await.unwrap().is_some_and(|s| s.is_terminal()) {
            break;
        }
    }
    task.wait(Duration::from_secs(10)).await.unwrap();
    let awaited = outcome.await.unwrap().unwrap();
    assert!(
        matches!(awaited, switchyard::TaskOutcome::Succeeded(_)),
        "{awaited:?}"
    );
    stop.shutdown();
    running.await.unwrap().unwrap();

    let reports = reports.load(Ordering::SeqCst);
    let events = client
        .events(None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::Progress)
        .count() as u64;
    let last = task.progress().await.unwrap().unwrap();
    eprintln!(
        "{reports} reports in {RUN:?}: {events} progress events, {} changes seen by a waiting handle",
        changes.len()
    );
    assert!(reports > 300, "only {reports} reports");
    // The first report, then one a second at most: 4 in 3 s (a little slack for the edges).
    assert!((2..=5).contains(&events), "{events} events");
    assert_eq!(last.reports(), reports, "the stored report is the newest");
    assert_eq!(last.message(), format!("report {reports}"));
    assert!(changes.len() >= 2, "{changes:?}");
    // It woke per announcement, not per report.
    assert!(changes.len() as u64 <= events + 1, "{changes:?}");
    assert!(changes.windows(2).all(|w| w[0] < w[1]), "{changes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_reports_on_redis_makes_an_event_a_second() {
    let server = RedisServer::start().unwrap();
    flood(Client::connect(&server.url(), "flood").await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_reports_in_memory_makes_an_event_a_second() {
    flood(Client::memory()).await;
}
