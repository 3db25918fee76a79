//! Flow control from the command line, against a real redis-server: a bounded queue declared,
//! filled, refused, shown full by `status` (table and JSON), and its bound raised and removed
//! with `reconfigure`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use support::{ok, run};
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
        view["warnings"][0]
            .as_str()
            .unwrap()
            .contains("`exports` is full"),
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
