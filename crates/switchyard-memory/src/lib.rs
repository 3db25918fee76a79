//! # switchyard-memory
//!
//! The in-memory [`Backend`](switchyard_core::Backend): the **reference semantics** of Switchyard, the embedded default
//! of the `switchyard` binary, and the test double for code built on the facade.
//!
//! Every transition is one critical section under one mutex, so each step is atomic and the
//! backend is safe to share across tokio tasks (clone the handle). Time comes from an
//! injected [`Clock`]: under a [`ManualClock`](switchyard_core::ManualClock) and with seeded
//! queues, the same operations give the same decisions every time. Ready sets are ordered maps
//! (`O(log n)` pops) and every strategy decision is `O(log w)` (see
//! [`switchyard_core::strategy`]).
//!
//! The rules it implements — and that the Redis backend reproduces decision for decision — are
//! written out in `docs/architecture.md`. In short:
//!
//! * A task entering an **empty** ready set of a push queue is dispatched at once if the
//!   strategy finds an eligible worker; otherwise it waits in policy order.
//! * A worker that frees a slot takes the next task from the first of its push queues that
//!   has one (it is the only eligible worker for such a queue, so the strategy is not asked).
//! * `receive` starts inbox tasks in dispatch order, then pulls from pull queues.
//! * A failed attempt releases the slot, then retries after backoff (or dies), then the worker
//!   refills.
//! * **Idempotence of a task id lasts as long as its record.** Submitting an id that exists
//!   answers `duplicate` and changes nothing — until [`maintain`](Maintain::maintain) purges the
//!   finished record, after the queue's result TTL (succeeded, cancelled) or dead TTL (dead).
//!   After that the id is unknown and a submit with it creates a new task. (A dedup key is held
//!   for the queue's dedup window instead, whatever happens to its task.)
//! * A worker that leaves (deregistration, reaping, re-registration under the same id) wakes
//!   its `receive_wait` in progress, which then answers
//!   [`UnknownWorker`](switchyard_core::Error::UnknownWorker), or
//!   [`WorkerReplaced`](switchyard_core::Error::WorkerReplaced) if another instance took the
//!   id over (a re-registration by the same instance keeps waiting for the new registration's
//!   work).
//! * **Worker ids are fenced by instance tokens.** A live registration (heartbeat not yet
//!   expired) is replaced only by the same instance; another instance is refused with
//!   [`WorkerIdInUse`](switchyard_core::Error::WorkerIdInUse).
//! * A batch submit runs [`SUBMIT_CHUNK`] tasks per hold of the lock.
//!
//! ```
//! use switchyard_core::prelude::*;
//! use switchyard_core::{QueueConfig, QueueName, TaskSpec, WorkerSpec, Policy, Strategy};
//! use switchyard_memory::MemoryBackend;
//!
//! # tokio_test_block_on(async {
//! let backend = MemoryBackend::new();
//! let queue = QueueName::new("emails")?;
//! backend.declare_queue(&queue, QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)).await?;
//! let spec = WorkerSpec::new("w1", ["emails"])?.capacity(2);
//! backend.register_worker(spec.clone()).await?;
//!
//! let submitted = backend.submit(TaskSpec::builder("emails", "send").build()?).await?;
//! assert_eq!(submitted.assigned.map(|w| w.to_string()), Some("w1".to_string()));
//!
//! // A worker names itself by id and instance token in the calls it makes as itself.
//! let deliveries = backend.receive(&spec.worker_ref(), 10).await?;
//! backend.complete(&deliveries[0].lease, b"sent".to_vec()).await?;
//! # Ok::<(), switchyard_core::Error>(())
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

mod audit;
mod capabilities;
mod state;

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use switchyard_core::{
    AckOutcome, Clock, Delivery, Lease, MaintenanceReport, QueueConfig, QueueName, RegisterOutcome,
    Result, Stats, SubmitOutcome, SystemClock, TaskSpec, WorkerRef, WorkerSpec,
};

use state::State;

/// Tasks a batch submit applies under one hold of the lock; between chunks other callers run.
/// The same step as on Redis, for a bounded queue's room check is made per step
/// (`switchyard_core::flow::bounded`).
pub const SUBMIT_CHUNK: usize = switchyard_core::flow::bounded::BATCH_STEP;

/// The in-memory backend. Cheap to clone; clones share the same state.
#[derive(Clone, Debug)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A backend on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// A backend on the given clock (use a [`ManualClock`](switchyard_core::ManualClock) for
    /// deterministic runs).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryBackend {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                clock,
            }),
        }
    }

    /// The backend's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock()
    }

    fn now(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// Checks every invariant that one snapshot can show (conservation, capacity, work
    /// conservation, index consistency). For tests; `O(n)`.
    pub fn audit(&self) -> std::result::Result<(), String> {
        self.lock().audit()
    }

    /// Runs a closure on the locked state; synchronous twin of each trait method, for the
    /// simulator and benches that do not want an executor.
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> Result<T>) -> Result<T> {
        let now = self.now();
        let mut state = self.lock();
        state.now = now;
        f(&mut state, now)
    }

    /// [`with`](Self::with), then hands the lock to a caller that waits for it, if one does,
    /// before this one may take it again: what a long series of steps (a large batch) does
    /// between steps, so that others are not starved by a lock taken back at once.
    fn with_then_yield<T>(&self, f: impl FnOnce(&mut State, u64) -> Result<T>) -> Result<T> {
        let now = self.now();
        let mut state = self.lock();
        state.now = now;
        let out = f(&mut state, now);
        MutexGuard::unlock_fair(state);
        out
    }

    /// Synchronous [`Produce::submit`](switchyard_core::Produce::submit).
    pub fn submit_now(&self, spec: TaskSpec) -> Result<SubmitOutcome> {
        self.with(|s, now| {
            s.check_groups(std::slice::from_ref(&spec))?;
            s.check_room(
                std::slice::from_ref(&spec),
                &switchyard_core::flow::bounded::Remaining::default(),
                now,
            )?;
            s.submit(spec, now)
        })
    }

    /// Synchronous [`Leases::receive`](switchyard_core::Leases::receive).
    pub fn receive_now(&self, worker: &WorkerRef, max: usize) -> Result<Vec<Delivery>> {
        self.with(|s, now| {
            s.check_instance(worker)?;
            s.receive(&worker.id, max, now)
        })
    }

    /// Synchronous [`Leases::complete`](switchyard_core::Leases::complete).
    pub fn complete_now(&self, lease: &Lease, value: Vec<u8>) -> Result<AckOutcome> {
        self.with(|s, now| s.complete(lease, value, now))
    }

    /// Synchronous [`Membership::register_worker`](switchyard_core::Membership::register_worker).
    pub fn register_now(&self, spec: WorkerSpec) -> Result<RegisterOutcome> {
        self.with(|s, now| s.register_worker(spec, now))
    }

    /// Synchronous [`Queues::declare_queue`](switchyard_core::Queues::declare_queue).
    pub fn declare_now(&self, queue: &QueueName, config: QueueConfig) -> Result<()> {
        self.with(|s, _| s.declare_queue(queue, config))
    }

    /// Synchronous [`Maintain::maintain`](switchyard_core::Maintain::maintain).
    pub fn maintain_now(&self, limit: usize) -> Result<MaintenanceReport> {
        self.with(|s, now| s.maintain(limit, now))
    }

    /// Synchronous [`Inspect::stats`](switchyard_core::Inspect::stats).
    pub fn stats_now(&self) -> Stats {
        let now = self.now();
        self.lock().stats(now)
    }
}
