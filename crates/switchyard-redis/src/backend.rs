//! [`RedisBackend`]: the [`Backend`] trait on Redis, one Lua script per transition.

mod admin;
mod verified;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::{Script, ScriptInvocation, Value};
use switchyard_core::admin::{Purge, PurgeReport};
use switchyard_core::{
    Ack, AckOutcome, Assignment, BackendErrorKind, CancelOutcome, Clock, Delivery, Error, Event,
    EventCounts, EventKind, HandBack, HeartbeatReply, Lease, MaintenanceReport, QueueConfig,
    QueueName, QueueStats, RegisterOutcome, Rejection, Result, Stats, SubmitOutcome, TaskId,
    TaskInfo, TaskKind, TaskOutcome, TaskSpec, TaskState, WorkerId, WorkerRef, WorkerSpec,
    WorkerStats,
};
use switchyard_core::{
    Backend,
    backend::{due_pause, normalize_error},
};
use tokio::sync::Mutex;

use crate::codec::{self, Record, array, assignments, int, protocol, state_from, text, uint};
use crate::combine::{Combiner, Job};
use crate::durable::Durable;
use crate::error::{Failure, classify, map_redis};
use crate::keys::{self, Keyspace};
use crate::outcomes::Listener;
use crate::scripts::Scripts;
use switchyard_topology::{Connection, Options, Tls, Topology};

/// A completion waiting to be combined: the lease, the result, and how many tasks the caller
/// would receive in the same call.
type Completion = (Lease, Vec<u8>, usize);

/// What a combined completion answers: the acknowledgement and the caller's received tasks.
type Completed = Result<(AckOutcome, Vec<Delivery>)>;

/// A kind of single call the backend combines with others made at the same time (see the
/// `combine` module): where such calls wait, and how a batch of them is sent.
trait Combined: Sized + Send + 'static {
    /// What each caller gets back.
    type Answer: Send + 'static;
    fn combiner(inner: &Inner) -> &Combiner<Self, Result<Self::Answer>>;
    fn run(
        backend: &RedisBackend,
        batch: Vec<Job<Self, Result<Self::Answer>>>,
    ) -> impl std::future::Future<Output = ()> + Send + '_;
}

impl Combined for TaskSpec {
    type Answer = SubmitOutcome;
    fn combiner(inner: &Inner) -> &Combiner<Self, Result<SubmitOutcome>> {
        &inner.submits
    }
    fn run(
        backend: &RedisBackend,
        batch: Vec<Job<Self, Result<SubmitOutcome>>>,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        backend.run_submits(batch)
    }
}

impl Combined for Completion {
    type Answer = (AckOutcome, Vec<Delivery>);
    fn combiner(inner: &Inner) -> &Combiner<Self, Completed> {
        &inner.completes
    }
    fn run(
        backend: &RedisBackend,
        batch: Vec<Job<Self, Completed>>,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        backend.run_completes(batch)
    }
}

/// The field of partition 0's `meta` hash that holds the namespace's partition count.
const PARTITIONS_FIELD: &str = "~partitions";

/// Tasks per submit script call; larger batches are split (the effect is the same).
const SUBMIT_CHUNK: usize = 256;
use verified::{STALE_RETRIES, verified};
/// Longest list a single peek returns.
const PEEK_MAX: usize = 1_000_000;

/// How to reach Redis and where to keep state.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Where Redis is: `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS) for
    /// one server, `redis+sentinel://[user:password@]host:port[,host:port…]/master-name` for
    /// the primary behind Sentinels, followed through failovers (see
    /// [`switchyard_topology::Address`]).
    pub url: String,
    /// Namespace: every key lives under `sy:{<namespace>}:` (one hash slot).
    pub namespace: String,
    /// Connections for scripts (waiting workers and awaited outcomes use pub/sub connections
    /// of their own). Each is multiplexed: concurrent calls share it, pipelined.
    pub pool_size: usize,
    /// How long a call may wait for its reply before it fails (default 30 s). A script that
    /// ran past it has still taken effect: treat such an error as "unknown outcome".
    pub response_timeout: Duration,
    /// Time source. `None` (the default) uses the Redis server's clock, so that workers with
    /// skewed clocks agree on lease deadlines; tests pass a manual clock.
    pub clock: Option<Arc<dyn Clock>>,
    /// How many single-task submit calls may be in flight at once (default 2). Single submits
    /// made while that many are in flight wait for the next call and go in it together, each
    /// with its own outcome: under load, one script call carries many tasks, which costs Redis
    /// far less than one call per task. A submit made alone is sent at once. `submit_batch`
    /// is not affected.
    pub submit_calls_in_flight: usize,
    /// The same for completions (`complete`, `complete_and_receive`; default 2): those made
    /// while that many calls are in flight go together in the next call, one call per worker,
    /// each with its own acknowledgement and its share of the received tasks. A worker running
    /// many short tasks at once thus acknowledges them in few calls.
    pub complete_calls_in_flight: usize,
    /// Durable mode (off by default): after every state change, wait until this many
    /// replicas confirmed it (see [`Durable`]).
    pub durable: Option<Durable>,
    /// Certificates for a `rediss://` URL beyond the system's trust store: a private CA, a
    /// client certificate (see [`Tls`]).
    pub tls: Option<Tls>,
}

impl RedisConfig {
    /// Defaults for `url` and `namespace`: 4 connections, server time, 30 s reply timeout.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            namespace: namespace.into(),
            pool_size: 4,
            response_timeout: Duration::from_secs(30),
            clock: None,
            submit_calls_in_flight: 2,
            complete_calls_in_flight: 2,
            durable: None,
            tls: None,
        }
    }

    /// Uses `clock` instead of the server's time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Uses these TLS certificates (see [`Tls`]).
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Turns durable mode on (see [`Durable`]).
    pub fn with_durable(mut self, durable: Durable) -> Self {
        self.durable = Some(durable);
        self
    }

    /// Sets the pool size.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }
}

/// The Redis backend. Cheap to clone; clones share the pool.
///
/// ```no_run
/// use switchyard_core::{Backend, Policy, QueueConfig, QueueName, Strategy};
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
    scripts: Scripts,
    clock: Option<Arc<dyn Clock>>,
    /// Queue lists of workers, as last seen (refreshed when a script reports them stale).
    worker_queues: RwLock<HashMap<WorkerId, Arc<Vec<QueueName>>>>,
    /// Durable mode: tasks received in a completion call whose completions too few replicas
    /// confirmed (the call failed with `NotReplicated`, but the tasks are leased to the
    /// worker): handed out by the worker's next receive.
    stashed: std::sync::Mutex<HashMap<WorkerId, Vec<Delivery>>>,
    /// Subscribed wake-up connections of workers waiting in `receive_wait`.
    waiters: Mutex<HashMap<WorkerId, Arc<Mutex<Option<redis::aio::PubSub>>>>>,
    /// Single submits waiting to be sent together (see `combine`).
    submits: Combiner<TaskSpec, Result<SubmitOutcome>>,
    /// Single completions waiting to be sent together.
    completes: Combiner<Completion, Completed>,
    /// The subscription every `wait_outcome` and `sleep_until_due` shares (see `outcomes`),
    /// started on first use.
    outcomes: Mutex<Option<Arc<Listener>>>,
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

    /// Connects, checks that the server can run Switchyard (Redis 7+), and loads the scripts.
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
        let topology = Arc::new(Topology::connect(&config.url, &options).await?);
        let backend = Self::on(topology, config, keys);
        backend.check_server().await?;
        backend.load_scripts().await?;
        Ok(backend)
    }

    fn on(topology: Arc<Topology>, config: RedisConfig, keys: Keyspace) -> Self {
        RedisBackend {
            inner: Arc::new(Inner {
                topology,
                durable: config.durable,
                keys,
                scripts: Scripts::load(),
                clock: config.clock.clone(),
                worker_queues: RwLock::new(HashMap::new()),
                stashed: std::sync::Mutex::new(HashMap::new()),
                waiters: Mutex::new(HashMap::new()),
                submits: Combiner::new(config.submit_calls_in_flight),
                completes: Combiner::new(config.complete_calls_in_flight),
                outcomes: Mutex::new(None),
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

    /// How many partitions the namespace was declared with (`None`: never partitioned).
    pub async fn partition_count(&self) -> Result<Option<u16>> {
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
    /// returns the count stored. Refused for a namespace that already holds tasks without a
    /// count (their ids would not name their partitions).
    pub async fn claim_partition_count(&self, count: u16) -> Result<u16> {
        if let Some(stored) = self.partition_count().await? {
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
        Ok(self.partition_count().await?.unwrap_or(count))
    }

    async fn check_server(&self) -> Result<()> {
        let mut conn = self.inner.topology.connection();
        let home = self.inner.keys.fixed(keys::TASKS);
        let info: String = conn
            .query_at(home, redis::cmd("INFO").arg("server"))
            .await
            .map_err(|e| map_redis(&e))?;
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
            return Err(Error::Backend {
                kind: BackendErrorKind::Unsupported,
                message: format!("Redis {version} is too old: Switchyard needs Redis 7 or newer"),
            });
        }
        Ok(())
    }

    /// Loads every script (SCRIPT LOAD). Calls reload them anyway on NOSCRIPT; loading up front
    /// surfaces script errors at start-up.
    pub async fn load_scripts(&self) -> Result<()> {
        let mut conn = self.inner.topology.connection();
        for (file, script) in self.inner.scripts.all() {
            script
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .map_err(|e| Error::Backend {
                    kind: BackendErrorKind::Protocol,
                    message: format!("cannot load {file}: {e}"),
                })?;
        }
        Ok(())
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

    fn invocation<'a>(
        &self,
        script: &'a Script,
        groups: &[&QueueName],
        now: &str,
    ) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in &self.inner.keys.fixed {
            inv.key(k);
        }
        for q in groups {
            for k in self.inner.keys.queue_group(q) {
                inv.key(k);
            }
        }
        inv.arg(now);
        inv
    }

    /// Runs a script. Not confirmed by replicas even in durable mode: for reads, and for
    /// changes whose loss in a failover is recovered by themselves (a lost registration or
    /// heartbeat makes the worker register again; a lost lease or maintenance pass makes the
    /// task run or the pass happen again).
    async fn exec(&self, inv: &ScriptInvocation<'_>) -> std::result::Result<Value, Failure> {
        self.inner
            .topology
            .run(|mut conn| async move { inv.invoke_async(&mut conn).await })
            .await
            .map_err(|e| classify(&e))
    }

    /// Runs a script whose change a caller takes as acknowledged (a submit, a completion or
    /// failure, a cancel, a redrive, a declaration): in durable mode, then waits on the same
    /// connection (one no other call shares meanwhile: `WAIT` blocks it) until enough
    /// replicas have its writes, and fails with `NotReplicated` if too few did.
    async fn exec_durable(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> std::result::Result<Value, Failure> {
        match self.exec_confirmed(inv).await? {
            (value, None) => Ok(value),
            (_, Some(unconfirmed)) => Err(Failure::Error(unconfirmed)),
        }
    }

    /// [`exec_durable`](Self::exec_durable), answering the reply even when it was not
    /// confirmed (with the `NotReplicated` error beside it), for replies that must not be lost.
    async fn exec_confirmed(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> std::result::Result<(Value, Option<Error>), Failure> {
        let Some(durable) = self.inner.durable else {
            return Ok((self.exec(inv).await?, None));
        };
        let home = self.inner.keys.fixed(keys::TASKS);
        let (value, confirmed) = self
            .inner
            .topology
            .run_alone(|mut conn| async move {
                let value: Value = inv.invoke_async(&mut conn).await?;
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

    /// The shared subscription to outcome and due-time announcements (see the `outcomes`
    /// module), started (again) if there is none or its connection was lost.
    async fn listener(&self) -> Result<Arc<Listener>> {
        let mut slot = self.inner.outcomes.lock().await;
        if let Some(listener) = slot.as_ref()
            && listener.is_alive()
        {
            return Ok(listener.clone());
        }
        let fixed = [self.inner.keys.due_channel()];
        let pubsub = self
            .inner
            .topology
            .pubsub()
            .await
            .map_err(|e| map_redis(&e))?;
        let listener = Listener::start(pubsub, &fixed)
            .await
            .map_err(|e| map_redis(&e))?;
        *slot = Some(listener.clone());
        Ok(listener)
    }

    /// A registration on the shared listener for `channel` (see the `outcomes` module).
    async fn registration(&self, channel: &str) -> Result<crate::outcomes::Registration> {
        self.listener()
            .await?
            .register(channel)
            .await
            .map_err(|e| map_redis(&e))
    }

    /// The channel-subscribed connection a worker sleeps on in `receive_wait`.
    async fn waiter(&self, worker: &WorkerId) -> Arc<Mutex<Option<redis::aio::PubSub>>> {
        let mut waiters = self.inner.waiters.lock().await;
        waiters.entry(worker.clone()).or_default().clone()
    }

    async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub> {
        let mut pubsub = self
            .inner
            .topology
            .pubsub()
            .await
            .map_err(|e| map_redis(&e))?;
        crate::outcomes::bounded("SUBSCRIBE", pubsub.subscribe(channel))
            .await
            .map_err(|e| map_redis(&e))?;
        Ok(pubsub)
    }
}

/// A `SY_WRONG_STATE` answer as the public error of `operation` on task `id`.
fn wrong_state(f: Failure, id: TaskId, operation: &'static str) -> Failure {
    match f {
        Failure::WrongState(s) => match state_from(s) {
            Ok(state) => Failure::Error(Error::WrongState {
                id,
                state,
                operation,
            }),
            Err(e) => Failure::Error(e),
        },
        other => other,
    }
}

fn ack_from(code: i64, x: &Value) -> Result<Ack> {
    Ok(match code {
        0 => Ack::Retrying { run_at: uint(x)? },
        1 => Ack::Rejected(Rejection::NotFound),
        2 => Ack::Rejected(Rejection::NotRunning(state_from(int(x)?)?)),
        3 => Ack::Rejected(Rejection::StaleToken),
        4 => Ack::Dead,
        5 => Ack::Cancelled,
        other => return Err(protocol(format!("unknown acknowledgement code {other}"))),
    })
}

fn submit_outcome(it: &mut impl Iterator<Item = Value>) -> Result<SubmitOutcome> {
    let mut next = || it.next().ok_or_else(|| protocol("truncated submit reply"));
    let duplicate = int(&next()?)? == 1;
    let id = codec::task_id(next()?)?;
    let st = int(&next()?)?;
    let worker = text(next()?)?;
    Ok(SubmitOutcome {
        id,
        state: if st < 0 { None } else { Some(state_from(st)?) },
        duplicate,
        assigned: if worker.is_empty() {
            None
        } else {
            Some(WorkerId::new(worker)?)
        },
    })
}

fn hand_back_from(v: Value) -> Result<HandBack> {
    let mut it = array(v)?.into_iter();
    let n = uint(&it.next().ok_or_else(|| protocol("empty hand-back reply"))?)?;
    let mut returned = Vec::new();
    for _ in 0..n {
        returned.push(codec::task_id(
            it.next().ok_or_else(|| protocol("truncated hand-back"))?,
        )?);
    }
    Ok(HandBack {
        returned,
        assignments: assignments(&mut it, None)?,
    })
}

#[async_trait]
impl Backend for RedisBackend {
    async fn declare_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<()> {
        config.validate()?;
        let json = codec::config_json(&config)?;
        let now = self.now_arg();
        let mut inv = self.invocation(&self.inner.scripts.declare, &[queue], &now);
        inv.arg(queue.as_str()).arg(&json);
        admin::push_config(&mut inv, &config);
        match self.exec_durable(&inv).await {
            Ok(_) => Ok(()),
            Err(Failure::Conflict(existing)) => {
                let existing = codec::config_from_json(existing.as_bytes())?;
                Err(Error::QueueConflict {
                    queue: queue.clone(),
                    detail: existing.diff(&config),
                })
            }
            Err(f) => Err(f.into_error()),
        }
    }

    async fn queue_config(&self, queue: &QueueName) -> Result<Option<QueueConfig>> {
        let raw: Option<Vec<u8>> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.inner.keys.fixed(keys::META))
                    .arg(queue.as_str()),
            )
            .await?;
        raw.map(|b| codec::config_from_json(&b)).transpose()
    }

    /// Concurrent single submits are sent together in one script call (see the `combine`
    /// module); a submit made alone is sent at once.
    async fn submit(&self, spec: TaskSpec) -> Result<SubmitOutcome> {
        self.combined(spec, "submit").await
    }

    async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<SubmitOutcome>> {
        self.submit_specs(&specs).await
    }

    async fn register_worker(&self, spec: WorkerSpec) -> Result<RegisterOutcome> {
        spec.validate()?;
        // Kept tasks belonged to the registration this one replaces.
        self.unstash(spec.id(), usize::MAX);
        verified("register", |_| async {
            let old = self.queues_of(spec.id(), true).await?;
            let mut groups: Vec<&QueueName> = spec.queues().iter().collect();
            if let Some(old) = &old {
                for q in old.iter() {
                    if !groups.contains(&q) {
                        groups.push(q);
                    }
                }
            }
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.register, &groups, &now);
            inv.arg(spec.id().as_str())
                .arg(spec.get_capacity())
                .arg(spec.get_weight())
                .arg(spec.heartbeat_ttl_ms())
                .arg(spec.get_instance().get());
            inv.arg(spec.queues().len()).arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            let v = self.exec(&inv).await?;
            if let Ok(mut cache) = self.inner.worker_queues.write() {
                cache.insert(spec.id().clone(), Arc::new(spec.queues().to_vec()));
            }
            let mut it = array(v)?.into_iter();
            let replaced = uint(&it.next().ok_or_else(|| protocol("empty register reply"))?)? == 1;
            Ok(RegisterOutcome {
                replaced,
                assignments: assignments(&mut it, None)?,
            })
        })
        .await
    }

    async fn heartbeat(&self, me: &WorkerRef) -> Result<HeartbeatReply> {
        let worker = &me.id;
        verified("heartbeat", |attempt| async move {
            let queues = self.worker_queues(worker, attempt).await?;
            let groups: Vec<&QueueName> = queues.iter().collect();
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.heartbeat, &groups, &now);
            inv.arg(worker.as_str())
                .arg(me.instance.get())
                .arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            let v = self.exec(&inv).await?;
            let mut it = array(v)?.into_iter().skip(1);
            let ids = |it: &mut dyn Iterator<Item = Value>| -> Result<Vec<TaskId>> {
                let truncated = || protocol("truncated heartbeat reply");
                let n = uint(&it.next().ok_or_else(truncated)?)?;
                (0..n)
                    .map(|_| codec::task_id(it.next().ok_or_else(truncated)?))
                    .collect()
            };
            let cancel = ids(&mut it)?;
            let expired = ids(&mut it)?;
            Ok(HeartbeatReply {
                cancel,
                expired,
                assignments: assignments(&mut it, None)?,
            })
        })
        .await
        .inspect_err(|e| self.forget_if_unknown(e))
    }

    async fn deregister_worker(&self, me: &WorkerRef) -> Result<HandBack> {
        let worker = &me.id;
        // Stashed tasks are leased to the worker: the deregistration hands them back.
        self.unstash(worker, usize::MAX);
        verified("deregister", |attempt| async move {
            let queues = self.worker_queues(worker, attempt).await?;
            let groups: Vec<&QueueName> = queues.iter().collect();
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.deregister, &groups, &now);
            inv.arg(worker.as_str())
                .arg(me.instance.get())
                .arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            let v = self.exec(&inv).await?;
            self.forget_worker(worker);
            Ok(hand_back_from(v)?)
        })
        .await
        .inspect_err(|e| self.forget_if_unknown(e))
    }

    async fn drain_worker(&self, me: &WorkerRef) -> Result<HandBack> {
        let worker = &me.id;
        verified("drain", |attempt| async move {
            let queues = self.worker_queues(worker, attempt).await?;
            let groups: Vec<&QueueName> = queues.iter().collect();
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.drain, &groups, &now);
            inv.arg(worker.as_str())
                .arg(me.instance.get())
                .arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            Ok(hand_back_from(self.exec(&inv).await?)?)
        })
        .await
    }

    async fn dispatch(&self, queue: &QueueName, limit: usize) -> Result<Vec<Assignment>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.inner.scripts.dispatch, &[queue], &now);
        inv.arg(queue.as_str()).arg(limit.min(1_000_000));
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        assignments(&mut array(v)?.into_iter(), None)
    }

    async fn receive(&self, worker: &WorkerRef, max: usize) -> Result<Vec<Delivery>> {
        self.receive_inner(worker, max, false).await
    }

    async fn delete_task(&self, id: TaskId) -> Result<()> {
        self.delete_task_now(id).await
    }

    async fn purge_queue(
        &self,
        queue: &QueueName,
        what: Purge,
        limit: usize,
    ) -> Result<PurgeReport> {
        self.purge_queue_now(queue, what, limit).await
    }

    async fn reconfigure_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<bool> {
        self.reconfigure_queue_now(queue, config).await
    }

    async fn delete_queue(&self, queue: &QueueName) -> Result<()> {
        self.delete_queue_now(queue).await
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<Vec<Assignment>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.inner.scripts.pause, &[queue], &now);
        inv.arg(queue.as_str()).arg(u8::from(paused));
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        assignments(&mut array(v)?.into_iter(), None)
    }

    async fn receive_wait(
        &self,
        me: &WorkerRef,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>> {
        let worker = &me.id;
        let deadline = tokio::time::Instant::now() + timeout;
        let slot = self.waiter(worker).await;
        let mut guard = slot.lock().await;
        loop {
            if guard.is_none() {
                // Subscribe before asking, so that a dispatch right after the ask is not missed.
                *guard = Some(
                    self.subscribe(&self.inner.keys.wake_channel(worker))
                        .await?,
                );
            }
            let got = self.receive_inner(me, max, true).await?;
            if !got.is_empty() || max == 0 {
                return Ok(got);
            }
            let Some(pubsub) = guard.as_mut() else {
                continue;
            };
            let message = tokio::time::timeout_at(deadline, pubsub.on_message().next()).await;
            match message {
                Err(_) => return Ok(Vec::new()),
                Ok(Some(_)) => {}
                // The connection dropped (restart, failover): resubscribe and ask again.
                Ok(None) => {
                    tracing::warn!(%worker, "wake-up connection lost; reconnecting");
                    *guard = None;
                }
            }
        }
    }

    /// Concurrent completions are sent together (see `RedisConfig::complete_calls_in_flight`).
    async fn complete(&self, lease: &Lease, value: Vec<u8>) -> Result<AckOutcome> {
        Ok(self.complete_and_receive(lease, value, 0).await?.0)
    }

    /// Concurrent completions are sent together, one call per worker (see
    /// `RedisConfig::complete_calls_in_flight`); each caller gets its own acknowledgement and
    /// up to `max` of the tasks the call received.
    async fn complete_and_receive(
        &self,
        lease: &Lease,
        value: Vec<u8>,
        max: usize,
    ) -> Result<(AckOutcome, Vec<Delivery>)> {
        self.combined((lease.clone(), value, max), "completion")
            .await
    }

    async fn fail(&self, lease: &Lease, error: &str, retry: bool) -> Result<AckOutcome> {
        let error = &normalize_error(error);
        verified("fail", |attempt| async move {
            let queues = self
                .queues_of(&lease.worker, attempt > 0)
                .await?
                .unwrap_or_default();
            let groups: Vec<&QueueName> = queues.iter().collect();
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.fail, &groups, &now);
            inv.arg(lease.worker.as_str()).arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            inv.arg(lease.task.to_string())
                .arg(lease.queue.as_str())
                .arg(lease.token.0)
                .arg(error)
                .arg(u8::from(retry));
            let mut it = array(self.exec_durable(&inv).await?)?.into_iter();
            let code = int(&it.next().ok_or_else(|| protocol("empty fail reply"))?)?;
            let x = it.next().unwrap_or(Value::Int(0));
            Ok(AckOutcome {
                ack: ack_from(code, &x)?,
                assignments: assignments(&mut it, None)?,
            })
        })
        .await
    }

    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        verified("cancel", |_| async move {
            let rec = self.record(id).await?.ok_or(Error::TaskNotFound(id))?;
            let worker_queues = match (&rec.state, &rec.worker) {
                (TaskState::Dispatched, Some(w)) => {
                    self.queues_of(w, true).await?.unwrap_or_default()
                }
                _ => Arc::new(Vec::new()),
            };
            let mut groups: Vec<&QueueName> = vec![&rec.queue];
            groups.extend(worker_queues.iter());
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.cancel, &groups, &now);
            inv.arg(id.to_string()).arg(codec::state_code(rec.state));
            inv.arg(rec.worker.as_ref().map_or("", |w| w.as_str()))
                .arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            let mut it = array(self.exec_durable(&inv).await?)?.into_iter();
            let code = int(&it.next().ok_or_else(|| protocol("empty cancel reply"))?)?;
            Ok(match code {
                0 => CancelOutcome::Cancelled {
                    assignments: assignments(&mut it, None)?,
                },
                1 => CancelOutcome::Requested,
                _ => CancelOutcome::AlreadyFinished(state_from(int(&it
                    .next()
                    .ok_or_else(|| protocol("truncated cancel reply"))?)?)?),
            })
        })
        .await
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        Ok(self.record(id).await?.map(|r| r.info(id)))
    }

    async fn get_outcome(&self, id: TaskId) -> Result<Option<TaskOutcome>> {
        Ok(self.record(id).await?.and_then(|r| r.outcome()))
    }

    /// Waits on the backend's one shared subscription (see the `outcomes` module): no polling,
    /// and no connection per waiting caller.
    async fn wait_outcome(&self, id: TaskId, timeout: Duration) -> Result<Option<TaskOutcome>> {
        let channel = self.inner.keys.done_channel(id);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Listen first, then flag the task as awaited and check its state, so that an
            // announcement right after the check is not missed.
            let registered = tokio::time::timeout_at(deadline, self.registration(&channel)).await;
            let mut registration = match registered {
                Ok(Ok(r)) => r,
                // The connection failed while subscribing: try again within the deadline.
                Ok(Err(e)) if e.is_transient() => {
                    tokio::time::sleep_until(
                        deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
                    )
                    .await;
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    continue;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => break,
            };
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.await_outcome, &[], &now);
            inv.arg(id.to_string());
            let state = match self.exec(&inv).await {
                Ok(v) => int(&v),
                Err(f) => Err(f.into_error()),
            };
            if !matches!(state, Ok(s) if s < 0) {
                state?;
                break;
            }
            match tokio::time::timeout_at(deadline, registration.announced()).await {
                Ok(Ok(())) => break,
                // The connection was lost: listen again, and check again.
                Ok(Err(_)) => continue,
                Err(_) => break,
            }
        }
        self.get_outcome(id).await
    }

    async fn list_dead(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskInfo>> {
        let members: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYLEX")
                    .arg(self.inner.keys.fixed(keys::DEAD))
                    .arg(format!("[{queue}|"))
                    .arg(format!("({queue}}}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit.min(1_000_000)),
            )
            .await?;
        let ids: Vec<TaskId> = members
            .iter()
            .filter_map(|m| m.rsplit('|').next())
            .map(str::parse)
            .collect::<Result<_>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.inner.keys.fixed(keys::TASKS));
        for id in &ids {
            cmd.arg(id.to_string());
        }
        let raws: Vec<Option<Vec<u8>>> = self.query(&cmd).await?;
        let mut out = Vec::new();
        for (id, raw) in ids.into_iter().zip(raws) {
            if let Some(raw) = raw {
                out.push(codec::decode_record(&raw)?.info(id));
            }
        }
        Ok(out)
    }

    async fn redrive(&self, id: TaskId) -> Result<SubmitOutcome> {
        verified("redrive", |_| async move {
            let rec = self.record(id).await?.ok_or(Error::TaskNotFound(id))?;
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.redrive, &[&rec.queue], &now);
            inv.arg(id.to_string()).arg(rec.queue.as_str());
            let v = self
                .exec_durable(&inv)
                .await
                .map_err(|f| wrong_state(f, id, "redrive (only dead tasks can be re-driven)"))?;
            let mut it = array(v)?.into_iter();
            let st = int(&it.next().ok_or_else(|| protocol("empty redrive reply"))?)?;
            let worker = text(it.next().unwrap_or(Value::Nil))?;
            Ok(SubmitOutcome {
                id,
                state: Some(state_from(st)?),
                duplicate: false,
                assigned: if worker.is_empty() {
                    None
                } else {
                    Some(WorkerId::new(worker)?)
                },
            })
        })
        .await
    }

    async fn stats(&self) -> Result<Stats> {
        let names = self.queue_names().await?;
        let groups: Vec<&QueueName> = names.iter().collect();
        let now = self.now_arg();
        let mut inv = self.invocation(&self.inner.scripts.stats, &groups, &now);
        inv.arg(groups.len());
        for q in &groups {
            inv.arg(q.as_str());
        }
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        let mut parts = array(v)?.into_iter();
        let qs = array(parts.next().unwrap_or(Value::Nil))?;
        let ws = array(parts.next().unwrap_or(Value::Nil))?;
        let mut queues = Vec::new();
        for q in qs {
            let f = array(q)?;
            if f.len() < 17 {
                return Err(protocol("short queue stats"));
            }
            let n = |i: usize| uint(&f[i]);
            let mut totals = EventCounts::default();
            for (i, kind) in EventKind::ALL.into_iter().enumerate() {
                totals.add(kind, n(9 + i)?);
            }
            queues.push(QueueStats {
                queue: Some(QueueName::new(text(f[0].clone())?)?),
                scheduled: n(1)?,
                ready: n(2)?,
                dispatched: n(3)?,
                running: n(4)?,
                retry_scheduled: n(5)?,
                succeeded: n(6)?,
                dead: n(7)?,
                cancelled: n(8)?,
                totals,
                paused: n(16)? == 1,
            });
        }
        let mut workers = BTreeMap::new();
        for w in ws {
            let f = array(w)?;
            if f.len() < 9 {
                return Err(protocol("short worker stats"));
            }
            let id = WorkerId::new(text(f[0].clone())?)?;
            let queues = text(f[5].clone())?
                .split(',')
                .filter(|q| !q.is_empty())
                .map(QueueName::new)
                .collect::<Result<Vec<_>>>()?;
            let small = |i: usize| {
                u32::try_from(uint(&f[i])?).map_err(|_| protocol("worker field out of range"))
            };
            workers.insert(
                id.clone(),
                WorkerStats {
                    id,
                    capacity: small(1)?,
                    weight: small(2)?,
                    inflight: small(3)?,
                    draining: uint(&f[6])? == 1,
                    queues,
                    expires_at: uint(&f[4])?,
                    dispatched: uint(&f[7])?,
                    completed: uint(&f[8])?,
                },
            );
        }
        Ok(Stats {
            queues,
            workers: workers.into_values().collect(),
        })
    }

    async fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.inner.scripts.peek, &[queue], &now);
        inv.arg(queue.as_str()).arg(limit.min(PEEK_MAX));
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        array(v)?.into_iter().map(codec::task_id).collect()
    }

    async fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        let start = match after {
            None => "-".to_owned(),
            Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
                format!("({a}")
            }
            Some(a) => {
                return Err(Error::invalid(
                    "event id",
                    format!("`{a}` is not a stream id"),
                ));
            }
        };
        let entries: Vec<(String, HashMap<String, Vec<u8>>)> = self
            .query(
                redis::cmd("XRANGE")
                    .arg(self.inner.keys.fixed(keys::EVENTS))
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit.clamp(1, 100_000)),
            )
            .await?;
        entries
            .into_iter()
            .map(|(id, fields)| codec::event(id, &fields))
            .collect()
    }

    async fn learned_cost(&self, queue: &QueueName, kind: &TaskKind) -> Result<Option<u32>> {
        let [state, ..] = self.inner.keys.queue_group(queue);
        let avg: Option<u64> = self
            .query(redis::cmd("HGET").arg(state).arg(format!("k:{kind}")))
            .await?;
        Ok(avg.map(|a| u32::try_from(a).unwrap_or(u32::MAX)))
    }

    async fn until_due(&self) -> Result<Option<Duration>> {
        let names = self.queue_names().await?;
        let mut pipe = redis::pipe();
        for q in &names {
            let [_, _, delayed, ..] = self.inner.keys.queue_group(q);
            pipe.cmd("ZRANGE")
                .arg(delayed)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
        }
        pipe.cmd("ZRANGE")
            .arg(self.inner.keys.fixed(keys::HB))
            .arg(0)
            .arg(0)
            .arg("WITHSCORES");
        let firsts: Vec<Vec<(String, f64)>> = self.query_pipe(&pipe).await?;
        let n = firsts.len();
        let due = firsts
            .into_iter()
            .enumerate()
            .filter_map(|(i, first)| {
                // Heartbeat expiries are due one millisecond later (reaping needs expiry < now).
                first
                    .first()
                    .map(|(_, at)| *at as u64 + u64::from(i + 1 == n))
            })
            .min();
        let Some(due) = due else {
            return Ok(None);
        };
        let now = self.now_ms().await?;
        Ok(Some(Duration::from_millis(due.saturating_sub(now))))
    }

    /// Waits on the shared subscription for `sy:{ns}:due` (a delayed task became the first of
    /// its queue), so a maintenance loop learns of new due times without polling. Without the
    /// subscription (it cannot start, or its connection was lost during this call) it sleeps
    /// until the due time it knows of.
    async fn sleep_until_due(&self, at_most: Duration) -> Result<()> {
        let channel = self.inner.keys.due_channel();
        let deadline = tokio::time::Instant::now() + at_most;
        let mut wake_at = deadline;
        let mut listening = true;
        loop {
            // Listen first, then ask, so that a due time moved after the ask is not missed.
            let mut registration = if listening {
                match self.registration(&channel).await {
                    Ok(registration) => Some(registration),
                    Err(e) => {
                        tracing::debug!("no due-time subscription: {e}");
                        None
                    }
                }
            } else {
                None
            };
            let until_due = self.until_due().await?;
            let now = tokio::time::Instant::now();
            let Some(pause) = due_pause(until_due, deadline.saturating_duration_since(now)) else {
                return Ok(());
            };
            // Never later than an earlier pass promised: a stream of announcements must not
            // keep pushing a due wake-up back.
            wake_at = wake_at.min(now + pause);
            let Some(registration) = registration.as_mut() else {
                tokio::time::sleep_until(wake_at).await;
                return Ok(());
            };
            tokio::select! {
                moved = registration.announced() => listening = moved.is_ok(),
                _ = tokio::time::sleep_until(wake_at) => return Ok(()),
            }
        }
    }

    async fn maintain(&self, limit: usize) -> Result<MaintenanceReport> {
        let limit = limit.min(1_000_000);
        // One instant for the whole pass, as in the memory backend.
        let now = self.now_ms().await?;
        let now_arg = now.to_string();
        let mut report = MaintenanceReport::default();
        // 1. Workers whose heartbeat expired.
        let due_workers: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.inner.keys.fixed(keys::HB))
                    .arg("-inf")
                    .arg(format!("({now}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        for w in due_workers {
            let worker = WorkerId::new(w)?;
            for attempt in 0..STALE_RETRIES {
                let Some(queues) = self.queues_of(&worker, true).await? else {
                    break;
                };
                let groups: Vec<&QueueName> = queues.iter().collect();
                let mut inv = self.invocation(&self.inner.scripts.reap_worker, &groups, &now_arg);
                // Instance 0: maintenance acts on the worker, whichever instance it is.
                inv.arg(worker.as_str()).arg(0).arg(groups.len());
                for q in &groups {
                    inv.arg(q.as_str());
                }
                match self.exec(&inv).await {
                    Ok(v) => {
                        let items = array(v)?;
                        if items.first().and_then(|v| int(v).ok()) != Some(-1) {
                            let back = hand_back_from(Value::Array(items))?;
                            report.tasks_returned += back.returned.len();
                            report.assignments.extend(back.assignments);
                            report.workers_reaped.push(worker.clone());
                            self.forget_worker(&worker);
                        }
                        break;
                    }
                    Err(Failure::Stale(_)) if attempt + 1 < STALE_RETRIES => continue,
                    Err(f) => return Err(f.into_error()),
                }
            }
        }
        report.more |= self.any_below(keys::HB, now).await?;
        // 2. Due delayed tasks, queue by queue in name order.
        let names = self.queue_names().await?;
        let mut budget = limit;
        for queue in &names {
            let mut inv = self.invocation(&self.inner.scripts.promote, &[queue], &now_arg);
            inv.arg(queue.as_str()).arg(budget);
            let v = self.exec(&inv).await.map_err(Failure::into_error)?;
            let mut it = array(v)?.into_iter();
            let n = usize::try_from(uint(
                &it.next().ok_or_else(|| protocol("empty promote reply"))?,
            )?)
            .map_err(|_| protocol("promote count"))?;
            let more = uint(
                &it.next()
                    .ok_or_else(|| protocol("truncated promote reply"))?,
            )? == 1;
            report.more |= more;
            report.promoted += n;
            budget -= n.min(budget);
            report.assignments.extend(assignments(&mut it, None)?);
        }
        // 3. Finished records past their retention, queue by queue in name order (and expired
        //    dedup keys along with the first queue).
        let mut budget = limit;
        for (i, queue) in names.iter().enumerate() {
            let mut inv = self.invocation(&self.inner.scripts.purge, &[queue], &now_arg);
            inv.arg(queue.as_str()).arg(budget).arg(u8::from(i == 0));
            let v = array(self.exec(&inv).await.map_err(Failure::into_error)?)?;
            let n = usize::try_from(uint(
                v.first().ok_or_else(|| protocol("empty purge reply"))?,
            )?)
            .map_err(|_| protocol("purge count"))?;
            report.records_purged += n;
            budget -= n.min(budget);
            report.more |= v.get(1).map(uint).transpose()?.unwrap_or(0) == 1;
        }
        Ok(report)
    }
}

impl RedisBackend {
    /// Submits `specs` in calls of up to `SUBMIT_CHUNK` tasks, each atomic. If a call fails
    /// after earlier ones stored their tasks, the error is `BatchIncomplete` with their
    /// outcomes.
    async fn submit_specs(&self, specs: &[TaskSpec]) -> Result<Vec<SubmitOutcome>> {
        // Check every queue first, so that a batch with an unknown queue submits nothing.
        let mut seen: Vec<&QueueName> = Vec::new();
        for s in specs {
            if !seen.contains(&s.queue()) {
                seen.push(s.queue());
            }
        }
        if seen.len() > 1 || specs.len() > SUBMIT_CHUNK {
            let exists = self.declared(&seen).await?;
            if let Some((q, _)) = seen.iter().zip(&exists).find(|(_, e)| !**e) {
                return Err(Error::UnknownQueue((*q).clone()));
            }
        }
        let mut out = Vec::with_capacity(specs.len());
        for chunk in specs.chunks(SUBMIT_CHUNK) {
            let mut groups: Vec<&QueueName> = Vec::new();
            for s in chunk {
                if !groups.contains(&s.queue()) {
                    groups.push(s.queue());
                }
            }
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.submit, &groups, &now);
            inv.arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            inv.arg(chunk.len());
            for s in chunk {
                let g = groups.iter().position(|q| *q == s.queue()).unwrap_or(0) + 1;
                // At most SUBMIT_CHUNK groups, so the position fits.
                inv.arg(codec::encode_task_arg(
                    s,
                    u16::try_from(g).unwrap_or(u16::MAX),
                ));
            }
            let reply = match self.exec_durable(&inv).await {
                Ok(reply) => reply,
                Err(f) if out.is_empty() => return Err(f.into_error()),
                Err(f) => {
                    return Err(Error::BatchIncomplete {
                        total: specs.len(),
                        accepted: out,
                        source: Box::new(f.into_error()),
                    });
                }
            };
            let mut it = array(reply)?.into_iter();
            for _ in chunk {
                out.push(submit_outcome(&mut it)?);
            }
        }
        Ok(out)
    }

    /// Queues `job` with the calls of its kind and waits for its answer, starting a runner if
    /// fewer than the allowed number are active (see the `combine` module). `what` names the
    /// call in the error a caller gets if its runtime shuts down before the answer.
    async fn combined<J: Combined>(&self, job: J, what: &str) -> Result<J::Answer> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if J::combiner(&self.inner).push((job, tx)) {
            let backend = self.clone();
            tokio::spawn(async move {
                while let Some(batch) = J::combiner(&backend.inner).next_batch() {
                    J::run(&backend, batch).await;
                }
            });
        }
        rx.await.map_err(|_| Error::Backend {
            kind: BackendErrorKind::Other,
            message: format!(
                "the {what} was interrupted (its runtime shut down); its outcome is unknown: \
                 look the task up by id"
            ),
        })?
    }

    /// Sends combined single submits as one call and answers each caller. Tasks for queues
    /// that are not declared are answered `UnknownQueue` without holding up the others. If the
    /// call fails otherwise, each task is sent again on its own, so that every caller gets its
    /// own answer (the script validates everything before it writes, so the failed call
    /// changed nothing).
    async fn run_submits(&self, batch: Vec<Job<TaskSpec, Result<SubmitOutcome>>>) {
        let mut queues: Vec<QueueName> = Vec::new();
        for (spec, _) in &batch {
            if !queues.contains(spec.queue()) {
                queues.push(spec.queue().clone());
            }
        }
        let (mut specs, mut answers) = (Vec::with_capacity(batch.len()), Vec::new());
        if queues.len() > 1 {
            let names: Vec<&QueueName> = queues.iter().collect();
            // If the check itself fails, the submit below reports the error.
            let declared = self
                .declared(&names)
                .await
                .unwrap_or_else(|_| vec![true; queues.len()]);
            for (spec, answer) in batch {
                let known = queues
                    .iter()
                    .position(|q| q == spec.queue())
                    .is_none_or(|i| declared.get(i).copied().unwrap_or(true));
                if known {
                    specs.push(spec);
                    answers.push(answer);
                } else {
                    let _ = answer.send(Err(Error::UnknownQueue(spec.queue().clone())));
                }
            }
        } else {
            (specs, answers) = batch.into_iter().unzip();
        }
        if specs.is_empty() {
            return;
        }
        match self.submit_specs(&specs).await {
            Ok(outcomes) => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            Err(Error::UnknownQueue(q)) => {
                for answer in answers {
                    let _ = answer.send(Err(Error::UnknownQueue(q.clone())));
                }
            }
            Err(e) if specs.len() == 1 => {
                if let Some(answer) = answers.into_iter().next() {
                    let _ = answer.send(Err(e));
                }
            }
            Err(e) => {
                // Tasks stored before the failure are answered; the rest go again one by one.
                let stored = match e {
                    Error::BatchIncomplete { accepted, .. } => accepted,
                    _ => Vec::new(),
                };
                let mut answers = answers.into_iter();
                for outcome in stored {
                    if let Some(answer) = answers.next() {
                        let _ = answer.send(Ok(outcome));
                    }
                }
                let done = specs.len() - answers.len();
                for (spec, answer) in specs[done..].iter().zip(answers) {
                    let one = self
                        .submit_specs(std::slice::from_ref(spec))
                        .await
                        .and_then(|mut o| o.pop().ok_or_else(|| protocol("empty submit reply")));
                    let _ = answer.send(one);
                }
            }
        }
    }

    /// Sends combined completions, one `complete_many` per worker (in the order they came),
    /// and answers each caller with its acknowledgement and its share of the received tasks:
    /// the first caller gets up to its `max` of them, the next up to its own, and so on. If a
    /// call fails, its completions are sent again one by one so that each caller gets its own
    /// answer (a script refuses a stale lease without changing anything, and fails before it
    /// writes anything otherwise).
    async fn run_completes(&self, batch: Vec<Job<Completion, Completed>>) {
        let mut by_worker: Vec<(WorkerId, Vec<_>)> = Vec::new();
        for job in batch {
            let worker = &job.0.0.worker;
            match by_worker.iter_mut().find(|(w, _)| w == worker) {
                Some((_, jobs)) => jobs.push(job),
                None => by_worker.push((worker.clone(), vec![job])),
            }
        }
        for (worker, jobs) in by_worker {
            let max: usize = jobs.iter().map(|j| j.0.2).sum();
            let (acks, answers): (Vec<(Lease, Vec<u8>)>, Vec<_>) = jobs
                .into_iter()
                .map(|((lease, value, max), answer)| ((lease, value), (max, answer)))
                .unzip();
            match self.complete_many(&worker, acks.clone(), max, false).await {
                Ok((outcomes, deliveries)) => {
                    let mut deliveries = deliveries.into_iter();
                    for ((max, answer), outcome) in answers.into_iter().zip(outcomes) {
                        let share = deliveries.by_ref().take(max).collect();
                        let _ = answer.send(Ok((outcome, share)));
                    }
                }
                Err(e) if answers.len() == 1 => {
                    if let Some((_, answer)) = answers.into_iter().next() {
                        let _ = answer.send(Err(e));
                    }
                }
                // Applied, unconfirmed: sending them again one by one would only be refused.
                Err(Error::NotReplicated {
                    confirmed,
                    wanted,
                    timeout_ms,
                }) => {
                    for (_, answer) in answers {
                        let _ = answer.send(Err(Error::NotReplicated {
                            confirmed,
                            wanted,
                            timeout_ms,
                        }));
                    }
                }
                Err(_) => {
                    for ((lease, value), (max, answer)) in acks.into_iter().zip(answers) {
                        let one = self
                            .complete_many(&worker, vec![(lease, value)], max, false)
                            .await
                            .and_then(|(mut acks, deliveries)| {
                                let ack =
                                    acks.pop().ok_or_else(|| protocol("empty complete reply"))?;
                                Ok((ack, deliveries))
                            });
                        let _ = answer.send(one);
                    }
                }
            }
        }
    }

    /// Keeps tasks received with completions that failed `NotReplicated` for the worker's next
    /// receive.
    fn stash(&self, worker: &WorkerId, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let mut stashed = self
            .inner
            .stashed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        stashed
            .entry(worker.clone())
            .or_default()
            .extend(deliveries);
    }

    /// Up to `max` stashed tasks of `worker` (see [`stash`](Self::stash)).
    fn unstash(&self, worker: &WorkerId, max: usize) -> Vec<Delivery> {
        let mut stashed = self
            .inner
            .stashed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(list) = stashed.get_mut(worker) else {
            return Vec::new();
        };
        let taken: Vec<Delivery> = list.drain(..max.min(list.len())).collect();
        if list.is_empty() {
            stashed.remove(worker);
        }
        taken
    }

    async fn receive_inner(&self, me: &WorkerRef, max: usize, park: bool) -> Result<Vec<Delivery>> {
        let worker = &me.id;
        // Tasks kept from an unconfirmed completion go out only once the script accepted the
        // worker (still registered, same instance); the script fills the rest of `max`.
        let stashed = self.unstash(worker, max);
        let (max, park) = match stashed.len() {
            0 => (max, park),
            n => (max - n, false),
        };
        let fresh = self.receive_script(me, max, park).await;
        match fresh {
            Ok(mut fresh) => {
                let mut all = stashed;
                all.append(&mut fresh);
                Ok(all)
            }
            // Not this worker's any more: its leases went with its registration.
            Err(e @ (Error::UnknownWorker(_) | Error::WorkerReplaced(_))) => Err(e),
            Err(e) => {
                self.stash(worker, stashed);
                Err(e)
            }
        }
    }

    async fn receive_script(
        &self,
        me: &WorkerRef,
        max: usize,
        park: bool,
    ) -> Result<Vec<Delivery>> {
        let worker = &me.id;
        verified("receive", |attempt| async move {
            let queues = self.worker_queues(worker, attempt).await?;
            let groups: Vec<&QueueName> = queues.iter().collect();
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.receive, &groups, &now);
            inv.arg(worker.as_str())
                .arg(me.instance.get())
                .arg(max.min(100_000))
                .arg(u8::from(park))
                .arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            let v = self.exec(&inv).await?;
            Ok(codec::deliveries(&mut array(v)?.into_iter(), worker)?)
        })
        .await
        .inspect_err(|e| self.forget_if_unknown(e))
    }

    /// Completes several running tasks of one worker in one script, then receives up to `max`
    /// more: the batched form of [`Backend::complete_and_receive`]. With `park`, a worker that
    /// receives nothing is marked waiting in the same call, so that it can sleep on its wake
    /// channel (as in [`Backend::receive_wait`]) without asking again first.
    pub async fn complete_many(
        &self,
        worker: &WorkerId,
        acks: Vec<(Lease, Vec<u8>)>,
        max: usize,
        park: bool,
    ) -> Result<(Vec<AckOutcome>, Vec<Delivery>)> {
        let acks = &acks;
        verified("complete", |attempt| async move {
            let queues = self
                .queues_of(worker, attempt > 0)
                .await?
                .unwrap_or_default();
            let groups: Vec<&QueueName> = queues.iter().collect();
            let now = self.now_arg();
            let mut inv = self.invocation(&self.inner.scripts.complete, &groups, &now);
            inv.arg(worker.as_str()).arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            inv.arg(acks.len());
            for (lease, value) in acks {
                // A lease of another worker can never be current for this one: the script
                // refuses it as stale.
                let task = lease.task.to_string();
                inv.arg(task).arg(lease.queue.as_str()).arg(lease.token.0);
                inv.arg(if &lease.worker == worker {
                    value.as_slice()
                } else {
                    &[][..]
                });
            }
            inv.arg(max.min(100_000)).arg(u8::from(park));
            let (v, unconfirmed) = self.exec_confirmed(&inv).await?;
            let mut it = array(v)?.into_iter();
            let truncated = || protocol("truncated complete reply");
            let mut outcomes = Vec::with_capacity(acks.len());
            for _ in 0..acks.len() {
                let code = int(&it.next().ok_or_else(truncated)?)?;
                let state = it.next().ok_or_else(truncated)?;
                let n = usize::try_from(uint(&it.next().ok_or_else(truncated)?)?)
                    .map_err(|_| protocol("assignment count"))?;
                let ack = match code {
                    0 => Ack::Completed,
                    1 => Ack::Rejected(Rejection::NotFound),
                    2 => Ack::Rejected(Rejection::NotRunning(state_from(int(&state)?)?)),
                    _ => Ack::Rejected(Rejection::StaleToken),
                };
                outcomes.push(AckOutcome {
                    ack,
                    assignments: assignments(&mut it, Some(n))?,
                });
            }
            let deliveries = codec::deliveries(&mut it, worker)?;
            if let Some(e) = unconfirmed {
                // The completions are applied but unconfirmed; the received tasks are
                // leased to the worker: its next receive hands them out.
                self.stash(worker, deliveries);
                return Err(e.into());
            }
            Ok((outcomes, deliveries))
        })
        .await
    }

    /// Sleeps until the worker is woken (a dispatch to it, or a task in one of its pull queues,
    /// after it was marked waiting by a receive or completion with `park`), or `timeout`
    /// passes. Returns whether it was woken. The first call subscribes and returns `true` at
    /// once, since a wake-up before the subscription could have been missed: receive then.
    pub async fn wait_woken(&self, worker: &WorkerId, timeout: Duration) -> Result<bool> {
        let slot = self.waiter(worker).await;
        let mut guard = slot.lock().await;
        let Some(pubsub) = guard.as_mut() else {
            *guard = Some(
                self.subscribe(&self.inner.keys.wake_channel(worker))
                    .await?,
            );
            return Ok(true);
        };
        let message = tokio::time::timeout(timeout, pubsub.on_message().next()).await;
        match message {
            Err(_) => Ok(false),
            Ok(Some(_)) => Ok(true),
            Ok(None) => {
                tracing::warn!(%worker, "wake-up connection lost; reconnecting");
                *guard = None;
                Ok(true)
            }
        }
    }

    /// Whether a sorted set has a member scored below `now`.
    async fn any_below(&self, role: usize, now: u64) -> Result<bool> {
        let max = format!("({now}");
        let found: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.inner.keys.fixed(role))
                    .arg("-inf")
                    .arg(max)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1),
            )
            .await?;
        Ok(!found.is_empty())
    }

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
