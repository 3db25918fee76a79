//! Flow control from the command line, against a real redis-server: a bounded queue declared,
//! filled, refused, shown full by `status` (table and JSON), and its bound raised and removed
//! with `reconfigure`; a queue limited to one active task shown at its limit, and its slot
//! back from a worker process killed with SIGKILL; a rate-limited queue's tokens and the time
//! it opens again, shown by `status`, and its limit removed; an earliest-deadline-first queue
//! that expires late tasks: declared (and refused under another policy), a late task expired
//! on arrival, shown by `task`, `status`, `tasks --state expired`, and expiry turned off; a
//! queue shared between tenants with one active task per group: shown by `groups` and
//! `status`, a weight set, and a group's slot back from a worker process killed with SIGKILL
//! while the other group ran on; a queue bounded per group refusing a full group only, with
//! its scheduled tasks counted and shown, and its bound raised.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::{Duration, Instant};

use support::{WorkerProcess, ok, run};
use switchyard_testkit::redis_server::RedisServer;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The ids `submit` printed (one per line).
fn ids(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.len() == 26).collect()
}

#[test]
fn a_bounded_queue_refuses_what_does_not_fit_and_says_so() {
    let server = RedisServer::start().unwrap();
    let ns = "bounded";
    let said = ok(&server, ns, &["declare", "exports", "--max-waiting", "5"]);
    assert!(said.contains("at most 5 waiting"), "{said}");
    let zero = run(&server, ns, &["declare", "other", "--max-waiting", "0"]);
    assert!(!zero.status.success());
    let err = String::from_utf8_lossy(&zero.stderr);
    assert!(err.contains("give at least 1, or none"), "{err}");

    assert_eq!(
        ids(&ok(&server, ns, &["submit", "exports", "k", "-n", "3"])).len(),
        3
    );
    // Three more do not fit in the two places left: none is stored.
    let full = run(&server, ns, &["submit", "exports", "k", "-n", "3"]);
    assert!(!full.status.success());
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(
        err.contains(
            "queue `exports` is full: 3 tasks wait and its bound is 5, so 3 more do not fit"
        ),
        "{err}"
    );
    assert!(ids(&String::from_utf8_lossy(&full.stdout)).is_empty());
    let table = ok(&server, ns, &["status"]);
    assert!(table.contains("3 of 5 waiting"), "{table}");
    assert!(!table.contains("is full"), "{table}");

    ok(&server, ns, &["submit", "exports", "k", "-n", "2"]);
    let table = ok(&server, ns, &["status"]);
    assert!(table.contains("5 of 5 waiting (FULL)"), "{table}");
    assert!(
        table.contains("queue `exports` is full (5 of 5 waiting)"),
        "{table}"
    );
    let view = json(&ok(&server, ns, &["status", "--json"]));
    assert_eq!(view["queues"][0]["max_waiting"], 5);
    assert!(
        view["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("`exports` is full")),
        "{view}"
    );

    // Raised, then removed: each change shown, and submits fit again.
    let raised = ok(
        &server,
        ns,
        &["reconfigure", "exports", "--max-waiting", "6"],
    );
    assert!(raised.contains("--max-waiting"), "{raised}");
    assert!(raised.contains("5 -> 6"), "{raised}");
    ok(&server, ns, &["submit", "exports", "k"]);
    let refused = run(&server, ns, &["submit", "exports", "k"]);
    assert!(!refused.status.success());
    let removed = ok(
        &server,
        ns,
        &["reconfigure", "exports", "--max-waiting", "none"],
    );
    assert!(removed.contains("6 -> none"), "{removed}");
    ok(&server, ns, &["submit", "exports", "k", "-n", "10"]);
    let view = json(&ok(&server, ns, &["status", "--json"]));
    assert_eq!(view["queues"][0]["ready"], 16);
    assert!(view["queues"][0]["max_waiting"].is_null(), "{view}");
}

#[test]
fn a_group_bounded_queue_refuses_a_full_group_only_and_says_so() {
    let server = RedisServer::start().unwrap();
    let ns = "group-bounded";
    let said = ok(
        &server,
        ns,
        &["declare", "tenants", "--group-max-waiting", "2"],
    );
    assert!(said.contains("fair share between groups"), "{said}");
    assert!(said.contains("at most 2 waiting per group"), "{said}");
    let off = run(
        &server,
        ns,
        &[
            "declare",
            "x",
            "--fair-share",
            "off",
            "--group-max-waiting",
            "2",
        ],
    );
    assert!(!off.status.success());

    ok(&server, ns, &["submit", "tenants", "k", "--group", "acme"]);
    ok(
        &server,
        ns,
        &[
            "submit",
            "tenants",
            "k",
            "--group",
            "acme",
            "--delay-ms",
            "600000",
        ],
    );
    let full = run(&server, ns, &["submit", "tenants", "k", "--group", "acme"]);
    assert!(!full.status.success());
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(
        err.contains("group `acme` of queue `tenants` is full: 2 of its tasks wait and the bound per group is 2, so 1 more do not fit"),
        "{err}"
    );
    assert!(err.contains("--group-max-waiting N"), "{err}");
    // Another group has its own room.
    let other = ok(
        &server,
        ns,
        &["submit", "tenants", "k", "--group", "globex", "-n", "2"],
    );
    assert_eq!(ids(&other).len(), 2);
    let table = ok(&server, ns, &["groups", "tenants"]);
    assert!(table.contains("SCHEDULED"), "{table}");
    let acme = table.lines().find(|l| l.starts_with("acme")).unwrap();
    let cols: Vec<&str> = acme.split_whitespace().collect();
    assert_eq!(cols[2..4], ["1", "1"], "ready 1, scheduled 1: {table}");
    let view = json(&ok(&server, ns, &["status", "--json"]));
    assert_eq!(view["queues"][0]["groups"]["max_waiting"], 2, "{view}");
    let status = ok(&server, ns, &["status"]);
    assert!(
        status.contains("groups: 2 waiting, 0 held (at most 2"),
        "{status}"
    );
    // acme (one ready, one scheduled) and globex (two ready) are at their bound.
    assert!(
        status.contains("queue `tenants`: 2 groups are at the bound of 2 waiting per group"),
        "{status}"
    );

    let raised = ok(
        &server,
        ns,
        &["reconfigure", "tenants", "--group-max-waiting", "3"],
    );
    assert!(raised.contains("--group-max-waiting 2 -> 3"), "{raised}");
    ok(&server, ns, &["submit", "tenants", "k", "--group", "acme"]);
}

/// Polls `status --json` every 50 ms until `check` accepts it, for at most `within`.
fn status_until(
    server: &RedisServer,
    ns: &str,
    within: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let view = json(&ok(server, ns, &["status", "--json"]));
        if check(&view) {
            return view;
        }
        assert!(
            start.elapsed() < within,
            "gave up waiting for {what}: {view}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_limited_queue_runs_one_at_a_time_and_gets_a_killed_workers_slot_back() {
    let server = RedisServer::start().unwrap();
    let ns = "limited";
    let said = ok(&server, ns, &["declare", "exports", "--concurrency", "1"]);
    assert!(said.contains("at most 1 active"), "{said}");
    // The first task sleeps long enough to be killed holding the slot; the rest are quick.
    ok(&server, ns, &["submit", "exports", "sleep", "3000"]);
    ok(
        &server,
        ns,
        &["submit", "exports", "sleep", "10", "-n", "5"],
    );
    let ttl = [
        "--queue",
        "exports",
        "--capacity",
        "4",
        "--heartbeat-ttl-ms",
        "1500",
    ];
    let mut first = WorkerProcess::start(&server, ns, "first", &ttl);
    let view = status_until(&server, ns, Duration::from_secs(10), "the long task", |v| {
        v["queues"][0]["running"] == 1
    });
    assert_eq!(view["queues"][0]["concurrency"], 1);
    assert_eq!(
        view["queues"][0]["ready"], 5,
        "the limit holds the rest: {view}"
    );
    let table = ok(&server, ns, &["status"]);
    assert!(table.contains("1 of 1 active (at limit)"), "{table}");

    first.kill();
    let second = WorkerProcess::start(&server, ns, "second", &ttl);
    // Once the killed worker's heartbeat has expired, the second worker's maintenance reaps
    // it: the long task goes back to the queue ahead of the rest (its place is kept) and takes
    // the slot again; the quick ones follow it, one at a time.
    let view = status_until(&server, ns, Duration::from_secs(10), "the slot back", |v| {
        v["queues"][0]["totals"]["failed"] == 1 && v["queues"][0]["running"] == 1
    });
    assert_eq!(view["queues"][0]["ready"], 5, "the long task first: {view}");
    let view = status_until(&server, ns, Duration::from_secs(20), "every task", |v| {
        v["queues"][0]["succeeded"] == 6
    });
    let totals = &view["queues"][0]["totals"];
    assert_eq!(
        (totals["dispatched"].as_u64(), totals["failed"].as_u64()),
        (Some(7), Some(1))
    );
    let changed = ok(
        &server,
        ns,
        &["reconfigure", "exports", "--concurrency", "none"],
    );
    assert!(changed.contains("1 -> none"), "{changed}");
    second.terminate(Duration::from_secs(5));
}

#[test]
fn a_rate_limited_queue_shows_its_tokens_and_when_it_opens() {
    let server = RedisServer::start().unwrap();
    let ns = "rated";
    let bad = run(&server, ns, &["declare", "api", "--rate", "5"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("is not N/PER (like 100/1s or 5/200ms)"),
        "{err}"
    );
    // Two per hour: the third task waits for as long as the test runs.
    let said = ok(&server, ns, &["declare", "api", "--rate", "2/1h"]);
    assert!(said.contains("at most 2 per 1h"), "{said}");
    ok(&server, ns, &["submit", "api", "sleep", "1", "-n", "5"]);
    let worker = WorkerProcess::start(&server, ns, "w", &["--queue", "api", "--capacity", "4"]);
    let view = status_until(&server, ns, Duration::from_secs(10), "two tasks", |v| {
        v["queues"][0]["succeeded"] == 2
    });
    let q = &view["queues"][0];
    assert_eq!(q["rate"], "2 per 1h");
    assert!(q["memory_bytes"].as_u64().unwrap() > 0, "{view}");
    assert_eq!(
        (q["rate_tokens"].as_u64(), q["ready"].as_u64()),
        (Some(0), Some(3))
    );
    let opens = q["opens_in_ms"].as_u64().unwrap();
    assert!(opens > 3_500_000 && opens <= 3_600_000, "{view}");
    let table = ok(&server, ns, &["status"]);
    assert!(table.contains("0 tokens of 2 per 1h, opens in"), "{table}");
    // Removing the limit lets the rest go at once.
    let changed = ok(&server, ns, &["reconfigure", "api", "--rate", "none"]);
    assert!(changed.contains("2 per 1h -> none"), "{changed}");
    status_until(&server, ns, Duration::from_secs(10), "every task", |v| {
        v["queues"][0]["succeeded"] == 5 && v["queues"][0]["opens_in_ms"].is_null()
    });
    worker.terminate(Duration::from_secs(5));
}

#[test]
fn an_edf_queue_expires_late_tasks_and_says_so() {
    let server = RedisServer::start().unwrap();
    let ns = "edf";
    let said = ok(
        &server,
        ns,
        &[
            "declare",
            "quotes",
            "--policy",
            "edf",
            "--expire-late",
            "on",
        ],
    );
    assert!(said.contains("policy edf"), "{said}");
    assert!(said.contains("late tasks expire"), "{said}");
    let refused = run(&server, ns, &["declare", "other", "--expire-late", "on"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("needs the edf policy"), "{err}");
    let refused = run(&server, ns, &["declare", "other", "--expire-late", "yes"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("expected on or off"),
        "{refused:?}"
    );

    // No worker: one task already late expires as it arrives, one due in ten minutes waits.
    let late = ok(
        &server,
        ns,
        &["submit", "quotes", "q", "--deadline-ms", "0"],
    );
    let late = ids(&late)[0].to_owned();
    ok(
        &server,
        ns,
        &["submit", "quotes", "q", "--deadline-ms", "600000"],
    );
    let shown = ok(&server, ns, &["task", &late]);
    assert!(shown.contains("expired"), "{shown}");
    assert!(shown.contains("start_by"), "{shown}");
    let waited = run(&server, ns, &["task", &late, "--wait-ms", "100"]);
    assert!(!waited.status.success());
    let err = String::from_utf8_lossy(&waited.stderr);
    assert!(err.contains("still waiting at its deadline"), "{err}");

    let table = ok(&server, ns, &["status"]);
    assert!(table.contains("1 expired"), "{table}");
    let view = json(&ok(&server, ns, &["status", "--json"]));
    let q = &view["queues"][0];
    assert_eq!(
        (
            &q["expired"],
            &q["ready"],
            &q["expire_late"],
            &q["totals"]["expired"]
        ),
        (&1.into(), &1.into(), &true.into(), &1.into()),
        "{view}"
    );
    let listed = json(&ok(
        &server,
        ns,
        &["tasks", "quotes", "--state", "expired", "--json"],
    ));
    assert_eq!(listed["tasks"][0]["id"], late.as_str(), "{listed}");
    assert!(listed["tasks"][0]["start_by"].is_u64(), "{listed}");

    let off = ok(
        &server,
        ns,
        &["reconfigure", "quotes", "--expire-late", "off"],
    );
    assert!(off.contains("on -> off"), "{off}");
}

/// A queue shared between tenants, one active task per group: `groups` and `status` show the
/// groups (one held at its limit), a weight is set; a worker killed with SIGKILL while it holds
/// acme's only slot: globex runs on meanwhile, and acme's slot comes back once the next
/// worker's maintenance reclaims the lease. Group keys on a plain queue, and a per-group limit
/// without fair share, are refused with the reason.
#[test]
fn a_shared_queue_runs_one_per_group_and_gets_a_killed_workers_group_slot_back() {
    let server = RedisServer::start().unwrap();
    let ns = "shared";
    let said = ok(
        &server,
        ns,
        &[
            "declare",
            "tenants",
            "--fair-share",
            "on",
            "--group-concurrency",
            "1",
            "--group-rate",
            "1000/1s",
        ],
    );
    assert!(
        said.contains(
            "fair share between groups, at most 1 active per group, at most 1000 per 1s per group"
        ),
        "{said}"
    );
    ok(
        &server,
        ns,
        &["submit", "tenants", "sleep", "3000", "--group", "acme"],
    );
    ok(
        &server,
        ns,
        &[
            "submit", "tenants", "sleep", "10", "-n", "3", "--group", "acme",
        ],
    );
    ok(
        &server,
        ns,
        &[
            "submit", "tenants", "sleep", "10", "-n", "3", "--group", "globex",
        ],
    );
    let set = ok(&server, ns, &["groups", "tenants", "--weight", "globex=2"]);
    assert!(set.contains("weight 2"), "{set}");
    let acme = set
        .lines()
        .find(|l| l.starts_with("acme"))
        .unwrap_or_default();
    assert!(acme.contains(" 4 ") && acme.contains("waiting"), "{set}");
    // globex's own limits: two at once, at most 20 a second (none is dispatched yet: no worker).
    let own = ok(
        &server,
        ns,
        &[
            "groups",
            "tenants",
            "--concurrency",
            "globex=2",
            "--rate",
            "globex=20/1s",
        ],
    );
    assert!(own.contains("2 active, 20 per 1s"), "{own}");
    let groups = json(&ok(&server, ns, &["groups", "tenants", "--json"]));
    assert_eq!(groups[1]["key"], "globex");
    assert_eq!(
        (groups[1]["weight"].as_u64(), groups[1]["ready"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(groups[1]["limits"]["concurrency"], 2);
    assert_eq!(groups[1]["tokens"], 20);
    // Back to the queue's limits.
    let back = ok(
        &server,
        ns,
        &[
            "groups",
            "tenants",
            "--concurrency",
            "globex=none",
            "--rate",
            "globex=none",
        ],
    );
    assert!(back.contains("the queue's"), "{back}");

    let ttl = [
        "--queue",
        "tenants",
        "--capacity",
        "4",
        "--heartbeat-ttl-ms",
        "1500",
    ];
    let mut first = WorkerProcess::start(&server, ns, "first", &ttl);
    // acme's long task holds its group's only slot; globex's three run one at a time.
    let view = status_until(
        &server,
        ns,
        Duration::from_secs(15),
        "globex's tasks",
        |v| v["queues"][0]["succeeded"] == 3 && v["queues"][0]["running"] == 1,
    );
    assert_eq!(view["queues"][0]["ready"], 3, "acme's rest wait: {view}");
    assert_eq!(view["queues"][0]["groups"]["concurrency"], 1);
    let table = ok(&server, ns, &["status"]);
    assert!(
        table.contains("groups: 1 waiting, 1 held (1 per group, 1000 per 1s"),
        "{table}"
    );

    first.kill();
    let second = WorkerProcess::start(&server, ns, "second", &ttl);
    // The killed worker's lease is reclaimed: acme's long task runs again, then acme's rest.
    let view = status_until(
        &server,
        ns,
        Duration::from_secs(15),
        "acme's slot back",
        |v| v["queues"][0]["totals"]["failed"] == 1 && v["queues"][0]["running"] == 1,
    );
    assert_eq!(view["queues"][0]["ready"], 3, "the long task first: {view}");
    status_until(&server, ns, Duration::from_secs(20), "every task", |v| {
        v["queues"][0]["succeeded"] == 7
    });
    second.terminate(Duration::from_secs(5));

    let ns = "plain";
    ok(&server, ns, &["declare", "mail"]);
    let refused = run(
        &server,
        ns,
        &["submit", "mail", "sleep", "1", "--group", "acme"],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("does not share between groups"), "{err}");
    let both = run(
        &server,
        ns,
        &[
            "declare",
            "x",
            "--fair-share",
            "off",
            "--group-concurrency",
            "2",
        ],
    );
    assert!(!both.status.success());
    let err = String::from_utf8_lossy(&both.stderr);
    assert!(err.contains("cannot go with --fair-share off"), "{err}");
}
