//! The commands that change or watch a task over its life and time, end to end against a real
//! redis-server: `task --follow` on a task's progress, `task --change`, retention by count on a
//! quiet queue, dedup keys that throttle or debounce, and `schedule`. (The first commands a user
//! meets: `commands.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::{Duration, Instant};

use support::{WORKER, WorkerProcess, ok, run};
use switchyard_testkit::redis_server::RedisServer;

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
