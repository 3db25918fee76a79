//! What the backend knows about its server: that it is a Redis it can use (version, the
//! function library), whether the namespace's data is still the data it saw (the birth mark,
//! which names a loss), and how the primary's replicas follow it ([`Replication`]).

use switchyard_core::{BackendErrorKind, Error, Result};

use super::RedisBackend;
use crate::error::map_redis;
use crate::keys;
use crate::library::library;

/// The field of every partition's `meta` hash that marks its data: a random value written
/// with the first declaration. One that changed, or vanished, since a process read it tells
/// that the backend lost its data (see `RedisBackend::explained`).
const BORN_FIELD: &str = "~born";

impl RedisBackend {
    pub(super) async fn check_server(&self) -> Result<()> {
        let mut conn = self.inner.topology.connection();
        let home = self.inner.keys.fixed(keys::TASKS);
        // The first command on the connection: a reply that does not parse means the address
        // is not a Redis server.
        let info: String = conn
            .query_at(home, redis::cmd("INFO").arg("server"))
            .await
            .map_err(|e| switchyard_topology::errors::map_connect(&e))?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("0")
            .trim()
            .to_owned();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(Error::backend(
                BackendErrorKind::Unsupported,
                format!("Redis {version} is too old: Switchyard needs Redis 7 or newer"),
            ));
        }
        Ok(())
    }

    /// Loads the function library unless the namespace's server has it already: a process that
    /// connects to a server that has it writes nothing, so it can connect to a server at
    /// `maxmemory` (to free memory, pause, or drain). Calls load it anyway where a server lacks
    /// it; loading up front surfaces errors at start-up.
    pub async fn ensure_library(&self) -> Result<()> {
        let mut conn = self.inner.topology.connection();
        let home = self.inner.keys.fixed(keys::TASKS);
        let loaded = library()
            .is_loaded(&mut conn, home)
            .await
            .map_err(|e| map_redis(&e))?;
        if loaded {
            return Ok(());
        }
        self.load_library().await
    }

    /// Loads the function library (`FUNCTION LOAD REPLACE`; on a Cluster, on every primary),
    /// whether the servers have it or not.
    pub async fn load_library(&self) -> Result<()> {
        let mut conn = self.inner.topology.connection();
        library().load(&mut conn).await.map_err(|e| {
            // Out of memory, a missing permission, a lost connection keep their kinds; a
            // library the server refuses is a bug of this build.
            let kind = match map_redis(&e) {
                Error::Backend { kind, .. } if kind != BackendErrorKind::Other => kind,
                _ => BackendErrorKind::Protocol,
            };
            let message = format!(
                "cannot load the function library {}: {}",
                library().name(),
                crate::library::locate(&e.to_string())
            );
            Error::backend_caused(kind, message, e)
        })
    }

    /// Reads the namespace's birth mark and remembers it (best effort: a namespace that cannot
    /// be read now is looked at again when it is declared), so that a later loss of the data
    /// can be named as such (see [`explained`](Self::explained)).
    pub async fn remember_namespace(&self) {
        if let Ok(mark) = self.birth_mark().await {
            *self.born_lock() = Some(mark);
        }
    }

    fn born_lock(&self) -> std::sync::MutexGuard<'_, Option<Option<String>>> {
        self.inner
            .born
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn birth_mark(&self) -> Result<Option<String>> {
        self.query(
            redis::cmd("HGET")
                .arg(self.inner.keys.fixed(keys::META))
                .arg(BORN_FIELD),
        )
        .await
    }

    /// After a declaration: marks the namespace's data as born if it is not (best effort: a
    /// server at `maxmemory` refuses the write) and remembers the mark.
    pub(super) async fn mark_born(&self) {
        let token = format!("{:016x}", switchyard_core::rng::entropy());
        let set: Result<bool> = self
            .query(
                redis::cmd("HSETNX")
                    .arg(self.inner.keys.fixed(keys::META))
                    .arg(BORN_FIELD)
                    .arg(token),
            )
            .await;
        if let Err(e) = set {
            tracing::debug!("cannot mark the namespace's data: {e}");
        }
        self.remember_namespace().await;
    }

    /// `e`, or for an undeclared queue whose namespace shows that the backend lost its data,
    /// [`Error::DataLost`] saying how it shows: its birth mark changed or vanished since this
    /// process saw it; or the namespace holds nothing on a primary that took over in a
    /// failover (a process that connected after the loss has nothing to compare).
    pub(crate) async fn explained(&self, e: Error) -> Error {
        let Error::UnknownQueue(queue) = e else {
            return e;
        };
        let seen = self.born_lock().clone();
        let Ok(now) = self.birth_mark().await else {
            return Error::UnknownQueue(queue);
        };
        let lost = |detail: String| Error::DataLost {
            queue: queue.clone(),
            detail,
        };
        match (seen, now) {
            (Some(Some(before)), now) if now.as_ref() != Some(&before) => lost(
                "the backend lost its data since this process connected: its namespace was \
                 emptied (Redis restarted without persistence, was flushed, or failed over to \
                 a replica that lacked the data)"
                    .to_owned(),
            ),
            (_, Some(_)) => Error::UnknownQueue(queue),
            (_, None) if self.promoted().await => lost(
                "its namespace holds nothing on a primary that took over in a failover: if the \
                 queue was declared before, the failover lost it (the replica promoted lacked \
                 the data; durable mode prevents this)"
                    .to_owned(),
            ),
            (_, None) => Error::UnknownQueue(queue),
        }
    }

    /// Whether the namespace's primary took over in a failover: behind Sentinels, their
    /// configuration epoch says one happened (it grows with each); elsewhere, the server's
    /// replication history (a second replication id, set when a replica is promoted).
    async fn promoted(&self) -> bool {
        if let Some(epoch) = self.inner.topology.failover_epoch().await {
            return epoch > 0;
        }
        let mut conn = self.inner.topology.connection();
        let home = self.inner.keys.fixed(keys::TASKS);
        let Ok(info) = conn
            .query_at::<String>(home, redis::cmd("INFO").arg("replication"))
            .await
        else {
            return false;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        field("role") == Some("master")
            && field("master_replid2").is_some_and(|id| id.bytes().any(|b| b != b'0'))
    }

    /// How the namespace's primary replicates, from its `INFO replication` (every replica it
    /// knows, and whether each is in sync); also exported as the gauge
    /// `switchyard_redis_replicas_in_sync`. See [`Replication::warning`].
    pub async fn replication(&self) -> Replication {
        let mut conn = self.inner.topology.connection();
        let home = self.inner.keys.fixed(keys::TASKS);
        let info: Option<String> = conn
            .query_at(home, redis::cmd("INFO").arg("replication"))
            .await
            .ok();
        let replication = Replication {
            primary: self.inner.topology.primary(),
            failover: self.inner.topology.primary().is_some(),
            replicas: info.as_deref().map(replica_lines).unwrap_or_default(),
            read: info.is_some(),
        };
        if replication.read {
            metrics::gauge!("switchyard_redis_replicas_in_sync").set(replication.in_sync() as f64);
        }
        replication
    }
}

/// Replicas of the namespace's primary (see [`RedisBackend::replication`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replication {
    /// `host:port` of the primary, behind Sentinels.
    pub primary: Option<String>,
    /// Whether the topology fails over to a replica by itself (Sentinel).
    pub failover: bool,
    /// Each replica the primary lists: `host:port`, its state (`online` once its first full
    /// sync is done; `wait_bgsave` or `send_bulk` before) and its lag in seconds.
    pub replicas: Vec<(String, String, u64)>,
    /// Whether the primary answered at all.
    pub read: bool,
}

/// A replica counts as in sync when it is online and at most this many seconds behind.
const IN_SYNC_LAG_S: u64 = 10;

impl Replication {
    /// Replicas that are online and at most 10 s behind.
    pub fn in_sync(&self) -> usize {
        self.replicas
            .iter()
            .filter(|(_, state, lag)| state == "online" && *lag <= IN_SYNC_LAG_S)
            .count()
    }

    /// What an operator must know, if anything: a primary that fails over by itself (or has
    /// replicas) but has no replica in sync, so that a failover now would promote a replica
    /// without this namespace's data.
    ///
    /// ```
    /// use switchyard_redis::Replication;
    /// let syncing = Replication {
    ///     primary: Some("10.0.0.1:6379".into()),
    ///     failover: true,
    ///     replicas: vec![("10.0.0.2:6379".into(), "wait_bgsave".into(), 0)],
    ///     read: true,
    /// };
    /// assert!(syncing.warning().unwrap().contains("no replica in sync"));
    /// ```
    pub fn warning(&self) -> Option<String> {
        if !self.read || (!self.failover && self.replicas.is_empty()) || self.in_sync() > 0 {
            return None;
        }
        let primary = self.primary.as_deref().unwrap_or("the primary");
        let listed = if self.replicas.is_empty() {
            "it has no replica".to_owned()
        } else {
            let each: Vec<String> = self
                .replicas
                .iter()
                .map(|(addr, state, lag)| format!("{addr} {state}, {lag} s behind"))
                .collect();
            format!("its replicas: {}", each.join("; "))
        };
        Some(format!(
            "{primary} has no replica in sync ({listed}): a failover now would promote a \
             replica without this namespace's data, and lose it (durable mode refuses writes \
             no replica confirmed)"
        ))
    }
}

/// The replicas an `INFO replication` reply lists (`slaveN:ip=…,port=…,state=…,lag=…`).
fn replica_lines(info: &str) -> Vec<(String, String, u64)> {
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains(":ip="))
        .filter_map(|l| {
            let (_, fields) = l.split_once(':')?;
            let field = |name: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            };
            let addr = format!("{}:{}", field("ip")?, field("port")?);
            let lag = field("lag")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            Some((addr, field("state")?.to_owned(), lag))
        })
        .collect()
}

#[cfg(test)]
mod replication_tests {
    use super::*;

    #[test]
    fn replicas_are_read_from_info_replication() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r\n\
                    slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n\
                    master_failover_state:no-failover\r\n";
        let replicas = replica_lines(info);
        assert_eq!(
            replicas,
            [
                ("127.0.0.1:7001".to_owned(), "online".to_owned(), 0),
                ("127.0.0.1:7002".to_owned(), "wait_bgsave".to_owned(), 0)
            ]
        );
        let r = Replication {
            primary: None,
            failover: true,
            replicas,
            read: true,
        };
        assert_eq!(r.in_sync(), 1);
        assert_eq!(r.warning(), None);
        let alone = Replication {
            read: true,
            ..Replication::default()
        };
        assert_eq!(
            alone.warning(),
            None,
            "a standalone server without replicas"
        );
    }
}
