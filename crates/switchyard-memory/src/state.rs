//! The reference state machine: every transition of DESIGN §3 as a method on [`State`].
//!
//! Each public method here is one atomic step (the caller holds the lock). The rules written
//! in these methods are the semantics the Redis scripts reproduce; the comments name each rule
//! where the order of effects matters for identical decisions.

mod admin;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use switchyard_core::backend::{lost_worker_error, next_average, normalize_error, timeout_error};
use switchyard_core::policy::KeyInput;
use switchyard_core::rng::Minstd;
use switchyard_core::strategy::{Balancer, Load};
use switchyard_core::{
    Ack, AckOutcome, Assignment, BackendErrorKind, CancelOutcome, Delivery, Error, HandBack,
    HeartbeatReply, Lease, LeaseToken, MaintenanceReport, Millis, QueueConfig, QueueName,
    QueueStats, RegisterOutcome, Rejection, Result, Stats, SubmitOutcome, TaskId, TaskInfo,
    TaskKind, TaskOutcome, TaskSpec, TaskState, WorkerId, WorkerRef, WorkerSpec, WorkerStats,
};
use switchyard_core::{
    EVENT_LOG_CAP, Event, EventCounts, EventKind, Policy, TraceParent, TraceState,
};
use tokio::sync::Notify;

/// One queue.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) config: QueueConfig,
    /// Ready tasks by `(sort key, seq)`.
    pub(crate) ready: BTreeMap<(i64, u64), TaskId>,
    /// Scheduled and retry-scheduled tasks by `(run_at, seq)`.
    pub(crate) delayed: BTreeMap<(i64, u64), TaskId>,
    pub(crate) balancer: Balancer,
    pub(crate) jitter: Minstd,
    /// Dead tasks by `(died_at, id)`.
    pub(crate) dead: BTreeSet<(Millis, TaskId)>,
    /// Finished tasks by `(retain_until, id)`.
    pub(crate) done: BTreeSet<(Millis, TaskId)>,
    /// Live workers serving the queue.
    pub(crate) members: BTreeSet<WorkerId>,
    /// Pull queues: workers asleep in `receive_wait`, woken one per arriving task.
    pub(crate) parked: BTreeSet<WorkerId>,
    /// Lifetime counts of its tasks' events (counted by `emit`, recorded or not).
    pub(crate) totals: EventCounts,
    /// Nothing is dispatched from it (see `set_paused`).
    pub(crate) paused: bool,
}

/// One task record.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) id: TaskId,
    pub(crate) queue: QueueName,
    pub(crate) kind: TaskKind,
    pub(crate) payload: Vec<u8>,
    pub(crate) priority: u16,
    pub(crate) cost_ms: u32,
    pub(crate) max_attempts: u32,
    pub(crate) timeout_ms: u32,
    pub(crate) affinity_key: Option<String>,
    pub(crate) dedup_key: Option<String>,
    /// The submitter's trace context, handed over with every delivery.
    pub(crate) trace_parent: Option<TraceParent>,
    pub(crate) trace_state: Option<TraceState>,
    pub(crate) created_at: Millis,
    pub(crate) state: TaskState,
    pub(crate) attempts: u32,
    pub(crate) run_at: Option<Millis>,
    /// Position in the queue's ready or delayed set.
    pub(crate) position: Option<(i64, u64)>,
    /// Its place in the ready order (the sequence number it was last made ready with), kept
    /// while it is dispatched and running: a task returned from a worker takes it again.
    pub(crate) order: u64,
    pub(crate) worker: Option<WorkerId>,
    pub(crate) token: u64,
    pub(crate) inbox_seq: u64,
    pub(crate) deadline: Millis,
    /// When it last became ready (its enqueue time for aging): deliveries carry it.
    pub(crate) ready_since: Millis,
    pub(crate) last_error: Option<String>,
    pub(crate) cancel_requested: bool,
    pub(crate) outcome: Option<TaskOutcome>,
    pub(crate) finished_at: Millis,
    pub(crate) retain_until: Millis,
}

impl Task {
    /// Its current attempt as a delivery to `worker`.
    fn delivery(&self, worker: &WorkerId, ready_since: Option<Millis>) -> Delivery {
        Delivery {
            lease: Lease {
                task: self.id,
                queue: self.queue.clone(),
                worker: worker.clone(),
                token: LeaseToken(self.token),
            },
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            attempt: self.attempts,
            max_attempts: self.max_attempts,
            deadline: self.deadline,
            timeout_ms: self.timeout_ms,
            ready_since,
            trace_parent: self.trace_parent.clone(),
            trace_state: self.trace_state.clone(),
        }
    }

    /// The key the affinity strategy hashes: the affinity key, or the id's text.
    fn affinity_bytes(&self) -> Vec<u8> {
        match &self.affinity_key {
            Some(k) => k.as_bytes().to_vec(),
            None => self.id.to_string().into_bytes(),
        }
    }

    pub(crate) fn info(&self) -> TaskInfo {
        TaskInfo {
            id: self.id,
            queue: self.queue.clone(),
            kind: self.kind.clone(),
            state: self.state,
            priority: self.priority,
            cost_ms: self.cost_ms,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            created_at: self.created_at,
            run_at: match self.state {
                TaskState::Scheduled | TaskState::RetryScheduled => self.run_at,
                _ => None,
            },
            worker: self.worker.clone(),
            token: self.state.is_leased().then_some(LeaseToken(self.token)),
            last_error: self.last_error.clone(),
            cancel_requested: self.cancel_requested,
            affinity_key: self.affinity_key.clone(),
            dedup_key: self.dedup_key.clone(),
            deadline: (self.state == TaskState::Running).then_some(self.deadline),
            finished_at: self.state.is_terminal().then_some(self.finished_at),
            trace_parent: self.trace_parent.clone(),
            trace_state: self.trace_state.clone(),
            payload: self.payload.clone(),
        }
    }
}

/// What the first worker parked on a pull queue does with an arriving task (`State::sleeper`).
enum Sleeper {
    /// Nobody is parked there.
    None,
    /// The sleeper could not take it, and was woken (and unparked) instead.
    Woken,
    /// It takes the task (the hand-off).
    Takes(WorkerId),
}

/// One live worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) spec: WorkerSpec,
    pub(crate) inflight: u32,
    /// Dispatched, not yet received, by dispatch sequence.
    pub(crate) inbox: BTreeMap<u64, TaskId>,
    pub(crate) running: BTreeSet<TaskId>,
    pub(crate) expires_at: Millis,
    /// Takes no new tasks (see `drain_worker`).
    pub(crate) draining: bool,
    /// It asked for tasks and got none (`receive_wait`): a task dispatched to it while its
    /// inbox is empty is started at once (a hand-off).
    pub(crate) waiting: bool,
    /// Hand-offs (tasks started on it while it was parked) not yet taken by a waiting receive.
    pub(crate) handed: VecDeque<Delivery>,
    /// Tasks handed to it (one per attempt) and completed by it, since it registered.
    pub(crate) dispatched: u64,
    pub(crate) completed: u64,
}

impl Worker {
    /// The load the balancers see: a draining worker looks full.
    fn load(&self) -> Load {
        let capacity = self.spec.get_capacity();
        Load {
            inflight: if self.draining {
                capacity
            } else {
                self.inflight
            },
            capacity,
        }
    }

    /// Whether it may take another task.
    pub(crate) fn has_free_slot(&self) -> bool {
        !self.draining && self.inflight < self.spec.get_capacity()
    }
}

#[derive(Debug)]
struct DedupEntry {
    task: TaskId,
    expires_at: Millis,
}

/// Everything the memory backend knows.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) queues: BTreeMap<QueueName, Queue>,
    /// Every task, by id. Boxed, and hashed by the id's own random bits: when the map
    /// doubles, it moves and rehashes pointers, not records (at a million tasks, records moved
    /// by value held the lock for half a second).
    pub(crate) tasks: HashMap<TaskId, Box<Task>, IdHash>,
    pub(crate) workers: BTreeMap<WorkerId, Worker>,
    /// The backend-wide sequence: FIFO tie-break of ready and delayed sets, lease tokens and
    /// inbox order all draw from it.
    counter: u64,
    dedup: HashMap<(QueueName, String), DedupEntry>,
    dedup_expiry: BTreeSet<(Millis, QueueName, String)>,
    /// Live workers by `(expires_at, id)`.
    pub(crate) heartbeats: BTreeSet<(Millis, WorkerId)>,
    /// Wakes a worker waiting in `receive_wait`. Only registered workers have one: the entry
    /// goes when the worker does (see `hand_back`).
    pub(crate) wakers: HashMap<WorkerId, Arc<Notify>>,
    /// Workers that wait for hand-offs through this backend (have called `receive_wait`): the
    /// twin of a subscription to a worker's wake channel on Redis (see `listening`).
    pub(crate) listeners: HashSet<WorkerId>,
    /// Wakes everyone waiting for an outcome.
    pub(crate) finished: Arc<Notify>,
    /// Wakes every maintenance loop sleeping in `sleep_until_due` when a delayed task becomes
    /// the first of its queue (the earliest due time may have moved earlier).
    pub(crate) due_moved: Arc<Notify>,
    /// The time of the step in progress (set before every step).
    pub(crate) now: Millis,
    /// The capped event log, and the number of events ever recorded (their ids).
    events: VecDeque<Event>,
    event_count: u64,
    /// Moving averages of run times per (queue, kind), for shortest-job-first queues.
    costs: HashMap<(QueueName, TaskKind), u64>,
}

/// Hashes a [`TaskId`] by its low 64 bits, which are random (`TaskId` is 48 bits of time and
/// 80 random ones): nothing to mix, so a resize rehashes a million ids in milliseconds.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// See [`IdHash`].
#[derive(Debug, Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for a `TaskId` (it hashes one u128); any other input is folded in.
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 ^= value as u64;
    }
}

fn internal(what: &str) -> Error {
    Error::Backend {
        kind: BackendErrorKind::Other,
        message: format!("memory backend inconsistency: {what}"),
    }
}

fn to_i64(ms: Millis) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl State {
    // ----- queues -------------------------------------------------------------------------

    pub(crate) fn declare_queue(&mut self, name: &QueueName, config: QueueConfig) -> Result<()> {
        config.validate()?;
        if let Some(existing) = self.queues.get(name) {
            if existing.config == config {
                return Ok(());
            }
            return Err(Error::QueueConflict {
                queue: name.clone(),
                detail: existing.config.diff(&config),
            });
        }
        self.queues.insert(
            name.clone(),
            Queue {
                config,
                ready: BTreeMap::new(),
                delayed: BTreeMap::new(),
                balancer: Balancer::new(config.strategy, config.seed),
                jitter: config.jitter_rng(),
                dead: BTreeSet::new(),
                done: BTreeSet::new(),
                members: BTreeSet::new(),
                parked: BTreeSet::new(),
                totals: EventCounts::default(),
                paused: false,
            },
        );
        Ok(())
    }

    fn queue(&self, name: &QueueName) -> Result<&Queue> {
        self.queues
            .get(name)
            .ok_or_else(|| Error::UnknownQueue(name.clone()))
    }

    fn queue_mut(&mut self, name: &QueueName) -> Result<&mut Queue> {
        self.queues
            .get_mut(name)
            .ok_or_else(|| Error::UnknownQueue(name.clone()))
    }

    fn task_mut(&mut self, id: TaskId) -> Result<&mut Task> {
        self.tasks
            .get_mut(&id)
            .map(|t| &mut **t)
            .ok_or_else(|| internal("task record missing"))
    }

    // ----- the building blocks ---------------------------------------------------------------

    /// The cost of a task without a cost hint: for shortest-job-first queues the moving average
    /// of its kind's measured run times, once there is one; otherwise the queue default.
    fn default_cost(&self, queue: &QueueName, kind: &TaskKind, config: &QueueConfig) -> u32 {
        if matches!(config.policy, Policy::ShortestJobFirst { .. })
            && let Some(avg) = self.costs.get(&(queue.clone(), kind.clone()))
        {
            return u32::try_from(*avg).unwrap_or(u32::MAX);
        }
        config.default_cost_ms
    }

    /// In a shortest-job-first queue, folds a succeeding task's run time (now minus its start)
    /// into its kind's moving average.
    fn learn_cost(&mut self, id: TaskId, now: Millis) -> Result<()> {
        let t = self
            .tasks
            .get(&id)
            .ok_or_else(|| internal("task record missing"))?;
        let q = self.queue(&t.queue)?;
        if !matches!(q.config.policy, Policy::ShortestJobFirst { .. }) {
            return Ok(());
        }
        let started = t.deadline.saturating_sub(u64::from(t.timeout_ms));
        let key = (t.queue.clone(), t.kind.clone());
        let sample = now.saturating_sub(started);
        let default = u64::from(q.config.default_cost_ms);
        let avg = next_average(self.costs.get(&key).copied(), sample, default);
        self.costs.insert(key, avg);
        Ok(())
    }

    /// The first run-at among delayed tasks, or the first heartbeat expiry (+1 ms: reaping
    /// needs `expiry < now`).
    pub(crate) fn next_due(&self) -> Option<Millis> {
        let delayed = self.queues.values().filter_map(|q| {
            q.delayed
                .keys()
                .next()
                .map(|(at, _)| u64::try_from(*at).unwrap_or(0))
        });
        let reap = self.heartbeats.first().map(|(t, _)| t + 1);
        delayed.chain(reap).min()
    }

    /// The moving average of a kind's run times in a queue.
    pub(crate) fn learned_cost(&self, queue: &QueueName, kind: &TaskKind) -> Option<u32> {
        self.costs
            .get(&(queue.clone(), kind.clone()))
            .map(|a| u32::try_from(*a).unwrap_or(u32::MAX))
    }

    /// Events after `after`, oldest first.
    pub(crate) fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        let after: u64 = match after {
            None => 0,
            Some(a) => a.parse().map_err(|_| {
                Error::invalid(
                    "event id",
                    format!("`{a}` is not an event id of this backend"),
                )
            })?,
        };
        Ok(self
            .events
            .iter()
            .filter(|e| e.id.parse::<u64>().is_ok_and(|n| n > after))
            .take(limit)
            .cloned()
            .collect())
    }

    /// Records an event if the task's queue records its kind.
    fn emit(
        &mut self,
        kind: EventKind,
        id: TaskId,
        worker: Option<&WorkerId>,
        detail: Option<String>,
    ) {
        let Some(t) = self.tasks.get(&id) else { return };
        let Some(q) = self.queues.get_mut(&t.queue) else {
            return;
        };
        q.totals.add(kind, 1);
        if !kind.recorded_at(q.config.events) {
            return;
        }
        self.event_count += 1;
        let event = Event {
            id: self.event_count.to_string(),
            kind,
            task: id,
            queue: t.queue.clone(),
            worker: worker.cloned(),
            at: self.now,
            detail,
        };
        self.events.push_back(event);
        if self.events.len() > EVENT_LOG_CAP {
            self.events.pop_front();
        }
    }

    /// The next value of the backend-wide sequence.
    fn next_seq(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Puts a task into its queue's ready set, or dispatches it at once when the set is empty
    /// and an eligible worker exists (the strategy decides which); in a pull queue, the set's
    /// minimum then goes to a parked worker that takes it (`hand_off_ready`). `enqueued_at`
    /// feeds aging. The task goes behind every task there; see `return_ready` for one that
    /// keeps its place.
    fn make_ready(
        &mut self,
        id: TaskId,
        enqueued_at: Millis,
        now: Millis,
    ) -> Result<Option<Assignment>> {
        self.enter_ready(id, enqueued_at, now, false)
    }

    /// [`make_ready`](Self::make_ready) for a task that comes back from a worker that did not
    /// finish it (reaped, deregistered, drained): it takes its old place in the ready order
    /// (under aging, its key counts from its creation), ahead of the tasks that became ready
    /// after it.
    fn return_ready(&mut self, id: TaskId, now: Millis) -> Result<Option<Assignment>> {
        self.enter_ready(id, now, now, true)
    }

    fn enter_ready(
        &mut self,
        id: TaskId,
        enqueued_at: Millis,
        now: Millis,
        keep: bool,
    ) -> Result<Option<Assignment>> {
        self.task_mut(id)?.ready_since = enqueued_at;
        let (queue_name, priority, cost_ms, affinity, created_at, kept) = {
            let t = self
                .tasks
                .get(&id)
                .ok_or_else(|| internal("task record missing"))?;
            (
                t.queue.clone(),
                t.priority,
                t.cost_ms,
                t.affinity_bytes(),
                t.created_at,
                t.order,
            )
        };
        let seq = self.next_seq();
        let order = if keep { kept } else { seq };
        self.task_mut(id)?.order = order;
        let q = self.queue_mut(&queue_name)?;
        let key = q.config.policy.sort_key(&KeyInput {
            priority,
            cost_ms,
            enqueued_at: if keep { created_at } else { enqueued_at },
        });
        // A non-empty ready set means no worker of this queue has a free slot (invariant 3),
        // so only an empty set can dispatch an arriving task.
        if q.config.strategy.is_push()
            && !q.paused
            && q.ready.is_empty()
            && let Some(worker) = q.balancer.pick(&affinity)
        {
            // The task's sequence number doubles as its lease token.
            return self.dispatch_to(&worker, id, Some(seq), now).map(Some);
        }
        let pull = !q.config.strategy.is_push() && !q.paused;
        q.ready.insert((key, order), id);
        let t = self.task_mut(id)?;
        t.state = TaskState::Ready;
        t.position = Some((key, order));
        t.worker = None;
        if pull {
            self.hand_off_ready(&queue_name, now)?;
        }
        Ok(None)
    }

    /// Pull queues: hands the ready tasks of `queue`, minimum first, to the parked workers that
    /// take them (see `sleeper`), each under a fresh token, until none is ready or none takes.
    fn hand_off_ready(&mut self, queue: &QueueName, now: Millis) -> Result<()> {
        while let Some((&pos, &id)) = self.queue(queue)?.ready.first_key_value() {
            match self.sleeper(queue)? {
                Sleeper::None => break,
                Sleeper::Woken => {}
                Sleeper::Takes(w) => {
                    self.queue_mut(queue)?.ready.remove(&pos);
                    let token = self.next_seq();
                    self.hand_to(&w, id, token, now)?;
                }
            }
        }
        Ok(())
    }

    /// The worker a task entering its queue went to at once (SubmitOutcome::assigned): the
    /// one it was dispatched to, or handed off to (then it is running).
    fn assigned_at_once(&self, id: TaskId, dispatched: Option<Assignment>) -> Option<WorkerId> {
        dispatched.map(|a| a.worker).or_else(|| {
            self.tasks
                .get(&id)
                .filter(|t| t.state == TaskState::Running)
                .and_then(|t| t.worker.clone())
        })
    }

    /// Pull queues: the first worker parked on `queue` (by id), if it takes a task at once — it
    /// has a free slot and an empty inbox. One that cannot is unparked and woken instead: it
    /// has its inbox to receive.
    fn sleeper(&mut self, queue: &QueueName) -> Result<Sleeper> {
        let Some(w) = self.queue(queue)?.parked.first().cloned() else {
            return Ok(Sleeper::None);
        };
        if self
            .workers
            .get(&w)
            .is_some_and(|wk| wk.has_free_slot() && wk.inbox.is_empty())
            && self.listening(&w)
        {
            return Ok(Sleeper::Takes(w));
        }
        self.unpark(&w);
        self.wake(&w);
        Ok(Sleeper::Woken)
    }

    /// The hand-off: starts task `id` on a parked or waiting `worker` under `token` and keeps
    /// the delivery for its waiting receive (which is woken); the worker stays parked and
    /// waiting while it has a free slot.
    fn hand_to(&mut self, worker: &WorkerId, id: TaskId, token: u64, now: Millis) -> Result<()> {
        let delivery = self.start_pulled(worker, id, token, now)?;
        let full = match self.workers.get_mut(worker) {
            Some(w) => {
                w.handed.push_back(delivery);
                // Filled: parked no more, and no longer waiting.
                let full = !w.has_free_slot();
                if full {
                    w.waiting = false;
                }
                full
            }
            None => true,
        };
        self.prune_handed(worker);
        if full {
            self.unpark(worker);
        }
        self.wake(worker);
        Ok(())
    }

    /// Schedules a task for `at`, or makes it ready now if `at` has come.
    fn enter_queue(
        &mut self,
        id: TaskId,
        at: Option<Millis>,
        now: Millis,
        retry: bool,
    ) -> Result<Option<Assignment>> {
        match at {
            Some(at) if at > now => {
                let queue_name = self
                    .tasks
                    .get(&id)
                    .ok_or_else(|| internal("task record missing"))?
                    .queue
                    .clone();
                let seq = self.next_seq();
                let q = self.queue_mut(&queue_name)?;
                let position = (to_i64(at), seq);
                q.delayed.insert(position, id);
                if q.delayed
                    .first_key_value()
                    .is_some_and(|(first, _)| *first == position)
                {
                    self.due_moved.notify_waiters();
                }
                let t = self.task_mut(id)?;
                t.state = if retry {
                    TaskState::RetryScheduled
                } else {
                    TaskState::Scheduled
                };
                t.run_at = Some(at);
                t.position = Some(position);
                t.worker = None;
                Ok(None)
            }
            _ => self.make_ready(id, now, now),
        }
    }

    /// Hands a task to a worker's inbox under a lease token (a fresh sequence value unless
    /// given); the token also orders the inbox.
    fn dispatch_to(
        &mut self,
        worker: &WorkerId,
        id: TaskId,
        token: Option<u64>,
        now: Millis,
    ) -> Result<Assignment> {
        let token = match token {
            Some(t) => t,
            None => self.next_seq(),
        };
        let (waiting, empty) = self
            .workers
            .get(worker)
            .map_or((false, false), |w| (w.waiting, w.inbox.is_empty()));
        if waiting && empty && self.listening(worker) {
            // The worker waits with nothing to receive: it takes the task at once.
            let queue = self.task_mut(id)?.queue.clone();
            self.hand_to(worker, id, token, now)?;
            self.emit(EventKind::Dispatched, id, Some(worker), None);
            return Ok(Assignment {
                task: id,
                queue,
                worker: worker.clone(),
            });
        }
        let seq = token;
        let queue = {
            let t = self.task_mut(id)?;
            t.state = TaskState::Dispatched;
            t.worker = Some(worker.clone());
            t.token = token;
            t.inbox_seq = seq;
            t.position = None;
            t.queue.clone()
        };
        let w = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| internal("picked worker missing"))?;
        w.inflight += 1;
        w.dispatched += 1;
        w.inbox.insert(seq, id);
        // A waiting worker with tasks still to receive is woken to receive them.
        w.waiting = false;
        self.refresh_load(worker);
        self.wake(worker);
        self.emit(EventKind::Dispatched, id, Some(worker), None);
        Ok(Assignment {
            task: id,
            queue,
            worker: worker.clone(),
        })
    }

    /// Tells every balancer of the worker's queues its current load.
    fn refresh_load(&mut self, worker: &WorkerId) {
        let Some(w) = self.workers.get(worker) else {
            return;
        };
        let load = w.load();
        for q in w.spec.queues() {
            if let Some(queue) = self.queues.get_mut(q) {
                queue.balancer.set_load(worker, load);
            }
        }
    }

    fn wake(&self, worker: &WorkerId) {
        if let Some(n) = self.wakers.get(worker) {
            n.notify_one();
        }
    }

    /// The notifier a waiting worker sleeps on. The worker is marked waiting (a dispatch to it
    /// while its inbox is empty starts the task at once: see `dispatch_to`) and parked on its
    /// pull queues, so that the next task arriving in one of them is handed to it (`sleeper`).
    pub(crate) fn park(&mut self, worker: &WorkerId) -> Arc<Notify> {
        if let Some(w) = self.workers.get_mut(worker) {
            w.waiting = true;
        }
        if let Some(w) = self.workers.get(worker) {
            for qn in w.spec.queues() {
                if let Some(q) = self.queues.get_mut(qn)
                    && !q.config.strategy.is_push()
                {
                    q.parked.insert(worker.clone());
                }
            }
        }
        self.wakers.entry(worker.clone()).or_default().clone()
    }

    /// Notes that `worker` waits for hand-offs through this backend (see `listeners`).
    pub(crate) fn listen(&mut self, worker: &WorkerId) {
        if !self.listeners.contains(worker) {
            self.listeners.insert(worker.clone());
        }
    }

    /// Whether a hand-off to `worker` would be seen: only then is it handed a task, started
    /// at once (lua/lib/workers.lua `listening`, where a subscription to its wake channel
    /// says so). Otherwise the task is left for it to receive, and no attempt is counted.
    fn listening(&self, worker: &WorkerId) -> bool {
        self.listeners.contains(worker)
    }

    /// Takes a worker off every parked list (it is awake, or gone).
    fn unpark(&mut self, worker: &WorkerId) {
        if let Some(w) = self.workers.get(worker) {
            for qn in w.spec.queues() {
                if let Some(q) = self.queues.get_mut(qn) {
                    q.parked.remove(worker);
                }
            }
        }
    }

    /// Fills a worker's free slots from its push queues, in its preference order. Only this
    /// worker can be eligible for a non-empty queue here (invariant 3), so the strategy is not
    /// consulted and its state does not change.
    fn fill_worker(&mut self, worker: &WorkerId, now: Millis) -> Result<Vec<Assignment>> {
        let mut out = Vec::new();
        while let Some(w) = self.workers.get(worker) {
            if !w.has_free_slot() {
                break;
            }
            let next = w.spec.queues().iter().find_map(|qn| {
                let q = self.queues.get(qn)?;
                if !q.config.strategy.is_push() || q.paused {
                    return None;
                }
                q.ready
                    .first_key_value()
                    .map(|(pos, id)| (qn.clone(), *pos, *id))
            });
            let Some((qn, pos, id)) = next else {
                break;
            };
            self.queue_mut(&qn)?.ready.remove(&pos);
            out.push(self.dispatch_to(worker, id, None, now)?);
        }
        Ok(out)
    }

    /// Frees the slot a task held on its worker.
    fn release_slot(&mut self, worker: &WorkerId, id: TaskId, inbox_seq: Option<u64>) {
        if let Some(w) = self.workers.get_mut(worker) {
            let held = match inbox_seq {
                Some(seq) => w.inbox.remove(&seq).is_some(),
                None => w.running.remove(&id),
            };
            if held {
                w.inflight = w.inflight.saturating_sub(1);
            }
        }
        self.refresh_load(worker);
    }

    /// Ends a task in a terminal state.
    fn finish(
        &mut self,
        id: TaskId,
        state: TaskState,
        outcome: TaskOutcome,
        now: Millis,
    ) -> Result<()> {
        let (queue_name, ttl) = {
            let t = self
                .tasks
                .get(&id)
                .ok_or_else(|| internal("task record missing"))?;
            let q = self.queue(&t.queue)?;
            let ttl = if state == TaskState::Dead {
                q.config.dead_ttl_ms
            } else {
                q.config.result_ttl_ms
            };
            (t.queue.clone(), ttl)
        };
        let until = now.saturating_add(ttl);
        let q = self.queue_mut(&queue_name)?;
        if state == TaskState::Dead {
            q.dead.insert((now, id));
        }
        q.done.insert((until, id));
        let t = self.task_mut(id)?;
        t.state = state;
        t.outcome = Some(outcome);
        t.worker = None;
        t.position = None;
        t.finished_at = now;
        t.retain_until = until;
        self.finished.notify_waiters();
        Ok(())
    }

    /// Starts a task on a worker: attempt counted, lease deadline set.
    fn start(&mut self, worker: &WorkerId, id: TaskId, now: Millis) -> Result<Delivery> {
        let t = self
            .tasks
            .get_mut(&id)
            .ok_or_else(|| internal("task record missing"))?;
        t.state = TaskState::Running;
        t.attempts += 1;
        t.deadline = now.saturating_add(u64::from(t.timeout_ms));
        t.worker = Some(worker.clone());
        t.position = None;
        let delivery = t.delivery(worker, Some(t.ready_since));
        if let Some(w) = self.workers.get_mut(worker) {
            w.running.insert(id);
        }
        Ok(delivery)
    }

    /// Removes a worker and sends its tasks back: inbox tasks (in dispatch order) with their
    /// attempt count unchanged, then running tasks (in id order) with the attempt counted —
    /// dead if it was the last one, cancelled if a cancel was pending.
    fn hand_back(&mut self, worker: &WorkerId, now: Millis) -> Result<HandBack> {
        self.unpark(worker);
        let Some(w) = self.workers.remove(worker) else {
            return Err(Error::UnknownWorker(worker.clone()));
        };
        // Forget the worker's notifier, but first wake whoever waits on it, so that a
        // `receive_wait` in progress returns now instead of sleeping out its timeout: it finds
        // the worker unknown (or re-registered, and then parks on a fresh notifier). The stored
        // permit covers a waiter that has its notifier but is not listening yet.
        if let Some(waker) = self.wakers.remove(worker) {
            waker.notify_waiters();
            waker.notify_one();
        }
        self.heartbeats.remove(&(w.expires_at, worker.clone()));
        for qn in w.spec.queues() {
            if let Some(q) = self.queues.get_mut(qn) {
                q.balancer.leave(worker);
                q.members.remove(worker);
            }
        }
        let mut back = HandBack::default();
        for (_, id) in w.inbox {
            back.returned.push(id);
            self.task_mut(id)?.worker = None;
            back.assignments.extend(self.return_ready(id, now)?);
        }
        for id in w.running {
            back.returned.push(id);
            let (attempts, max_attempts, cancel) = {
                let t = self.task_mut(id)?;
                (t.attempts, t.max_attempts, t.cancel_requested)
            };
            let error = lost_worker_error(worker, attempts);
            self.task_mut(id)?.last_error = Some(error.clone());
            self.emit(EventKind::Failed, id, Some(worker), Some(error.clone()));
            if cancel {
                self.emit(EventKind::Cancelled, id, None, None);
                self.finish(id, TaskState::Cancelled, TaskOutcome::Cancelled, now)?;
            } else if attempts >= max_attempts {
                self.emit(EventKind::Dead, id, None, Some(error.clone()));
                self.finish(id, TaskState::Dead, TaskOutcome::Dead(error), now)?;
            } else {
                self.emit(EventKind::Retried, id, None, Some(now.to_string()));
                back.assignments.extend(self.return_ready(id, now)?);
            }
        }
        Ok(back)
    }

    /// Checks that `lease` is the current lease of a running task.
    fn check_lease(&self, lease: &Lease) -> std::result::Result<(), Rejection> {
        let Some(t) = self.tasks.get(&lease.task) else {
            return Err(Rejection::NotFound);
        };
        if t.state != TaskState::Running {
            return Err(Rejection::NotRunning(t.state));
        }
        if t.token != lease.token.0
            || t.worker.as_ref() != Some(&lease.worker)
            || t.queue != lease.queue
        {
            return Err(Rejection::StaleToken);
        }
        Ok(())
    }

    /// A running attempt ended in failure (reported, or timed out): retry after backoff, or
    /// dead, or cancelled if a cancel was pending. The slot is released first, then the task
    /// moves (and may be dispatched at once), then the worker refills.
    fn end_attempt_failed(
        &mut self,
        id: TaskId,
        error: String,
        retry: bool,
        now: Millis,
    ) -> Result<AckOutcome> {
        let (worker, attempts, max_attempts, cancel, queue_name) = {
            let t = self.task_mut(id)?;
            t.last_error = Some(error.clone());
            (
                t.worker
                    .clone()
                    .ok_or_else(|| internal("running task without worker"))?,
                t.attempts,
                t.max_attempts,
                t.cancel_requested,
                t.queue.clone(),
            )
        };
        self.emit(EventKind::Failed, id, Some(&worker), Some(error.clone()));
        self.release_slot(&worker, id, None);
        let mut assignments = Vec::new();
        let ack = if cancel {
            self.emit(EventKind::Cancelled, id, None, None);
            self.finish(id, TaskState::Cancelled, TaskOutcome::Cancelled, now)?;
            Ack::Cancelled
        } else if retry && attempts < max_attempts {
            let q = self.queue_mut(&queue_name)?;
            let delay = q.config.backoff.delay_ms(attempts, &mut q.jitter);
            let run_at = now.saturating_add(delay);
            self.task_mut(id)?.run_at = Some(run_at);
            self.emit(EventKind::Retried, id, None, Some(run_at.to_string()));
            assignments.extend(self.enter_queue(id, Some(run_at), now, true)?);
            Ack::Retrying { run_at }
        } else {
            self.emit(EventKind::Dead, id, None, Some(error.clone()));
            self.finish(id, TaskState::Dead, TaskOutcome::Dead(error), now)?;
            Ack::Dead
        };
        assignments.extend(self.fill_worker(&worker, now)?);
        Ok(AckOutcome { ack, assignments })
    }

    // ----- the transitions ---------------------------------------------------------------------

    pub(crate) fn submit(&mut self, spec: TaskSpec, now: Millis) -> Result<SubmitOutcome> {
        let config = self.queue(spec.queue())?.config;
        if let Some(t) = self.tasks.get(&spec.id()) {
            return Ok(SubmitOutcome {
                id: t.id,
                state: Some(t.state),
                duplicate: true,
                assigned: None,
            });
        }
        if let Some(key) = spec.dedup_key() {
            if let Some(entry) = self.dedup.get(&(spec.queue().clone(), key.to_owned()))
                && entry.expires_at > now
            {
                return Ok(SubmitOutcome {
                    id: entry.task,
                    state: self.tasks.get(&entry.task).map(|t| t.state),
                    duplicate: true,
                    assigned: None,
                });
            }
            let expires_at = now.saturating_add(config.dedup_window_ms);
            let dedup_key = (spec.queue().clone(), key.to_owned());
            if let Some(old) = self.dedup.insert(
                dedup_key.clone(),
                DedupEntry {
                    task: spec.id(),
                    expires_at,
                },
            ) {
                self.dedup_expiry.remove(&(
                    old.expires_at,
                    dedup_key.0.clone(),
                    dedup_key.1.clone(),
                ));
            }
            self.dedup_expiry
                .insert((expires_at, dedup_key.0, dedup_key.1));
        }
        let id = spec.id();
        let run_at = spec.schedule().run_at(now);
        self.tasks.insert(
            id,
            Box::new(Task {
                id,
                queue: spec.queue().clone(),
                kind: spec.kind().clone(),
                priority: spec.priority(),
                cost_ms: match spec.cost_hint_ms() {
                    Some(c) => c,
                    None => self.default_cost(spec.queue(), spec.kind(), &config),
                },
                max_attempts: spec.max_attempts().unwrap_or(config.max_attempts),
                timeout_ms: spec.timeout_ms().unwrap_or(config.timeout_ms),
                affinity_key: spec.affinity_key().map(str::to_owned),
                trace_parent: spec.trace_parent().cloned(),
                trace_state: spec.trace_state().cloned(),
                dedup_key: spec.dedup_key().map(str::to_owned),
                created_at: now,
                state: TaskState::Ready,
                attempts: 0,
                run_at,
                position: None,
                order: 0,
                worker: None,
                token: 0,
                inbox_seq: 0,
                deadline: 0,
                ready_since: 0,
                last_error: None,
                cancel_requested: false,
                outcome: None,
                finished_at: 0,
                retain_until: 0,
                payload: spec.payload().to_vec(),
            }),
        );
        self.emit(EventKind::Submitted, id, None, None);
        let dispatched = self.enter_queue(id, run_at, now, false)?;
        let assigned = self.assigned_at_once(id, dispatched);
        let state = self.tasks.get(&id).map(|t| t.state);
        Ok(SubmitOutcome {
            id,
            state,
            duplicate: false,
            assigned,
        })
    }

    pub(crate) fn register_worker(
        &mut self,
        spec: WorkerSpec,
        now: Millis,
    ) -> Result<RegisterOutcome> {
        spec.validate()?;
        for q in spec.queues() {
            self.queue(q)?;
        }
        let id = spec.id().clone();
        let mut outcome = RegisterOutcome::default();
        if let Some(old) = self.workers.get(&id) {
            // Another instance's registration is replaced only once it has expired.
            if old.spec.get_instance() != spec.get_instance() && old.expires_at >= now {
                return Err(Error::WorkerIdInUse {
                    worker: id,
                    expires_in_ms: old.expires_at - now,
                });
            }
            outcome.replaced = true;
            outcome.assignments = self.hand_back(&id, now)?.assignments;
        }
        let expires_at = now.saturating_add(u64::from(spec.heartbeat_ttl_ms()));
        let weight = spec.get_weight();
        let queues = spec.queues().to_vec();
        self.workers.insert(
            id.clone(),
            Worker {
                spec,
                inflight: 0,
                inbox: BTreeMap::new(),
                running: BTreeSet::new(),
                waiting: false,
                handed: VecDeque::new(),
                dispatched: 0,
                completed: 0,
                expires_at,
                draining: false,
            },
        );
        self.heartbeats.insert((expires_at, id.clone()));
        for qn in &queues {
            let q = self.queue_mut(qn)?;
            q.members.insert(id.clone());
            q.balancer.join(&id, weight);
        }
        self.refresh_load(&id);
        outcome.assignments.extend(self.fill_worker(&id, now)?);
        Ok(outcome)
    }

    /// Checks that `worker` names the current registration of its id: `UnknownWorker` if there
    /// is none, `WorkerReplaced` if another instance holds it. Every call a worker makes as
    /// itself passes here first.
    pub(crate) fn check_instance(&self, worker: &WorkerRef) -> Result<()> {
        match self.workers.get(&worker.id) {
            None => Err(Error::UnknownWorker(worker.id.clone())),
            Some(w) if w.spec.get_instance() != worker.instance => {
                Err(Error::WorkerReplaced(worker.id.clone()))
            }
            Some(_) => Ok(()),
        }
    }

    /// Extends the worker's heartbeat, then fails its running tasks whose lease deadline has
    /// passed (`deadline < now`, by deadline then id) as timed out, and lists its running tasks
    /// whose cancel was requested (by id).
    pub(crate) fn heartbeat(&mut self, worker: &WorkerId, now: Millis) -> Result<HeartbeatReply> {
        let w = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| Error::UnknownWorker(worker.clone()))?;
        let old = w.expires_at;
        w.expires_at = now.saturating_add(u64::from(w.spec.heartbeat_ttl_ms()));
        let new = w.expires_at;
        let running: Vec<TaskId> = w.running.iter().copied().collect();
        self.heartbeats.remove(&(old, worker.clone()));
        self.heartbeats.insert((new, worker.clone()));
        let mut overdue: Vec<(Millis, TaskId)> = running
            .iter()
            .filter_map(|id| self.tasks.get(id).map(|t| (t.deadline, *id)))
            .filter(|(deadline, _)| *deadline < now)
            .collect();
        overdue.sort();
        let mut reply = HeartbeatReply::default();
        for (_, id) in overdue {
            let timeout = self.task_mut(id)?.timeout_ms;
            let outcome = self.end_attempt_failed(id, timeout_error(timeout), true, now)?;
            reply.expired.push(id);
            reply.assignments.extend(outcome.assignments);
        }
        if let Some(w) = self.workers.get(worker) {
            reply.cancel = w
                .running
                .iter()
                .filter(|id| self.tasks.get(id).is_some_and(|t| t.cancel_requested))
                .copied()
                .collect();
        }
        Ok(reply)
    }

    pub(crate) fn drain_worker(&mut self, worker: &WorkerId, now: Millis) -> Result<HandBack> {
        let w = self
            .workers
            .get_mut(worker)
            .ok_or_else(|| Error::UnknownWorker(worker.clone()))?;
        if w.draining {
            return Ok(HandBack::default());
        }
        w.draining = true;
        w.waiting = false;
        let inbox: Vec<(u64, TaskId)> = std::mem::take(&mut w.inbox).into_iter().collect();
        w.inflight -= u32::try_from(inbox.len())
            .unwrap_or(u32::MAX)
            .min(w.inflight);
        self.unpark(worker);
        self.refresh_load(worker);
        let mut back = HandBack::default();
        for (_, id) in inbox {
            back.returned.push(id);
            self.task_mut(id)?.worker = None;
            back.assignments.extend(self.return_ready(id, now)?);
        }
        Ok(back)
    }

    pub(crate) fn deregister_worker(&mut self, worker: &WorkerId, now: Millis) -> Result<HandBack> {
        self.hand_back(worker, now)
    }

    pub(crate) fn dispatch(
        &mut self,
        queue: &QueueName,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<Assignment>> {
        let mut out = Vec::new();
        while out.len() < limit {
            let q = self.queue_mut(queue)?;
            if q.paused {
                break;
            }
            let Some((&pos, &id)) = q.ready.first_key_value() else {
                break;
            };
            let affinity = self
                .tasks
                .get(&id)
                .ok_or_else(|| internal("task record missing"))?
                .affinity_bytes();
            let q = self.queue_mut(queue)?;
            let Some(worker) = q.balancer.pick(&affinity) else {
                break;
            };
            q.ready.remove(&pos);
            out.push(self.dispatch_to(&worker, id, None, now)?);
        }
        Ok(out)
    }

    /// Pauses or resumes a queue (Queues::set_paused); resuming dispatches what waits, or, in a
    /// pull queue, hands it to the parked workers that take it.
    pub(crate) fn set_paused(
        &mut self,
        queue: &QueueName,
        paused: bool,
        now: Millis,
    ) -> Result<Vec<Assignment>> {
        let q = self.queue_mut(queue)?;
        if q.paused == paused {
            return Ok(Vec::new());
        }
        q.paused = paused;
        if paused {
            return Ok(Vec::new());
        }
        if q.config.strategy.is_push() {
            return self.dispatch(queue, usize::MAX, now);
        }
        self.hand_off_ready(queue, now)?;
        Ok(Vec::new())
    }

    pub(crate) fn receive(
        &mut self,
        worker: &WorkerId,
        max: usize,
        now: Millis,
    ) -> Result<Vec<Delivery>> {
        if !self.workers.contains_key(worker) {
            return Err(Error::UnknownWorker(worker.clone()));
        }
        let mut out = Vec::new();
        // First what was pushed, in dispatch order.
        while out.len() < max {
            let Some(id) = self
                .workers
                .get_mut(worker)
                .and_then(|w| w.inbox.pop_first().map(|(_, id)| id))
            else {
                break;
            };
            out.push(self.start(worker, id, now)?);
        }
        // Then, with slots to spare, pull from the worker's pull queues in preference order.
        while out.len() < max {
            let Some(w) = self.workers.get(worker) else {
                break;
            };
            if !w.has_free_slot() {
                break;
            }
            let next = w.spec.queues().iter().find_map(|qn| {
                let q = self.queues.get(qn)?;
                if q.config.strategy.is_push() || q.paused {
                    return None;
                }
                q.ready
                    .first_key_value()
                    .map(|(pos, id)| (qn.clone(), *pos, *id))
            });
            let Some((qn, pos, id)) = next else {
                break;
            };
            self.queue_mut(&qn)?.ready.remove(&pos);
            let token = self.next_seq();
            out.push(self.start_pulled(worker, id, token, now)?);
        }
        Ok(out)
    }

    /// Takes a ready task of a pull queue (already out of its ready set) into a free slot of
    /// `worker` under `token`, and starts it.
    fn start_pulled(
        &mut self,
        worker: &WorkerId,
        id: TaskId,
        token: u64,
        now: Millis,
    ) -> Result<Delivery> {
        self.task_mut(id)?.token = token;
        if let Some(w) = self.workers.get_mut(worker) {
            w.inflight += 1;
            w.dispatched += 1;
        }
        self.refresh_load(worker);
        self.start(worker, id, now)
    }

    /// Drops the hand-offs of `worker` whose lease ended untaken, once there are more of them
    /// than it has slots (a caller that never waits never takes them).
    fn prune_handed(&mut self, worker: &WorkerId) {
        let Some(w) = self.workers.get(worker) else {
            return;
        };
        if w.handed.len() <= w.spec.get_capacity() as usize {
            return;
        }
        let live: VecDeque<Delivery> = w
            .handed
            .iter()
            .filter(|d| self.check_lease(&d.lease).is_ok())
            .cloned()
            .collect();
        if let Some(w) = self.workers.get_mut(worker) {
            w.handed = live;
        }
    }

    /// Up to `max` of the worker's hand-offs, oldest first, skipping any whose lease ended
    /// before it was taken (timed out, say).
    pub(crate) fn take_handed(&mut self, worker: &WorkerId, max: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(d) = self
                .workers
                .get_mut(worker)
                .and_then(|w| w.handed.pop_front())
            else {
                break;
            };
            if self.check_lease(&d.lease).is_ok() {
                out.push(d);
            }
        }
        out
    }

    /// Every task running on `worker`, in lease-token order (Leases::running).
    pub(crate) fn running_on(&self, worker: &WorkerId) -> Result<Vec<Delivery>> {
        let w = self
            .workers
            .get(worker)
            .ok_or_else(|| Error::UnknownWorker(worker.clone()))?;
        let mut tasks: Vec<&Task> = w
            .running
            .iter()
            .filter_map(|id| self.tasks.get(id).map(|t| &**t))
            .collect();
        tasks.sort_by_key(|t| t.token);
        Ok(tasks.iter().map(|t| t.delivery(worker, None)).collect())
    }

    pub(crate) fn complete(
        &mut self,
        lease: &Lease,
        value: Vec<u8>,
        now: Millis,
    ) -> Result<AckOutcome> {
        if let Err(rejection) = self.check_lease(lease) {
            return Ok(AckOutcome {
                ack: Ack::Rejected(rejection),
                assignments: Vec::new(),
            });
        }
        let id = lease.task;
        self.emit(EventKind::Succeeded, id, Some(&lease.worker), None);
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.completed += 1;
        }
        self.learn_cost(id, now)?;
        self.release_slot(&lease.worker, id, None);
        self.finish(id, TaskState::Succeeded, TaskOutcome::Succeeded(value), now)?;
        let assignments = self.fill_worker(&lease.worker, now)?;
        Ok(AckOutcome {
            ack: Ack::Completed,
            assignments,
        })
    }

    pub(crate) fn fail(
        &mut self,
        lease: &Lease,
        error: &str,
        retry: bool,
        now: Millis,
    ) -> Result<AckOutcome> {
        if let Err(rejection) = self.check_lease(lease) {
            return Ok(AckOutcome {
                ack: Ack::Rejected(rejection),
                assignments: Vec::new(),
            });
        }
        self.end_attempt_failed(lease.task, normalize_error(error), retry, now)
    }

    pub(crate) fn cancel(&mut self, id: TaskId, now: Millis) -> Result<CancelOutcome> {
        let (state, queue_name, worker, inbox_seq) = {
            let t = self.tasks.get(&id).ok_or(Error::TaskNotFound(id))?;
            (t.state, t.queue.clone(), t.worker.clone(), t.inbox_seq)
        };
        match state {
            TaskState::Scheduled | TaskState::RetryScheduled | TaskState::Ready => {
                self.cancel_waiting(&queue_name, id, now)?;
                Ok(CancelOutcome::Cancelled {
                    assignments: Vec::new(),
                })
            }
            TaskState::Dispatched => {
                let worker = worker.ok_or_else(|| internal("dispatched task without worker"))?;
                self.release_slot(&worker, id, Some(inbox_seq));
                self.emit(EventKind::Cancelled, id, None, None);
                self.finish(id, TaskState::Cancelled, TaskOutcome::Cancelled, now)?;
                let assignments = self.fill_worker(&worker, now)?;
                Ok(CancelOutcome::Cancelled { assignments })
            }
            TaskState::Running => {
                self.task_mut(id)?.cancel_requested = true;
                Ok(CancelOutcome::Requested)
            }
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled => {
                Ok(CancelOutcome::AlreadyFinished(state))
            }
        }
    }

    pub(crate) fn redrive(&mut self, id: TaskId, now: Millis) -> Result<SubmitOutcome> {
        let (state, finished_at, retain_until, queue_name) = {
            let t = self.tasks.get(&id).ok_or(Error::TaskNotFound(id))?;
            (t.state, t.finished_at, t.retain_until, t.queue.clone())
        };
        if state != TaskState::Dead {
            return Err(Error::WrongState {
                id,
                state,
                operation: "redrive (only dead tasks can be re-driven)",
            });
        }
        let q = self.queue_mut(&queue_name)?;
        q.dead.remove(&(finished_at, id));
        q.done.remove(&(retain_until, id));
        {
            let t = self.task_mut(id)?;
            t.attempts = 0;
            t.outcome = None;
            t.run_at = None;
        }
        self.emit(EventKind::Retried, id, None, Some(now.to_string()));
        let dispatched = self.make_ready(id, now, now)?;
        let assigned = self.assigned_at_once(id, dispatched);
        Ok(SubmitOutcome {
            id,
            state: self.tasks.get(&id).map(|t| t.state),
            duplicate: false,
            assigned,
        })
    }

    pub(crate) fn maintain(&mut self, limit: usize, now: Millis) -> Result<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        // 1. Workers whose heartbeat expired, by (expiry, id).
        let dead: Vec<WorkerId> = self
            .heartbeats
            .iter()
            .take_while(|(t, _)| *t < now)
            .take(limit)
            .map(|(_, w)| w.clone())
            .collect();
        for worker in dead {
            let back = self.hand_back(&worker, now)?;
            report.tasks_returned += back.returned.len();
            report.assignments.extend(back.assignments);
            report.workers_reaped.push(worker);
        }
        report.more |= self.heartbeats.first().is_some_and(|(t, _)| *t < now);
        // 2. Due delayed tasks, queue by queue in name order, by (run_at, seq).
        let mut budget = limit;
        let names: Vec<QueueName> = self.queues.keys().cloned().collect();
        for qn in names {
            loop {
                let q = self.queue_mut(&qn)?;
                let Some((&(at, seq), &id)) = q.delayed.first_key_value() else {
                    break;
                };
                if at > to_i64(now) {
                    break;
                }
                if budget == 0 {
                    report.more = true;
                    break;
                }
                budget -= 1;
                q.delayed.remove(&(at, seq));
                let at = u64::try_from(at).unwrap_or(now);
                report.assignments.extend(self.make_ready(id, at, now)?);
                report.promoted += 1;
            }
        }
        // 3. Finished records past their retention, queue by queue in name order, by
        //    (retain_until, id); then expired dedup keys.
        let mut budget = limit;
        let names: Vec<QueueName> = self.queues.keys().cloned().collect();
        for qn in names {
            loop {
                let q = self.queue_mut(&qn)?;
                let Some(&(until, id)) = q.done.first() else {
                    break;
                };
                if until > now {
                    break;
                }
                if budget == 0 {
                    report.more = true;
                    break;
                }
                budget -= 1;
                q.done.remove(&(until, id));
                self.drop_finished(id);
                report.records_purged += 1;
            }
        }
        let stale: Vec<(Millis, QueueName, String)> = self
            .dedup_expiry
            .iter()
            .take_while(|(t, _, _)| *t <= now)
            .take(limit)
            .cloned()
            .collect();
        for entry in stale {
            self.dedup_expiry.remove(&entry);
            let (_, q, k) = entry;
            self.dedup.remove(&(q, k));
        }
        Ok(report)
    }

    // ----- reads -------------------------------------------------------------------------------

    pub(crate) fn get_task(&self, id: TaskId) -> Option<TaskInfo> {
        self.tasks.get(&id).map(|t| t.info())
    }

    pub(crate) fn get_outcome(&self, id: TaskId) -> Option<TaskOutcome> {
        self.tasks.get(&id).and_then(|t| t.outcome.clone())
    }

    pub(crate) fn list_dead(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskInfo>> {
        let q = self.queue(queue)?;
        Ok(q.dead
            .iter()
            .take(limit)
            .filter_map(|(_, id)| self.tasks.get(id).map(|t| t.info()))
            .collect())
    }

    pub(crate) fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>> {
        Ok(self
            .queue(queue)?
            .ready
            .values()
            .take(limit)
            .copied()
            .collect())
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut per_queue: BTreeMap<&QueueName, QueueStats> = self
            .queues
            .iter()
            .map(|q| {
                (
                    q.0,
                    QueueStats {
                        queue: Some(q.0.clone()),
                        totals: q.1.totals,
                        paused: q.1.paused,
                        ..QueueStats::default()
                    },
                )
            })
            .collect();
        for t in self.tasks.values() {
            if let Some(s) = per_queue.get_mut(&t.queue) {
                s.count(t.state);
            }
        }
        Stats {
            warnings: Vec::new(),
            queues: per_queue.into_values().collect(),
            workers: self
                .workers
                .iter()
                .map(|(id, w)| WorkerStats {
                    id: id.clone(),
                    capacity: w.spec.get_capacity(),
                    weight: w.spec.get_weight(),
                    inflight: w.inflight,
                    draining: w.draining,
                    queues: w.spec.queues().to_vec(),
                    expires_at: w.expires_at,
                    dispatched: w.dispatched,
                    completed: w.completed,
                })
                .collect(),
        }
    }
}
