//! The Redis commands of `switchyard` end to end: declare, submit (and await), worker (and its
//! graceful stop on SIGTERM), status, task, dead (and re-drive), events, pause and resume,
//! partitions. (Bad input and its errors: `input_errors.rs`; progress, changes, retention,
//! dedup modes and schedules: `task_life.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::{Duration, Instant};

use support::{WORKER, WorkerProcess, ok, run, switchyard};
use switchyard_testkit::redis_server::RedisServer;

#[test]
fn declare_submit_work_inspect_and_redrive() {
    let server = RedisServer::start().unwrap();
    let ns = "cmd";
    let declared = ok(
        &server,
        ns,
        &[
            "declare",
            "jobs",
            "--policy",
            "priority",
            "--strategy",
            "weighted",
            "--events",
            "all",
            "--backoff-ms",
            "20",
            "--jitter-pct",
            "0",
        ],
    );
    assert!(
        declared.contains("policy priority, strategy weighted"),
        "{declared}"
    );
    let worker = WorkerProcess::start(&server, ns, "w1", &WORKER);

    let out = ok(
        &server,
        ns,
        &[
            "submit",
            "jobs",
            "echo",
            r#"{"n": 1}"#,
            "--wait-ms",
            "20000",
        ],
    );
    assert!(out.contains(r#"succeeded {"n": 1}"#), "{out}");

    let out = ok(
        &server,
        ns,
        &[
            "submit",
            "jobs",
            "sleep",
            "5",
            "-n",
            "300",
            "--wait-ms",
            "30000",
            "--quiet",
        ],
    );
    assert!(
        out.contains("submitted 300 tasks to jobs (0 duplicates)"),
        "{out}"
    );
    assert!(out.contains("300 succeeded, 0 did not"), "{out}");

    // A task that always fails: two attempts, then the dead-letter set.
    let failed = run(
        &server,
        ns,
        &[
            "submit",
            "jobs",
            "fail",
            r#""disk full""#,
            "--max-attempts",
            "2",
            "--wait-ms",
            "20000",
        ],
    );
    assert!(!failed.status.success());
    let stdout = String::from_utf8_lossy(&failed.stdout);
    let id = stdout.lines().next().unwrap().to_owned();
    assert!(stdout.contains("dead: disk full"), "{stdout}");
    assert!(String::from_utf8_lossy(&failed.stderr).contains("1 of 1 tasks did not succeed"));

    let shown = ok(&server, ns, &["task", &id]);
    let row = |label: &str| {
        shown
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(row("state "), "dead", "{shown}");
    assert_eq!(row("attempts "), "2 (max_attempts 2)", "{shown}");
    assert_eq!(row("last_error "), "disk full", "{shown}");

    let dead = ok(&server, ns, &["dead", "jobs"]);
    let row: Vec<&str> = dead
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{dead}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1..3], ["fail", "2"], "{dead}");
    assert_eq!(row[row.len() - 2..], ["disk", "full"], "{dead}");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&server, ns, &["dead", "jobs", "--json"])).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["last_error"], "disk full");
    let redriven = ok(&server, ns, &["dead", "jobs", "--redrive"]);
    assert!(redriven.contains("re-drove 1 tasks"), "{redriven}");
    // Re-driven with fresh attempts, it fails twice more and is dead again.
    // A wait that ends dead says so and fails.
    let again = run(&server, ns, &["task", &id, "--wait-ms", "20000"]);
    let shown = String::from_utf8_lossy(&again.stdout);
    assert!(shown.contains("dead: disk full"), "{shown}");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is dead: disk full"),
        "{again:?}"
    );

    let status = ok(&server, ns, &["status"]);
    for line in status.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    let mut lines = status.lines().skip_while(|l| !l.starts_with("jobs"));
    let columns: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(columns[1..3], ["priority/weighted", "0"], "{status}");
    assert_eq!(columns[7], "1", "dead: {status}");
    let detail: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(detail[..2], ["301", "succeeded"], "{status}");
    assert!(status.lines().any(|l| l.starts_with("w1 ")), "{status}");
    let json = ok(&server, ns, &["status", "--json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let jobs = &parsed["queues"][0];
    assert_eq!(jobs["queue"], "jobs");
    assert_eq!(jobs["succeeded"], 301);
    assert_eq!(jobs["totals"]["succeeded"], 301);
    // The same names as the table's headings and the dashboard's.
    assert_eq!(jobs["policy"], "priority");
    assert_eq!(jobs["strategy"], "weighted");
    assert_eq!(jobs["inbox"], 0);
    assert_eq!(jobs["retrying"], 0);
    assert_eq!(parsed["workers"][0]["worker"], "w1");

    let events = ok(&server, ns, &["events", "--limit", "1000"]);
    for kind in [
        "submitted",
        "dispatched",
        "succeeded",
        "failed",
        "retried",
        "dead",
    ] {
        assert!(
            events
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some(kind)),
            "{kind} missing: {events}"
        );
    }
    // Labelled fields and readable times; JSON lines; newest first; one queue only.
    let first = events.lines().next().unwrap();
    assert!(
        first.contains(" task=") && first.contains(" queue=jobs"),
        "{first}"
    );
    assert!(first.starts_with("20"), "{first}");
    let json = ok(
        &server,
        ns,
        &["events", "--json", "--newest-first", "--limit", "2"],
    );
    let newest: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(newest.len(), 2, "{json}");
    assert!(
        newest[0]["at"].as_u64() >= newest[1]["at"].as_u64(),
        "{json}"
    );
    let none = ok(&server, ns, &["events", "--queue", "no-such-queue"]);
    assert!(none.is_empty(), "{none}");

    // SIGTERM while a task runs: the worker lets it finish, then deregisters.
    let slow = ok(&server, ns, &["submit", "jobs", "sleep", "3000"]);
    let slow = slow.trim();
    // Once the worker has received the task (state running), a graceful stop must finish it.
    // It sleeps 3 s, so that the poll below sees it running.
    let started = Instant::now();
    loop {
        let shown = ok(&server, ns, &["task", slow]);
        if shown
            .lines()
            .any(|l| l.split_whitespace().eq(["state", "running"]))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never ran: {shown}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = worker.terminate(Duration::from_secs(20));
    assert!(log.contains("shutting down"), "{log}");
    let shown = ok(&server, ns, &["task", slow]);
    assert!(
        shown
            .lines()
            .any(|l| l.split_whitespace().eq(["state", "succeeded"])),
        "graceful stop finished it: {shown}\n{log}"
    );
    let status = ok(&server, ns, &["status"]);
    assert!(status.contains("(no live workers)"), "{status}");
}

#[test]
fn partitions_from_the_command_line() {
    let server = RedisServer::start().unwrap();
    let ns = "parts";
    ok(&server, ns, &["declare", "jobs", "--partitions", "3"]);
    let refused = run(&server, ns, &["status", "--partitions", "4"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("has 3 partition(s), not 4"), "{err}");
    let worker = WorkerProcess::start(&server, ns, "w1", &WORKER);
    let out = ok(
        &server,
        ns,
        &[
            "submit",
            "jobs",
            "sleep",
            "1",
            "-n",
            "30",
            "--wait-ms",
            "30000",
            "--quiet",
        ],
    );
    assert!(out.contains("30 succeeded, 0 did not"), "{out}");
    let status = ok(&server, ns, &["status"]);
    assert!(status.contains("jobs"), "{status}");
    assert!(ok(&server, ns, &["dead", "jobs"]).contains("(no dead tasks in jobs)"));
    let undeclared = run(&server, ns, &["dead", "jobz"]);
    let err = String::from_utf8_lossy(&undeclared.stderr);
    assert!(
        !undeclared.status.success() && err.contains("`jobz` is not declared"),
        "{err}"
    );
    drop(worker);
}

/// `switchyard status | head -1`: a reader that goes away ends a command quietly (exit 0,
/// nothing on stderr), as with any Unix tool, instead of a panic (exit 101) or an error.
#[test]
fn a_paused_queue_takes_tasks_and_dispatches_them_when_resumed() {
    let server = RedisServer::start().unwrap();
    let ns = "pause";
    ok(&server, ns, &["declare", "jobs"]);
    let worker = WorkerProcess::start(&server, ns, "w", &WORKER);
    // The worker is live (its registration is what status lists) before the queue pauses.
    let started = std::time::Instant::now();
    while !ok(&server, ns, &["status"])
        .lines()
        .any(|l| l.starts_with("w "))
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "worker never registered"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let said = ok(&server, ns, &["pause", "jobs"]);
    assert!(said.contains("paused"), "{said}");
    let ids = ok(&server, ns, &["submit", "jobs", "echo", "1", "-n", "3"]);
    // The worker has free slots, yet every task waits, ready.
    for id in ids.lines() {
        let shown = ok(&server, ns, &["task", id, "--json"]);
        let task: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(task["info"]["state"], "ready", "{shown}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&ok(&server, ns, &["status", "--json"])).unwrap();
    assert_eq!(status["queues"][0]["paused"], true);
    assert_eq!(status["queues"][0]["ready"], 3);
    assert!(ok(&server, ns, &["status"]).contains("PAUSED"));

    let said = ok(&server, ns, &["resume", "jobs"]);
    assert!(said.contains("3 waiting tasks dispatched"), "{said}");
    for id in ids.lines() {
        let shown = ok(&server, ns, &["task", id, "--wait-ms", "20000"]);
        assert!(shown.contains("succeeded"), "{shown}");
    }
    let again = ok(&server, ns, &["resume", "jobs"]);
    assert!(again.contains("0 waiting tasks"), "{again}");
    let unknown = run(&server, ns, &["pause", "nope"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("queue `nope` is not declared"),
        "{unknown:?}"
    );
    drop(worker);
}

/// `events -f` starts like `tail -f`: the last `--limit` events, then each new one (it printed
/// the log from its start).
#[test]
fn events_follow_starts_at_the_end() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let server = RedisServer::start().unwrap();
    let ns = "follow";
    ok(&server, ns, &["declare", "jobs", "--events", "all"]);
    let submit = || {
        let out = ok(&server, ns, &["submit", "jobs", "echo", "1"]);
        out.lines()
            .find(|l| l.len() == 26)
            .unwrap_or_else(|| panic!("{out}"))
            .to_owned()
    };
    let ids: Vec<String> = (0..3).map(|_| submit()).collect();
    let mut child = switchyard()
        .args(["events", "-f", "--limit", "2"])
        .env("SWITCHYARD_URL", server.url())
        .env("SWITCHYARD_NAMESPACE", ns)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        received
            .recv_timeout(Duration::from_secs(20))
            .expect("a line of `events -f` within 20 s")
    };
    let (first, second) = (next(), next());
    // A fourth task's event comes right after the last two of the three before it.
    let late = submit();
    let third = next();
    let _ = child.kill();
    let _ = child.wait();
    for (line, id) in [(&first, &ids[1]), (&second, &ids[2]), (&third, &late)] {
        assert!(
            line.contains("submitted") && line.contains(&format!("task={id}")),
            "expected the submit of {id}, got: {line}"
        );
    }
}
