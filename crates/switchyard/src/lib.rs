//! # switchyard
//!
//! Distributed task scheduling with load balancing. Producers submit tasks to named queues;
//! each queue orders its tasks by a scheduling [`Policy`] and hands each ready task to a worker
//! with a free slot by a dispatch [`Strategy`]. State lives in a [`Backend`]: the in-memory
//! [`MemoryBackend`] (the reference semantics, and the embedded default), or Redis
//! ([`RedisBackend`], every transition one Lua script).
//!
//! This crate is the facade: it re-exports the layers so that applications depend on one crate.
//!
//! ```
//! use switchyard::{Backend, MemoryBackend, Policy, QueueConfig, QueueName, Strategy, TaskSpec, WorkerSpec};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let backend = MemoryBackend::new();
//! let queue = QueueName::new("thumbnails")?;
//! backend.declare_queue(&queue, QueueConfig::new(Policy::SJF, Strategy::LeastLoaded)).await?;
//! backend.register_worker(WorkerSpec::new("gpu-1", ["thumbnails"])?.capacity(4)).await?;
//! let out = backend.submit(TaskSpec::builder("thumbnails", "resize").build()?).await?;
//! assert!(out.assigned.is_some());
//! # Ok::<(), switchyard::Error>(())
//! # }).unwrap();
//! ```

pub use switchyard_core::*;
pub use switchyard_memory::MemoryBackend;
pub use switchyard_redis::{RedisBackend, RedisConfig};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
