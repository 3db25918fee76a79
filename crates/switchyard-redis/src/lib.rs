//! # switchyard-redis
//!
//! The Redis backend of Switchyard. Every state transition is **one Lua function** (the files in
//! `lua/`, embedded at build time, loaded as one Function library and run by FCALL), so each step is atomic on the server and
//! makes exactly the decisions of the in-memory reference backend (the cross-backend property
//! tests check this decision for decision).
//!
//! * Every key of a namespace shares one hash tag (`sy:{<namespace>}:…`) and is passed in
//!   `KEYS`; no script builds a key name, so scripts run unchanged on Redis Cluster.
//! * Every script validates its arguments and answers bad input with an `SY_INVALID` error;
//!   scripts that depend on state read by the caller refuse with `SY_STALE` when it moved, and
//!   the client re-reads and retries.
//! * Work per call is bounded: maintenance (promote, reap, expire, purge) takes a batch limit.
//! * Every lease carries a fencing token; a completion or failure under a stale token is
//!   refused and changes nothing.
//! * Idle workers block on a dedicated pub/sub connection (`receive_wait`); they never poll.
//!
//! The key layout is documented in `docs/redis-layout.md`.
//!
//! ```no_run
//! use switchyard_core::prelude::*;
//! use switchyard_core::{Policy, QueueConfig, QueueName, Strategy, TaskSpec};
//! use switchyard_redis::RedisBackend;
//!
//! # async fn run() -> switchyard_core::Result<()> {
//! let backend = RedisBackend::connect("redis://127.0.0.1:6380", "shop").await?;
//! let queue = QueueName::new("emails")?;
//! backend.declare_queue(&queue, QueueConfig::new(Policy::PRIORITY, Strategy::LeastLoaded)).await?;
//! backend.submit(TaskSpec::builder("emails", "send").priority(3).build()?).await?;
//! # Ok(()) }
//! ```

mod audit;
mod backend;
mod codec;
mod combine;
mod durable;
mod error;
mod keys;
mod library;
mod outcomes;
mod protocol;

pub use backend::{RedisBackend, RedisConfig, Replication};
pub use durable::Durable;
pub use keys::task_hash_key;
pub use switchyard_topology::Tls;
