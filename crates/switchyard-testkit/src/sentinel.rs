//! A Redis primary with replicas, watched by Sentinels: real processes on free loopback ports,
//! for failover tests.
//!
//! [`SentinelSet::start`] starts the servers (the first one the primary, the others its
//! replicas) and the Sentinels (`redis-sentinel` if installed, else `redis-server --sentinel`),
//! each Sentinel with its own writable config file and short timeouts (down after 1 s), and
//! returns once every replica is in sync and every Sentinel knows every replica and every
//! other Sentinel: before that a failover could fail with `NOGOODSLAVE`.
//!
//! Every wait here polls an observable state (a role, a Sentinel's answer), never a fixed
//! sleep. Everything is killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{RedisServer, ServerOptions, answers, free_port, unique_dir};

/// The master name the Sentinels monitor.
pub const MASTER_NAME: &str = "switchyard";

/// How long a primary may stay silent before Sentinels call it down, in the set-ups started
/// here.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// One `redis-server --sentinel` process.
#[derive(Debug)]
struct SentinelProcess {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The program that runs a Sentinel: `redis-sentinel` where installed, else `redis-server`
/// with `--sentinel`.
fn sentinel_command(conf: &std::path::Path) -> Command {
    let has_sentinel_binary = Command::new("redis-sentinel")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_sentinel_binary {
        let mut cmd = Command::new("redis-sentinel");
        cmd.arg(conf);
        cmd
    } else {
        let mut cmd = Command::new("redis-server");
        cmd.arg(conf).arg("--sentinel");
        cmd
    }
}

impl SentinelProcess {
    fn start(primary_port: u16, quorum: usize) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            let dir = unique_dir();
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let conf = dir.join("sentinel.conf");
            let down = DOWN_AFTER.as_millis();
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {quorum}\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
                 sentinel failover-timeout {MASTER_NAME} 3000\n\
                 sentinel parallel-syncs {MASTER_NAME} 2\n",
                dir = dir.display(),
                log = dir.join("sentinel.log").display(),
            );
            std::fs::write(&conf, text)
                .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
            let child = sentinel_command(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start a Sentinel: {e}"))?;
            let mut sentinel = SentinelProcess { child, port, dir };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                let log =
                    std::fs::read_to_string(sentinel.dir.join("sentinel.log")).unwrap_or_default();
                if answers(port) && log.contains("+monitor") {
                    return Ok(sentinel);
                }
                if let Ok(Some(status)) = sentinel.child.try_wait() {
                    last = format!("Sentinel exited with {status}: {log}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if last.is_empty() {
                last = format!("Sentinel on port {port} did not start within 10 s");
            }
            drop(sentinel);
        }
        Err(last)
    }
}

/// A primary, its replicas and the Sentinels watching them; killed on drop.
#[derive(Debug)]
pub struct SentinelSet {
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
}

fn connect(port: u16) -> Result<redis::Connection, String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .map_err(|e| format!("port {port}: {e}"))?;
    client
        .get_connection_with_timeout(Duration::from_secs(1))
        .map_err(|e| format!("port {port}: {e}"))
}

/// The first field of `ROLE` on `port` (`master`, `slave`), if it answers.
pub fn role(port: u16) -> Option<String> {
    let mut conn = connect(port).ok()?;
    let reply: redis::Value = redis::cmd("ROLE").query(&mut conn).ok()?;
    match reply {
        redis::Value::Array(items) => match items.into_iter().next() {
            Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            Some(redis::Value::SimpleString(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Polls `check` every 20 ms until it answers `Some`, or fails after `within` saying `what`.
pub(crate) fn wait_for<T>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if started.elapsed() > within {
            return Err(format!("{what}: not seen within {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl SentinelSet {
    /// A primary with `replicas` replicas and `sentinels` Sentinels (quorum: a majority).
    pub fn start(replicas: usize, sentinels: usize) -> Result<Self, String> {
        let set = Self::start_unsettled(replicas, sentinels, &ServerOptions::default())?;
        set.wait_settled(Duration::from_secs(30))?;
        Ok(set)
    }

    /// Like [`SentinelSet::start`], but returns as soon as every Sentinel knows the primary,
    /// every replica and every other Sentinel, before the replicas' first sync is done
    /// (the primary waits `repl-diskless-sync-delay` before it starts one: 5 s by default,
    /// longer with `primary`'s options). A failover then promotes a replica without the data.
    pub fn start_unsynced(
        replicas: usize,
        sentinels: usize,
        primary: &ServerOptions,
    ) -> Result<Self, String> {
        let set = Self::start_unsettled(replicas, sentinels, primary)?;
        let others = set.sentinels.len() - 1;
        wait_for(
            Duration::from_secs(30),
            "every Sentinel knowing everyone",
            || {
                set.primary_port()?;
                for s in &set.sentinels {
                    let mut conn = connect(s.port).ok()?;
                    let master: std::collections::HashMap<String, String> = redis::cmd("SENTINEL")
                        .arg("MASTER")
                        .arg(MASTER_NAME)
                        .query(&mut conn)
                        .ok()?;
                    let count = |k: &str| master.get(k).and_then(|v| v.parse::<usize>().ok());
                    if count("num-other-sentinels")? != others || count("num-slaves")? != replicas {
                        return None;
                    }
                }
                Some(())
            },
        )?;
        Ok(set)
    }

    fn start_unsettled(
        replicas: usize,
        sentinels: usize,
        primary: &ServerOptions,
    ) -> Result<Self, String> {
        let primary = RedisServer::start_with(primary)?;
        let primary_port = primary.port();
        let mut servers = vec![primary];
        for _ in 0..replicas {
            let options =
                ServerOptions::default().arg("replicaof", &format!("127.0.0.1 {primary_port}"));
            servers.push(RedisServer::start_with(&options)?);
        }
        let quorum = sentinels / 2 + 1;
        let sentinels = (0..sentinels)
            .map(|_| SentinelProcess::start(primary_port, quorum))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SentinelSet { servers, sentinels })
    }

    /// `redis+sentinel://127.0.0.1:<p1>,…/switchyard`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The ports of the servers (primary and replicas).
    pub fn server_ports(&self) -> Vec<u16> {
        self.servers.iter().map(RedisServer::port).collect()
    }

    /// The ports of the Sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The port every Sentinel names as the primary, if they agree and a server there says it
    /// is the primary.
    pub fn primary_port(&self) -> Option<u16> {
        let mut agreed = None;
        for s in &self.sentinels {
            let mut conn = connect(s.port).ok()?;
            let (_, port): (String, u16) = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME)
                .query(&mut conn)
                .ok()?;
            match agreed {
                None => agreed = Some(port),
                Some(p) if p == port => {}
                Some(_) => return None,
            }
        }
        agreed.filter(|p| role(*p).as_deref() == Some("master"))
    }

    /// Waits until the set is ready for a failover: the Sentinels agree on the primary, every
    /// other server is its replica with the link up, and each Sentinel sees all replicas
    /// healthy and all other Sentinels.
    pub fn wait_settled(&self, within: Duration) -> Result<u16, String> {
        let replicas = self.servers.len() - 1;
        let others = self.sentinels.len() - 1;
        wait_for(within, "a settled Sentinel set-up", || {
            let primary = self.primary_port()?;
            for s in &self.sentinels {
                let mut conn = connect(s.port).ok()?;
                let master: std::collections::HashMap<String, String> = redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(MASTER_NAME)
                    .query(&mut conn)
                    .ok()?;
                let count = |k: &str| master.get(k).and_then(|v| v.parse::<usize>().ok());
                if count("num-other-sentinels")? != others {
                    return None;
                }
                let listed: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(MASTER_NAME)
                    .query(&mut conn)
                    .ok()?;
                let healthy = listed
                    .iter()
                    .filter(|r| {
                        r.get("flags").map(String::as_str) == Some("slave")
                            && r.get("master-link-status").map(String::as_str) == Some("ok")
                    })
                    .count();
                if healthy != replicas || listed.len() != replicas {
                    return None;
                }
            }
            let mut conn = connect(primary).ok()?;
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut conn)
                .ok()?;
            let online = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            (online == replicas).then_some(primary)
        })
    }

    /// The primary's port, or why there is none.
    fn agreed_primary(&self) -> Result<u16, String> {
        self.primary_port()
            .ok_or_else(|| "the Sentinels do not agree on a primary".to_owned())
    }

    /// The server of this set on `port`.
    fn server_on(&mut self, port: u16) -> Result<&mut RedisServer, String> {
        self.servers
            .iter_mut()
            .find(|s| s.port() == port)
            .ok_or_else(|| format!("no server of this set is on port {port}"))
    }

    /// Kills the primary (SIGKILL) and returns its port.
    pub fn kill_primary(&mut self) -> Result<u16, String> {
        let port = self.agreed_primary()?;
        self.server_on(port)?.kill();
        Ok(port)
    }

    /// Waits until the Sentinels agree on a primary other than `old` and it says so itself;
    /// returns its port.
    pub fn wait_failover(&self, old: u16, within: Duration) -> Result<u16, String> {
        wait_for(within, "a new primary", || {
            self.primary_port().filter(|p| *p != old)
        })
    }

    /// Starts the server that was on `port` again, empty, as a replica of the current primary
    /// (once the Sentinels agree on it), and waits until the set is settled again.
    pub fn rejoin(&mut self, port: u16, within: Duration) -> Result<(), String> {
        // Right after a failover a Sentinel can still be catching up (or briefly unable to
        // answer on a loaded machine): wait for them to agree rather than read them once.
        let primary = wait_for(within, "the Sentinels to agree on a primary", || {
            self.primary_port()
        })?;
        self.server_on(port)?.restart_as_replica_of(primary)?;
        self.wait_settled(within).map(|_| ())
    }
}
