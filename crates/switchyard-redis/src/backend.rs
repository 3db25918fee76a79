//! [`RedisBackend`]: the [`Backend`](switchyard_core::Backend) on Redis, one Lua script per
//! transition.
//!
//! This module holds the backend's handle, its connection and script-running helpers and the
//! reads several transitions share. Each capability trait is implemented in a module of its
//! own: [`queues`] (with [`admin`]), [`produce`], [`membership`], [`leases`], [`tasks`],
//! [`inspect`] and [`maintain`]. Around them: [`config`] (how to reach Redis), [`combining`]
//! (concurrent single calls sent as one), [`waits`] (pub/sub, waiting without polling),
//! [`replies`] (decoding shared replies) and [`verified`] (the read, verify, retry loop of
//! transitions that must name a worker's queues).

mod admin;
mod combining;
mod config;
mod inspect;
mod leases;
mod maintain;
mod membership;
mod produce;
mod queues;
mod tasks;
mod verified;
mod waits;

pub use config::RedisConfig;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis::Value;
use switchyard_core::{
    BackendErrorKind, Clock, Delivery, Error, QueueName, Result, SubmitOutcome, TaskId, TaskSpec,
    WorkerId,
};
use tokio::sync::Mutex;

use crate::codec::{self, Record, protocol};
use crate::combine::Combiner;
use crate::durable::Durable;
use crate::error::{Failure, classify, map_redis};
use crate::keys::{self, Keyspace};
use crate::library::{Call, Function, Functions, library};
use crate::outcomes::Listener;
use switchyard_topology::{Connection, Options, Topology};

use combining::{Completed, Completion};
use verified::verified;

/// The field of every partition's `meta` hash that holds the namespace's partition count
/// (partition 0's decides; the others hold copies).
const PARTITIONS_FIELD: &str = "~partitions";

/// The field of every partition's `meta` hash that marks its data: a random value written
/// with the first declaration. One that changed, or vanished, since a process read it tells
/// that the backend lost its data (see `RedisBackend::explained`).
const BORN_FIELD: &str = "~born";

/// How many partitions' copies of the count a client on a Cluster reads when it connects, so
/// that it finds the count while partition 0's node is down.
const COUNT_COPIES_READ: u16 = 16;

/// The Redis backend. Cheap to clone; clones share the pool.
///
/// ```no_run
/// use switchyard_core::prelude::*;
/// use switchyard_core::{Policy, QueueConfig, QueueName, Strategy};
/// use switchyard_redis::RedisBackend;
/// # async fn run() -> switchyard_core::Result<()> {
/// let backend = RedisBackend::connect("redis://127.0.0.1:6380", "demo").await?;
/// backend.declare_queue(&QueueName::new("emails")?, QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where calls go, and how that place is found again after a failure (shared by the
    /// partitions of a namespace).
    topology: Arc<Topology>,
    /// The namespace and settings, for [`RedisBackend::partition`].
    config: RedisConfig,
    /// `WAIT` for replicas after every script call (see [`RedisConfig::durable`]).
    durable: Option<Durable>,
    keys: Keyspace,
    clock: Option<Arc<dyn Clock>>,
    /// Queue lists of workers, as last seen (refreshed when a script reports them stale).
    worker_queues: RwLock<HashMap<WorkerId, Arc<Vec<QueueName>>>>,
    /// Durable mode: tasks received in a completion call whose completions too few replicas
    /// confirmed (the call failed with `NotReplicated`, but the tasks are leased to the
    /// worker): handed out by the worker's next receive.
    stashed: std::sync::Mutex<HashMap<WorkerId, Vec<Delivery>>>,
    /// Subscribed wake-up connections of workers waiting in `receive_wait`.
    waiters: Mutex<HashMap<WorkerId, Arc<Mutex<waits::Waiter>>>>,
    /// Per worker, bumped by its registrations, drains and deregistrations (see
    /// `waits::Waiter`).
    membership_epochs: std::sync::Mutex<HashMap<WorkerId, u64>>,
    /// Single submits waiting to be sent together (see `combine`).
    submits: Combiner<TaskSpec, Result<SubmitOutcome>>,
    /// Single completions waiting to be sent together.
    completes: Combiner<Completion, Completed>,
    /// The subscription every `wait_outcome` and `sleep_until_due` shares (see `outcomes`),
    /// started on first use.
    outcomes: Mutex<Option<Arc<Listener>>>,
    /// The namespace's birth mark as this process last saw it (`None` before it looked).
    born: std::sync::Mutex<Option<Option<String>>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("namespace_prefix", &self.inner.keys.fixed(0))
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects with default settings (server time, 4 multiplexed connections).
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::with_config(RedisConfig::new(url, namespace)).await
    }

    /// Connects, checks that the server can run Switchyard (Redis 7+), and loads the function
    /// library if the server lacks it.
    pub async fn with_config(config: RedisConfig) -> Result<Self> {
        let keys = Keyspace::new(&config.namespace)?;
        if let Some(d) = &config.durable {
            d.validate(config.response_timeout)?;
        }
        let options = Options {
            lanes: config.pool_size.max(1),
            response_timeout: config.response_timeout,
            tls: config.tls.clone(),
            ..Options::default()
        };
        let topology = Topology::connect(&config.url, &options).await?;
        let backend = Self::on(topology, config, keys);
        let (server, library, ()) = tokio::join!(
            backend.check_server(),
            backend.ensure_library(),
            backend.remember_namespace()
        );
        for checked in [server, library] {
            match checked {
                // On a Cluster, the namespace's own node may be down while the rest serve (a
                // partitioned namespace's other partitions): calls load the library where it
                // is missing, and fail there with the server's own error.
                Err(e) if e.is_transient() && backend.inner.topology.is_cluster() => {
                    tracing::debug!("cannot check the namespace's node yet: {e}");
                }
                other => other?,
            }
        }
        Ok(backend)
    }

    fn on(topology: Arc<Topology>, config: RedisConfig, keys: Keyspace) -> Self {
        RedisBackend {
            inner: Arc::new(Inner {
                topology,
                durable: config.durable,
                keys,
                clock: config.clock.clone(),
                worker_queues: RwLock::new(HashMap::new()),
                stashed: std::sync::Mutex::new(HashMap::new()),
                waiters: Mutex::new(HashMap::new()),
                membership_epochs: std::sync::Mutex::new(HashMap::new()),
                submits: Combiner::new(config.submit_calls_in_flight),
                completes: Combiner::new(config.complete_calls_in_flight),
                outcomes: Mutex::new(None),
                born: std::sync::Mutex::new(None),
                config,
            }),
        }
    }

    /// Partition `index` of this backend's namespace (partition 0 is the namespace itself),
    /// on the same connections: its keys carry the hash tag `{<namespace>/<index>}`, so on a
    /// Cluster it has a slot of its own. See `switchyard::partition`.
    pub fn partition(&self, index: u16) -> Result<RedisBackend> {
        let keys = Keyspace::partition(&self.inner.config.namespace, index)?;
        Ok(Self::on(
            self.inner.topology.clone(),
            self.inner.config.clone(),
            keys,
        ))
    }

    /// How many partitions the namespace was declared with (`None`: never partitioned), as
    /// partition 0 holds it. On a Cluster whose node of partition 0 is down, the copy of any
    /// other partition that answers is taken (every partition holds one; see
    /// [`claim_partition_count`](Self::claim_partition_count)).
    pub async fn partition_count(&self) -> Result<Option<u16>> {
        if !self.inner.topology.is_cluster() {
            return self.stored_partition_count().await;
        }
        // Partition 0 first; copies from partitions 1 to 15 if it does not answer.
        let mut reads: futures_util::stream::FuturesUnordered<_> = (0..COUNT_COPIES_READ)
            .map(|p| async move {
                let read = match p {
                    0 => self.stored_partition_count().await,
                    _ => match self.partition(p) {
                        Ok(b) => b.stored_partition_count().await,
                        Err(e) => Err(e),
                    },
                };
                (p, read)
            })
            .collect();
        let mut failure = None;
        while let Some((p, read)) = futures_util::StreamExt::next(&mut reads).await {
            match read {
                Ok(count) if p == 0 => return Ok(count),
                Ok(Some(count)) => return Ok(Some(count)),
                Ok(None) => {}
                Err(e) if p == 0 => failure = Some(e),
                Err(_) => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// The count as this backend's partition holds it.
    async fn stored_partition_count(&self) -> Result<Option<u16>> {
        let stored: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.inner.keys.fixed(keys::META))
                    .arg(PARTITIONS_FIELD),
            )
            .await?;
        stored
            .map(|s| {
                s.parse()
                    .map_err(|_| protocol(format!("partition count `{s}` is not a number")))
            })
            .transpose()
    }

    /// Records that the namespace has `count` partitions, unless it already has a count;
    /// returns the count stored, and (for a `count` above 1) copies it to every partition, so
    /// that a client finds it while partition 0 is down. Refused for a namespace that already holds tasks without a
    /// count (their ids would not name their partitions).
    pub async fn claim_partition_count(&self, count: u16) -> Result<u16> {
        if let Some(stored) = self.partition_count().await? {
            // A client that names the count (as `--partitions` does) refreshes the copies; one
            // that only takes what is there does not.
            if count > 1 {
                self.copy_partition_count(stored).await;
            }
            return Ok(stored);
        }
        let tasks: u64 = self
            .query(redis::cmd("HLEN").arg(self.inner.keys.fixed(keys::TASKS)))
            .await?;
        if tasks > 0 && count > 1 {
            return Err(Error::invalid(
                "partitions",
                format!(
                    "namespace `{}` already holds {tasks} tasks without partitions: partition \
                     a new namespace",
                    self.inner.config.namespace
                ),
            ));
        }
        let _: bool = self
            .query(
                redis::cmd("HSETNX")
                    .arg(self.inner.keys.fixed(keys::META))
                    .arg(PARTITIONS_FIELD)
                    .arg(count),
            )
            .await?;
        let stored = self.partition_count().await?.unwrap_or(count);
        self.copy_partition_count(stored).await;
        Ok(stored)
    }

    /// Writes the count into partitions 1 to `count - 1` where it is missing (best effort: a
    /// partition that does not answer gets it from the next client that claims the count).
    async fn copy_partition_count(&self, count: u16) {
        let copies = (1..count).map(|p| async move {
            let part = self.partition(p)?;
            let stored = part.stored_partition_count().await?;
            if stored.is_none() {
                let _: bool = part
                    .query(
                        redis::cmd("HSETNX")
                            .arg(part.inner.keys.fixed(keys::META))
                            .arg(PARTITIONS_FIELD)
                            .arg(count),
                    )
                    .await?;
            }
            Ok::<_, Error>(())
        });
        for (p, copied) in futures_util::future::join_all(copies)
            .await
            .iter()
            .enumerate()
        {
            if let Err(e) = copied {
                tracing::debug!(
                    partition = p + 1,
                    "cannot copy the partition count yet: {e}"
                );
            }
        }
    }

    async fn check_server(&self) -> Result<()> {
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
    async fn mark_born(&self) {
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

    /// The backend's time: the injected clock, or the server's `TIME`.
    async fn now_ms(&self) -> Result<u64> {
        match &self.inner.clock {
            Some(c) => Ok(c.now_ms()),
            None => {
                // The clock of the server that holds the namespace (on a Cluster, its primary).
                let home = self.inner.keys.fixed(keys::TASKS);
                let t: (u64, u64) = self
                    .inner
                    .topology
                    .run(|mut conn| async move { conn.query_at(home, &redis::cmd("TIME")).await })
                    .await
                    .map_err(|e| map_redis(&e))?;
                Ok(t.0 * 1000 + t.1 / 1000)
            }
        }
    }

    /// The `now` argument of a script call: the injected clock, or "" for the server's time.
    fn now_arg(&self) -> String {
        self.inner
            .clock
            .as_ref()
            .map(|c| c.now_ms().to_string())
            .unwrap_or_default()
    }

    /// The transitions of the library.
    fn functions(&self) -> &'static Functions {
        library().functions()
    }

    /// A call of `function` with the fixed keys, then the key group of each of `groups`, and
    /// `now` as its first argument.
    fn invocation(&self, function: &Function, groups: &[&QueueName], now: &str) -> Call {
        let group_keys: Vec<_> = groups
            .iter()
            .flat_map(|q| self.inner.keys.queue_group(q))
            .collect();
        let mut inv = function.call(
            self.inner
                .keys
                .fixed
                .iter()
                .map(String::as_str)
                .chain(group_keys.iter().map(String::as_str)),
        );
        inv.arg(now);
        inv
    }

    /// The call of a worker's script, in the one layout they all share (the worker-call
    /// prologue; `worker_of_call` in `lua/lib/steps.lua` reads it): the fixed keys and the
    /// groups of `queues`, the worker's queues in its order; ARGV now, the worker, `instance`
    /// (the registration's token, or 0: whichever instance holds the id, for maintenance and
    /// for lease calls, whose tokens the script checks), the count of queues and their names.
    /// The script's own arguments follow.
    fn worker_call(
        &self,
        function: &Function,
        worker: &WorkerId,
        instance: u64,
        queues: &[QueueName],
        now: &str,
    ) -> Call {
        let groups: Vec<&QueueName> = queues.iter().collect();
        let mut inv = self.invocation(function, &groups, now);
        inv.arg(worker.as_str()).arg(instance).names(&groups);
        inv
    }

    /// Runs a script. Not confirmed by replicas even in durable mode: for reads, and for
    /// changes whose loss in a failover is recovered by themselves (a lost registration or
    /// heartbeat makes the worker register again; a lost lease or maintenance pass makes the
    /// task run or the pass happen again).
    async fn exec(&self, inv: &Call) -> std::result::Result<Value, Failure> {
        self.inner
            .topology
            .run(|mut conn| async move { inv.invoke(&mut conn).await })
            .await
            .map_err(|e| classify(&e))
    }

    /// Runs a script whose change a caller takes as acknowledged (a submit, a completion or
    /// failure, a cancel, a redrive, a declaration): in durable mode, then waits on the same
    /// connection (one no other call shares meanwhile: `WAIT` blocks it) until enough
    /// replicas have its writes, and fails with `NotReplicated` if too few did.
    async fn exec_durable(&self, inv: &Call) -> std::result::Result<Value, Failure> {
        match self.exec_confirmed(inv).await? {
            (value, None) => Ok(value),
            (_, Some(unconfirmed)) => Err(Failure::Error(unconfirmed)),
        }
    }

    /// [`exec_durable`](Self::exec_durable), answering the reply even when it was not
    /// confirmed (with the `NotReplicated` error beside it), for replies that must not be lost.
    async fn exec_confirmed(
        &self,
        inv: &Call,
    ) -> std::result::Result<(Value, Option<Error>), Failure> {
        let Some(durable) = self.inner.durable else {
            return Ok((self.exec(inv).await?, None));
        };
        let home = self.inner.keys.fixed(keys::TASKS);
        let (value, confirmed) = self
            .inner
            .topology
            .run_alone(|mut conn| async move {
                let value: Value = inv.invoke(&mut conn).await?;
                // The script took effect: a failed WAIT (the connection dropped, the primary
                // was demoted) leaves it unconfirmed, and its reply is still answered. On a
                // Cluster, WAIT goes to the primary that ran the script (by default redis-rs
                // would send it to every primary).
                let confirmed: u64 = match conn.query_at(home, &durable.wait_command()).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!("WAIT failed after a script: {e}");
                        0
                    }
                };
                Ok((value, confirmed))
            })
            .await
            .map_err(|e| classify(&e))?;
        let unconfirmed =
            (confirmed < u64::from(durable.replicas)).then(|| durable.not_confirmed(confirmed));
        if unconfirmed.is_some() {
            // Replicas that stopped confirming may have moved to a new primary.
            self.inner.topology.check_primary().await;
        }
        Ok((value, unconfirmed))
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        self.inner
            .topology
            .run(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
            .map_err(|e| map_redis(&e))
    }

    async fn query_pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        self.inner
            .topology
            .run(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
            .map_err(|e| map_redis(&e))
    }

    /// Whether each queue is declared (one round trip).
    async fn declared(&self, queues: &[&QueueName]) -> Result<Vec<bool>> {
        let mut pipe = redis::pipe();
        for q in queues {
            pipe.cmd("HEXISTS")
                .arg(self.inner.keys.fixed(keys::META))
                .arg(q.as_str());
        }
        self.query_pipe(&pipe).await
    }

    async fn record(&self, id: TaskId) -> Result<Option<Record>> {
        let raw: Option<Vec<u8>> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.inner.keys.fixed(keys::TASKS))
                    .arg(id.to_string()),
            )
            .await?;
        raw.map(|b| codec::decode_record(&b)).transpose()
    }

    /// A worker's queues: cached, or read from its record (`None` if not registered).
    async fn queues_of(
        &self,
        worker: &WorkerId,
        refresh: bool,
    ) -> Result<Option<Arc<Vec<QueueName>>>> {
        if !refresh
            && let Ok(cache) = self.inner.worker_queues.read()
            && let Some(q) = cache.get(worker)
        {
            return Ok(Some(q.clone()));
        }
        let raw: Option<Vec<u8>> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.inner.keys.fixed(keys::WORKERS))
                    .arg(worker.as_str()),
            )
            .await?;
        let queues = raw
            .map(|b| codec::worker_queues(&b))
            .transpose()?
            .map(Arc::new);
        if let Ok(mut cache) = self.inner.worker_queues.write() {
            match &queues {
                Some(q) => {
                    cache.insert(worker.clone(), q.clone());
                }
                None => {
                    cache.remove(worker);
                }
            }
        }
        Ok(queues)
    }

    /// The queues of a registered worker (afresh from Redis after the first try), or
    /// `UnknownWorker`.
    async fn worker_queues(
        &self,
        worker: &WorkerId,
        attempt: usize,
    ) -> Result<Arc<Vec<QueueName>>> {
        self.queues_of(worker, attempt > 0)
            .await?
            .ok_or_else(|| Error::UnknownWorker(worker.clone()))
    }

    /// Forgets the cached queues of a worker that Redis no longer knows.
    fn forget_if_unknown(&self, e: &Error) {
        if let Error::UnknownWorker(w) = e {
            self.forget_worker(w);
        }
    }

    fn forget_worker(&self, worker: &WorkerId) {
        self.unstash(worker, usize::MAX);
        if let Ok(mut cache) = self.inner.worker_queues.write() {
            cache.remove(worker);
        }
    }

    async fn queue_names(&self) -> Result<Vec<QueueName>> {
        let fields: Vec<String> = self
            .query(redis::cmd("HKEYS").arg(self.inner.keys.fixed(keys::META)))
            .await?;
        let mut names: Vec<QueueName> = fields
            .into_iter()
            .filter(|f| !f.starts_with('~'))
            .filter_map(|f| QueueName::new(f).ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

impl RedisBackend {
    /// The key prefix of this backend's namespace (for tools and tests that inspect Redis).
    pub fn key(&self, role: &str) -> Option<&str> {
        keys::FIXED
            .iter()
            .position(|r| *r == role)
            .map(|i| self.inner.keys.fixed(i))
    }

    /// The keys of one queue: state, ready, delayed, ring, done (for tools and tests).
    pub fn queue_keys(&self, queue: &QueueName) -> [String; 5] {
        self.inner.keys.queue_group(queue)
    }

    /// A connection to the primary (on a Cluster: to the Cluster), for tools and tests that
    /// inspect Redis directly.
    pub async fn connection(&self) -> Result<Connection> {
        Ok(self.inner.topology.connection())
    }

    /// How this backend reaches Redis (the failover state, for tools and tests).
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
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
