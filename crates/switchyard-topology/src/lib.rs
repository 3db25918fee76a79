//! # switchyard-topology — how Switchyard reaches Redis
//!
//! The Redis backend (`switchyard-redis`) never opens a connection itself: it asks a
//! [`Topology`] to run a request on the primary that holds its namespace
//! ([`Topology::run`]), for a pub/sub connection to it ([`Topology::pubsub`]), or for a
//! connection to inspect it ([`Topology::connection`]). Which server that is, and how to find
//! it again after a failure, is decided here, from the URL:
//!
//! | URL | topology |
//! | --- | --- |
//! | `redis://[user:password@]host:port[/db]` (`rediss://` for TLS) | one standalone server |
//! | `redis+sentinel://[user:password@]host:port[,host:port…]/master-name[/db]` | the primary the Sentinels name |
//! | `redis+cluster://[user:password@]host:port[,host:port…]` (`rediss+cluster://` for TLS) | a Redis Cluster, through its seed nodes |
//!
//! (The forms are detailed in [`Address`].)
//!
//! ## Following a failover
//!
//! A request runs on one of a few multiplexed connections ("lanes", see [`Options::lanes`]).
//! When it fails in a way that says the server behind the lane is gone or no longer the
//! writable primary — a lost or refused connection, a reply timeout, `READONLY`,
//! `MASTERDOWN`, `LOADING` or `-UNBLOCKED` — the topology **repairs**: it finds the primary
//! again (for Sentinel: asks the Sentinels, and checks `ROLE` on the server they name; for a
//! standalone URL: connects to the same address again, which follows a managed service whose
//! DNS name moved) and replaces every lane at once. The failed request still returns its own
//! error: the caller decides whether to retry (the worker runtime retries every call with a
//! jittered backoff and never gives up). Repairs are serialised and numbered, so that a burst
//! of failures from one outage repairs once; a repair that fails waits a jittered, doubling
//! pause (50 ms up to 2 s) before the next one may run, so that a down Sentinel set-up is
//! not hammered.
//!
//! Behind Sentinels the topology also follows the Sentinels' decision before any error shows
//! it: it listens to their `+switch-master` announcements and looks again on request
//! ([`Topology::check_primary`]); see the `follow` module. When the primary moves, requests
//! still waiting for the old one are abandoned with an error (their connections close, so a
//! frozen old primary that comes back never runs them).
//!
//! Pub/sub connections are not lanes: [`Topology::pubsub`] opens one on the primary known
//! now; its owner sees the stream end when the server goes away (a Sentinel also closes the
//! pub/sub clients of a server it demotes), or [`Topology::moves`] change when the primary
//! moved, and asks for a new one.
//!
//! ## Why not deadpool's or redis-rs's Sentinel support
//!
//! redis-rs's `SentinelClient` resolves the primary only when asked and follows nothing by
//! itself, and deadpool-redis's Sentinel pool only PINGs a connection before handing it out
//! again, so a connection to a demoted primary (which still answers PING) keeps failing with
//! `READONLY`. Discovery is a few lines (the `sentinel` module of this crate says how), and
//! owning it lets every connection follow one decision. A standalone URL still takes its
//! lanes from a deadpool-redis pool.
//!
//! ```no_run
//! use switchyard_topology::{Options, Topology};
//! # async fn run() -> switchyard_core::Result<()> {
//! let topology =
//!     Topology::connect("redis+sentinel://127.0.0.1:26379/jobs", &Options::default()).await?;
//! // `topology` is an `Arc<Topology>`, shared by every part of the process that uses it.
//! let pong: String = topology
//!     .run(|mut conn| async move { redis::cmd("PING").query_async(&mut conn).await })
//!     .await
//!     .map_err(|e| switchyard_topology::errors::map_redis(&e))?;
//! assert_eq!(pong, "PONG");
//! # Ok(()) }
//! ```

mod address;
mod connection;
pub mod errors;
mod follow;
mod lanes;
mod pubsub;
mod sentinel;
mod tls;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use deadpool_redis::{Manager, Pool, PoolConfig, Runtime};
use redis::aio::PubSub;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};
use switchyard_core::retry::Retry;
use switchyard_core::{BackendErrorKind, Error, Result, display};
use tokio::sync::watch;
use tokio::time::Instant;

pub use address::{Address, ClusterAddress, REDIS_PORT, SENTINEL_PORT, SentinelAddress};
pub use connection::Connection;
use sentinel::{Primary, Sentinels};
pub use tls::Tls;

/// First pause after a failed repair.
const REPAIR_FIRST: Duration = Duration::from_millis(50);
/// Longest pause between two repairs that fail.
const REPAIR_CAP: Duration = Duration::from_secs(2);

/// Connection settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many multiplexed connections requests are spread over (default 4; at least 1).
    pub lanes: usize,
    /// How long a request may wait for its reply (default 30 s). A request that timed out may
    /// still have taken effect on the server.
    pub response_timeout: Duration,
    /// How long opening a connection may take (default 1 s).
    pub connect_timeout: Duration,
    /// Certificates for TLS URLs beyond the system's trust store (default none).
    pub tls: Option<Tls>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lanes: 4,
            response_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            tls: None,
        }
    }
}

/// Where requests go, and how to find that place again; see the crate docs.
pub struct Topology {
    described: String,
    nodes: Nodes,
    lanes: Vec<Mutex<Lane>>,
    next_lane: AtomicUsize,
    /// Bumped by every successful repair.
    generation: AtomicU64,
    /// Held while repairing; the backoff after failed repairs and when the next may start.
    repair: tokio::sync::Mutex<(Retry, Option<Instant>)>,
    /// Connections a request uses alone (see [`Topology::run_alone`]), opened on first use.
    alone: Vec<tokio::sync::Mutex<Option<Lane>>>,
    next_alone: AtomicUsize,
    config: AsyncConnectionConfig,
    /// For Sentinel queries and role checks: replies within the connect timeout.
    discovery: AsyncConnectionConfig,
    connect_timeout: Duration,
    /// How many times the primary moved (Sentinel): see [`Topology::moves`].
    moves: watch::Sender<u64>,
    /// Dropped with the topology: stops the Sentinel listeners (see the `follow` module).
    _listening: watch::Sender<()>,
    /// When [`Topology::check_primary`] last asked a Sentinel.
    last_check: Mutex<Option<Instant>>,
}

enum Nodes {
    /// Lanes from a deadpool-redis pool, or straight from the client when TLS certificates
    /// are given (deadpool's manager takes a URL only).
    Standalone { pool: Option<Pool>, client: Client },
    Sentinel {
        sentinels: Box<Sentinels>,
        primary: RwLock<Primary>,
    },
    /// Lanes are `ClusterConnection`s, which follow slot moves and reconnect by themselves;
    /// pub/sub connections go to a seed node (a classic `PUBLISH` reaches every node).
    Cluster {
        client: ClusterClient,
        seeds: Vec<Client>,
        next_seed: AtomicUsize,
        /// For connections to one node (see [`Topology::pubsub_for`]).
        address: Box<(ClusterAddress, Option<Tls>)>,
    },
}

#[derive(Clone)]
struct Lane {
    generation: u64,
    conn: Connection,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("at", &self.described)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// Whether a failed request says the lane's server is gone or no longer the writable primary.
pub fn calls_for_repair(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.code(),
            Some("READONLY" | "MASTERDOWN" | "LOADING" | "UNBLOCKED")
        )
}

/// Whether a failed request says the primary may have moved without the server knowing it
/// yet: `NOREPLICAS` (a primary with `min-replicas-to-write` whose replicas are gone, as an
/// old primary's are once they follow the new one). Behind Sentinels the topology then asks
/// them ([`Topology::check_primary`]) instead of reconnecting: a new primary whose replicas
/// are still syncing says the same, and is the right place.
pub fn calls_for_check(e: &RedisError) -> bool {
    e.code() == Some("NOREPLICAS")
}

/// The error of a request abandoned because the primary moved while it waited for its reply.
fn moved_away(from: &str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Io,
        "the primary moved",
        format!(
            "the request was waiting for {from}, which is no longer the primary (failover); \
             its connection was closed, so it did not run there unless it already had"
        ),
    ))
}

impl Topology {
    /// Parses `url`, finds the primary and opens the lanes; behind Sentinels, starts listening
    /// to their announcements. Errors: a malformed URL ([`Error::Invalid`], naming the
    /// expected form), or the first connection failure (for Sentinel, what each Sentinel
    /// answered).
    pub async fn connect(url: &str, options: &Options) -> Result<Arc<Topology>> {
        let address = Address::parse(url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout));
        let discovery = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.connect_timeout));
        let lanes_wanted = options.lanes.max(1);
        let invalid =
            |e: RedisError| Error::invalid("redis url", format!("`{}`: {e}", display::url(url)));
        let (nodes, described) = match address {
            Address::Standalone { url: node } => {
                let client = tls::client(&node, options.tls.as_ref()).map_err(invalid)?;
                let pool = match options.tls {
                    Some(_) => None,
                    None => {
                        let info = tls::connection_info(&node).map_err(invalid)?;
                        let manager =
                            Manager::new_with_config(info, config.clone()).map_err(invalid)?;
                        let pool = Pool::builder(manager)
                            .config(PoolConfig::new(lanes_wanted * 2))
                            .runtime(Runtime::Tokio1)
                            .build()
                            .map_err(|e| {
                                Error::backend_caused(
                                    BackendErrorKind::Connection,
                                    format!("cannot build the connection pool: {e}"),
                                    e,
                                )
                            })?;
                        Some(pool)
                    }
                };
                (Nodes::Standalone { pool, client }, display::url(url))
            }
            Address::Sentinel(s) => {
                let sentinels = Sentinels::new(s, options.tls.clone()).map_err(invalid)?;
                let primary = sentinels
                    .discover(&discovery)
                    .await
                    .map_err(|e| errors::map_connect(&e))?;
                let described = format!(
                    "{} (Sentinel master `{}`)",
                    display::url(url),
                    sentinels.master_name()
                );
                tracing::info!(primary = %primary.addr, "found the primary of {described}");
                let primary = RwLock::new(primary);
                let sentinels = Box::new(sentinels);
                (Nodes::Sentinel { sentinels, primary }, described)
            }
            Address::Cluster(c) => {
                let urls = c.seed_urls();
                let seeds = urls
                    .iter()
                    .map(|u| tls::client(u, options.tls.as_ref()))
                    .collect::<RedisResult<Vec<_>>>()
                    .map_err(invalid)?;
                let client = cluster_client(&urls, options).map_err(invalid)?;
                let nodes = Nodes::Cluster {
                    client,
                    seeds,
                    next_seed: AtomicUsize::new(0),
                    address: Box::new((c, options.tls.clone())),
                };
                (nodes, format!("{} (Cluster)", display::url(url)))
            }
        };
        let mut topology = Topology {
            described,
            nodes,
            lanes: Vec::new(),
            next_lane: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            repair: tokio::sync::Mutex::new((
                Retry::new(switchyard_core::rng::entropy(), REPAIR_FIRST, REPAIR_CAP),
                None,
            )),
            alone: (0..lanes_wanted * 2)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next_alone: AtomicUsize::new(0),
            config,
            discovery,
            connect_timeout: options.connect_timeout,
            moves: watch::Sender::new(0),
            _listening: watch::Sender::new(()),
            last_check: Mutex::new(None),
        };
        // The primary was just found: no second discovery.
        let (conns, _) = topology
            .open_lanes(lanes_wanted, false)
            .await
            .map_err(|e| errors::map_connect(&e))?;
        topology.lanes = conns
            .into_iter()
            .map(|conn| {
                Mutex::new(Lane {
                    generation: 0,
                    conn,
                })
            })
            .collect();
        let topology = Arc::new(topology);
        if let Some(sentinels) = topology.sentinels() {
            let stop = topology._listening.subscribe();
            follow::listen(Arc::downgrade(&topology), sentinels.count(), stop);
        }
        Ok(topology)
    }

    fn sentinels(&self) -> Option<&Sentinels> {
        match &self.nodes {
            Nodes::Sentinel { sentinels, .. } => Some(sentinels),
            _ => None,
        }
    }

    /// How many times the primary moved since connecting (Sentinel; always 0 otherwise),
    /// as a receiver whose `changed()` resolves at the next move: owners of pub/sub
    /// connections watch it and subscribe again on the new primary.
    pub fn moves(&self) -> watch::Receiver<u64> {
        self.moves.subscribe()
    }

    /// The URL (password hidden) and, for Sentinel, the master name: for messages.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// How many repairs have succeeded so far (0 after connecting).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// `host:port` of the primary requests go to now (for Sentinel; `None` for a standalone
    /// URL, which is the address, and for a Cluster, where it depends on the key).
    pub fn primary(&self) -> Option<String> {
        match &self.nodes {
            Nodes::Standalone { .. } | Nodes::Cluster { .. } => None,
            Nodes::Sentinel { primary, .. } => Some(read(primary).addr.clone()),
        }
    }

    /// Whether requests go to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.nodes, Nodes::Cluster { .. })
    }

    /// Runs `request` on the next lane's connection. If it fails in a way that
    /// [calls for repair](calls_for_repair), the topology repairs (see the crate docs) before
    /// the error is returned, so that the caller's retry meets the primary found again; if it
    /// [calls for a check](calls_for_check), the topology asks the Sentinels first. Behind
    /// Sentinels, a request still waiting when the primary moves is abandoned with an I/O
    /// error that says so.
    pub async fn run<T, F, Fut>(&self, request: F) -> RedisResult<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let moves = self.watch_moves();
        let lane = self.lane();
        let result = self.unless_moved(moves, request(lane.conn)).await;
        if let Err(e) = &result {
            if calls_for_repair(e) {
                self.repair(lane.generation, e).await;
            } else if calls_for_check(e) {
                self.check_primary().await;
            }
        }
        result
    }

    /// Runs `request` on a connection no other request uses meanwhile, for requests that block
    /// their connection on the server (`WAIT`): on a shared lane every request behind it would
    /// wait too. There are twice as many such connections as lanes, opened on first use; a
    /// request waits for one to be free. Repairs as [`run`](Topology::run) does.
    pub async fn run_alone<T, F, Fut>(&self, request: F) -> RedisResult<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut slot = match self.alone.iter().find_map(|m| m.try_lock().ok()) {
            Some(free) => free,
            None => {
                let i = self.next_alone.fetch_add(1, Ordering::Relaxed) % self.alone.len();
                self.alone[i].lock().await
            }
        };
        let moves = self.watch_moves();
        let generation = self.generation();
        let conn = match slot.as_ref() {
            Some(lane) if lane.generation == generation => lane.conn.clone(),
            _ => {
                let conn = match self.open().await {
                    Ok(c) => c,
                    Err(e) => {
                        drop(slot);
                        if calls_for_repair(&e) {
                            self.repair(generation, &e).await;
                        }
                        return Err(e);
                    }
                };
                *slot = Some(Lane {
                    generation,
                    conn: conn.clone(),
                });
                conn
            }
        };
        let result = self.unless_moved(moves, request(conn)).await;
        if let Err(e) = &result {
            if calls_for_repair(e) {
                *slot = None;
                drop(slot);
                self.repair(generation, e).await;
            } else if calls_for_check(e) {
                drop(slot);
                self.check_primary().await;
            }
        }
        result
    }

    /// Behind Sentinels, a receiver of the next move (taken before the lane, so that a move
    /// after it is seen); `None` elsewhere, where the primary never moves.
    fn watch_moves(&self) -> Option<(watch::Receiver<u64>, String)> {
        match &self.nodes {
            Nodes::Sentinel { primary, .. } => Some((self.moves(), read(primary).addr.clone())),
            _ => None,
        }
    }

    /// `request`, abandoned with [`moved_away`] if the primary moves before it is answered.
    async fn unless_moved<T>(
        &self,
        moves: Option<(watch::Receiver<u64>, String)>,
        request: impl Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let Some((mut moves, from)) = moves else {
            return request.await;
        };
        tokio::select! {
            biased;
            result = request => result,
            _ = moves.changed() => Err(moved_away(&from)),
        }
    }

    /// Behind Sentinels: asks a Sentinel which primary it names and, if that is not the one
    /// requests go to, moves there (see the `follow` module). At most once per second per
    /// topology (callers may ask more often: the extra looks are skipped); nothing elsewhere.
    pub async fn check_primary(&self) {
        let Some(sentinels) = self.sentinels() else {
            return;
        };
        {
            let mut last = self
                .last_check
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < follow::CHECK_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        match sentinels.named(&self.discovery).await {
            Ok(named) => {
                self.follow(&named, "a Sentinel names another primary")
                    .await
            }
            Err(e) => tracing::debug!("cannot ask the Sentinels for the primary: {e}"),
        }
    }

    /// Behind Sentinels, their configuration epoch for the master (0 until the first
    /// failover, then one more with each), as the first Sentinel that answers says; `None`
    /// elsewhere, or when none answers.
    pub async fn failover_epoch(&self) -> Option<u64> {
        self.sentinels()?.config_epoch(&self.discovery).await.ok()
    }

    /// Moves to the primary at `to` (`host:port`) unless requests go there already: finds the
    /// primary again (the Sentinels must name it and it must say it is a master) and
    /// replaces every lane, whatever failed before.
    async fn follow(&self, to: &str, why: &str) {
        let known = match &self.nodes {
            Nodes::Sentinel { primary, .. } => read(primary).addr.clone(),
            _ => return,
        };
        if known == to {
            return;
        }
        let mut guard = self.repair.lock().await;
        if self.primary().as_deref() == Some(to) {
            return;
        }
        let (backoff, not_before) = &mut *guard;
        match self.replace_lanes(&why).await {
            Ok(()) => {
                backoff.reset();
                *not_before = None;
            }
            Err(e) => {
                tracing::debug!("cannot move to {to} yet ({why}): {e}");
            }
        }
    }

    /// A connection to the primary (one of the lanes, shared), for tools and tests that
    /// inspect Redis directly. It does not repair itself: ask again after an error.
    pub fn connection(&self) -> Connection {
        self.lane().conn
    }
}

/// Tuned for a job queue: redis-rs's default waits at least 1.28 s before retrying a
/// `TRYAGAIN` (met by every script during a slot migration); these retries wait 10-200 ms.
fn cluster_client(urls: &[String], options: &Options) -> RedisResult<ClusterClient> {
    let nodes = urls
        .iter()
        .map(|u| tls::connection_info(u))
        .collect::<RedisResult<Vec<_>>>()?;
    let mut builder = ClusterClientBuilder::new(nodes)
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(10)
        .max_retry_wait(200)
        .retry_wait_formula(10, 2)
        .connection_timeout(options.connect_timeout)
        .response_timeout(options.response_timeout);
    if let Some(t) = &options.tls {
        tls::install_provider();
        builder = builder.certs(tls::certificates(t));
    } else if urls.iter().any(|u| tls::is_secure(u)) {
        tls::install_provider();
    }
    builder.build()
}

/// How often a Cluster request is retried (on `TRYAGAIN`, `MOVED` to a node not yet known,
/// `CLUSTERDOWN`, a lost node connection) before its error is returned: with the waits of
/// [`cluster_client`], about 2 s in all.
const CLUSTER_RETRIES: u32 = 12;

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
