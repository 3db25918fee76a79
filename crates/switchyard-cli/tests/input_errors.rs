//! What a user who gets something wrong sees: clear errors for bad input and for connection
//! flags, passwords never shown, messages that stay readable, flags that take what they say,
//! and a command whose reader goes away ending quietly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use support::{WORKER, WorkerProcess, ok, run, switchyard};
use switchyard_testkit::redis_server::RedisServer;

#[test]
fn bad_input_gets_a_clear_error() {
    let server = RedisServer::start().unwrap();
    let ns = "bad";
    let err = |args: &[&str]| {
        let out = run(&server, ns, args);
        assert!(!out.status.success(), "switchyard {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(err(&["declare", "jobs", "--policy", "lifo"]).contains("expected fcfs, priority"));
    assert!(err(&["declare", "bad queue!"]).contains("queue"));
    ok(&server, ns, &["declare", "jobs"]);
    assert!(err(&["submit", "jobs", "echo", "not json"]).contains("pass --raw"));
    assert!(err(&["submit", "nowhere", "echo"]).contains("nowhere"));
    assert!(err(&["submit", "jobs", "echo", "--priority", "70000"]).contains("--priority"));
    assert!(err(&["submit", "jobs", "echo", "--max-attempts", "0"]).contains("attempts"));
    assert!(err(&["task", "not-an-id"]).contains("not-an-id"));
    // A worker's flags are checked before it connects: the reason, not a connection error.
    let refused = switchyard()
        .args(["worker", "--queue", "q", "--capacity", "0"])
        .env("SWITCHYARD_URL", "redis://127.0.0.1:1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(said.contains("invalid capacity: 0"), "{said}");
    assert!(!said.contains("connect"), "{said}");
    let memory = switchyard_cli_with_url("memory://", &["status"]);
    assert!(memory.contains("switchyard demo"), "{memory}");
    let refused = switchyard_cli_with_url("redis://127.0.0.1:1", &["status"]);
    assert!(
        refused.contains("cannot connect to `redis://127.0.0.1:1`"),
        "{refused}"
    );
}

/// stderr of a failing `switchyard` run against `url`.
fn switchyard_cli_with_url(url: &str, args: &[&str]) -> String {
    let out = support::switchyard()
        .args(args)
        .env("SWITCHYARD_URL", url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The connection flags every Redis command takes: a CA file that cannot be read and a
/// durable mode of 0 replicas are refused with the reason; a Sentinel URL is understood (here
/// no Sentinel answers, and the error says what each address answered).
#[test]
fn connection_flags_say_what_is_wrong() {
    let ca = switchyard_cli_with_url(
        "rediss://127.0.0.1:1",
        &["status", "--tls-ca", "/nonexistent/ca.pem"],
    );
    assert!(
        ca.contains("--tls-ca") && ca.contains("cannot read /nonexistent/ca.pem"),
        "{ca}"
    );
    let durable = switchyard_cli_with_url("redis://127.0.0.1:1", &["status", "--durable", "0"]);
    assert!(durable.contains("--durable"), "{durable}");
    let half = switchyard_cli_with_url("rediss://127.0.0.1:1", &["status", "--tls-cert", "c.pem"]);
    assert!(half.contains("--tls-key"), "{half}");
    let unreadable = switchyard_cli_with_url(
        "rediss://127.0.0.1:1",
        &[
            "status",
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ],
    );
    assert!(
        unreadable.contains("--tls-cert/--tls-key")
            && unreadable.contains("cannot read /nonexistent/c.pem"),
        "{unreadable}"
    );
    let partitions =
        switchyard_cli_with_url("redis://127.0.0.1:1", &["status", "--partitions", "257"]);
    assert!(partitions.contains("--partitions"), "{partitions}");
    let none = support::switchyard()
        .arg("status")
        .env_remove("SWITCHYARD_URL")
        .output()
        .unwrap();
    let none = String::from_utf8_lossy(&none.stderr);
    assert!(
        none.contains("--url") && none.contains("SWITCHYARD_URL"),
        "{none}"
    );
    let cluster = switchyard_cli_with_url("redis+cluster://127.0.0.1:1", &["status"]);
    assert!(cluster.contains("cannot connect to"), "{cluster}");
    let sentinel =
        switchyard_cli_with_url("redis+sentinel://:s3cret@127.0.0.1:1/jobs", &["status"]);
    assert!(
        sentinel.contains("no Sentinel named a reachable primary for `jobs`")
            && sentinel.contains("127.0.0.1:1")
            && !sentinel.contains("s3cret"),
        "{sentinel}"
    );
}

/// A password in a URL is never printed: not in errors, not in `--help` (which shows the
/// values of environment variables unless told not to), not in a worker's start line.
#[test]
fn passwords_are_never_shown() {
    let secret = "s3cret-pw";
    let refused = switchyard_cli_with_url(&format!("redis://:{secret}@127.0.0.1:1"), &["status"]);
    assert!(!refused.contains(secret), "{refused}");
    assert!(refused.contains("redis://:***@127.0.0.1:1"), "{refused}");
    let user = switchyard_cli_with_url(&format!("redis://app:{secret}@127.0.0.1:1/0"), &["status"]);
    assert!(
        !user.contains(secret) && user.contains("redis://app:***@127.0.0.1:1/0"),
        "{user}"
    );
    for command in ["status", "worker", "submit", "declare"] {
        let help = support::switchyard()
            .args([command, "--help"])
            .env("SWITCHYARD_URL", format!("redis://:{secret}@127.0.0.1:1"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.status.success() && !text.contains(secret),
            "{command}: {text}"
        );
    }

    // A server that needs the password: the worker's log and a wrong password's error.
    let server = RedisServer::start_with(
        &switchyard_testkit::redis_server::ServerOptions::default().arg("requirepass", secret),
    )
    .unwrap();
    let url = format!("redis://:{secret}@127.0.0.1:{}", server.port());
    let out = support::switchyard()
        .args(["declare", "q"])
        .env("SWITCHYARD_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut worker = support::switchyard()
        .args(["worker", "--queue", "q"])
        .env("SWITCHYARD_URL", &url)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    {
        use std::io::BufRead;
        let stderr = worker.stderr.take().unwrap();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            log.push_str(&line);
            log.push('\n');
            if line.contains("registered") {
                break;
            }
        }
    }
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(log.contains("redis://:***@127.0.0.1"), "{log}");
    assert!(!log.contains(secret), "{log}");
    let wrong = format!("redis://:wrong-{secret}@127.0.0.1:{}", server.port());
    let denied = switchyard_cli_with_url(&wrong, &["status"]);
    assert!(!denied.contains(secret), "{denied}");
    assert!(denied.contains("authentication"), "{denied}");
}

/// Messages stay short and readable whatever the input, and flags take what they say.
#[test]
fn messages_stay_readable_and_flags_take_what_they_say() {
    let server = RedisServer::start().unwrap();
    let ns = "msg";
    let err = |args: &[&str]| {
        let out = run(&server, ns, args);
        assert!(!out.status.success(), "switchyard {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let long = "q".repeat(10_000);
    let said = err(&["declare", &long]);
    assert!(said.len() < 300, "{} bytes: {said}", said.len());
    assert!(said.contains("10000 bytes"), "{said}");
    let said = err(&["declare", "café"]);
    assert!(said.contains("contains 'é'"), "{said}");
    // (A NUL byte cannot be passed on a command line; the library test covers it.)
    let said = err(&["declare", "a\nb\u{1b}[31mc"]);
    assert_eq!(said.trim_end().lines().count(), 1, "{said:?}");
    assert!(said.contains("\\n") && said.contains("\\u{1b}"), "{said}");
    let said = err(&["declare", "q", "--timeout-ms", "5184000000"]);
    assert!(
        said.contains("5184000000 ms is outside 1..=4294967295 ms"),
        "{said}"
    );
    ok(&server, ns, &["declare", "jobs"]);
    let said = err(&["submit", "jobs", "echo", "--priority", "-1"]);
    assert!(said.contains("from 0 (the lowest"), "{said}");
    assert!(
        !said.contains("-- -1"),
        "no tip that would make it the payload: {said}"
    );

    // A payload larger than a command line holds, from a file and from standard input.
    let big = format!("\"{}\"", "x".repeat(200 * 1024));
    let path = server.dir().join("payload.json");
    std::fs::write(&path, &big).unwrap();
    let id = ok(
        &server,
        ns,
        &[
            "submit",
            "jobs",
            "echo",
            "--payload-file",
            path.to_str().unwrap(),
        ],
    );
    let mut child = support::switchyard()
        .args(["submit", "jobs", "echo", "--payload-file", "-"])
        .env("SWITCHYARD_URL", server.url())
        .env("SWITCHYARD_NAMESPACE", ns)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(big.as_bytes())
            .unwrap();
    }
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success());
    let worker = WorkerProcess::start(&server, ns, "w", &WORKER);
    for id in [
        id.trim().to_owned(),
        String::from_utf8_lossy(&piped.stdout).trim().to_owned(),
    ] {
        let shown = ok(&server, ns, &["task", &id, "--wait-ms", "20000"]);
        assert!(shown.contains("succeeded"), "{shown}");
    }
    drop(worker);
    let said = err(&["submit", "jobs", "echo", "x", "--payload-file", "-"]);
    assert!(said.contains("cannot be used with"), "{said}");
}

/// A namespace partitioned from the command line: `declare --partitions 3` decides; later
/// commands find the partitions without the flag, and one that names another count is refused.
#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    let server = RedisServer::start().unwrap();
    ok(&server, "pipe", &["declare", "jobs"]);
    for args in [&["status"][..], &["events"], &["demo", "--tasks", "2000"]] {
        let mut child = support::switchyard()
            .args(args)
            .env("SWITCHYARD_URL", server.url())
            .env("SWITCHYARD_NAMESPACE", "pipe")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before (nearly always) anything is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}
