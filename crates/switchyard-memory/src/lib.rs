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
mod state;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use switchyard_core::admin::{Purge, PurgeReport};
use switchyard_core::backend::due_pause;
use switchyard_core::flow::groups::GroupInfo;
use switchyard_core::progress::news;
use switchyard_core::schedule::{Claim, ScheduleInfo, ScheduleSpec, Upserted};
use switchyard_core::{
    Ack, AckOutcome, Assignment, Browse, CancelOutcome, Claimed, Clock, Delivery, Error, Event,
    HandBack, HeartbeatReply, Inspect, Lease, Leases, Maintain, MaintenanceReport, Membership,
    Produce, Progress, ProgressAck, QueueConfig, QueueName, Queues, RegisterOutcome, Result,
    ScheduleName, Schedules, Stats, SubmitOutcome, SystemClock, TaskChange, TaskId, TaskInfo,
    TaskKind, TaskOutcome, TaskPage, TaskSpec, Tasks, WorkerRef, WorkerSpec,
};
use tokio::time::Instant;

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
            s.check_room(std::slice::from_ref(&spec), None, now)?;
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

#[async_trait]
impl Queues for MemoryBackend {
    async fn declare_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<()> {
        self.declare_now(queue, config)
    }

    async fn queue_config(&self, queue: &QueueName) -> Result<Option<QueueConfig>> {
        Ok(self.lock().queues.get(queue).map(|q| q.config))
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<Vec<Assignment>> {
        self.with(|s, now| s.set_paused(queue, paused, now))
    }

    async fn purge_queue(
        &self,
        queue: &QueueName,
        what: Purge,
        limit: usize,
    ) -> Result<PurgeReport> {
        self.with(|s, now| s.purge_queue(queue, what, limit, now))
    }

    async fn reconfigure_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<bool> {
        self.with(|s, _| s.reconfigure_queue(queue, config))
    }

    async fn delete_queue(&self, queue: &QueueName) -> Result<()> {
        self.with(|s, _| s.delete_queue(queue))
    }

    async fn set_group_weight(&self, queue: &QueueName, key: &str, weight: u32) -> Result<()> {
        self.with(|s, _| s.set_group_weight(queue, key, weight))
    }

    async fn groups(&self, queue: &QueueName) -> Result<Vec<GroupInfo>> {
        self.with(|s, _| s.groups(queue))
    }
}

#[async_trait]
impl Produce for MemoryBackend {
    async fn submit(&self, spec: TaskSpec) -> Result<SubmitOutcome> {
        self.submit_now(spec)
    }

    /// Applies the batch [`SUBMIT_CHUNK`] tasks at a time, each chunk under one hold of the
    /// lock, yielding between chunks: a batch of a million tasks does not stall other callers.
    async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<SubmitOutcome>> {
        self.with(|s, _| {
            for t in &specs {
                match s.queues.get(t.queue()) {
                    None => return Err(Error::UnknownQueue(t.queue().clone())),
                    Some(q) if t.group_key().is_some() && q.config.groups.is_none() => {
                        return Err(switchyard_core::flow::groups::not_shared(t.queue()));
                    }
                    Some(_) => {}
                }
            }
            Ok(())
        })?;
        let total = specs.len();
        // A batch of several steps: each step's room check also covers the batch's tasks to
        // each of its queues from that step on.
        let mut rest: Option<HashMap<QueueName, u64>> = None;
        if total > SUBMIT_CHUNK {
            let mut counts = HashMap::new();
            for spec in &specs {
                *counts.entry(spec.queue().clone()).or_default() += 1;
            }
            rest = Some(counts);
        }
        let mut out = Vec::with_capacity(total);
        let mut specs = specs.into_iter();
        while specs.len() > 0 {
            let chunk: Vec<TaskSpec> = specs.by_ref().take(SUBMIT_CHUNK).collect();
            let failed = self.with_then_yield(|s, now| {
                if let Err(e) = s.check_room(&chunk, rest.as_ref(), now) {
                    return Ok(Some(e));
                }
                if let Some(counts) = rest.as_mut() {
                    for spec in &chunk {
                        if let Some(n) = counts.get_mut(spec.queue()) {
                            *n -= 1;
                        }
                    }
                }
                for spec in chunk {
                    match s.submit(spec, now) {
                        Ok(outcome) => out.push(outcome),
                        Err(e) => return Ok(Some(e)),
                    }
                }
                Ok(None)
            })?;
            match failed {
                None => {}
                Some(e) if out.is_empty() => return Err(e),
                Some(e) => {
                    return Err(Error::BatchIncomplete {
                        total,
                        accepted: out.into_iter().enumerate().collect(),
                        source: Box::new(e),
                    });
                }
            }
            tokio::task::yield_now().await;
        }
        Ok(out)
    }
}

#[async_trait]
impl Membership for MemoryBackend {
    async fn register_worker(&self, spec: WorkerSpec) -> Result<RegisterOutcome> {
        self.register_now(spec)
    }

    async fn heartbeat(&self, worker: &WorkerRef) -> Result<HeartbeatReply> {
        self.with(|s, now| {
            s.check_instance(worker)?;
            s.heartbeat(&worker.id, now)
        })
    }

    async fn drain_worker(&self, worker: &WorkerRef) -> Result<HandBack> {
        self.with(|s, now| {
            s.check_instance(worker)?;
            s.drain_worker(&worker.id, now)
        })
    }

    async fn deregister_worker(&self, worker: &WorkerRef) -> Result<HandBack> {
        self.with(|s, now| {
            s.check_instance(worker)?;
            s.deregister_worker(&worker.id, now)
        })
    }
}

#[async_trait]
impl Leases for MemoryBackend {
    async fn dispatch(&self, queue: &QueueName, limit: usize) -> Result<Vec<Assignment>> {
        self.with(|s, now| s.dispatch(queue, limit, now))
    }

    async fn receive(&self, worker: &WorkerRef, max: usize) -> Result<Vec<Delivery>> {
        self.receive_now(worker, max)
    }

    async fn receive_wait(
        &self,
        worker: &WorkerRef,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + timeout;
        loop {
            let (deliveries, waker) = self.with(|s, now| {
                // The twin of the wake-up subscription the Redis backend makes first.
                s.listen(&worker.id);
                s.check_instance(worker)?;
                // Hand-offs go to a waiting call only (see Leases::receive_wait).
                let mut deliveries = if timeout.is_zero() {
                    Vec::new()
                } else {
                    s.take_handed(&worker.id, max)
                };
                if deliveries.len() < max {
                    deliveries.extend(s.receive(&worker.id, max - deliveries.len(), now)?);
                }
                let waker = if deliveries.is_empty() {
                    Some(s.park(&worker.id))
                } else {
                    None
                };
                Ok((deliveries, waker))
            })?;
            let Some(waker) = waker.filter(|_| max > 0 && !timeout.is_zero()) else {
                return Ok(deliveries);
            };
            // A dispatch after the receive above leaves a permit, so no wake-up is lost.
            if tokio::time::timeout_at(deadline, waker.notified())
                .await
                .is_err()
            {
                return Ok(Vec::new());
            }
        }
    }

    async fn running(&self, worker: &WorkerRef) -> Result<Vec<Delivery>> {
        self.with(|s, _| {
            s.check_instance(worker)?;
            s.running_on(&worker.id)
        })
    }

    async fn complete(&self, lease: &Lease, value: Vec<u8>) -> Result<AckOutcome> {
        self.complete_now(lease, value)
    }

    async fn complete_and_receive(
        &self,
        lease: &Lease,
        value: Vec<u8>,
        max: usize,
    ) -> Result<(AckOutcome, Vec<Delivery>)> {
        self.with(|s, now| {
            let outcome = s.complete(lease, value, now)?;
            // Only a current lease may take more: see `Leases::complete_and_receive`.
            let deliveries = if max > 0 && outcome.ack == Ack::Completed {
                s.receive(&lease.worker, max, now)?
            } else {
                Vec::new()
            };
            Ok((outcome, deliveries))
        })
    }

    async fn fail(&self, lease: &Lease, error: &str, retry: bool) -> Result<AckOutcome> {
        self.with(|s, now| s.fail(lease, error, retry, now))
    }

    async fn throttle(&self, lease: &Lease, hold: Duration) -> Result<AckOutcome> {
        let hold = switchyard_core::flow::rate::hold_ms(hold)?;
        self.with(|s, now| s.throttle(lease, hold, now))
    }

    async fn progress(&self, lease: &Lease, progress: &Progress) -> Result<ProgressAck> {
        self.with(|s, now| s.progress(lease, progress, now))
    }
}

#[async_trait]
impl Tasks for MemoryBackend {
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        Ok(self.lock().get_task(id))
    }

    async fn get_outcome(&self, id: TaskId) -> Result<Option<TaskOutcome>> {
        Ok(self.lock().get_outcome(id))
    }

    async fn wait_outcome(&self, id: TaskId, timeout: Duration) -> Result<Option<TaskOutcome>> {
        let deadline = Instant::now() + timeout;
        let finished = self.lock().finished.clone();
        loop {
            let notified = finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.lock();
                if let Some(outcome) = state.get_outcome(id) {
                    return Ok(Some(outcome));
                }
                if state.get_task(id).is_none() {
                    return Err(Error::TaskNotFound(id));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn wait_progress(
        &self,
        id: TaskId,
        seen: Option<&Progress>,
        timeout: Duration,
    ) -> Result<Option<Progress>> {
        let deadline = Instant::now() + timeout;
        let (progressed, finished) = {
            let state = self.lock();
            (state.progressed.clone(), state.finished.clone())
        };
        loop {
            let announced = progressed.notified();
            let ended = finished.notified();
            tokio::pin!(announced, ended);
            announced.as_mut().enable();
            ended.as_mut().enable();
            let now = {
                let state = self.lock();
                let info = state.get_task(id).ok_or(Error::TaskNotFound(id))?;
                if news(info.progress.as_ref(), seen) || info.state.is_terminal() {
                    return Ok(info.progress);
                }
                info.progress
            };
            tokio::select! {
                () = &mut announced => {}
                () = &mut ended => {}
                () = tokio::time::sleep_until(deadline) => return Ok(now),
            }
        }
    }

    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        self.with(|s, now| s.cancel(id, now))
    }

    async fn list_dead(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskInfo>> {
        self.lock().list_dead(queue, limit)
    }

    async fn change_task(&self, id: TaskId, change: &TaskChange) -> Result<SubmitOutcome> {
        self.with(|s, now| s.change_task(id, change, now))
    }

    async fn redrive(&self, id: TaskId) -> Result<SubmitOutcome> {
        self.with(|s, now| s.redrive(id, now))
    }

    async fn delete_task(&self, id: TaskId) -> Result<()> {
        self.with(|s, _| s.delete_task(id))
    }
}

#[async_trait]
impl Inspect for MemoryBackend {
    async fn stats(&self) -> Result<Stats> {
        Ok(self.stats_now())
    }

    async fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>> {
        self.lock().peek_ready(queue, limit)
    }

    async fn browse(&self, query: &Browse) -> Result<TaskPage> {
        self.lock().browse(query)
    }

    async fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        self.lock().events(after, limit)
    }

    async fn learned_cost(&self, queue: &QueueName, kind: &TaskKind) -> Result<Option<u32>> {
        Ok(self.lock().learned_cost(queue, kind))
    }

    async fn memory(&self) -> Result<Vec<(QueueName, u64)>> {
        Ok(self.lock().memory())
    }
}

#[async_trait]
impl Schedules for MemoryBackend {
    async fn upsert_schedule(&self, spec: &ScheduleSpec) -> Result<Upserted> {
        self.with(|s, now| s.upsert_schedule(spec, now))
    }

    async fn get_schedule(&self, name: &ScheduleName) -> Result<Option<ScheduleInfo>> {
        Ok(self.lock().get_schedule(name))
    }

    async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        Ok(self.lock().all_schedules())
    }

    async fn set_schedule_paused(&self, name: &ScheduleName, paused: bool) -> Result<bool> {
        self.with(|s, now| s.set_schedule_paused(name, paused, now))
    }

    async fn remove_schedule(&self, name: &ScheduleName) -> Result<bool> {
        self.with(|s, _| Ok(s.remove_schedule(name)))
    }

    async fn claim_ticks(&self, name: &ScheduleName, claim: &Claim) -> Result<Option<Claimed>> {
        self.with(|s, now| s.claim_ticks(name, claim, now))
    }
}

#[async_trait]
impl Maintain for MemoryBackend {
    async fn until_due(&self) -> Result<Option<Duration>> {
        let due = self.lock().next_due();
        let now = self.shared.clock.now_ms();
        Ok(due.map(|at| Duration::from_millis(at.saturating_sub(now))))
    }

    async fn sleep_until_due(&self, at_most: Duration) -> Result<()> {
        let deadline = Instant::now() + at_most;
        let mut wake_at = deadline;
        let moved = self.lock().due_moved.clone();
        loop {
            // Listening before asking, so that a due time moved after the ask is not missed.
            let notified = moved.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let until_due = self.until_due().await?;
            let now = Instant::now();
            let Some(pause) = due_pause(until_due, deadline.saturating_duration_since(now)) else {
                return Ok(());
            };
            // Never later than an earlier pass promised (see the Redis backend).
            wake_at = wake_at.min(now + pause);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake_at) => return Ok(()),
            }
        }
    }

    async fn maintain(&self, limit: usize) -> Result<MaintenanceReport> {
        self.maintain_now(limit)
    }
}
