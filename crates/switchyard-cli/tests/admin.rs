//! Queue administration from the command line, against a real redis-server: `reconfigure`
//! (a diff of what changed, refusals that say what stands in the way), `purge` in bounded steps
//! (counted by task id), `task --delete`, `delete-queue`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::{Duration, Instant};

use support::{WorkerProcess, ok, run};
use switchyard_testkit::redis_server::RedisServer;

/// Runs a command that must fail and returns its stderr.
fn refused(server: &RedisServer, ns: &str, args: &[&str]) -> String {
    let out = run(server, ns, args);
    assert!(!out.status.success(), "switchyard {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The state of a task, as `task --json` shows it.
fn state(server: &RedisServer, ns: &str, id: &str) -> String {
    let view = json(&ok(server, ns, &["task", id, "--json"]));
    view["info"]["state"].as_str().unwrap().to_owned()
}

/// The ids `submit` printed (one per line).
fn submitted(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.len() == 26)
        .map(str::to_owned)
        .collect()
}

#[test]
fn reconfigure_purge_delete_tasks_and_the_queue() {
    let server = RedisServer::start().unwrap();
    let ns = "admin";
    ok(
        &server,
        ns,
        &["declare", "jobs", "--max-attempts", "2", "--events", "all"],
    );

    // reconfigure: nothing given, an undeclared queue, a dry run.
    let said = refused(&server, ns, &["reconfigure", "jobs"]);
    assert!(said.contains("nothing to change"), "{said}");
    let said = refused(&server, ns, &["reconfigure", "nope", "--max-attempts", "5"]);
    assert!(said.contains("`nope` is not declared"), "{said}");
    let dry = ok(
        &server,
        ns,
        &["reconfigure", "jobs", "--max-attempts", "5", "--dry-run"],
    );
    assert!(dry.contains("dry run"), "{dry}");
    assert!(dry.contains("--max-attempts     2 -> 5"), "{dry}");

    // The real change shows exactly what changed (the dry run changed nothing: still 2 -> 5).
    let changed = ok(
        &server,
        ns,
        &[
            "reconfigure",
            "jobs",
            "--max-attempts",
            "5",
            "--timeout-ms",
            "9000",
        ],
    );
    let lines: Vec<&str> = changed.lines().collect();
    assert_eq!(lines.len(), 3, "{changed}");
    assert!(lines[0].contains("reconfigured"), "{changed}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["--max-attempts", "2", "->", "5"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["--timeout-ms", "300000", "->", "9000"]
    );
    let same = ok(&server, ns, &["reconfigure", "jobs", "--max-attempts", "5"]);
    assert!(same.contains("already has this configuration"), "{same}");

    // Five tasks wait (nobody serves the queue): a new policy is refused, and says why.
    let ids = submitted(&ok(
        &server,
        ns,
        &["submit", "jobs", "echo", "1", "-n", "5"],
    ));
    assert_eq!(ids.len(), 5);
    let said = refused(
        &server,
        ns,
        &["reconfigure", "jobs", "--policy", "priority"],
    );
    assert!(said.contains("5 tasks are ready"), "{said}");
    assert!(said.contains("purge <queue> --waiting"), "{said}");

    // purge asks first; with no terminal to ask on, it needs --yes and touches nothing.
    let said = refused(&server, ns, &["purge", "jobs", "--waiting"]);
    assert!(said.contains("pass --yes"), "{said}");
    assert!(said.contains("cancel the 5 waiting tasks"), "{said}");
    for id in &ids {
        assert_eq!(state(&server, ns, id), "ready");
    }
    let said = refused(&server, ns, &["purge", "jobs", "--yes"]);
    assert!(
        said.contains("--waiting"),
        "one class must be named: {said}"
    );

    // In steps of 2: every one of the five is cancelled, by id.
    let purged = json(&ok(
        &server,
        ns,
        &[
            "purge",
            "jobs",
            "--waiting",
            "--batch",
            "2",
            "--yes",
            "--json",
        ],
    ));
    assert_eq!(purged["removed"], 5, "{purged}");
    assert_eq!(purged["purged"], "waiting");
    for id in &ids {
        assert_eq!(state(&server, ns, id), "cancelled");
    }
    let changed = ok(
        &server,
        ns,
        &["reconfigure", "jobs", "--policy", "priority"],
    );
    assert!(changed.contains("fcfs -> priority"), "{changed}");

    // task --delete: only finished tasks.
    let waiting = submitted(&ok(&server, ns, &["submit", "jobs", "echo", "2"]));
    let said = refused(&server, ns, &["task", &waiting[0], "--delete"]);
    assert!(said.contains("cancel it first"), "{said}");
    assert_eq!(state(&server, ns, &waiting[0]), "ready");
    let deleted = ok(&server, ns, &["task", &ids[0], "--delete"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    let said = refused(&server, ns, &["task", &ids[0]]);
    assert!(said.contains(&format!("no task {}", ids[0])), "{said}");

    // delete-queue: refused while the queue holds tasks, in any state.
    let said = refused(&server, ns, &["delete-queue", "jobs"]);
    assert!(
        said.contains("cannot be deleted now: it holds 5 tasks"),
        "{said}"
    );
    let finished = ok(&server, ns, &["purge", "jobs", "--finished", "--yes"]);
    assert!(finished.contains("4 finished tasks deleted"), "{finished}");
    for id in &ids[1..] {
        let said = refused(&server, ns, &["task", id]);
        assert!(said.contains("no task"), "{said}");
    }
    ok(&server, ns, &["purge", "jobs", "--waiting", "--yes"]);
    ok(&server, ns, &["purge", "jobs", "--finished", "--yes"]);
    let dead = ok(&server, ns, &["purge", "jobs", "--dead", "--yes"]);
    assert!(dead.contains("0 dead tasks deleted"), "{dead}");

    // ... and while a worker serves it.
    let worker = WorkerProcess::start(&server, ns, "w1", &["--queue", "jobs"]);
    let started = Instant::now();
    while !ok(&server, ns, &["status"])
        .lines()
        .any(|l| l.starts_with("w1 "))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "w1 never registered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let said = refused(&server, ns, &["delete-queue", "jobs"]);
    assert!(said.contains("workers w1 serve it"), "{said}");
    worker.terminate(Duration::from_secs(20));

    let gone = ok(&server, ns, &["delete-queue", "jobs"]);
    assert!(gone.contains("`jobs` deleted"), "{gone}");
    let status = json(&ok(&server, ns, &["status", "--json"]));
    assert_eq!(status["queues"], serde_json::json!([]), "{status}");
    let said = refused(&server, ns, &["dead", "jobs"]);
    assert!(said.contains("`jobs` is not declared"), "{said}");
}

/// `dead <queue> --redrive` puts back the whole dead-letter set, not only the tasks it lists
/// (it listed 50 and re-drove 50 of 60).
#[test]
fn dead_redrive_puts_back_the_whole_set() {
    let server = RedisServer::start().unwrap();
    let ns = "redrive";
    ok(&server, ns, &["declare", "jobs", "--max-attempts", "1"]);
    let worker = WorkerProcess::start(
        &server,
        ns,
        "w1",
        &["--queue", "jobs", "--heartbeat-ttl-ms", "2000"],
    );
    let out = run(
        &server,
        ns,
        &[
            "submit",
            "jobs",
            "fail",
            r#""boom""#,
            "-n",
            "60",
            "--wait-ms",
            "30000",
            "--quiet",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 succeeded, 60 did not"),
        "{out:?}"
    );
    // Stopped and deregistered: what is re-driven waits in the queue.
    worker.terminate(Duration::from_secs(20));
    let listed = json(&ok(&server, ns, &["dead", "jobs", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 50, "the default listing");
    let said = ok(&server, ns, &["dead", "jobs", "--redrive", "--limit", "5"]);
    assert!(said.contains("re-drove 60 tasks"), "{said}");
    assert!(
        ok(&server, ns, &["dead", "jobs"]).contains("(no dead tasks in jobs)"),
        "the dead-letter set is empty"
    );
    let status = json(&ok(&server, ns, &["status", "--json"]));
    assert_eq!(status["queues"][0]["ready"], 60, "{status}");
    assert_eq!(status["queues"][0]["dead"], 0, "{status}");
}

/// After `reconfigure`, a worker started with the old `--declare` flags is refused with the
/// field that differs, both values, and the way out (it said only "limits differ").
#[test]
fn a_worker_with_stale_declare_flags_is_told_what_differs() {
    let server = RedisServer::start().unwrap();
    let ns = "stale";
    ok(&server, ns, &["declare", "jobs", "--max-attempts", "2"]);
    ok(&server, ns, &["reconfigure", "jobs", "--max-attempts", "5"]);
    let mut child = support::switchyard()
        .args([
            "worker",
            "--id",
            "w1",
            "--queue",
            "jobs",
            "--declare",
            "--max-attempts",
            "2",
        ])
        .env("SWITCHYARD_URL", server.url())
        .env("SWITCHYARD_NAMESPACE", ns)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the worker started although its configuration differs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("max_attempts 5 → 2"), "{said}");
    assert!(said.contains("switchyard reconfigure"), "{said}");
}
