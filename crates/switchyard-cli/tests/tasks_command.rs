//! `switchyard tasks` against a real redis-server: 120 dead tasks listed in pages of 50 by
//! following the printed cursor (each id once, all 120), one found by id, all re-driven, then
//! cancelled by kind, then deleted, each in bounded steps and counted by task id; bad input
//! refused with what would be right.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::{WorkerProcess, ok, run};
use switchyard_testkit::redis_server::RedisServer;

const NS: &str = "tasks";

/// The ids listed in a `tasks` table, and the cursor it printed (if any).
fn page(text: &str) -> (Vec<String>, Option<String>) {
    let ids = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() == 26 && w.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_owned)
        .collect();
    let cursor = text
        .lines()
        .find_map(|l| l.strip_prefix("next page: --cursor '"))
        .map(|c| c.trim_end_matches('\'').to_owned());
    (ids, cursor)
}

fn refused(server: &RedisServer, args: &[&str]) -> String {
    let out = run(server, NS, args);
    assert!(!out.status.success(), "switchyard {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn count(server: &RedisServer, state: &str) -> u64 {
    let status: serde_json::Value =
        serde_json::from_str(&ok(server, NS, &["status", "--json"])).unwrap();
    status["queues"][0][state].as_u64().unwrap()
}

#[test]
fn tasks_lists_in_pages_and_acts_on_all_of_a_state() {
    let server = RedisServer::start().unwrap();
    ok(&server, NS, &["declare", "jobs", "--max-attempts", "1"]);
    let submitted: BTreeSet<String> = ok(
        &server,
        NS,
        &["submit", "jobs", "fail", "\"boom\"", "-n", "120"],
    )
    .lines()
    .filter(|l| l.len() == 26)
    .map(str::to_owned)
    .collect();
    assert_eq!(submitted.len(), 120);
    let worker = WorkerProcess::start(&server, NS, "w1", &["-q", "jobs", "-c", "8"]);
    let started = Instant::now();
    while count(&server, "dead") < 120 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the tasks did not die"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Gone for good (deregistered): nothing re-driven below is dispatched.
    worker.terminate(Duration::from_secs(30));

    // Pages of 50 by the printed cursor: 50, 50, 20, every dead task once.
    let mut seen = Vec::new();
    let mut args = vec!["tasks", "jobs", "--state", "dead", "--limit", "50"];
    let mut cursor;
    let mut sizes = Vec::new();
    loop {
        let text = ok(&server, NS, &args);
        assert!(text.contains("finished_at (UTC)"), "{text}");
        let (ids, next) = page(&text);
        sizes.push(ids.len());
        seen.extend(ids);
        match next {
            Some(c) => cursor = c,
            None => {
                assert!(text.contains("(end of the dead tasks)"), "{text}");
                break;
            }
        }
        args = vec![
            "tasks", "jobs", "--state", "dead", "--limit", "50", "--cursor", &cursor,
        ];
    }
    assert_eq!(sizes, [50, 50, 20]);
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), 120);
    assert_eq!(distinct, submitted);

    // Newest first is the reverse; one task by its id (in lower case).
    let newest: serde_json::Value = serde_json::from_str(&ok(
        &server,
        NS,
        &[
            "tasks", "jobs", "--state", "dead", "--newest", "--limit", "256", "--json",
        ],
    ))
    .unwrap();
    let newest: Vec<&str> = newest["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    let mut oldest = seen.clone();
    oldest.reverse();
    assert_eq!(newest, oldest);
    let one = &seen[77];
    let text = ok(
        &server,
        NS,
        &[
            "tasks",
            "jobs",
            "--state",
            "dead",
            "--id",
            &one.to_ascii_lowercase(),
        ],
    );
    assert_eq!(page(&text).0, vec![one.clone()], "{text}");

    // All re-driven (no worker: they stay ready), then cancelled by kind, then deleted.
    let said = ok(
        &server,
        NS,
        &["tasks", "jobs", "--state", "dead", "--redrive"],
    );
    assert!(said.contains("re-drove 120 dead tasks"), "{said}");
    assert_eq!((count(&server, "dead"), count(&server, "ready")), (0, 120));
    let none = ok(
        &server,
        NS,
        &[
            "tasks", "jobs", "--state", "ready", "--kind", "echo", "--cancel",
        ],
    );
    assert!(none.contains("cancelled 0 ready tasks"), "{none}");
    let said = ok(
        &server,
        NS,
        &[
            "tasks", "jobs", "--state", "ready", "--kind", "fail", "--cancel",
        ],
    );
    assert!(said.contains("cancelled 120 ready tasks"), "{said}");
    let said = ok(
        &server,
        NS,
        &[
            "tasks",
            "jobs",
            "--state",
            "cancelled",
            "--delete",
            "--json",
        ],
    );
    let said: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(said["done"], 120, "{said}");
    assert_eq!(said["refused"].as_array().unwrap().len(), 0);
    for id in &submitted {
        let out = run(&server, NS, &["task", id]);
        assert!(!out.status.success(), "{id} still there");
    }

    // Bad input, refused with what would do.
    let e = refused(&server, &["tasks", "jobs", "--state", "waiting"]);
    assert!(e.contains("scheduled, ready, inbox"), "{e}");
    let e = refused(&server, &["tasks", "jobs", "--state", "ready", "--redrive"]);
    assert!(
        e.contains("redrive applies to dead tasks, not to ready ones"),
        "{e}"
    );
    let e = refused(&server, &["tasks", "jobs", "--id", "01IL"]);
    assert!(e.contains("cannot start a task id"), "{e}");
    let e = refused(&server, &["tasks", "jobs", "--limit", "0"]);
    assert!(e.contains("1 to 256"), "{e}");
    let e = refused(&server, &["tasks", "nope"]);
    assert!(e.contains("nope"), "{e}");
    let e = refused(&server, &["tasks", "jobs", "--cursor", "garbage"]);
    assert!(e.contains("cursor"), "{e}");
}
