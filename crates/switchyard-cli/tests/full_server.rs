//! A Redis at `maxmemory`: new processes can still connect and free memory, pause, or drain
//! the backlog, and connecting loads the function library only where it is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::Duration;

use support::{WorkerProcess, command_calls, eventually, ok, registered, run};
use switchyard::Client;
use switchyard_testkit::redis_server::RedisServer;

async fn config_set(server: &RedisServer, name: &str, value: &str) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn used_memory(server: &RedisServer) -> u64 {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

fn loads(calls: &std::collections::HashMap<String, u64>) -> u64 {
    calls.get("function|load").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_can_be_inspected_paused_purged_and_drained_by_new_processes() {
    let server = RedisServer::start().unwrap();
    let ns = "full";
    // The first process finds no library and loads it; the next ones find it.
    ok(&server, ns, &["declare", "q"]);
    ok(&server, ns, &["declare", "other"]);
    assert_eq!(loads(&command_calls(&server).await), 1);
    ok(
        &server,
        ns,
        &["submit", "q", "echo", "1", "--count", "300", "--quiet"],
    );
    ok(
        &server,
        ns,
        &["submit", "other", "echo", "1", "--count", "50", "--quiet"],
    );
    ok(&server, ns, &["status"]);
    assert_eq!(loads(&command_calls(&server).await), 1, "loaded again");

    // Full: a submit is refused, and says so.
    let used = used_memory(&server).await;
    config_set(&server, "maxmemory", &(used / 2).to_string()).await;
    let refused = run(&server, ns, &["submit", "q", "echo", "1"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("out of memory"), "{said}");

    // Every way out still works from a new process.
    let status = ok(&server, ns, &["status"]);
    assert!(status.contains("300"), "{status}");
    ok(&server, ns, &["pause", "q"]);
    ok(&server, ns, &["resume", "q"]);
    let purged = ok(&server, ns, &["purge", "other", "--waiting", "--yes"]);
    assert!(purged.contains("50"), "{purged}");
    let worker = WorkerProcess::start(&server, ns, "drainer", &["--queue", "q", "--capacity", "8"]);
    let client = Client::connect(&server.url(), ns).await.unwrap();
    registered(&client, "drainer").await;
    eventually(Duration::from_secs(60), "the backlog drained", || async {
        let stats = client.stats().await.ok()?;
        let q = stats
            .queues
            .iter()
            .find(|q| q.queue.as_ref().is_some_and(|n| n.as_str() == "q"))?;
        (q.ready == 0 && q.running == 0 && q.succeeded == 300).then_some(())
    })
    .await;
    drop(worker);
    assert_eq!(
        loads(&command_calls(&server).await),
        1,
        "a process connecting to a server that has the library loads nothing"
    );
}
