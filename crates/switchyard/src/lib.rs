//! # switchyard
//!
//! Distributed task scheduling with load balancing. Producers submit tasks to named queues;
//! each queue orders its tasks by a scheduling [`Policy`] and hands each ready task to a worker
//! with a free slot by a dispatch [`Strategy`]. State lives in a [`Backend`]: the in-memory
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
//! * the layers underneath are re-exported.
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

mod client;
mod handle;
pub mod metrics;
pub mod partition;
mod queue;
mod trace;
mod worker;

pub use client::{Client, Task, TaskHandle};
pub use partition::Partitioned;
pub use queue::Queue;
pub use switchyard_core::*;
pub use switchyard_memory::MemoryBackend;
pub use switchyard_redis::{Durable, RedisBackend, RedisConfig, Tls, task_hash_key};
pub use worker::{ShutdownHandle, TaskContext, TaskError, Worker, WorkerBuilder, WorkerReport};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The examples of the operations and scaling guides, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/operations.md")]
#[doc = include_str!("../../../docs/scaling.md")]
pub struct GuideDoctests;
