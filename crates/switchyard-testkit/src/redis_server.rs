//! Real `redis-server` processes for tests: each on a free loopback port (never 6379), with its
//! own temporary directory, started and waited for, and killed when dropped.
//!
//! [`ServerOptions`] carries extra configuration lines, so that replicas, Sentinel and Cluster
//! nodes can be built from the same pieces (`replicaof`, `cluster-enabled`, …).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The port tests must never use: a developer's own Redis may be there.
pub const FORBIDDEN_PORT: u16 = 6379;

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// The program (default `redis-server`).
    pub program: Option<String>,
    /// Extra `--name value` pairs.
    pub args: Vec<(String, String)>,
}

impl ServerOptions {
    /// Adds `--name value`.
    pub fn arg(mut self, name: &str, value: &str) -> Self {
        self.args.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    options: ServerOptions,
}

pub(crate) fn unique_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "switchyard-redis-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// A free loopback port other than 6379.
pub fn free_port() -> std::io::Result<u16> {
    loop {
        let port = TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        if port != FORBIDDEN_PORT {
            return Ok(port);
        }
    }
}

/// A free loopback port for a Cluster node: below 55535, with its bus port (+10000) free too.
pub fn free_cluster_port() -> std::io::Result<u16> {
    loop {
        let port = free_port()?;
        if port < 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return Ok(port);
        }
    }
}

/// Starts `program` on `port` with its files in `dir`.
fn spawn(program: &str, port: u16, dir: &Path, options: &ServerOptions) -> Result<Child, String> {
    let mut cmd = Command::new(program);
    cmd.arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--save")
        .arg("")
        .arg("--appendonly")
        .arg("no")
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"));
    for (name, value) in &options.args {
        cmd.arg(format!("--{name}")).arg(value);
    }
    match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => Ok(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "`{program}` is not installed or not on PATH: install Redis 7 (Debian/Ubuntu: \
             `apt-get install redis-server redis-tools`; macOS: `brew install redis`)"
        )),
        Err(e) => Err(format!("cannot start {program}: {e}")),
    }
}

/// Sends PING and checks that a Redis answers (PONG, or an authentication error when the
/// server requires a password).
pub(crate) fn answers(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

impl RedisServer {
    /// Starts a plain server (no persistence).
    pub fn start() -> Result<Self, String> {
        Self::start_with(&ServerOptions::default())
    }

    /// Starts a server with extra options; retries on another port if the chosen one is taken.
    pub fn start_with(options: &ServerOptions) -> Result<Self, String> {
        let program = options
            .program
            .clone()
            .unwrap_or_else(|| "redis-server".into());
        let mut last_error = String::new();
        for _ in 0..5 {
            let cluster_node = options.args.iter().any(|(n, _)| n == "cluster-enabled");
            let port = if cluster_node {
                free_cluster_port()
            } else {
                free_port()
            }
            .map_err(|e| format!("no free port: {e}"))?;
            let dir = unique_dir();
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let child = match spawn(&program, port, &dir, options) {
                Ok(c) => c,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            };
            let mut server = RedisServer {
                child,
                port,
                dir,
                options: options.clone(),
            };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Waits until this child answers on its port and its log says it is ready.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            // The log line tells that this child bound the port: a PONG alone could come
            // from a server another test started on the same port a moment earlier.
            if answers(self.port) && self.log().contains("Ready to accept connections") {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "redis-server exited with {status}: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server on port {} did not answer within 10 s",
            self.port
        ))
    }

    /// Starts the server again on the same port with the same options, after
    /// [`kill`](RedisServer::kill): it comes back **empty** (no persistence), as after a
    /// restart of a server run with `--save ''`. Killing a running server first.
    pub fn restart_empty(&mut self) -> Result<(), String> {
        self.kill();
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        self.restart_from_snapshot()
    }

    /// Writes a snapshot now (`SAVE`), as a server configured to save would have at some point.
    pub fn save_snapshot(&self) -> Result<(), String> {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "SAVE"])
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if String::from_utf8_lossy(&out.stdout).trim() == "OK" {
            Ok(())
        } else {
            Err(format!("SAVE: {}", String::from_utf8_lossy(&out.stdout)))
        }
    }

    /// Kills the server (a crash) and starts it again on the same port from its last snapshot
    /// ([`save_snapshot`](RedisServer::save_snapshot)): what was written after it is lost.
    pub fn restart_from_snapshot(&mut self) -> Result<(), String> {
        self.kill();
        let _ = std::fs::remove_file(self.dir.join("redis.log"));
        let program = self
            .options
            .program
            .clone()
            .unwrap_or_else(|| "redis-server".into());
        let mut last = String::new();
        // The port was ours a moment ago; another process could take it in between, which
        // shows as a failed start: try a few times.
        for _ in 0..50 {
            self.child = spawn(&program, self.port, &self.dir, &self.options)?;
            match self.wait_ready() {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }

    /// Starts the server again on the same port, empty, as a replica of `primary_port` (any
    /// `replicaof` it was started with is replaced): how a crashed primary rejoins after a
    /// failover.
    pub fn restart_as_replica_of(&mut self, primary_port: u16) -> Result<(), String> {
        self.options.args.retain(|(name, _)| name != "replicaof");
        self.options
            .args
            .push(("replicaof".into(), format!("127.0.0.1 {primary_port}")));
        self.restart_empty()
    }

    /// The server's process id (for `kill -STOP` and the like).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes every pub/sub connection (`CLIENT KILL TYPE pubsub`), as a network fault would;
    /// returns how many there were. Blocks briefly (one loopback round trip).
    pub fn kill_pubsub_clients(&self) -> Result<u64, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|e| format!("cannot connect to port {}: {e}", self.port))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        s.write_all(b"CLIENT KILL TYPE pubsub\r\n")
            .map_err(|e| format!("cannot send CLIENT KILL: {e}"))?;
        let mut buf = [0u8; 64];
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("no reply to CLIENT KILL: {e}"))?;
        let reply = String::from_utf8_lossy(&buf[..n]);
        reply
            .strip_prefix(':')
            .and_then(|r| r.trim_end().parse().ok())
            .ok_or_else(|| format!("unexpected reply to CLIENT KILL: {reply:?}"))
    }

    /// The server's working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The end of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// The server's whole log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Kills the server now (a crash, as far as clients can tell).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// FCALL calls the server counted since its stats were last reset (`INFO commandstats`), 0
/// before the first.
pub async fn fcall_count(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = match redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
    {
        Ok(info) => info,
        Err(e) => panic!("INFO commandstats: {e}"),
    };
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_fcall:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_stops() {
        let server = RedisServer::start().expect("redis-server starts");
        assert_ne!(server.port(), FORBIDDEN_PORT);
        assert!(answers(server.port()));
        let port = server.port();
        let dir = server.dir().to_path_buf();
        drop(server);
        assert!(!answers(port), "killed on drop");
        assert!(!dir.exists(), "temporary directory removed");
    }

    #[test]
    fn missing_program_is_explained() {
        let options = ServerOptions {
            program: Some("redis-server-that-does-not-exist".into()),
            args: Vec::new(),
        };
        let err = RedisServer::start_with(&options).unwrap_err();
        assert!(err.contains("not installed"), "{err}");
    }
}
