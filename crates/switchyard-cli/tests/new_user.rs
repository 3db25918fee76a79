//! Every subcommand as a new user meets it: its `--help` first (it must say what it is for and
//! explain every flag), then a real run against a test redis-server, reading what it printed.
//! A subcommand added to the binary without being added here fails the first check.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::time::{Duration, Instant};

use support::{DashboardProcess, WorkerProcess, ok, run, switchyard};
use switchyard_testkit::redis_server::RedisServer;

const SUBCOMMANDS: [&str; 18] = [
    "demo",
    "declare",
    "submit",
    "worker",
    "status",
    "task",
    "tasks",
    "dead",
    "events",
    "pause",
    "resume",
    "purge",
    "reconfigure",
    "delete-queue",
    "groups",
    "schedule",
    "dashboard",
    "bench",
];

fn help(args: &[&str]) -> String {
    let out = switchyard().args(args).output().unwrap();
    assert!(out.status.success(), "switchyard {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_subcommand_explains_itself() {
    let top = help(&["--help"]);
    let listed: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert_eq!(
        listed, SUBCOMMANDS,
        "the subcommands changed: update this test\n{top}"
    );
    for command in SUBCOMMANDS {
        let text = help(&[command, "--help"]);
        assert!(
            text.contains(&format!("Usage: switchyard {command}")),
            "{command}: {text}"
        );
        // The first line says what it is for.
        assert!(
            text.lines().next().is_some_and(|l| l.len() > 20),
            "{command}: {text}"
        );
        // Every flag has a description: on its line, or (long help) on the lines below it.
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with('-') {
                continue;
            }
            let same_line = line
                .trim()
                .split_once("  ")
                .is_some_and(|(_, t)| !t.trim().is_empty());
            let indent = |l: &str| l.len() - l.trim_start().len();
            let below = lines.get(i + 1).is_some_and(|next| {
                !next.trim().is_empty()
                    && !next.trim_start().starts_with('-')
                    && indent(next) > indent(line)
            });
            assert!(
                same_line || below,
                "{command}: a flag without a description: {line:?}"
            );
        }
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_subcommand_does_its_job_on_a_real_redis() {
    let server = RedisServer::start().unwrap();
    let ns = "newcomer";

    // demo: no Redis needed.
    let demo = help(&["demo", "--tasks", "300", "--workers", "4", "--no-progress"]);
    assert!(demo.contains("verdict (this run)"), "{demo}");

    // declare, then worker.
    let said = ok(
        &server,
        ns,
        &["declare", "mail", "--events", "all", "--max-attempts", "1"],
    );
    assert!(said.starts_with("queue mail:"), "{said}");
    let worker = WorkerProcess::start(&server, ns, "w1", &["--queue", "mail", "-c", "2"]);
    wait_for("the worker to register", || {
        ok(&server, ns, &["status"])
            .lines()
            .any(|l| l.starts_with("w1 "))
    });

    // submit, waiting for the outcomes.
    let out = ok(
        &server,
        ns,
        &[
            "submit",
            "mail",
            "echo",
            "\"hi\"",
            "-n",
            "3",
            "--wait-ms",
            "20000",
        ],
    );
    let ids: Vec<&str> = out.lines().filter(|l| l.len() == 26).collect();
    assert_eq!(ids.len(), 3, "{out}");
    assert_eq!(out.matches("succeeded \"hi\"").count(), 3, "{out}");

    // status: the queue, its lifetime count, the worker with its completions.
    let status = ok(&server, ns, &["status"]);
    let mut rows = status.lines().skip_while(|l| !l.starts_with("mail "));
    assert!(
        rows.next().unwrap().contains("fcfs/round-robin"),
        "{status}"
    );
    assert!(
        rows.next().unwrap().trim_start().starts_with("3 succeeded"),
        "{status}"
    );
    let w1: Vec<&str> = status
        .lines()
        .find(|l| l.starts_with("w1 "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(w1[1..4], ["0/2", "1", "3"], "{status}");

    // task: the whole story of one task.
    let task = ok(&server, ns, &["task", ids[0]]);
    for part in [
        "state          succeeded",
        "payload        4 bytes: \"hi\"",
        "result         4 bytes: \"hi\"",
        "submitted",
        "dispatched",
    ] {
        assert!(task.contains(part), "{part} missing: {task}");
    }

    // A failing task: dead, listed, re-driven by id.
    let failed = run(
        &server,
        ns,
        &["submit", "mail", "fail", "\"no\"", "--wait-ms", "20000"],
    );
    assert!(!failed.status.success());
    let dead_id = String::from_utf8_lossy(&failed.stdout)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let dead = ok(&server, ns, &["dead", "mail"]);
    assert!(dead.lines().any(|l| l.starts_with(&dead_id)), "{dead}");

    // tasks: the succeeded ones, a page of them.
    let listed = ok(&server, ns, &["tasks", "mail", "--state", "succeeded"]);
    for id in &ids {
        assert!(listed.lines().any(|l| l.starts_with(id)), "{listed}");
    }
    assert!(listed.contains("(end of the succeeded tasks)"), "{listed}");

    // events: readable, filtered by queue.
    let events = ok(
        &server,
        ns,
        &["events", "--queue", "mail", "--limit", "100"],
    );
    assert!(
        events
            .lines()
            .any(|l| l.contains(" dead ") && l.contains(&dead_id)),
        "{events}"
    );

    // pause, resume.
    assert!(ok(&server, ns, &["pause", "mail"]).contains("paused"));
    let again = ok(&server, ns, &["task", &dead_id, "--redrive", "--json"]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        again["info"]["state"], "ready",
        "paused: the re-driven task waits"
    );
    let resumed = ok(&server, ns, &["resume", "mail"]);
    assert!(resumed.contains("1 waiting tasks dispatched"), "{resumed}");

    // reconfigure, purge, delete-queue.
    let changed = ok(&server, ns, &["reconfigure", "mail", "--max-attempts", "2"]);
    assert!(changed.contains("--max-attempts     1 -> 2"), "{changed}");
    wait_for("the re-driven task to die again", || {
        let view = ok(&server, ns, &["task", &dead_id, "--json"]);
        serde_json::from_str::<serde_json::Value>(&view).unwrap()["info"]["state"] == "dead"
    });
    let purged = ok(&server, ns, &["purge", "mail", "--dead", "--yes"]);
    assert!(purged.contains("1 dead tasks deleted"), "{purged}");
    assert!(ok(&server, ns, &["dead", "mail"]).contains("(no dead tasks in mail)"));
    ok(&server, ns, &["declare", "spare"]);
    let gone = ok(&server, ns, &["delete-queue", "spare"]);
    assert!(gone.contains("`spare` deleted"), "{gone}");

    // groups: a queue shared between tenants (no worker serves it: its tasks wait in their
    // groups), a weight set, the groups listed.
    ok(&server, ns, &["declare", "tenants", "--fair-share", "on"]);
    ok(
        &server,
        ns,
        &[
            "submit", "tenants", "echo", "1", "-n", "2", "--group", "acme",
        ],
    );
    let groups = ok(&server, ns, &["groups", "tenants", "--weight", "acme=2"]);
    let acme = groups
        .lines()
        .find(|l| l.starts_with("acme"))
        .unwrap_or_default();
    assert!(
        groups.contains("weight 2") && acme.contains(" 2 ") && acme.contains("waiting"),
        "{groups}"
    );

    // schedule: a tick every 200 ms; the worker's maintenance claims the ticks and runs their
    // tasks.
    let added = ok(
        &server,
        ns,
        &[
            "schedule",
            "add",
            "often",
            "--queue",
            "mail",
            "--kind",
            "echo",
            "--every-ms",
            "200",
        ],
    );
    assert!(added.contains("schedule often created"), "{added}");
    wait_for("two ticks to be claimed", || {
        let shown = ok(&server, ns, &["schedule", "show", "often", "--json"]);
        serde_json::from_str::<serde_json::Value>(&shown).unwrap()["runs"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    });

    // dashboard: it serves its page and answers its API.
    let dashboard = DashboardProcess::start(&server, ns, &[]);
    let port = dashboard.port;
    let (status, page) = browser::http(port, "GET", "/", None, &[]);
    assert_eq!(status, 200);
    assert!(page.contains("<title>Switchyard</title>"));
    let (status, snapshot) = browser::http(port, "GET", "/api/snapshot", None, &[]);
    assert_eq!(status, 200);
    let snapshot: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(snapshot["namespace"], ns);
    assert_eq!(snapshot["schedules"][0]["name"], "often", "{snapshot}");
    assert!(ok(&server, ns, &["schedule", "remove", "often"]).contains("removed"));
    // SIGTERM: it stops by itself (its page streams end with it).
    assert!(dashboard.terminate(Duration::from_secs(10)).success());
    drop(worker);

    // bench, on a server of its own (it reads the server's INFO).
    let quiet = RedisServer::start().unwrap();
    let bench = switchyard()
        .args([
            "bench",
            "--only",
            "floor",
            "--tasks",
            "300",
            "--url",
            &quiet.url(),
        ])
        .output()
        .unwrap();
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    assert!(String::from_utf8_lossy(&bench.stdout).contains("bare lifecycle"));
}
