//! # switchyard
//!
//! Distributed task scheduling with load balancing. Producers submit tasks to named queues;
//! each queue orders its tasks by a scheduling [`Policy`] and hands each ready task to a worker
//! with a free slot by a dispatch [`Strategy`]. State lives in a [`Backend`](backend::Backend): the in-memory
//! [`MemoryBackend`] (the reference semantics, and the embedded default), or Redis
//! ([`RedisBackend`], every transition one Lua script).
//!
//! This crate is the facade applications depend on:
//!
//! * [`Client`] connects to a backend and hands out a [`Queue`] handle per queue, which submits
//!   tasks (typed, JSON or raw bytes; one by one or in batches), pauses, resumes, purges and
//!   lists dead letters; each submit returns a [`TaskHandle`] to await the result, inspect the
//!   state and cancel;
//! * [`Worker`] runs handlers: concurrency up to its capacity, heartbeats, timeouts,
//!   cancellation, panics caught, leaderless maintenance, graceful shutdown;
//! * [`backend`] holds what only backend authors and tools need (the traits, the values they
//!   exchange, clocks, limits).
//!
//! Everything else is listed by name below; the helpers the layers underneath use among
//! themselves (id generators' random numbers, display helpers, the balancers) are not part of
//! this crate's promise:
//!
//! ```compile_fail
//! use switchyard::rng::SplitMix64; // not exported: an implementation detail of the balancers
//! ```
//!
//! ```
//! use std::time::Duration;
//! use switchyard::{Client, QueueConfig, TaskError, Worker};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let client = Client::memory();
//! let greetings = client.queue("greetings")?;
//! greetings.declare(QueueConfig::default()).await?;
//!
//! let worker = Worker::builder(&client, "worker-1", [&greetings])?
//!     .capacity(4)
//!     .handle_json("greet", |_ctx, name: String| async move { Ok::<_, TaskError>(format!("hello, {name}")) })
//!     .build()?;
//! let stop = worker.shutdown_handle();
//! let running = tokio::spawn(worker.run());
//!
//! let task = greetings.submit_json("greet", "Ada").await?;
//! let greeting: String = task.result(Duration::from_secs(5)).await?;
//! assert_eq!(greeting, "hello, Ada");
//!
//! stop.shutdown();
//! running.await.unwrap()?;
//! # Ok::<(), switchyard::Error>(())
//! # }).unwrap();
//! ```

mod browse;
mod client;
mod handle;
mod json;
pub mod metrics;
mod operate;
pub mod partition;
mod queue;
mod trace;
mod worker;

pub use browse::{BULK_STEP, BulkAction, BulkStep};
pub use client::{Client, Task};
pub use handle::TaskHandle;
pub use partition::Partitioned;
pub use queue::Queue;
pub use switchyard_core::admin;
pub use switchyard_core::flow;
pub use switchyard_core::progress;
pub use switchyard_core::schedule;
pub use switchyard_core::tree;
pub use switchyard_core::{
    BROWSE_PAGE_MAX, BROWSE_SCAN, BackendErrorKind, Backoff, Browse, BrowseOrder, CancelOutcome,
    Error, Event, EventCounts, EventKind, EventLevel, Policy, Progress, QueueConfig, QueueName,
    QueueStats, Result, ScheduleName, Stats, Strategy, TaskChange, TaskId, TaskInfo, TaskKind,
    TaskOutcome, TaskPage, TaskSpec, TaskSpecBuilder, TaskState, TraceParent, TraceState, WorkerId,
    WorkerStats,
};
pub use switchyard_memory::MemoryBackend;
pub use switchyard_redis::{Durable, RedisBackend, RedisConfig, Tls};
pub use worker::{ShutdownHandle, TaskContext, TaskError, Worker, WorkerBuilder, WorkerReport};

/// For those who implement a backend, call one directly, or build tools on one: the traits
/// a backend implements (each method of a [`Client`] and a [`Worker`] is one of theirs), the
/// values they exchange, worker registrations, clocks, the limits inputs are checked against,
/// and the rules every backend shares. An application needs none of it.
///
/// ```
/// use switchyard::backend::prelude::*; // the traits, to call a backend's methods
/// use switchyard::backend::{WorkerRef, WorkerSpec};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let client = switchyard::Client::memory();
/// client.declare("q", switchyard::QueueConfig::default()).await?;
/// let spec = WorkerSpec::new("w", ["q"])?;
/// let me = WorkerRef { id: spec.id().clone(), instance: spec.get_instance() };
/// client.backend().register_worker(spec).await?;
/// assert!(client.backend().receive(&me, 1).await?.is_empty());
/// # Ok::<(), switchyard::Error>(())
/// # }).unwrap();
/// ```
pub mod backend {
    pub use switchyard_core::ProgressAck;
    pub use switchyard_core::backend::{
        Ack, AckOutcome, Assignment, Backend, Claimed, Delivery, HandBack, HeartbeatReply, Inspect,
        Lease, LeaseToken, Leases, MAX_ERROR_BYTES, MIN_DUE_PAUSE, Maintain, MaintenanceReport,
        Membership, Produce, Queues, RegisterOutcome, Rejection, SAMPLE_CAP, Schedules,
        SubmitOutcome, Tasks, due_pause, lost_worker_error, next_average, normalize_error,
        timeout_error,
    };
    pub use switchyard_core::prelude;
    pub use switchyard_core::{
        Clock, DEFAULT_HEARTBEAT_TTL_MS, EVENT_LOG_CAP, InstanceToken, MAX_ATTEMPTS,
        MAX_DURATION_MS, MAX_INSTANCE_TOKEN, MAX_KEY_BYTES, MAX_PAYLOAD_BYTES, MAX_RUN_AT_MS,
        MAX_WORKER_QUEUES, ManualClock, Millis, Schedule, SystemClock, TASK_ID_TEXT_LEN,
        TRACE_PARENT_LEN, TRACE_STATE_MAX_LEN, TaskIdGenerator, WorkerRef, WorkerSpec,
    };
    pub use switchyard_redis::{Replication, task_hash_key};
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The examples of the operations and scaling guides, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/operations.md")]
#[doc = include_str!("../../../docs/scaling.md")]
pub struct GuideDoctests;
