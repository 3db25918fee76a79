//! Running the `switchyard` binary against a test redis-server: one-shot commands, and worker
//! processes that are SIGKILLed when dropped (so a failing test leaves nothing behind).
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)] // each test file uses a part

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use switchyard::Client;
use switchyard_testkit::redis_server::RedisServer;

/// Flags of a worker on queue `jobs` that notices a lost peer within a few seconds: a 2 s
/// heartbeat TTL, maintenance every 100 ms.
pub const WORKER: [&str; 6] = [
    "--queue",
    "jobs",
    "--heartbeat-ttl-ms",
    "2000",
    "--maintenance-ms",
    "100",
];

/// The binary under test.
pub fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

/// Runs `switchyard <args>` against `server`/`namespace` and returns its output.
pub fn run(server: &RedisServer, namespace: &str, args: &[&str]) -> Output {
    switchyard()
        .args(args)
        .env("SWITCHYARD_URL", server.url())
        .env("SWITCHYARD_NAMESPACE", namespace)
        .stdin(Stdio::null())
        .output()
        .expect("the switchyard binary runs")
}

/// Like [`run`], but panics with stderr unless the command succeeded; returns stdout.
pub fn ok(server: &RedisServer, namespace: &str, args: &[&str]) -> String {
    let out = run(server, namespace, args);
    assert!(
        out.status.success(),
        "switchyard {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `switchyard worker` process, killed with SIGKILL when dropped.
pub struct WorkerProcess {
    pub id: String,
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    /// Starts `switchyard worker --id <id> <extra>` with its stderr in a log file.
    pub fn start(server: &RedisServer, namespace: &str, id: &str, extra: &[&str]) -> Self {
        Self::start_logging(server, namespace, id, extra, "warn")
    }

    /// [`WorkerProcess::start`] with `RUST_LOG=<filter>`; the log file is named after `id` and
    /// a counter, so that two processes with one id keep separate logs.
    pub fn start_logging(
        server: &RedisServer,
        namespace: &str,
        id: &str,
        extra: &[&str],
        filter: &str,
    ) -> Self {
        Self::start_at(&server.url(), server.dir(), namespace, id, extra, filter)
    }

    /// A worker process for the Redis at `url` (any form: a Cluster's, say), its log in `dir`.
    pub fn start_at(
        url: &str,
        dir: &std::path::Path,
        namespace: &str,
        id: &str,
        extra: &[&str],
        filter: &str,
    ) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = dir.join(format!("worker-{id}-{n}.log"));
        let file = std::fs::File::create(&log).expect("a log file in the server's temp dir");
        let child = switchyard()
            .args(["worker", "--id", id])
            .args(extra)
            .env("SWITCHYARD_URL", url)
            .env("SWITCHYARD_NAMESPACE", namespace)
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("the switchyard binary starts");
        WorkerProcess {
            id: id.to_owned(),
            child,
            log,
        }
    }

    /// SIGKILL: no shutdown, no deregistration, leases left behind.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a graceful exit; returns its log.
    pub fn terminate(mut self, within: Duration) -> String {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot send SIGTERM");
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "worker exited with {status}: {}",
                    self.log()
                );
                return self.log();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("worker {} did not stop within {within:?}", self.id);
    }

    /// Waits up to `within` for the process to exit by itself; its exit status and log.
    pub fn wait_exit(&mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "worker {} did not exit within {within:?}: {}",
            self.id,
            self.log()
        );
    }

    /// Sends `signal` (e.g. `-STOP`, `-CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot send {signal}");
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `switchyard dashboard` process on a free loopback port, killed when dropped.
pub struct DashboardProcess {
    pub port: u16,
    child: Child,
}

impl DashboardProcess {
    /// Starts `switchyard dashboard --refresh-ms 200 <extra>` and waits for the line that says
    /// it listens.
    pub fn start(server: &RedisServer, namespace: &str, extra: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let port = switchyard_testkit::redis_server::free_port().unwrap();
        let mut child = switchyard()
            .args(["dashboard", "--refresh-ms", "200", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("SWITCHYARD_URL", server.url())
            .env("SWITCHYARD_NAMESPACE", namespace)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the switchyard binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with(&format!("dashboard on http://127.0.0.1:{port}/")),
            "the dashboard did not start: {line:?}"
        );
        DashboardProcess { port, child }
    }

    /// The page's address.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// SIGTERM, then waits up to `within` for it to exit; its exit status.
    pub fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "cannot send SIGTERM");
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(started.elapsed() < within, "the dashboard ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DashboardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `id` is a live worker.
pub async fn registered(client: &Client, id: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("worker {id} to register"),
        || async {
            let stats = client.stats().await.ok()?;
            stats
                .workers
                .iter()
                .any(|w| w.id.as_str() == id)
                .then_some(())
        },
    )
    .await
}

/// Calls per command since the server started, from `INFO commandstats` (`fcall`,
/// `function|load`, …).
pub async fn command_calls(server: &RedisServer) -> std::collections::HashMap<String, u64> {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}
