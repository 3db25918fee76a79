//! A worker process whose Redis restarts empty (no persistence) or goes down: it backs off
//! instead of spinning, says once what happened, and with `--declare` recovers by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::{Duration, Instant};

use support::{WorkerProcess, command_calls, eventually, ok, registered};
use switchyard::{Client, QueueName};
use switchyard_testkit::redis_server::RedisServer;

/// Lines in `log` after the first `skip` bytes.
fn lines_after(log: &str, skip: usize) -> Vec<String> {
    log.get(skip..)
        .unwrap_or("")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Submits an `echo` task and waits for its result.
async fn echo_round_trip(client: &Client, within: Duration) {
    let task = eventually(within, "a submit to be accepted", || async {
        client.submit_json("q", "echo", "ping").await.ok()
    })
    .await;
    let got: String = task.result(within).await.unwrap();
    assert_eq!(got, "ping");
}

/// The five seconds after Redis came back empty, with the worker's queue gone: the worker
/// re-registers with a growing pause, not in a loop. Before the fix it made ~3,500 failed
/// register calls per second (15-19k Redis commands/s) and ~4,400 log lines per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_backs_off_while_redis_is_down_or_empty_and_recovers() {
    let mut server = RedisServer::start().unwrap();
    let ns = "lost";
    ok(&server, ns, &["declare", "q"]);
    let flags = [
        "--queue",
        "q",
        "--heartbeat-ttl-ms",
        "3000",
        "--maintenance-ms",
        "200",
    ];
    let worker = WorkerProcess::start(&server, ns, "w", &flags);
    let client = Client::connect(&server.url(), ns).await.unwrap();
    registered(&client, "w").await;
    echo_round_trip(&client, Duration::from_secs(10)).await;

    // Down for three seconds.
    server.kill();
    let before_down = worker.log().len();
    std::thread::sleep(Duration::from_secs(3));
    let down_lines = lines_after(&worker.log(), before_down);

    // Back, empty, for five seconds: nobody declares `q` again.
    server.restart_empty().unwrap();
    let before_empty = worker.log().len();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = command_calls(&server).await;
    let window = started.elapsed();
    let empty_lines = lines_after(&worker.log(), before_empty);
    let total: u64 = calls.values().sum();
    let scripts =
        calls.get("fcall").copied().unwrap_or(0) + calls.get("function|load").copied().unwrap_or(0);
    eprintln!(
        "down 3 s: {} log lines; empty {window:?}: {total} commands ({scripts} script calls, \
         {calls:?}), {} log lines",
        down_lines.len(),
        empty_lines.len()
    );
    assert!(
        down_lines.len() <= 6,
        "while Redis was down: {down_lines:#?}"
    );
    // Each cycle is one receive and one register (plus loading the function library after the restart),
    // at least 50 ms apart and soon 2.5-5 s apart; heartbeats every second.
    assert!(
        scripts <= 60,
        "{scripts} script calls in {window:?}: {calls:?}"
    );
    // Besides, each maintenance pass and the sleep before it read the queue names, the server's
    // time, the expired heartbeats and the due schedules (this one since schedules: about 25
    // more commands in the window, so 250 where it was 200), the due flow settle entries (since
    // flows: one more read a pass, ~25 more, so 300), and the first due times (one pipeline).
    assert!(total <= 300, "{total} commands in {window:?}: {calls:?}");
    assert!(
        empty_lines.len() <= 6,
        "while Redis was empty: {empty_lines:#?}"
    );
    let said = empty_lines.join("\n");
    assert!(
        said.contains("lost its data"),
        "the log says what happened: {said}"
    );
    assert!(
        !said.contains("reaped"),
        "nothing reaped it, Redis lost everything: {said}"
    );

    // Someone declares the queue again: the worker is back by itself.
    ok(&server, ns, &["declare", "q"]);
    let client = Client::connect(&server.url(), ns).await.unwrap();
    registered(&client, "w").await;
    echo_round_trip(&client, Duration::from_secs(20)).await;
    drop(worker);
}

/// With `--declare`, a worker re-declares its queues after Redis lost them and completes new
/// tasks without anyone else declaring anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_declare_recovers_from_an_empty_restart_by_itself() {
    let mut server = RedisServer::start().unwrap();
    let ns = "redeclare";
    let flags = [
        "--queue",
        "q",
        "--declare",
        "--policy",
        "priority",
        "--strategy",
        "least-loaded",
        "--heartbeat-ttl-ms",
        "3000",
    ];
    let worker = WorkerProcess::start(&server, ns, "w", &flags);
    let client = Client::connect(&server.url(), ns).await.unwrap();
    registered(&client, "w").await;
    echo_round_trip(&client, Duration::from_secs(10)).await;

    server.restart_empty().unwrap();
    let before = worker.log().len();
    let client = Client::connect(&server.url(), ns).await.unwrap();
    let q = QueueName::new("q").unwrap();
    let config = eventually(
        Duration::from_secs(20),
        "the worker to declare q again",
        || async { client.backend().queue_config(&q).await.ok().flatten() },
    )
    .await;
    assert_eq!(config.policy.name(), "priority");
    assert_eq!(config.strategy.name(), "least-loaded");
    registered(&client, "w").await;
    echo_round_trip(&client, Duration::from_secs(20)).await;
    let said = lines_after(&worker.log(), before).join("\n");
    assert!(said.contains("lost its data"), "{said}");
    assert!(said.contains("declaring the 1 queue"), "{said}");
    drop(worker);
}
