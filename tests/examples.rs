//! The examples run as the README says: the memory example on its own, and the Redis example
//! as three processes (two workers, one producer) against a test redis-server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_testkit::redis_server::RedisServer;

/// Builds the examples (a no-op when `cargo test` already did) and returns their directory.
fn examples_dir() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--examples"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the examples build");
    // This test runs from target/<profile>/deps; examples live in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples")
}

/// A child process, killed if the test fails before it stopped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn memory_example_runs() {
    let out = Command::new(examples_dir().join("memory"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("px by ").count(), 9, "{text}");
    assert!(text.contains("large completed"), "{text}");
}

#[test]
fn redis_example_runs_as_three_processes() {
    let dir = examples_dir();
    let server = RedisServer::start().unwrap();
    let start_worker = |id: &str| {
        Process(
            Command::new(dir.join("redis_worker"))
                .arg(id)
                .env("SWITCHYARD_URL", server.url())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let workers = [start_worker("worker-a"), start_worker("worker-b")];
    // Both must be registered before the producer submits, for both to get a share.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(switchyard::Client::connect(&server.url(), "switchyard"))
        .unwrap();
    let started = Instant::now();
    while runtime
        .block_on(client.stats())
        .map_or(0, |s| s.workers.len())
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "workers did not register"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(dir.join("redis_producer"))
        .env("SWITCHYARD_URL", server.url())
        .output()
        .unwrap();
    for mut w in workers {
        Command::new("kill")
            .args(["-INT", &w.0.id().to_string()])
            .status()
            .unwrap();
        assert!(w.0.wait().unwrap().success(), "worker stopped gracefully");
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("120 words counted"), "{text}");
    assert!(
        text.contains("worker-a") && text.contains("worker-b"),
        "{text}"
    );
}
