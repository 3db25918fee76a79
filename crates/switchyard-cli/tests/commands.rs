//! The Redis commands of `switchyard` end to end: declare, submit (and await), worker (and its
//! graceful stop on SIGTERM), status, task, dead (and re-drive), events, pause and resume,
//! partitions. (Bad input and its errors: `input_errors.rs`.)
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

/// A handler's progress, end to end: the built-in `sleep` reports after each full second;
/// `task --wait-ms --progress` prints each announced report while it waits, `task` shows the
/// last one (its JSON too), and a queue recording every event logs them.
#[test]
fn task_follows_a_sleeping_tasks_progress() {
    let server = RedisServer::start().unwrap();
    let ns = "progress";
    ok(&server, ns, &["declare", "jobs", "--events", "all"]);
    let worker = WorkerProcess::start(&server, ns, "w1", &WORKER);
    let id = ok(&server, ns, &["submit", "jobs", "sleep", "3500"]);
    let id = id.trim();
    let out = ok(
        &server,
        ns,
        &["task", id, "--wait-ms", "30000", "--progress"],
    );
    // Reports after 1, 2 and 3 s (33.3%, 66.6%, 95.2% or so, each a second or more apart).
    let percents: Vec<f64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("progress "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            l.split('%')
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("{l}: {out}"))
        })
        .collect();
    assert!(percents.len() >= 2, "{out}");
    assert!(percents.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert!(percents.iter().all(|p| *p > 20.0 && *p < 100.0), "{out}");
    assert!(out.contains("of 3500 ms (attempt 1, report "), "{out}");
    assert!(out.contains("succeeded"), "{out}");

    let shown = ok(&server, ns, &["task", id]);
    let row = shown
        .lines()
        .find(|l| l.starts_with("progress"))
        .unwrap_or_else(|| panic!("no progress row: {shown}"));
    assert!(row.contains("slept 3") && row.contains("report 3"), "{row}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server, ns, &["task", id, "--json"])).unwrap();
    let progress = &json["info"]["progress"];
    assert_eq!(progress["attempt"], 1, "{json}");
    assert_eq!(progress["reports"], 3, "{json}");
    assert!(progress["ppm"].as_u64().unwrap() > 800_000, "{json}");
    let events = ok(&server, ns, &["events", "--limit", "100"]);
    let logged = events.lines().filter(|l| l.contains("progress=")).count();
    assert_eq!(logged, 3, "{events}");
    drop(worker);
}

/// `task --set-priority / --set-payload / --run-in-ms`: a waiting task changed from the command
/// line (it overtakes, it waits, it carries the new payload); a finished one is refused with
/// the reason.
#[test]
fn task_changes_a_waiting_task() {
    let server = RedisServer::start().unwrap();
    let ns = "change";
    ok(
        &server,
        ns,
        &[
            "declare",
            "jobs",
            "--policy",
            "priority",
            "--strategy",
            "pull",
        ],
    );
    let ids: Vec<String> = (0..3)
        .map(|i| {
            ok(&server, ns, &["submit", "jobs", "echo", &i.to_string()])
                .trim()
                .to_owned()
        })
        .collect();
    let out = ok(&server, ns, &["task", &ids[2], "--set-priority", "7"]);
    assert!(out.contains("changed: ready now"), "{out}");
    let out = ok(&server, ns, &["task", &ids[0], "--run-in-ms", "600000"]);
    assert!(out.contains("changed: scheduled now"), "{out}");
    let out = ok(&server, ns, &["task", &ids[1], "--set-payload", "\"new\""]);
    assert!(out.contains("changed: ready now"), "{out}");
    let listed = ok(
        &server,
        ns,
        &["tasks", "jobs", "--state", "ready", "--json"],
    );
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let order: Vec<String> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(order, [ids[2].clone(), ids[1].clone()], "{listed}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server, ns, &["task", &ids[1], "--json"])).unwrap();
    assert_eq!(json["payload_preview"], "\"new\"", "{json}");
    // Once it ran, it cannot change.
    let worker = WorkerProcess::start(&server, ns, "w1", &WORKER);
    ok(&server, ns, &["task", &ids[2], "--wait-ms", "20000"]);
    let refused = run(&server, ns, &["task", &ids[2], "--set-priority", "1"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("has not started"), "{said}");
    drop(worker);
}

/// `declare --keep-finished / --keep-dead`: a worker's maintenance trims the queue to the
/// newest that many, with no task moving; `reconfigure` changes the counts, `all` lifts them.
#[test]
fn retention_counts_trim_a_quiet_queue() {
    let server = RedisServer::start().unwrap();
    let ns = "kept";
    ok(
        &server,
        ns,
        &[
            "declare",
            "jobs",
            "--keep-finished",
            "2",
            "--keep-dead",
            "1",
            "--max-attempts",
            "1",
        ],
    );
    ok(
        &server,
        ns,
        &["submit", "jobs", "echo", "1", "-n", "6", "--quiet"],
    );
    ok(
        &server,
        ns,
        &["submit", "jobs", "fail", "\"x\"", "-n", "3", "--quiet"],
    );
    let worker = WorkerProcess::start(&server, ns, "w1", &WORKER);
    let counts = || {
        let view: serde_json::Value =
            serde_json::from_str(&ok(&server, ns, &["status", "--json"])).unwrap();
        let q = &view["queues"][0];
        (
            q["succeeded"].as_u64().unwrap(),
            q["dead"].as_u64().unwrap(),
        )
    };
    let started = Instant::now();
    while counts() != (2, 1) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never trimmed: {:?}",
            counts()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = ok(
        &server,
        ns,
        &[
            "reconfigure",
            "jobs",
            "--keep-finished",
            "all",
            "--keep-dead",
            "0",
        ],
    );
    let shown = |flag: &str, change: &str| {
        said.lines()
            .any(|l| l.trim_start().starts_with(flag) && l.trim_end().ends_with(change))
    };
    assert!(shown("--keep-finished", "2 -> all"), "{said}");
    assert!(shown("--keep-dead", "1 -> 0"), "{said}");
    while counts() != (2, 0) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "dead never trimmed: {:?}",
            counts()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(worker);
}

/// `declare --dedup-mode`: a throttling queue answers a held key with the task there and says
/// when the payload differs; a debouncing one moves the waiting task to the last submit's
/// payload; `reconfigure` switches the mode.
#[test]
fn dedup_keys_throttle_or_debounce() {
    let server = RedisServer::start().unwrap();
    let ns = "dedup";
    ok(&server, ns, &["declare", "thr"]);
    let submit = |queue: &str, payload: &str| {
        let args = [
            "submit",
            queue,
            "echo",
            payload,
            "--dedup",
            "k",
            "--delay-ms",
            "60000",
        ];
        ok(&server, ns, &args).trim().to_owned()
    };
    let first = submit("thr", "1");
    assert_eq!(submit("thr", "1"), format!("{first} duplicate"));
    assert_eq!(
        submit("thr", "2"),
        format!("{first} duplicate (payload differs)")
    );
    let said = ok(
        &server,
        ns,
        &["reconfigure", "thr", "--dedup-mode", "debounce"],
    );
    assert!(
        said.lines()
            .any(|l| l.trim_start().starts_with("--dedup-mode")
                && l.trim_end().ends_with("throttle -> debounce")),
        "{said}"
    );
    assert_eq!(
        submit("thr", "3"),
        format!("{first} debounced: it takes this payload and run time (payload differs)")
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server, ns, &["task", &first, "--json"])).unwrap();
    assert_eq!(json["payload_preview"], "3", "{json}");
    let bad = run(&server, ns, &["declare", "other", "--dedup-mode", "bounce"]);
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("expected throttle or debounce"), "{said}");
}

/// `schedule add|list|show|pause|resume|remove`: what each says, refusals with the reason.
#[test]
fn schedule_commands() {
    let server = RedisServer::start().unwrap();
    let ns = "sched";
    ok(&server, ns, &["declare", "jobs"]);
    let add = [
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
        "--overlap",
        "skip",
    ];
    let said = ok(&server, ns, &add);
    assert!(
        said.starts_with("schedule nightly created; next tick 20"),
        "{said}"
    );
    assert!(ok(&server, ns, &add).contains("unchanged"));
    let listed = ok(&server, ns, &["schedule", "list"]);
    assert!(
        listed.contains("nightly  cron `0 30 2 * * *` Europe/Berlin  -> jobs echo"),
        "{listed}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server, ns, &["schedule", "show", "nightly", "--json"])).unwrap();
    assert_eq!(json["definition"]["overlap"], "skip", "{json}");
    assert_eq!(
        (json["runs"].as_u64(), json["paused"].as_bool()),
        (Some(0), Some(false))
    );
    assert!(ok(&server, ns, &["schedule", "pause", "nightly"]).contains("paused; next tick none"));
    assert!(ok(&server, ns, &["schedule", "resume", "nightly"]).contains("resumed; next tick 20"));
    let refused = |args: &[&str], words: &str| {
        let out = run(&server, ns, args);
        assert!(!out.status.success(), "{args:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(words), "{args:?}: {said}");
    };
    let bad = [
        "schedule", "add", "bad", "--queue", "jobs", "--kind", "echo",
    ];
    for (flags, words) in [
        (&["--cron", "61 * * * * *"][..], "cron expression"),
        (
            &["--cron", "* * * * *", "--tz", "Mars/Olympus"],
            "Mars/Olympus",
        ),
        (
            &["--every-ms", "10", "--misfire", "later"],
            "expected run-once, skip:<grace ms> or catch-up:<n>",
        ),
    ] {
        refused(&[&bad[..], flags].concat(), words);
    }
    refused(&["schedule", "pause", "missing"], "no schedule missing");
    assert!(ok(&server, ns, &["schedule", "remove", "nightly"]).contains("removed"));
    assert_eq!(
        ok(&server, ns, &["schedule", "list"]).trim(),
        "no schedules"
    );
}
