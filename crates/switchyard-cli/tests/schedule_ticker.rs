//! Schedules under fire, with real processes: three worker processes and two `schedule run`
//! tickers all claim the ticks of one schedule (every second) for about 25 s; one worker is
//! SIGKILLed and started again; then Redis is killed and restarted from a snapshot taken a few
//! seconds earlier. Counted by tick (a tick's task has the tick's id):
//!
//! * before the snapshot, every tick has exactly one task, and it ran;
//! * what the restart lost is reported with a number: the tasks of the ticks after the
//!   snapshot went with it, and the schedule came back with the snapshot's next tick. The
//!   misfire policy (run once) then created one task for the latest missed tick (whose task
//!   made before the crash was lost too), and none for the others;
//! * from then on, every tick again has exactly one task, and it ran.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{WorkerProcess, ok, switchyard};
use switchyard::schedule::tick_task_id;
use switchyard::{Client, ScheduleName, TaskState};
use switchyard_testkit::redis_server::RedisServer;

const NS: &str = "beat";
const EVERY_MS: u64 = 1_000;

/// A `switchyard schedule run` process, SIGKILLed when dropped.
struct Ticker(Child);

impl Ticker {
    fn start(server: &RedisServer) -> Ticker {
        let child = switchyard()
            .args(["schedule", "run"])
            .env("SWITCHYARD_URL", server.url())
            .env("SWITCHYARD_NAMESPACE", NS)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Ticker(child)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(server: &RedisServer, id: &str) -> WorkerProcess {
    let flags = [
        "--queue",
        "ticks",
        "--heartbeat-ttl-ms",
        "2000",
        "--maintenance-ms",
        "500",
    ];
    WorkerProcess::start(server, NS, id, &flags)
}

/// The schedule's next tick, read through a fresh client (the server may have restarted).
async fn next_tick(server: &RedisServer) -> u64 {
    let client = Client::connect(&server.url(), NS).await.unwrap();
    let info = client
        .backend()
        .get_schedule(&ScheduleName::new("beat").unwrap())
        .await
        .unwrap()
        .unwrap();
    info.state.next.unwrap()
}

/// Waits (at most 20 s) until `tick`'s task has succeeded; its state if it never does.
async fn ran(client: &Client, tick: u64) -> Option<TaskState> {
    let started = Instant::now();
    loop {
        let state = client
            .backend()
            .get_task(tick_task_id("beat", tick))
            .await
            .unwrap()
            .map(|t| t.state);
        if state == Some(TaskState::Succeeded) || started.elapsed() > Duration::from_secs(20) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn exists(client: &Client, tick: u64) -> bool {
    client
        .backend()
        .get_task(tick_task_id("beat", tick))
        .await
        .unwrap()
        .is_some()
}

/// Sleeps until the schedule's next tick has moved past `tick` (the tickers claimed it).
async fn after_tick(server: &RedisServer, tick: u64) {
    let started = Instant::now();
    while next_tick(server).await <= tick {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "tick {tick} never claimed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tick_once_through_a_killed_worker_and_a_redis_restart_from_a_snapshot() {
    let mut server = RedisServer::start().unwrap();
    ok(&server, NS, &["declare", "ticks"]);
    let said = ok(
        &server,
        NS,
        &[
            "schedule",
            "add",
            "beat",
            "--queue",
            "ticks",
            "--kind",
            "echo",
            "--payload",
            "1",
            "--every-ms",
            "1000",
            "--misfire",
            "run-once",
        ],
    );
    assert!(said.contains("created"), "{said}");
    let first = next_tick(&server).await;
    let mut workers = vec![
        worker(&server, "w1"),
        worker(&server, "w2"),
        worker(&server, "w3"),
    ];
    let _tickers = [Ticker::start(&server), Ticker::start(&server)];
    // A worker SIGKILLed at the 5th tick and back at the 7th.
    after_tick(&server, first + 4 * EVERY_MS).await;
    workers[1].kill();
    after_tick(&server, first + 6 * EVERY_MS).await;
    workers[1] = worker(&server, "w2");
    // A snapshot after the 10th tick; Redis killed after the 13th, back from the snapshot.
    after_tick(&server, first + 9 * EVERY_MS).await;
    server.save_snapshot().unwrap();
    let saved_next = next_tick(&server).await;
    after_tick(&server, first + 12 * EVERY_MS).await;
    let lost_next = next_tick(&server).await;
    server.restart_from_snapshot().unwrap();
    assert_eq!(
        next_tick(&server).await,
        saved_next,
        "back to the snapshot's next tick"
    );
    // Then ten more ticks.
    after_tick(&server, lost_next + 10 * EVERY_MS).await;
    let client = Client::connect(&server.url(), NS).await.unwrap();
    let name = ScheduleName::new("beat").unwrap();
    let info = client.backend().get_schedule(&name).await.unwrap().unwrap();
    assert!(client.backend().remove_schedule(&name).await.unwrap());
    let last = info.state.last_tick.unwrap();

    // Before the snapshot: every tick, once (its id is the tick's), and it ran.
    for tick in (first..saved_next).step_by(EVERY_MS as usize) {
        assert_eq!(
            ran(&client, tick).await,
            Some(TaskState::Succeeded),
            "tick {tick}"
        );
    }
    // The restart: the ticks from the snapshot's next tick on lost their tasks with it; the
    // first claim after it ran the latest missed tick once (run once) and none of the others.
    let mut recovered = None;
    let mut lost = 0;
    for tick in (saved_next..=last).step_by(EVERY_MS as usize) {
        if exists(&client, tick).await {
            recovered = Some(tick);
            break;
        }
        lost += 1;
    }
    let recovered = recovered.expect("a tick ran after the restart");
    eprintln!(
        "snapshot restart: {lost} ticks lost (the snapshot's next tick {saved_next} to {}), \
         the latest missed one run once: {recovered}",
        recovered - EVERY_MS
    );
    // The restart came right after the tick before `lost_next` was claimed: that (or a later
    // one, if the restart took longer than a tick) is the latest missed tick the first claim
    // after it found, and ran once (its task made before the crash was lost).
    assert!(
        recovered >= lost_next - EVERY_MS,
        "run once runs the latest missed tick, not {recovered}"
    );
    assert!(lost >= 1, "the restart lost the ticks after the snapshot");
    // After it: every tick, once, and it ran.
    for tick in (recovered..=last).step_by(EVERY_MS as usize) {
        assert_eq!(
            ran(&client, tick).await,
            Some(TaskState::Succeeded),
            "tick {tick}"
        );
    }
    let after = (last - recovered) / EVERY_MS + 1;
    eprintln!(
        "{} ticks before the snapshot and {after} after the restart each ran exactly once",
        (saved_next - first) / EVERY_MS
    );
    drop(workers);
}
