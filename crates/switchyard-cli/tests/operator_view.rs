//! What an operator reads, end to end against a real redis-server: the warnings `status` puts
//! first (a queue nobody serves, a worker late with its heartbeat), and one vocabulary across
//! the read commands' tables, their JSON and the operations guide.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::{Duration, Instant};

use support::{WORKER, WorkerProcess, ok};
use switchyard_testkit::redis_server::RedisServer;

/// A queue with ready tasks and no live worker serving it is flagged by `status` (table and
/// JSON); a paused one is not (nothing is meant to run), and the flag goes once a worker serves
/// the queue.
#[test]
fn a_queue_nobody_serves_is_flagged() {
    let server = RedisServer::start().unwrap();
    let ns = "unserved";
    ok(&server, ns, &["declare", "jobs"]);
    ok(&server, ns, &["declare", "held"]);
    ok(&server, ns, &["pause", "held"]);
    ok(
        &server,
        ns,
        &["submit", "jobs", "echo", "1", "-n", "2", "--quiet"],
    );
    ok(&server, ns, &["submit", "held", "echo", "1", "--quiet"]);
    let flag = "queue `jobs` has 2 ready tasks and no live worker serves it";
    let status = ok(&server, ns, &["status"]);
    assert!(status.contains(flag), "{status}");
    assert!(!status.contains("queue `held` has"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server, ns, &["status", "--json"])).unwrap();
    let warnings: Vec<&str> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(warnings.iter().any(|w| w.contains(flag)), "{json}");

    let _worker = WorkerProcess::start(&server, ns, "w1", &WORKER);
    let started = Instant::now();
    loop {
        let status = ok(&server, ns, &["status"]);
        if !status.contains("no live worker serves it") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still flagged with a worker serving the queue: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `status` every 50 ms until `wanted` says yes, for at most 20 s.
fn status_until(server: &RedisServer, ns: &str, what: &str, wanted: impl Fn(&str) -> bool) {
    let started = Instant::now();
    loop {
        let status = ok(server, ns, &["status"]);
        if wanted(&status) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gave up waiting for {what}: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_worker_late_with_its_heartbeat_is_flagged_until_it_is_back() {
    let server = RedisServer::start().unwrap();
    let ns = "late";
    ok(&server, ns, &["declare", "jobs"]);
    let worker = WorkerProcess::start(
        &server,
        ns,
        "w1",
        &["--queue", "jobs", "--heartbeat-ttl-ms", "6000"],
    );
    let late = "worker `w1` is late with its heartbeat";
    status_until(&server, ns, "the worker", |s| {
        s.contains("w1") && !s.contains(late)
    });
    // Frozen (SIGSTOP), it sends nothing: after two missed heartbeats (every 2 s) it is late,
    // before its TTL runs out and it is reaped.
    worker.signal("-STOP");
    status_until(&server, ns, "the late flag", |s| s.contains(late));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server, ns, &["status", "--json"])).unwrap();
    assert_eq!(json["workers"][0]["heartbeat_ttl_ms"], 6000, "{json}");
    worker.signal("-CONT");
    status_until(&server, ns, "the flag gone", |s| !s.contains(late));
}

/// Every field name in `v`, nested ones included.
fn field_names(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.insert(k.clone());
                field_names(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| field_names(x, out)),
        _ => {}
    }
}

/// One vocabulary: every JSON field of each read command is a word of its table or listed in
/// the operations guide's JSON section; and the tables use the JSON names.
#[test]
fn every_json_field_is_in_its_table_or_the_guide() {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/operations.md"
    ))
    .unwrap();
    let section = guide
        .split("<!-- json-fields -->")
        .nth(1)
        .and_then(|s| s.split("<!-- /json-fields -->").next())
        .expect("the JSON section of docs/operations.md");
    let server = RedisServer::start().unwrap();
    let ns = "vocabulary";
    ok(
        &server,
        ns,
        &[
            "declare",
            "jobs",
            "--max-waiting",
            "100",
            "--concurrency",
            "2",
            "--max-attempts",
            "1",
            "--events",
            "all",
        ],
    );
    let id = ok(&server, ns, &["submit", "jobs", "fail", "\"boom\""])
        .lines()
        .next()
        .unwrap()
        .to_owned();
    ok(
        &server,
        ns,
        &["submit", "jobs", "echo", "\"hi\"", "-n", "2"],
    );
    let _worker = WorkerProcess::start(&server, ns, "w1", &WORKER);
    status_until(&server, ns, "the tasks done", |s| s.contains("2 succeeded"));

    let mut missing = Vec::new();
    for (command, json_args, table_args) in [
        ("status", vec!["status", "--json"], vec!["status"]),
        (
            "task",
            vec!["task", &id, "--json"],
            vec!["task", id.as_str()],
        ),
        ("dead", vec!["dead", "jobs", "--json"], vec!["dead", "jobs"]),
        (
            "tasks",
            vec!["tasks", "jobs", "--state", "succeeded", "--json"],
            vec!["tasks", "jobs", "--state", "succeeded"],
        ),
        ("events", vec!["events", "--json"], vec!["events"]),
    ] {
        let text = ok(&server, ns, &json_args);
        let mut names = std::collections::BTreeSet::new();
        if command == "events" {
            for line in text.lines() {
                field_names(&serde_json::from_str(line).unwrap(), &mut names);
            }
        } else {
            field_names(&serde_json::from_str(&text).unwrap(), &mut names);
        }
        assert!(names.len() > 5, "{command}: {text}");
        let table = ok(&server, ns, &table_args);
        let words: std::collections::BTreeSet<&str> = table
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .collect();
        for name in names {
            if !words.contains(name.as_str()) && !section.contains(&format!("`{name}`")) {
                missing.push(format!("{command}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in the table nor the guide: {missing:?}"
    );
}
