//! [`RedisBackend`]: the [`Backend`](switchyard_core::Backend) on Redis, one Lua script per
//! transition.
//!
//! This module holds the backend's handle, its connection and script-running helpers and the
//! reads several transitions share. Each capability trait is implemented in a module of its
//! own: [`queues`] (with [`admin`]), [`produce`], [`membership`], [`leases`], [`tasks`],
//! [`inspect`] and [`maintain`]. Around them: [`config`] (how to reach Redis), [`combining`]
//! (concurrent single calls sent as one), [`waits`] (pub/sub, waiting without polling),
//! [`verified`] (the read, verify, retry loop of transitions that must name a worker's
//! queues), [`partitions`] (a namespace's partitions and their count) and [`server`] (the
//! server's version and library, the namespace's birth mark, replication). Replies are
//! decoded in `codec::reply`.

mod admin;
mod combining;
mod config;
mod flows;
mod inspect;
mod leases;
mod maintain;
mod membership;
mod partitions;
mod produce;
mod queues;
mod schedules;
mod server;
mod tasks;
mod verified;
mod waits;

pub use config::RedisConfig;
pub use server::Replication;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis::Value;
use switchyard_core::{
    Clock, Delivery, Error, Progress, QueueName, Result, SubmitOutcome, TaskId, TaskSpec, WorkerId,
};
use tokio::sync::Mutex;

use crate::codec::{self, Record};
use crate::combine::Combiner;
use crate::durable::Durable;
use crate::error::{Failure, classify, map_redis};
use crate::keys::{self, Keyspace};
use crate::library::{Call, Function, Functions, library};
use crate::outcomes::Listener;
use switchyard_topology::{Connection, Options, Topology};

use combining::{Completed, Completion};
use verified::verified;

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
        // A wide flow's staged task is seen by no read (`switchyard_core::tree`, rule 6).
        Ok(raw
            .map(|b| codec::decode_record(&b))
            .transpose()?
            .filter(|r| !r.staged))
    }

    /// A task's record and the progress of its latest attempt (`lua/progress.lua`), in one
    /// read.
    async fn record_with_progress(&self, id: TaskId) -> Result<Option<(Record, Option<Progress>)>> {
        let (raw, progress): (Option<Vec<u8>>, Option<Vec<u8>>) = self
            .query(
                redis::cmd("HMGET")
                    .arg(self.inner.keys.fixed(keys::TASKS))
                    .arg(id.to_string())
                    .arg(crate::protocol::progress_field(id)),
            )
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        let record = codec::decode_record(&raw)?;
        if record.staged {
            return Ok(None);
        }
        let progress = progress
            .map(|p| codec::decode_progress(&p))
            .transpose()?
            .filter(|p| p.attempt() == record.attempts);
        Ok(Some((record, progress)))
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

    /// The keys of one queue: state, ready, delayed, ring, done, rate, groups, gready, gring,
    /// glog, gwake (for tools and tests).
    pub fn queue_keys(&self, queue: &QueueName) -> [String; 11] {
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
