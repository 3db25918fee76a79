//! The workload generator and the discrete-event simulation.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use switchyard::backend::prelude::*;
use switchyard::backend::{
    Delivery, InstanceToken, Lease, ManualClock, TaskIdGenerator, WorkerRef, WorkerSpec,
};
use switchyard::{
    MemoryBackend, Policy, QueueConfig, QueueName, Result, Strategy, TaskId, TaskSpec, WorkerId,
};
use switchyard_core::rng::SplitMix64;

/// Where the simulated clock starts (any fixed instant works; this one is in 2023).
const START_MS: u64 = 1_700_000_000_000;
/// Mean cost hint of a task at speed 1x, in ms.
pub const MEAN_COST_MS: f64 = 100.0;
const QUEUE: &str = "demo";

/// One simulated worker.
#[derive(Debug, Clone)]
pub struct SimWorker {
    /// Its id.
    pub id: WorkerId,
    /// Slots.
    pub capacity: u32,
    /// Speed multiplier: a task runs `cost / speed`.
    pub speed: f64,
    /// Weight given to the weighted strategy.
    pub weight: u32,
}

/// One simulated task.
#[derive(Debug, Clone)]
pub struct SimTask {
    /// Arrival time, ms after the start.
    pub arrival_ms: u64,
    /// Priority 0-9.
    pub priority: u16,
    /// Cost hint (ms at speed 1x).
    pub cost_ms: u32,
    /// How far the real run time strays from the hint (0.8-1.2).
    pub noise: f64,
    /// Affinity key number.
    pub key: u32,
}

/// Workers and tasks, generated once per seed and replayed for every strategy.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The workers.
    pub workers: Vec<SimWorker>,
    /// The tasks, by arrival.
    pub tasks: Vec<SimTask>,
    /// Offered load.
    pub load: f64,
}

fn exponential(rng: &mut SplitMix64, mean: f64) -> f64 {
    -(1.0 - rng.next_f64()).ln() * mean
}

impl Workload {
    /// Draws a workload from `seed`.
    pub fn generate(workers: u32, tasks: u64, load: f64, keys: u32, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let workers: Vec<SimWorker> = (0..workers)
            .map(|i| {
                let capacity = [1u32, 2, 4, 8][rng.below(4) as usize];
                let speed = (10.0 + rng.below(31) as f64) / 20.0; // 0.5x to 2.0x in steps of 0.05
                let weight = ((f64::from(capacity) * speed * 10.0).round() as u32).clamp(1, 1000);
                SimWorker {
                    id: WorkerId::new(format!("w{i:02}"))
                        .unwrap_or_else(|_| unreachable!("valid id")),
                    capacity,
                    speed,
                    weight,
                }
            })
            .collect();
        // Tasks per ms the workers can serve, on average.
        let service_rate: f64 = workers
            .iter()
            .map(|w| f64::from(w.capacity) * w.speed)
            .sum::<f64>()
            / MEAN_COST_MS;
        let arrival_rate = load * service_rate;
        let mut t = 0.0;
        let tasks = (0..tasks)
            .map(|_| {
                t += exponential(&mut rng, 1.0 / arrival_rate);
                SimTask {
                    arrival_ms: t.round() as u64,
                    priority: rng.below(10) as u16,
                    cost_ms: exponential(&mut rng, MEAN_COST_MS).round().clamp(1.0, 1e7) as u32,
                    noise: 0.8 + 0.4 * rng.next_f64(),
                    key: rng.below(u64::from(keys)) as u32,
                }
            })
            .collect();
        Workload {
            workers,
            tasks,
            load,
        }
    }

    /// Total slots.
    pub fn slots(&self) -> u32 {
        self.workers.iter().map(|w| w.capacity).sum()
    }
}

/// What one strategy did with the workload.
#[derive(Debug, Clone)]
pub struct SimResult {
    /// The strategy.
    pub strategy: Strategy,
    /// Per task, ms from arrival to start.
    pub waits: Vec<u64>,
    /// Per task, ms from arrival to completion.
    pub latencies: Vec<u64>,
    /// Per worker, tasks run.
    pub tasks_per_worker: Vec<u64>,
    /// Per worker, ms spent running tasks.
    pub busy_ms: Vec<u64>,
    /// From the first arrival to the last completion, in ms.
    pub makespan_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrival(usize),
    Done(usize),
}

struct Sim<'a> {
    workload: &'a Workload,
    backend: MemoryBackend,
    clock: ManualClock,
    pull: bool,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    running: Vec<Lease>,
    free_running: Vec<usize>,
    task_index: HashMap<TaskId, usize>,
    worker_index: HashMap<WorkerId, usize>,
    /// The instance token every simulated worker registers with.
    instance: InstanceToken,
    /// Pull only: one entry per idle slot, longest waiting first (as Redis serves blocked
    /// clients).
    waiting: VecDeque<usize>,
    result: SimResult,
    last_done: u64,
}

impl Sim<'_> {
    /// A simulated worker as it names itself.
    fn me(&self, id: WorkerId) -> WorkerRef {
        WorkerRef {
            id,
            instance: self.instance,
        }
    }

    fn now(&self) -> u64 {
        switchyard::backend::Clock::now_ms(&self.clock) - START_MS
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    /// Starts delivered tasks: records waits and schedules completions.
    fn start(&mut self, deliveries: Vec<Delivery>) -> Result<()> {
        let now = self.now();
        for d in deliveries {
            let ti = *self
                .task_index
                .get(&d.lease.task)
                .ok_or(switchyard::Error::TaskNotFound(d.lease.task))?;
            let wi = *self
                .worker_index
                .get(&d.lease.worker)
                .ok_or_else(|| switchyard::Error::UnknownWorker(d.lease.worker.clone()))?;
            let task = &self.workload.tasks[ti];
            let worker = &self.workload.workers[wi];
            let run = ((f64::from(task.cost_ms) * task.noise / worker.speed).round() as u64).max(1);
            self.result.waits[ti] = now - task.arrival_ms;
            self.result.latencies[ti] = now + run - task.arrival_ms;
            self.result.tasks_per_worker[wi] += 1;
            self.result.busy_ms[wi] += run;
            let slot = match self.free_running.pop() {
                Some(slot) => {
                    self.running[slot] = d.lease;
                    slot
                }
                None => {
                    self.running.push(d.lease);
                    self.running.len() - 1
                }
            };
            self.schedule(now + run, Event::Done(slot));
        }
        Ok(())
    }

    async fn on_arrival(&mut self, ti: usize, ids: &mut TaskIdGenerator) -> Result<()> {
        let task = &self.workload.tasks[ti];
        let id = ids.next_at(START_MS + task.arrival_ms);
        self.task_index.insert(id, ti);
        let spec = TaskSpec::builder(QUEUE, "simulated")
            .id(id)
            .priority(task.priority)
            .cost_hint(Duration::from_millis(u64::from(task.cost_ms)))
            .affinity_key(format!("key-{}", task.key))
            .build()?;
        let out = self.backend.submit(spec).await?;
        if let Some(w) = out.assigned {
            let got = self.backend.receive(&self.me(w), usize::MAX).await?;
            self.start(got)?;
        }
        if self.pull
            && let Some(wi) = self.waiting.pop_front()
        {
            let got = self
                .backend
                .receive(&self.me(self.workload.workers[wi].id.clone()), 1)
                .await?;
            if got.is_empty() {
                self.waiting.push_front(wi);
            }
            self.start(got)?;
        }
        Ok(())
    }

    async fn on_done(&mut self, slot: usize) -> Result<()> {
        let lease = self.running[slot].clone();
        self.free_running.push(slot);
        self.last_done = self.now();
        let max = if self.pull { 1 } else { usize::MAX };
        let (_, got) = self
            .backend
            .complete_and_receive(&lease, Vec::new(), max)
            .await?;
        if self.pull && got.is_empty() {
            let wi = *self
                .worker_index
                .get(&lease.worker)
                .ok_or_else(|| switchyard::Error::UnknownWorker(lease.worker.clone()))?;
            self.waiting.push_back(wi);
        }
        self.start(got)
    }
}

/// Runs the workload through `strategy`; `progress` is called with the number of finished tasks.
pub async fn simulate(
    workload: &Workload,
    strategy: Strategy,
    policy: Policy,
    seed: u64,
    progress: impl Fn(u64),
) -> Result<SimResult> {
    let clock = ManualClock::new(START_MS);
    let backend = MemoryBackend::with_clock(Arc::new(clock.clone()));
    let queue = QueueName::new(QUEUE)?;
    let day = Duration::from_secs(86_400);
    backend
        .declare_queue(
            &queue,
            QueueConfig::new(policy, strategy)
                .with_seed(seed)
                .with_timeout(day)
                .with_result_ttl(day),
        )
        .await?;
    let n = workload.tasks.len();
    let mut sim = Sim {
        workload,
        backend,
        clock,
        pull: !strategy.is_push(),
        events: BinaryHeap::with_capacity(n),
        seq: 0,
        running: Vec::new(),
        free_running: Vec::new(),
        task_index: HashMap::with_capacity(n),
        worker_index: HashMap::new(),
        instance: InstanceToken::random(),
        waiting: VecDeque::new(),
        result: SimResult {
            strategy,
            waits: vec![0; n],
            latencies: vec![0; n],
            tasks_per_worker: vec![0; workload.workers.len()],
            busy_ms: vec![0; workload.workers.len()],
            makespan_ms: 0,
        },
        last_done: 0,
    };
    for (i, w) in workload.workers.iter().enumerate() {
        let spec = WorkerSpec::new(w.id.as_str(), [QUEUE])?
            .instance(sim.instance)
            .capacity(w.capacity)
            .weight(w.weight)
            // The longest TTL there is (49.7 days): simulated workers never expire.
            .heartbeat_ttl(Duration::from_millis(u64::from(u32::MAX)));
        sim.backend.register_worker(spec).await?;
        sim.worker_index.insert(w.id.clone(), i);
    }
    let max_capacity = workload
        .workers
        .iter()
        .map(|w| w.capacity)
        .max()
        .unwrap_or(0);
    for slot in 0..max_capacity {
        for (i, w) in workload.workers.iter().enumerate() {
            if slot < w.capacity {
                sim.waiting.push_back(i);
            }
        }
    }
    for (i, t) in workload.tasks.iter().enumerate() {
        sim.schedule(t.arrival_ms, Event::Arrival(i));
    }
    let mut ids = TaskIdGenerator::new(seed);
    let mut done = 0u64;
    while let Some(Reverse((at, _, event))) = sim.events.pop() {
        sim.clock.set(START_MS + at);
        match event {
            Event::Arrival(i) => sim.on_arrival(i, &mut ids).await?,
            Event::Done(slot) => {
                sim.on_done(slot).await?;
                done += 1;
                if done.is_multiple_of(1024) {
                    progress(done);
                }
            }
        }
    }
    progress(done);
    let first = workload.tasks.first().map_or(0, |t| t.arrival_ms);
    sim.result.makespan_ms = sim.last_done.saturating_sub(first).max(1);
    Ok(sim.result)
}
