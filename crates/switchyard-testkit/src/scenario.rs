//! Random operation sequences over any [`Backend`], with the invariants of `docs/architecture.md` ("The state machine") checked
//! after every step through the public API.
//!
//! A [`Scenario`] is a set of queue configurations and a list of [`Op`]s; a [`Runner`] applies
//! them to one backend on a [`ManualClock`], records every answer in a trace, and after each
//! step checks:
//!
//! 1. **conservation** — every accepted task is found, in exactly one state, and the backend's
//!    per-state counts equal the tally of the task records;
//! 2. **capacity** — no worker holds more tasks than its capacity, and its in-flight count is the
//!    number of tasks that name it;
//! 3. **work conservation** — no push queue has a ready task while a worker serving it has a
//!    free slot;
//! 4. **order** — the tasks that left a queue's ready set in the step were a prefix of it, and
//!    the ready set itself is in the order the policy prescribes, recomputed independently:
//!    each ready task's key from [`Policy::sort_key`] with its priority, cost and the enqueue
//!    time the runner expects from the steps it applied (checked by [`Runner::apply`]);
//! 5. **idempotence** — a repeated submit and a repeated completion change nothing.
//!
//! Backends add their own structural audit through [`Runner::with_audit`]. Two runners fed the
//! same scenario must produce the same trace if the backends decide the same way; that is how
//! the cross-backend tests compare Redis with the memory reference.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

mod admin;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use switchyard_core::admin::Purge;
use switchyard_core::policy::KeyInput;
use switchyard_core::prelude::*;
use switchyard_core::{
    Ack, Backoff, Clock, EVENT_LOG_CAP, Error, EventKind, EventLevel, InstanceToken, Lease,
    ManualClock, Policy, QueueConfig, QueueName, Stats, Strategy, TaskId, TaskIdGenerator,
    TaskInfo, TaskKind, TaskSpec, TaskState, TraceParent, TraceState, WorkerId, WorkerRef,
    WorkerSpec,
};

/// Workers a scenario may use (`w0` …).
pub const WORKERS: usize = 4;
/// Queues a scenario declares (`q0` …).
pub const QUEUES: usize = 3;
/// Start of the manual clock.
pub const START_MS: u64 = 1_700_000_000_000;
/// Maintenance batch limit used by [`Op::Advance`].
pub const MAINTAIN_LIMIT: usize = 64;

/// One submit.
#[derive(Debug, Clone)]
pub struct SubmitOp {
    /// Queue index.
    pub queue: usize,
    /// Priority.
    pub priority: u16,
    /// Cost hint in ms.
    pub cost_ms: Option<u32>,
    /// Delay in ms.
    pub delay_ms: Option<u32>,
    /// Affinity key index (`k0` …).
    pub affinity: Option<u8>,
    /// Dedup key index (`d0` …).
    pub dedup: Option<u8>,
    /// Attempts.
    pub max_attempts: Option<u32>,
}

/// One step.
#[derive(Debug, Clone)]
pub enum Op {
    /// Submit a new task.
    Submit(SubmitOp),
    /// Submit several in one call.
    Batch(Vec<SubmitOp>),
    /// Submit an earlier task's spec again (must change nothing).
    Resubmit {
        /// Which earlier task.
        pick: usize,
    },
    /// Register (or re-register) a worker. Registering again with the same instance replaces
    /// the registration; with another one it is refused while the registration is live.
    Register {
        /// Worker index.
        worker: usize,
        /// Instance index (`0` or `1`): the registration's token is [`instance_token`] of it.
        instance: u8,
        /// Slots.
        capacity: u32,
        /// Weight.
        weight: u32,
        /// Served queue indexes, in preference order.
        queues: Vec<usize>,
    },
    /// Start draining a worker.
    Drain {
        /// Worker index.
        worker: usize,
    },
    /// Deregister a worker.
    Deregister {
        /// Worker index.
        worker: usize,
    },
    /// Heartbeat a worker.
    Heartbeat {
        /// Worker index.
        worker: usize,
    },
    /// Move the clock and run maintenance.
    Advance {
        /// Milliseconds.
        ms: u64,
    },
    /// A worker receives up to `max` tasks.
    Receive {
        /// Worker index.
        worker: usize,
        /// Most tasks.
        max: usize,
    },
    /// A worker asks without waiting (`receive_wait` with a zero timeout): it receives up to
    /// `max`, and if it got nothing it is parked on its pull queues, so that a task arriving
    /// there is handed off to it (started at once).
    Park {
        /// Worker index.
        worker: usize,
        /// Most tasks.
        max: usize,
    },
    /// The tasks running on a worker (`Leases::running`, the reconciling call); hand-offs among
    /// them become deliveries to pick.
    Running {
        /// Worker index.
        worker: usize,
    },
    /// Complete a delivered task (one of the eight most recent deliveries, or any of them
    /// when `pick` is odd, to exercise stale leases).
    Complete {
        /// Which delivery.
        pick: usize,
    },
    /// Complete a delivered task and receive up to `max` more for its worker in the same step
    /// (the combined call a worker makes when a slot frees up).
    CompleteAndReceive {
        /// Which delivery.
        pick: usize,
        /// Most tasks to receive.
        max: usize,
    },
    /// Complete an already completed task again (must change nothing).
    CompleteAgain {
        /// Which completion.
        pick: usize,
    },
    /// Fail a delivered task.
    Fail {
        /// Which delivery.
        pick: usize,
        /// Whether to allow a retry.
        retry: bool,
    },
    /// Cancel a task.
    Cancel {
        /// Which task.
        pick: usize,
    },
    /// Re-drive a task (refused unless dead).
    Redrive {
        /// Which task.
        pick: usize,
    },
    /// Explicit dispatch of a queue.
    Dispatch {
        /// Queue index.
        queue: usize,
    },
    /// Pause or resume a queue.
    Pause {
        /// Queue index.
        queue: usize,
        /// Pause (true) or resume.
        paused: bool,
    },
    /// Delete a task (refused unless finished).
    DeleteTask {
        /// Which task.
        pick: usize,
    },
    /// Cancel or delete up to `limit` tasks of one class of a queue.
    PurgeQueue {
        /// Queue index.
        queue: usize,
        /// Which tasks.
        what: Purge,
        /// Most tasks.
        limit: usize,
    },
    /// Change a queue's configuration; with `keep_shape`, only the fields that may always
    /// change (policy, strategy and seed stay as they are).
    Reconfigure {
        /// Queue index.
        queue: usize,
        /// The new configuration.
        config: QueueConfig,
        /// Keep policy, strategy and seed.
        keep_shape: bool,
    },
    /// Delete a queue (refused while it holds tasks or is served) and, if that worked,
    /// declare it again with its configuration: a fresh queue must behave as a new one.
    DeleteQueue {
        /// Queue index.
        queue: usize,
    },
    /// Heartbeat and receive as worker `worker` with a token no registration has: both must
    /// be refused (unknown or replaced) and change nothing.
    Impostor {
        /// Worker index.
        worker: usize,
    },
}

/// The instance token of instance index `i` in a scenario.
pub fn instance_token(i: u8) -> InstanceToken {
    InstanceToken::new(u64::from(i) + 1).unwrap_or_else(|_| unreachable_name())
}

/// Queue configurations and steps.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// One configuration per queue `q0` ….
    pub configs: Vec<QueueConfig>,
    /// The steps.
    pub ops: Vec<Op>,
}

/// Every policy variant.
pub fn any_policy() -> impl proptest::strategy::Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::Fcfs),
        Just(Policy::PRIORITY),
        (1u32..500).prop_map(|s| Policy::Priority {
            aging_step_ms: Some(s)
        }),
        Just(Policy::SJF),
        (1u32..8).prop_map(|f| Policy::ShortestJobFirst {
            aging_factor: Some(f)
        }),
    ]
}

/// Every strategy.
pub fn any_strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::RoundRobin),
        Just(Strategy::Random),
        Just(Strategy::Weighted),
        Just(Strategy::LeastLoaded),
        (1u16..8).prop_map(|vnodes| Strategy::Affinity { vnodes }),
        Just(Strategy::Pull),
    ]
}

/// A queue configuration with short timeouts and backoffs so that retries and lease expiry
/// happen inside a scenario; retention is long so that no record is purged.
pub fn any_config() -> impl proptest::strategy::Strategy<Value = QueueConfig> {
    (
        any_policy(),
        any_strategy(),
        any::<u64>(),
        1u32..4,
        prop_oneof![Just(2_000u32), Just(30_000u32)],
        (0u32..3_000, 0u8..60),
        prop_oneof![Just(1_000u64), Just(60_000u64)],
        prop_oneof![
            Just(EventLevel::Off),
            Just(EventLevel::Failures),
            Just(EventLevel::All)
        ],
    )
        .prop_map(
            |(policy, strategy, seed, attempts, timeout, (base, jitter), dedup, events)| {
                QueueConfig::new(policy, strategy)
                    .with_events(events)
                    .with_seed(seed)
                    .with_max_attempts(attempts)
                    .with_timeout(std::time::Duration::from_millis(u64::from(timeout)))
                    .with_backoff(Backoff {
                        base_ms: base,
                        max_ms: 10_000,
                        jitter_pct: jitter,
                    })
                    .with_dedup_window(std::time::Duration::from_millis(dedup))
                    .with_result_ttl(std::time::Duration::from_secs(86_400))
            },
        )
}

fn submit_op() -> impl proptest::strategy::Strategy<Value = SubmitOp> {
    (
        0..QUEUES,
        prop_oneof![Just(0u16), 0u16..5, any::<u16>()],
        proptest::option::of(prop_oneof![0u32..10, 0u32..100_000]),
        proptest::option::weighted(0.15, prop_oneof![Just(0u32), 1u32..3_000]),
        proptest::option::of(0u8..6),
        proptest::option::weighted(0.2, 0u8..3),
        proptest::option::weighted(0.3, 1u32..4),
    )
        .prop_map(
            |(queue, priority, cost_ms, delay_ms, affinity, dedup, max_attempts)| SubmitOp {
                queue,
                priority,
                cost_ms,
                delay_ms,
                affinity,
                dedup,
                max_attempts,
            },
        )
}

fn register_op() -> impl proptest::strategy::Strategy<Value = Op> {
    let queues =
        proptest::sample::subsequence((0..QUEUES).collect::<Vec<_>>(), 1..=QUEUES).prop_shuffle();
    let instance = prop_oneof![3 => Just(0u8), 1 => Just(1u8)];
    (0..WORKERS, instance, 1u32..4, 1u32..5, queues).prop_map(
        |(worker, instance, capacity, weight, queues)| Op::Register {
            worker,
            instance,
            capacity,
            weight,
            queues,
        },
    )
}

/// One random step.
pub fn any_op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        8 => submit_op().prop_map(Op::Submit),
        2 => proptest::collection::vec(submit_op(), 1..6).prop_map(Op::Batch),
        1 => any::<usize>().prop_map(|pick| Op::Resubmit { pick }),
        3 => register_op(),
        1 => (0..WORKERS).prop_map(|worker| Op::Deregister { worker }),
        1 => (0..WORKERS).prop_map(|worker| Op::Drain { worker }),
        2 => (0..WORKERS).prop_map(|worker| Op::Heartbeat { worker }),
        2 => prop_oneof![Just(0u64), Just(1), Just(500), Just(2_500), Just(16_000)].prop_map(|ms| Op::Advance { ms }),
        7 => (0..WORKERS, 1usize..4).prop_map(|(worker, max)| Op::Receive { worker, max }),
        4 => (0..WORKERS, 0usize..4).prop_map(|(worker, max)| Op::Park { worker, max }),
        2 => (0..WORKERS).prop_map(|worker| Op::Running { worker }),
        6 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        3 => (any::<usize>(), 1usize..4).prop_map(|(pick, max)| Op::CompleteAndReceive { pick, max }),
        1 => any::<usize>().prop_map(|pick| Op::CompleteAgain { pick }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, retry)| Op::Fail { pick, retry }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Redrive { pick }),
        1 => (0..QUEUES).prop_map(|queue| Op::Dispatch { queue }),
        2 => (0..QUEUES, any::<bool>()).prop_map(|(queue, paused)| Op::Pause { queue, paused }),
        1 => (0..WORKERS).prop_map(|worker| Op::Impostor { worker }),
        1 => any::<usize>().prop_map(|pick| Op::DeleteTask { pick }),
        1 => (
            0..QUEUES,
            prop_oneof![Just(Purge::Waiting), Just(Purge::Dead), Just(Purge::Finished)],
            prop_oneof![Just(1usize), Just(2), Just(1_000)],
        )
            .prop_map(|(queue, what, limit)| Op::PurgeQueue { queue, what, limit }),
        1 => (0..QUEUES, any_config(), any::<bool>())
            .prop_map(|(queue, config, keep_shape)| Op::Reconfigure { queue, config, keep_shape }),
        1 => (0..QUEUES).prop_map(|queue| Op::DeleteQueue { queue }),
    ]
}

/// A random scenario of up to `max_ops` steps, starting with one to three registrations.
pub fn any_scenario(max_ops: usize) -> impl proptest::strategy::Strategy<Value = Scenario> {
    (
        proptest::collection::vec(any_config(), QUEUES),
        proptest::collection::vec(register_op(), 1..4),
        proptest::collection::vec(any_op(), 1..max_ops),
    )
        .prop_map(|(configs, mut ops, rest)| {
            ops.extend(rest);
            Scenario { configs, ops }
        })
}

/// A random scenario like [`any_scenario`] whose queues all pull: workers park and take
/// hand-offs (`Leases::receive_wait`) in most steps.
pub fn pull_scenario(max_ops: usize) -> impl proptest::strategy::Strategy<Value = Scenario> {
    any_scenario(max_ops).prop_map(|mut s| {
        for c in &mut s.configs {
            c.strategy = Strategy::Pull;
        }
        s
    })
}

/// The name of queue `i`.
pub fn queue_name(i: usize) -> QueueName {
    QueueName::new(format!("q{i}")).unwrap_or_else(|_| unreachable_name())
}

/// The id of worker `i`.
pub fn worker_id(i: usize) -> WorkerId {
    WorkerId::new(format!("w{i}")).unwrap_or_else(|_| unreachable_name())
}

fn unreachable_name<T>() -> T {
    panic!("generated names are valid")
}

/// A backend-specific structural check run after every step.
pub type AuditFn<B> = Box<
    dyn for<'a> Fn(&'a B) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>
        + Send
        + Sync,
>;

/// An event without its backend-specific id.
pub type EventView = (
    EventKind,
    TaskId,
    QueueName,
    Option<WorkerId>,
    u64,
    Option<String>,
);

/// What the runner can see of the backend at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The backend's counts.
    pub stats: Stats,
    /// Every accepted task, in acceptance order.
    pub tasks: Vec<Option<TaskInfo>>,
    /// The event log, oldest first.
    pub events: Vec<EventView>,
    /// Learned costs of the `job` kind, per queue.
    pub costs: Vec<Option<u32>>,
    /// How long until maintenance next has something to do.
    pub until_due: Option<std::time::Duration>,
}

/// Applies scenario steps to one backend and checks the invariants after each.
pub struct Runner<B> {
    /// The backend under test.
    pub backend: B,
    /// Its clock.
    pub clock: ManualClock,
    /// Every answer, one line per step, for cross-backend comparison.
    pub trace: Vec<String>,
    ids: TaskIdGenerator,
    configs: Vec<QueueConfig>,
    accepted: Vec<TaskId>,
    specs: BTreeMap<TaskId, TaskSpec>,
    deliveries: Vec<Lease>,
    completed: Vec<Lease>,
    live: std::collections::BTreeSet<usize>,
    /// The instance of each worker's last accepted registration.
    instances: BTreeMap<usize, u8>,
    audit: Option<AuditFn<B>>,
    /// Steps applied so far (the next step's index, counted from 0 like [`Runner::run`]).
    steps: usize,
    /// The tasks in their ready order (ready, dispatched or running) after the last step, with
    /// the entry the runner expects for each: a task returned from a worker takes it again.
    entries: BTreeMap<TaskId, ReadyEntry>,
    /// Every accepted task's state, run-at and attempts after the last step.
    states: BTreeMap<TaskId, (TaskState, Option<u64>, u32)>,
}

/// How the runner expects a ready task to have entered its ready set.
#[derive(Debug, Clone, Copy)]
struct ReadyEntry {
    /// The enqueue time its policy key uses (aging).
    enqueued_at: u64,
    /// The step in which it entered: the FIFO tie-break between equal keys follows it.
    step: usize,
}

fn fatal(e: &Error) -> bool {
    matches!(e, Error::Backend { .. })
}

impl<B: Backend> Runner<B> {
    /// Declares the scenario's queues on `backend`, whose clock must be `clock`.
    pub async fn new(
        backend: B,
        clock: ManualClock,
        configs: &[QueueConfig],
    ) -> Result<Self, String> {
        for (i, config) in configs.iter().enumerate() {
            backend
                .declare_queue(&queue_name(i), *config)
                .await
                .map_err(|e| format!("declare q{i}: {e}"))?;
        }
        Ok(Runner {
            backend,
            clock,
            trace: Vec::new(),
            ids: TaskIdGenerator::new(42),
            configs: configs.to_vec(),
            accepted: Vec::new(),
            specs: BTreeMap::new(),
            deliveries: Vec::new(),
            completed: Vec::new(),
            live: std::collections::BTreeSet::new(),
            instances: BTreeMap::new(),
            audit: None,
            steps: 0,
            entries: BTreeMap::new(),
            states: BTreeMap::new(),
        })
    }

    /// Adds a backend-specific audit.
    pub fn with_audit(mut self, audit: AuditFn<B>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Tasks accepted so far.
    pub fn accepted(&self) -> &[TaskId] {
        &self.accepted
    }

    fn spec(&mut self, op: &SubmitOp) -> Result<TaskSpec, String> {
        let id = self.ids.next_at(self.clock.now_ms());
        let mut b = TaskSpec::builder(queue_name(op.queue).as_str(), "job")
            .id(id)
            .payload(format!("payload-{id}").into_bytes())
            .priority(op.priority);
        if let Some(c) = op.cost_ms {
            b = b.cost_hint(std::time::Duration::from_millis(u64::from(c)));
        }
        if let Some(d) = op.delay_ms {
            b = b.delay(std::time::Duration::from_millis(u64::from(d)));
        }
        if let Some(k) = op.affinity {
            b = b.affinity_key(format!("k{k}"));
        }
        if let Some(k) = op.dedup {
            b = b.dedup_key(format!("d{k}"));
        }
        if let Some(a) = op.max_attempts {
            b = b.max_attempts(a);
        }
        if op.priority % 2 == 1 {
            // Half the tasks carry a trace context, which every delivery must hand back.
            let n = id.as_u128() | 1;
            let trace = format!("00-{n:032x}-{:016x}-01", (n as u64) | 1);
            b = b.trace_parent(TraceParent::parse(&trace).map_err(|e| e.to_string())?);
            // and half of those a vendor state with it.
            if op.priority % 4 == 3 {
                let state = format!("sy=p{},congo=t61rcWkgMzE", op.priority);
                b = b.trace_state(TraceState::parse(&state).map_err(|e| e.to_string())?);
            }
        }
        b.build().map_err(|e| format!("spec: {e}"))
    }

    /// Everything the runner can see.
    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        let stats = self
            .backend
            .stats()
            .await
            .map_err(|e| format!("stats: {e}"))?;
        let mut tasks = Vec::with_capacity(self.accepted.len());
        for id in &self.accepted {
            tasks.push(
                self.backend
                    .get_task(*id)
                    .await
                    .map_err(|e| format!("get {id}: {e}"))?,
            );
        }
        let events = self
            .backend
            .events(None, EVENT_LOG_CAP)
            .await
            .map_err(|e| format!("events: {e}"))?
            .into_iter()
            .map(|e| (e.kind, e.task, e.queue, e.worker, e.at, e.detail))
            .collect();
        let kind = TaskKind::new("job").map_err(|e| e.to_string())?;
        let mut costs = Vec::new();
        for i in 0..self.configs.len() {
            costs.push(
                self.backend
                    .learned_cost(&queue_name(i), &kind)
                    .await
                    .map_err(|e| format!("learned cost: {e}"))?,
            );
        }
        let until_due = self
            .backend
            .until_due()
            .await
            .map_err(|e| format!("until due: {e}"))?;
        Ok(Snapshot {
            stats,
            tasks,
            events,
            costs,
            until_due,
        })
    }

    async fn ready_lists(&self) -> Result<Vec<Vec<TaskId>>, String> {
        let mut out = Vec::new();
        for i in 0..self.configs.len() {
            out.push(
                self.backend
                    .peek_ready(&queue_name(i), usize::MAX)
                    .await
                    .map_err(|e| format!("peek: {e}"))?,
            );
        }
        Ok(out)
    }

    /// Worker `i` mapped onto the live workers (so most steps address a registered worker);
    /// `i` itself when none is live.
    fn live_worker(&self, i: usize) -> usize {
        if self.live.is_empty() {
            return i;
        }
        self.live
            .iter()
            .nth(i % self.live.len())
            .copied()
            .unwrap_or(i)
    }

    /// Worker `i` as its last accepted registration names itself.
    fn me(&self, i: usize) -> WorkerRef {
        WorkerRef {
            id: worker_id(i),
            instance: instance_token(self.instances.get(&i).copied().unwrap_or(0)),
        }
    }

    /// A delivered lease. When `pick % 4 == 3`, any delivery ever made (likely stale);
    /// otherwise one whose task is still running on that worker, if there is one.
    async fn pick_delivery(&self, pick: usize) -> Result<Lease, String> {
        let n = self.deliveries.len();
        if pick % 4 == 3 {
            return Ok(self.deliveries[(pick / 4) % n].clone());
        }
        let mut current = Vec::new();
        for lease in self.deliveries.iter().rev() {
            let info = self
                .backend
                .get_task(lease.task)
                .await
                .map_err(|e| e.to_string())?;
            if info.is_some_and(|i| {
                i.state == TaskState::Running && i.worker.as_ref() == Some(&lease.worker)
            }) && !current.iter().any(|l: &&Lease| l.task == lease.task)
            {
                current.push(lease);
            }
        }
        Ok(match current.len() {
            0 => self.deliveries[n - 1].clone(),
            k => current[(pick / 4) % k].clone(),
        })
    }

    fn record(&mut self, line: String) {
        self.trace.push(line);
    }

    /// Applies one step and checks every invariant afterwards.
    pub async fn apply(&mut self, op: &Op) -> Result<(), String> {
        let before = self.ready_lists().await?;
        let mut cancelled = None;
        macro_rules! answer {
            ($label:expr, $call:expr) => {
                match $call.await {
                    Ok(v) => format!("{} -> {:?}", $label, v),
                    Err(e) if fatal(&e) => return Err(format!("{}: backend failed: {e}", $label)),
                    Err(e) => format!("{} -> error: {e}", $label),
                }
            };
        }
        let line = match op {
            Op::Submit(s) => {
                let spec = self.spec(s)?;
                let id = spec.id();
                self.specs.insert(id, spec.clone());
                match self.backend.submit(spec).await {
                    Ok(out) => {
                        if !out.duplicate {
                            self.accepted.push(id);
                        }
                        format!("submit {id} -> {out:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("submit: backend failed: {e}")),
                    Err(e) => format!("submit {id} -> error: {e}"),
                }
            }
            Op::Batch(ops) => {
                let mut specs = Vec::new();
                for s in ops {
                    let spec = self.spec(s)?;
                    self.specs.insert(spec.id(), spec.clone());
                    specs.push(spec);
                }
                let ids: Vec<TaskId> = specs.iter().map(TaskSpec::id).collect();
                match self.backend.submit_batch(specs).await {
                    Ok(outs) => {
                        for (id, out) in ids.iter().zip(&outs) {
                            if !out.duplicate {
                                self.accepted.push(*id);
                            }
                        }
                        format!("batch {ids:?} -> {outs:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("batch: backend failed: {e}")),
                    Err(e) => format!("batch -> error: {e}"),
                }
            }
            Op::Resubmit { pick } => {
                if self.accepted.is_empty() {
                    "resubmit: nothing yet".to_string()
                } else {
                    let id = self.accepted[pick % self.accepted.len()];
                    let spec = self.specs.get(&id).cloned().ok_or("spec missing")?;
                    let snap = self.snapshot().await?;
                    let out = self
                        .backend
                        .submit(spec)
                        .await
                        .map_err(|e| format!("resubmit: {e}"))?;
                    if !out.duplicate || out.id != id {
                        return Err(format!("resubmit of {id} was not a duplicate: {out:?}"));
                    }
                    if self.snapshot().await? != snap {
                        return Err(format!("resubmit of {id} changed state"));
                    }
                    format!("resubmit {id} -> {out:?}")
                }
            }
            Op::Register {
                worker,
                instance,
                capacity,
                weight,
                queues,
            } => {
                let spec = WorkerSpec::new(
                    worker_id(*worker).as_str(),
                    queues.iter().map(|q| queue_name(*q).to_string()),
                )
                .map_err(|e| e.to_string())?
                .instance(instance_token(*instance))
                .capacity(*capacity)
                .weight(*weight);
                self.live.insert(*worker);
                let label = format!(
                    "register w{worker}#{instance} cap {capacity} weight {weight} {queues:?}"
                );
                match self.backend.register_worker(spec).await {
                    Ok(out) => {
                        self.instances.insert(*worker, *instance);
                        format!("{label} -> {out:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("{label}: backend failed: {e}")),
                    Err(e) => format!("{label} -> error: {e}"),
                }
            }
            Op::Deregister { worker } => {
                let worker = self.live_worker(*worker);
                self.live.remove(&worker);
                answer!(
                    format!("deregister w{worker}"),
                    self.backend.deregister_worker(&self.me(worker))
                )
            }
            Op::Drain { worker } => {
                let worker = self.live_worker(*worker);
                answer!(
                    format!("drain w{worker}"),
                    self.backend.drain_worker(&self.me(worker))
                )
            }
            Op::Heartbeat { worker } => {
                let worker = self.live_worker(*worker);
                answer!(
                    format!("heartbeat w{worker}"),
                    self.backend.heartbeat(&self.me(worker))
                )
            }
            Op::Impostor { worker } => {
                let worker = self.live_worker(*worker);
                let impostor = WorkerRef {
                    id: worker_id(worker),
                    instance: instance_token(99),
                };
                let snap = self.snapshot().await?;
                let beat = self.backend.heartbeat(&impostor).await;
                let got = self.backend.receive(&impostor, 4).await;
                for (what, refused) in [
                    ("heartbeat", beat.as_ref().err()),
                    ("receive", got.as_ref().err()),
                ] {
                    if !matches!(
                        refused,
                        Some(Error::UnknownWorker(_) | Error::WorkerReplaced(_))
                    ) {
                        return Err(format!(
                            "impostor {what} as w{worker} was not refused: {beat:?} {got:?}"
                        ));
                    }
                }
                if self.snapshot().await? != snap {
                    return Err(format!("impostor calls as w{worker} changed state"));
                }
                format!("impostor w{worker} -> {beat:?} {got:?}")
            }
            Op::Advance { ms } => {
                self.clock.advance(std::time::Duration::from_millis(*ms));
                match self.backend.maintain(MAINTAIN_LIMIT).await {
                    Ok(report) => {
                        for w in &report.workers_reaped {
                            self.live.retain(|i| &worker_id(*i) != w);
                        }
                        format!("advance {ms} -> {report:?}")
                    }
                    Err(e) => return Err(format!("maintain: {e}")),
                }
            }
            Op::Receive { worker, max } => {
                let worker = self.live_worker(*worker);
                let label = format!("receive w{worker} {max}");
                match self.backend.receive(&self.me(worker), *max).await {
                    Ok(ds) => {
                        self.deliveries.extend(ds.iter().map(|d| d.lease.clone()));
                        format!("{label} -> {ds:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("{label}: backend failed: {e}")),
                    Err(e) => format!("{label} -> error: {e}"),
                }
            }
            Op::Park { worker, max } => {
                let worker = self.live_worker(*worker);
                let label = format!("park w{worker} {max}");
                let asked = self
                    .backend
                    .receive_wait(&self.me(worker), *max, std::time::Duration::ZERO)
                    .await;
                match asked {
                    Ok(ds) => {
                        self.deliveries.extend(ds.iter().map(|d| d.lease.clone()));
                        format!("{label} -> {ds:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("{label}: backend failed: {e}")),
                    Err(e) => format!("{label} -> error: {e}"),
                }
            }
            Op::Running { worker } => {
                let worker = self.live_worker(*worker);
                let label = format!("running w{worker}");
                match self.backend.running(&self.me(worker)).await {
                    Ok(ds) => {
                        for d in &ds {
                            if !self.deliveries.contains(&d.lease) {
                                self.deliveries.push(d.lease.clone());
                            }
                        }
                        format!("{label} -> {ds:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("{label}: backend failed: {e}")),
                    Err(e) => format!("{label} -> error: {e}"),
                }
            }
            Op::Complete { pick } => {
                if self.deliveries.is_empty() {
                    "complete: nothing delivered".to_string()
                } else {
                    let lease = self.pick_delivery(*pick).await?;
                    let out = self
                        .backend
                        .complete(&lease, format!("done-{}", lease.task).into_bytes())
                        .await
                        .map_err(|e| format!("complete: {e}"))?;
                    if out.ack == Ack::Completed {
                        self.completed.push(lease.clone());
                    }
                    format!("complete {lease:?} -> {out:?}")
                }
            }
            Op::CompleteAndReceive { pick, max } => {
                if self.deliveries.is_empty() {
                    "complete-and-receive: nothing delivered".to_string()
                } else {
                    let lease = self.pick_delivery(*pick).await?;
                    let (out, ds) = self
                        .backend
                        .complete_and_receive(
                            &lease,
                            format!("done-{}", lease.task).into_bytes(),
                            *max,
                        )
                        .await
                        .map_err(|e| format!("complete-and-receive: {e}"))?;
                    if out.ack == Ack::Completed {
                        self.completed.push(lease.clone());
                    }
                    self.deliveries.extend(ds.iter().map(|d| d.lease.clone()));
                    format!("complete-and-receive {lease:?} {max} -> {out:?} {ds:?}")
                }
            }
            Op::CompleteAgain { pick } => {
                if self.completed.is_empty() {
                    "complete-again: nothing completed".to_string()
                } else {
                    let lease = self.completed[pick % self.completed.len()].clone();
                    let snap = self.snapshot().await?;
                    let out = self
                        .backend
                        .complete(&lease, b"again".to_vec())
                        .await
                        .map_err(|e| format!("complete again: {e}"))?;
                    if !matches!(out.ack, Ack::Rejected(_)) {
                        return Err(format!(
                            "second completion of {} accepted: {out:?}",
                            lease.task
                        ));
                    }
                    if self.snapshot().await? != snap {
                        return Err(format!("second completion of {} changed state", lease.task));
                    }
                    format!("complete again {lease:?} -> {out:?}")
                }
            }
            Op::Fail { pick, retry } => {
                if self.deliveries.is_empty() {
                    "fail: nothing delivered".to_string()
                } else {
                    let lease = self.pick_delivery(*pick).await?;
                    answer!(
                        format!("fail {lease:?} retry {retry}"),
                        self.backend.fail(&lease, "boom", *retry)
                    )
                }
            }
            Op::Cancel { pick } => {
                if self.accepted.is_empty() {
                    "cancel: nothing yet".to_string()
                } else {
                    let id = self.accepted[pick % self.accepted.len()];
                    cancelled = Some(id);
                    answer!(format!("cancel {id}"), self.backend.cancel(id))
                }
            }
            Op::Redrive { pick } => {
                if self.accepted.is_empty() {
                    "redrive: nothing yet".to_string()
                } else {
                    let id = self.accepted[pick % self.accepted.len()];
                    answer!(format!("redrive {id}"), self.backend.redrive(id))
                }
            }
            Op::Dispatch { queue } => {
                answer!(
                    format!("dispatch q{queue}"),
                    self.backend.dispatch(&queue_name(*queue), 16)
                )
            }
            Op::DeleteTask { .. }
            | Op::PurgeQueue { .. }
            | Op::Reconfigure { .. }
            | Op::DeleteQueue { .. } => self.apply_admin(op).await?,
            Op::Pause { queue, paused } => {
                answer!(
                    format!("pause q{queue} {paused}"),
                    self.backend.set_paused(&queue_name(*queue), *paused)
                )
            }
        };
        self.record(line);
        let (snap, after) = self.check_all(&before, cancelled).await?;
        // Only a failed attempt (reported, or timed out by a heartbeat) puts a running task
        // back in its queue as a new entry; every other way back keeps its place.
        let fails = matches!(op, Op::Fail { .. } | Op::Heartbeat { .. });
        self.check_policy_order(&snap, &after, fails)
    }

    /// Checks invariants 1–4 (5 is checked inside the idempotence steps), except the
    /// independent recomputation of the policy order, which needs the runner's history and is
    /// done by [`Runner::apply`].
    pub async fn check(
        &self,
        before: &[Vec<TaskId>],
        cancelled: Option<TaskId>,
    ) -> Result<(), String> {
        self.check_all(before, cancelled).await.map(|_| ())
    }

    /// [`Runner::check`], returning the snapshot and the ready lists it looked at.
    async fn check_all(
        &self,
        before: &[Vec<TaskId>],
        cancelled: Option<TaskId>,
    ) -> Result<(Snapshot, Vec<Vec<TaskId>>), String> {
        if let Some(audit) = &self.audit {
            audit(&self.backend)
                .await
                .map_err(|e| format!("audit: {e}"))?;
        }
        let snap = self.snapshot().await?;
        // 1. Conservation: every accepted task is there, and the counts match the records.
        let mut tally: BTreeMap<QueueName, BTreeMap<TaskState, u64>> = BTreeMap::new();
        let mut held: BTreeMap<WorkerId, u32> = BTreeMap::new();
        for (id, info) in self.accepted.iter().zip(&snap.tasks) {
            let info = info.as_ref().ok_or_else(|| format!("task {id} was lost"))?;
            *tally
                .entry(info.queue.clone())
                .or_default()
                .entry(info.state)
                .or_default() += 1;
            if info.state.is_leased() {
                let w = info
                    .worker
                    .clone()
                    .ok_or_else(|| format!("{id} is leased to nobody"))?;
                *held.entry(w).or_default() += 1;
            } else if info.worker.is_some() {
                return Err(format!("{id} is {} but names a worker", info.state));
            }
        }
        for q in &snap.stats.queues {
            let name = q.queue.clone().ok_or("stats without queue name")?;
            for state in TaskState::ALL {
                let counted = tally
                    .get(&name)
                    .and_then(|m| m.get(&state))
                    .copied()
                    .unwrap_or(0);
                if q.get(state) != counted {
                    return Err(format!(
                        "{name}: backend counts {} {state} tasks, records say {counted}",
                        q.get(state)
                    ));
                }
            }
        }
        // 2. Capacity.
        for w in &snap.stats.workers {
            if w.inflight > w.capacity {
                return Err(format!(
                    "{} holds {} > capacity {}",
                    w.id, w.inflight, w.capacity
                ));
            }
            let named = held.remove(&w.id).unwrap_or(0);
            if named != w.inflight {
                return Err(format!(
                    "{} counts {} in flight, {named} tasks name it",
                    w.id, w.inflight
                ));
            }
        }
        if let Some((w, n)) = held.into_iter().next() {
            return Err(format!(
                "{n} tasks are leased to {w}, which is not registered"
            ));
        }
        // 3. Work conservation on push queues that are not paused.
        for (i, q) in snap.stats.queues.iter().enumerate() {
            let config = self.configs.get(i).ok_or("queue index")?;
            if !config.strategy.is_push() || q.ready == 0 || q.paused {
                continue;
            }
            let name = queue_name(i);
            if let Some(w) = snap
                .stats
                .workers
                .iter()
                .find(|w| w.queues.contains(&name) && !w.draining && w.inflight < w.capacity)
            {
                return Err(format!(
                    "{name} has {} ready tasks while {} has a free slot",
                    q.ready, w.id
                ));
            }
        }
        // 4. Order: what left each ready set is a prefix of it.
        let after = self.ready_lists().await?;
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            let b: Vec<&TaskId> = b.iter().filter(|id| Some(**id) != cancelled).collect();
            let left: Vec<&TaskId> = b.iter().copied().filter(|id| !a.contains(id)).collect();
            if b[..left.len()] != left[..] {
                return Err(format!(
                    "q{i}: tasks {left:?} left out of order; the queue was {b:?}"
                ));
            }
        }
        Ok((snap, after))
    }

    /// Invariant 4, recomputed without trusting the backend's keys: each ready set, as
    /// `peek_ready` lists it, must be sorted by `(key, entry step)`, where `key` is
    /// [`Policy::sort_key`] of the task's priority and cost (from its record) and of the time the
    /// runner expects it entered the ready order, and the entry step stands in for the
    /// backend's sequence number (tasks entering in the same step may tie in any order).
    ///
    /// The expected entry follows the rules of `docs/architecture.md`. A task keeps its entry
    /// while it is ready, dispatched or running, and takes it again when it comes back from a
    /// worker that did not finish it (hand-back, drain, reap: then, under aging, its key counts
    /// from its creation). It enters anew when it is submitted, promoted from scheduled or
    /// retry-scheduled (aging from its run-at), re-driven, or back after a failed attempt
    /// (`fails`: the step reported one, or a heartbeat timed one out), each at this step's
    /// time. So a wrong key on re-entry (retry promotion, hand-back, redrive, aging) or a
    /// re-entry in the wrong place shows up as a task out of place.
    fn check_policy_order(
        &mut self,
        snap: &Snapshot,
        ready: &[Vec<TaskId>],
        fails: bool,
    ) -> Result<(), String> {
        let step = self.steps;
        self.steps += 1;
        let now = self.clock.now_ms();
        let infos: BTreeMap<TaskId, &TaskInfo> =
            snap.tasks.iter().flatten().map(|t| (t.id, t)).collect();
        let in_order = |s: TaskState| {
            matches!(
                s,
                TaskState::Ready | TaskState::Dispatched | TaskState::Running
            )
        };
        // Every task in the ready order after the step, with its expected entry.
        let mut entries = BTreeMap::new();
        for (id, info) in &infos {
            if !in_order(info.state) {
                continue;
            }
            let before = self.states.get(id).copied();
            let kept = self.entries.get(id).copied();
            let fresh = |enqueued_at| ReadyEntry { enqueued_at, step };
            let entry = match (before, kept) {
                // Promoted: ages from its run-at.
                (Some((TaskState::Scheduled | TaskState::RetryScheduled, Some(run_at), _)), _) => {
                    fresh(run_at)
                }
                // A failed attempt put it back (it may have started again at once).
                (Some((TaskState::Running, _, attempts)), Some(_))
                    if fails && (info.state != TaskState::Running || info.attempts != attempts) =>
                {
                    fresh(now)
                }
                // Back from a worker in its old place: aging counts from its creation.
                (Some((TaskState::Dispatched | TaskState::Running, _, _)), Some(entry))
                    if info.state == TaskState::Ready =>
                {
                    ReadyEntry {
                        enqueued_at: info.created_at,
                        step: entry.step,
                    }
                }
                (_, Some(entry)) => entry,
                // Submitted, re-driven.
                _ => fresh(now),
            };
            entries.insert(*id, entry);
        }
        for (i, list) in ready.iter().enumerate() {
            let policy = self.configs.get(i).ok_or("queue index")?.policy;
            let mut previous: Option<(i64, usize, TaskId)> = None;
            for id in list {
                let info = infos
                    .get(id)
                    .ok_or_else(|| format!("q{i} lists {id} as ready, but it has no record"))?;
                if info.state != TaskState::Ready {
                    return Err(format!(
                        "q{i} lists {id} as ready, but it is {}",
                        info.state
                    ));
                }
                let entry = entries
                    .get(id)
                    .copied()
                    .ok_or_else(|| format!("q{i}: no entry for {id}"))?;
                let key = policy.sort_key(&KeyInput {
                    priority: info.priority,
                    cost_ms: info.cost_ms,
                    enqueued_at: entry.enqueued_at,
                });
                if let Some((pk, ps, pid)) = previous
                    && (key, entry.step) < (pk, ps)
                {
                    return Err(format!(
                        "q{i} ({}): {id} (key {key}, entered at step {}, enqueued at {}) is \
                         listed after {pid} (key {pk}, entered at step {ps}) but should leave \
                         first; ready order {list:?}",
                        policy.name(),
                        entry.step,
                        entry.enqueued_at,
                    ));
                }
                previous = Some((key, entry.step, *id));
            }
        }
        self.entries = entries;
        self.states = infos
            .into_iter()
            .map(|(id, t)| (id, (t.state, t.run_at, t.attempts)))
            .collect();
        Ok(())
    }

    /// Applies every step, stopping at the first violation (reported with the step number).
    pub async fn run(&mut self, ops: &[Op]) -> Result<(), String> {
        for (n, op) in ops.iter().enumerate() {
            self.apply(op).await.map_err(|e| {
                format!("step {n} ({op:?}): {e}\ntrace:\n{}", self.trace.join("\n"))
            })?;
        }
        Ok(())
    }
}

/// A current-thread runtime for driving async backends from proptest bodies.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
}
