//! `switchyard submit` and `task` when things go wrong half-way or get large: a server that
//! fills up, a reader of the output that goes away, a result of a megabyte.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use support::{ok, run, switchyard};
use switchyard::Client;
use switchyard_testkit::redis_server::{RedisServer, ServerOptions};

async fn ready(server: &RedisServer, ns: &str) -> u64 {
    let client = Client::connect(&server.url(), ns).await.unwrap();
    client.stats().await.unwrap().queues[0].ready
}

/// A reader that takes one line and goes (`| head -1`) stops the printing, not the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_reader_does_not_stop_a_submit_half_way() {
    let server = RedisServer::start().unwrap();
    let ns = "pipe";
    ok(&server, ns, &["declare", "q"]);
    let mut child = switchyard()
        .args([
            "submit", "q", "echo", "1", "--count", "1000", "--batch", "50",
        ])
        .env("SWITCHYARD_URL", server.url())
        .env("SWITCHYARD_NAMESPACE", ns)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim().len(), 26, "a task id: {first:?}");
    // The reader is gone: the pipe is closed.
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ready(&server, ns).await, 1000, "every task stored");
}

/// A server that fills up part-way: the command says how many tasks it stored and how to
/// submit only the rest; doing so leaves exactly the tasks asked for, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_cut_short_says_what_it_stored_and_its_rerun_stores_only_the_rest() {
    let server = RedisServer::start_with(
        &ServerOptions::default()
            .arg("maxmemory", "3mb")
            .arg("maxmemory-policy", "noeviction"),
    )
    .unwrap();
    let ns = "oom";
    ok(&server, ns, &["declare", "q"]);
    let payload = format!("\"{}\"", "x".repeat(200));
    let args = [
        "submit", "q", "echo", &payload, "--count", "20000", "--quiet",
    ];
    let failed = run(&server, ns, &args);
    assert!(!failed.status.success());
    let said = String::from_utf8_lossy(&failed.stderr).into_owned();
    eprintln!("{said}");
    let stored: u64 = said
        .split(" of 20000 tasks were stored")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stored count in: {said}"));
    assert!(stored > 0 && stored < 20_000, "{stored}");
    assert!(said.contains("out of memory"), "{said}");
    assert_eq!(ready(&server, ns).await, stored, "the count is exact");
    let first = said
        .split("--first-id ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no --first-id in: {said}"))
        .to_owned();

    // Room again: the same command with the first id stores only what is missing.
    let admin = redis::Client::open(server.url()).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut again = args.to_vec();
    again.extend(["--first-id", &first]);
    let out = ok(&server, ns, &again);
    assert!(
        out.contains(&format!("submitted 20000 tasks to q ({stored} duplicates)")),
        "{out}"
    );
    assert_eq!(ready(&server, ns).await, 20_000, "every task once");
}

/// A large result is shown as a preview with its size; `--result` prints it whole, as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_is_previewed_and_printed_whole_on_request() {
    let server = RedisServer::start().unwrap();
    let ns = "large";
    ok(&server, ns, &["declare", "q"]);
    let worker = support::WorkerProcess::start(&server, ns, "w", &["--queue", "q"]);
    let payload = format!("\"{}\"", "x".repeat((1 << 20) - 16));
    let path = server.dir().join("payload.json");
    std::fs::write(&path, &payload).unwrap();
    let id = ok(
        &server,
        ns,
        &[
            "submit",
            "q",
            "echo",
            "--payload-file",
            path.to_str().unwrap(),
        ],
    )
    .trim()
    .to_owned();
    let shown = ok(&server, ns, &["task", &id, "--wait-ms", "20000"]);
    let longest = shown.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 300, "a line of {longest} bytes");
    assert!(
        shown.contains(&format!("({} bytes;", payload.len())),
        "{shown}"
    );
    let whole = run(&server, ns, &["task", &id, "--result"]);
    assert!(whole.status.success());
    assert_eq!(whole.stdout, payload.as_bytes());
    drop(worker);
}
