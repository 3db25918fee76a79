//! How a [`RedisBackend`](super::RedisBackend) reaches Redis: [`RedisConfig`].

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::Clock;
use switchyard_topology::Tls;

use crate::durable::Durable;

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
