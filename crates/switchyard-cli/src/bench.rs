//! `switchyard bench`: what one task costs Redis, measured on a real server.
//!
//! Every figure is measured in one run against the server given by `--url`, which nothing else
//! should be using (CPU and memory are read from `INFO`): Redis CPU per task lifecycle as a
//! `used_cpu_user + used_cpu_sys` delta, the same next to two floors (a trivial `return 1`
//! script, and a bare lifecycle that only runs the commands any queue needs), per-script `usec_per_call` from `INFO commandstats`, growth with queue depth and
//! worker count, end-to-end throughput with producers and workers running at once, and memory
//! per queued task. Each run uses a fresh namespace and deletes it afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod compare;
mod e2e;
mod growth;
mod memory;

use clap::Args;
use switchyard::display;
use switchyard::prelude::*;
use switchyard::{
    Client, Clock, Durable, InstanceToken, Lease, Policy, QueueConfig, QueueName, RedisBackend,
    RedisConfig, Strategy, SystemClock, TaskIdGenerator, TaskSpec, Worker, WorkerId, WorkerRef,
    WorkerSpec,
};

/// Flags of `switchyard bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The Redis to measure, e.g. `redis://127.0.0.1:7777`. Use a server nothing else is using:
    /// CPU and memory figures are read from its INFO. Start one with
    /// `redis-server --port 7777 --save '' --appendonly no`.
    #[arg(long, env = "SWITCHYARD_URL", hide_env_values = true)]
    pub url: String,

    /// Task lifecycles per CPU measurement.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,

    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,

    /// Tasks in each end-to-end run.
    #[arg(long, default_value_t = 200_000)]
    pub e2e_tasks: usize,

    /// Concurrent producers in end-to-end runs.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,

    /// Workers in end-to-end runs.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,

    /// Deepest backlog for the growth measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_depth: usize,

    /// The shapes of the side-by-side harness (`shared/bench-anchors`: bulk submits and
    /// awaited single submits to one 50-slot worker) and submit-to-start latency at half the
    /// single-submit rate, instead of the sections of `--only`.
    #[arg(long)]
    pub compare: bool,

    /// Tasks of `--compare`'s bulk and single shapes (the harness' 50,000 and 10,000 by
    /// default; smaller for a run under callgrind).
    #[arg(long, value_delimiter = ',', value_name = "BULK,SINGLE", default_values_t = [50_000usize, 10_000])]
    pub compare_tasks: Vec<usize>,

    /// Sections to run, comma-separated: floor, lifecycle, depth, workers, e2e, memory.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,lifecycle,depth,workers,e2e,memory"
    )]
    pub only: Vec<String>,

    /// Batch sizes of the end-to-end runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,128")]
    pub e2e_batches: Vec<usize>,

    /// Durable mode in every measurement: after each call, WAIT until this many replicas
    /// confirmed it (1 s timeout). The server must have that many replicas.
    #[arg(long, value_name = "REPLICAS")]
    pub durable: Option<u32>,
}

type Res<T> = Result<T, String>;

/// The instance token of every worker the bench registers itself.
fn bench_instance() -> InstanceToken {
    static TOKEN: std::sync::OnceLock<InstanceToken> = std::sync::OnceLock::new();
    *TOKEN.get_or_init(InstanceToken::random)
}

/// A worker the bench registered, as it names itself (the bench's workers share one token per
/// process, so that a worker picked by a dispatch can be named).
fn me(id: WorkerId) -> WorkerRef {
    WorkerRef {
        id,
        instance: bench_instance(),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Reads server-side counters on a connection of its own.
struct Probe {
    conn: redis::aio::MultiplexedConnection,
}

impl Probe {
    async fn info(&mut self, section: &str) -> Res<HashMap<String, String>> {
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.conn)
            .await
            .map_err(err)?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect())
    }

    /// Redis CPU seconds so far (user + system).
    async fn cpu(&mut self) -> Res<f64> {
        let info = self.info("cpu").await?;
        let get = |k: &str| {
            info.get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(get("used_cpu_user") + get("used_cpu_sys"))
    }

    /// `used_memory`, once the server has finished freeing what earlier runs unlinked.
    async fn used_memory(&mut self) -> Res<u64> {
        for _ in 0..600 {
            let info = self.info("memory").await?;
            if info
                .get("lazyfree_pending_objects")
                .is_none_or(|v| v == "0")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let info = self.info("memory").await?;
        info.get("used_memory")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "no used_memory in INFO".into())
    }

    /// `(calls, usec)` of script calls so far: FCALL (Switchyard's functions) and EVALSHA (the
    /// floors' scripts).
    async fn script_calls(&mut self) -> Res<(u64, u64)> {
        let info = self.info("commandstats").await?;
        let mut total = (0, 0);
        for command in ["cmdstat_fcall", "cmdstat_evalsha"] {
            let Some(line) = info.get(command) else {
                continue;
            };
            let field = |name: &str| {
                line.split(',')
                    .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            total.0 += field("calls");
            total.1 += field("usec");
        }
        Ok(total)
    }
}

/// A fresh namespace on the server, deleted on `cleanup`.
struct Space {
    backend: RedisBackend,
    namespace: String,
}

static NS: AtomicU64 = AtomicU64::new(0);

async fn space(args: &BenchArgs, pool: usize) -> Res<Space> {
    let namespace = format!(
        "bench-{}-{}",
        std::process::id(),
        NS.fetch_add(1, Ordering::SeqCst)
    );
    let mut config = RedisConfig::new(&args.url, namespace.clone()).with_pool_size(pool);
    if let Some(replicas) = args.durable {
        config = config.with_durable(Durable::new(replicas, std::time::Duration::from_secs(1)));
    }
    let backend = RedisBackend::with_config(config).await.map_err(err)?;
    Ok(Space { backend, namespace })
}

impl Space {
    async fn cleanup(self, probe: &mut Probe) -> Res<()> {
        let pattern = format!("sy:{{{}}}:*", self.namespace);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut probe.conn)
            .await
            .map_err(err)?;
        for chunk in keys.chunks(512) {
            let _: () = redis::cmd("UNLINK")
                .arg(chunk)
                .query_async(&mut probe.conn)
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Submits `n` tasks of `tasks` to `queue`, in batches of 256.
    async fn fill(&self, tasks: &mut Tasks, queue: &QueueName, n: usize) -> Res<()> {
        let mut left = n;
        while left > 0 {
            let k = left.min(256);
            self.backend
                .submit_batch(tasks.batch(queue.as_str(), k)?)
                .await
                .map_err(err)?;
            left -= k;
        }
        Ok(())
    }

    async fn queue(&self, name: &str, policy: Policy, strategy: Strategy) -> Res<QueueName> {
        let q = QueueName::new(name).map_err(err)?;
        let config = QueueConfig::new(policy, strategy)
            .with_result_ttl(Duration::from_secs(3_600))
            .with_timeout(Duration::from_secs(3_600));
        self.backend.declare_queue(&q, config).await.map_err(err)?;
        Ok(q)
    }

    async fn worker(&self, name: &str, queue: &str, capacity: u32) -> Res<WorkerRef> {
        let spec = WorkerSpec::new(name, [queue])
            .map_err(err)?
            .instance(bench_instance())
            .capacity(capacity)
            .heartbeat_ttl(Duration::from_secs(3_600));
        self.backend.register_worker(spec).await.map_err(err)?;
        Ok(me(WorkerId::new(name).map_err(err)?))
    }
}

struct Tasks {
    ids: TaskIdGenerator,
    payload: Vec<u8>,
    n: u64,
}

impl Tasks {
    fn new(seed: u64, payload: usize) -> Self {
        Tasks {
            ids: TaskIdGenerator::new(seed),
            payload: vec![b'x'; payload],
            n: 0,
        }
    }

    fn next(&mut self, queue: &str) -> Res<TaskSpec> {
        self.n += 1;
        TaskSpec::builder(queue, "job")
            .id(self.ids.next_at(SystemClock.now_ms()))
            .payload(self.payload.clone())
            .priority((self.n % 10) as u16)
            .build()
            .map_err(err)
    }

    fn batch(&mut self, queue: &str, n: usize) -> Res<Vec<TaskSpec>> {
        (0..n).map(|_| self.next(queue)).collect()
    }
}

/// Server counters and the clock at the start of an end-to-end run.
struct Snapshot {
    calls: u64,
    usec: u64,
    cpu: f64,
    started: Instant,
}

impl Snapshot {
    async fn take(probe: &mut Probe) -> Res<Self> {
        let (calls, usec) = probe.script_calls().await?;
        let cpu = probe.cpu().await?;
        Ok(Snapshot {
            calls,
            usec,
            cpu,
            started: Instant::now(),
        })
    }

    /// The end-to-end table cells for `tasks` tasks run since the snapshot: tasks/s, Redis CPU
    /// per task, script calls per task, `usec_per_call` of those calls.
    async fn cells_since(&self, probe: &mut Probe, tasks: usize) -> Res<String> {
        let wall = self.started.elapsed().as_secs_f64();
        let cpu = (probe.cpu().await? - self.cpu) * 1e6;
        let (calls, usec) = probe.script_calls().await?;
        let calls = calls - self.calls;
        Ok(format!(
            "{:.0} | {:.2} µs | {:.2} | {:.2}",
            tasks as f64 / wall,
            cpu / tasks as f64,
            calls as f64 / tasks as f64,
            (usec - self.usec) as f64 / calls.max(1) as f64
        ))
    }
}

/// µs of Redis CPU and script calls over `f`.
async fn measure<F, Fut>(probe: &mut Probe, f: F) -> Res<(f64, u64, u64)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    let (c0, u0) = probe.script_calls().await?;
    let cpu0 = probe.cpu().await?;
    f().await?;
    let cpu1 = probe.cpu().await?;
    let (c1, u1) = probe.script_calls().await?;
    Ok(((cpu1 - cpu0) * 1e6, c1 - c0, u1 - u0))
}

/// Runs the benchmark and prints a markdown report.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &BenchArgs) -> Res<()> {
    if args.url.contains(":6379") {
        eprintln!("warning: measuring the server on port 6379; make sure nothing else uses it");
    }
    let client = redis::Client::open(args.url.as_str()).map_err(err)?;
    let mut probe = Probe {
        conn: client
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new().set_response_timeout(None),
            )
            .await
            .map_err(|e| format!("cannot reach {}: {e}", display::url(&args.url)))?,
    };
    let info = probe.info("server").await?;
    println!(
        "# switchyard bench\n\nRedis {} on {}; {} tasks per CPU figure, {}-byte payloads.\n",
        info.get("redis_version").map_or("?", String::as_str),
        display::url(&args.url),
        args.tasks,
        args.payload
    );
    if args.compare {
        return compare::compare(&mut probe, args).await;
    }
    let want = |s: &str| args.only.iter().any(|o| o == s);
    let mut floors = Floors::default();
    if want("floor") {
        floors = floor(&mut probe, args).await?;
    }
    if want("lifecycle") {
        lifecycle(&mut probe, args, &floors).await?;
    }
    if want("depth") {
        growth::depth(&mut probe, args).await?;
    }
    if want("workers") {
        growth::workers(&mut probe, args).await?;
    }
    if want("e2e") {
        e2e::end_to_end(&mut probe, args).await?;
    }
    if want("memory") {
        memory::memory(&mut probe, args).await?;
    }
    Ok(())
}

/// The two floors every figure is compared with, measured on one connection making one call at
/// a time, as `lifecycle` does.
#[derive(Default)]
struct Floors {
    /// Redis CPU of one `return 1` call, µs.
    trivial: f64,
    /// Redis CPU per task of the bare lifecycle (`bare_lifecycle.lua`) at each batch size, µs.
    bare: HashMap<usize, f64>,
}

const BATCHES: [usize; 3] = [1, 16, 128];

async fn floor(probe: &mut Probe, args: &BenchArgs) -> Res<Floors> {
    let n = args.tasks;
    let script = redis::Script::new("return 1");
    let mut conn = probe.conn.clone();
    let (cpu, calls, usec) = measure(probe, || async move {
        for _ in 0..n {
            let _: i64 = script.invoke_async(&mut conn).await.map_err(err)?;
        }
        Ok(())
    })
    .await?;
    let mut floors = Floors {
        trivial: cpu / n as f64,
        ..Floors::default()
    };
    println!("## Floors\n");
    println!(
        "A trivial script, and the bare lifecycle: three scripts (submit, receive, complete) that \
         do only the eight Redis commands any queue needs per task, with no validation, \
         scheduling, fencing or accounting (`crates/switchyard-cli/src/bare_lifecycle.lua`).\n"
    );
    println!(
        "| script | batch | Redis CPU per task | script µs per task |\n| --- | --- | --- | --- |"
    );
    println!(
        "| `return 1` | 1 | {:.2} µs | {:.2} |",
        floors.trivial,
        usec as f64 / calls.max(1) as f64
    );
    let bare = redis::Script::new(include_str!("bare_lifecycle.lua"));
    let tag = format!("sy:{{bench-bare-{}}}:", std::process::id());
    let keys: Vec<String> = ["tasks", "ready", "seq", "running", "results"]
        .iter()
        .map(|k| format!("{tag}{k}"))
        .collect();
    let payload = vec![b'x'; args.payload];
    for batch in BATCHES {
        let rounds = (n / batch).max(1);
        let mut conn = probe.conn.clone();
        let (bare_script, keys, payload) = (&bare, &keys, &payload);
        let (cpu, _, usec) = measure(probe, || async move {
            for _ in 0..rounds {
                for phase in ["submit", "receive", "complete"] {
                    let mut call = bare_script.prepare_invoke();
                    for k in keys {
                        call.key(k);
                    }
                    call.arg(phase).arg(batch).arg(payload.as_slice());
                    let done: usize = call.invoke_async(&mut conn).await.map_err(err)?;
                    if done != batch {
                        return Err(format!("bare lifecycle: {phase} handled {done} of {batch}"));
                    }
                }
            }
            Ok(())
        })
        .await?;
        let tasks = (rounds * batch) as f64;
        floors.bare.insert(batch, cpu / tasks);
        println!(
            "| bare lifecycle | {batch} | {:.2} µs | {:.2} |",
            cpu / tasks,
            usec as f64 / tasks
        );
        let _: () = redis::cmd("UNLINK")
            .arg(keys)
            .query_async(&mut probe.conn)
            .await
            .map_err(err)?;
    }
    println!();
    Ok(floors)
}

async fn lifecycle(probe: &mut Probe, args: &BenchArgs, floors: &Floors) -> Res<()> {
    println!("## Redis CPU per task lifecycle (submit, receive, complete)\n");
    println!(
        "| batch | CPU per task | × trivial | × bare | usec_per_call submit / receive / complete | calls per task |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for batch in BATCHES {
        let s = space(args, 4).await?;
        let q = s.queue("life", Policy::Fcfs, Strategy::RoundRobin).await?;
        let w = s
            .worker("w", q.as_str(), u32::try_from(batch).map_err(err)?)
            .await?;
        let mut tasks = Tasks::new(1, args.payload);
        let rounds = (args.tasks / batch).max(1);
        let n = rounds * batch;
        // Per-script costs: one phase at a time.
        let mut per_phase = [(0u64, 0u64); 3];
        let mut total_cpu = 0.0;
        let mut total_calls = 0u64;
        for _ in 0..rounds {
            let specs = tasks.batch(q.as_str(), batch)?;
            let b = s.backend.clone();
            let (cpu, c, u) = measure(probe, || async move {
                b.submit_batch(specs).await.map_err(err)?;
                Ok(())
            })
            .await?;
            per_phase[0].0 += c;
            per_phase[0].1 += u;
            total_cpu += cpu;
            total_calls += c;
            let b = s.backend.clone();
            let wc = w.clone();
            let leases = Arc::new(std::sync::Mutex::new(Vec::new()));
            let out = leases.clone();
            let (cpu, c, u) = measure(probe, || async move {
                let ds = b.receive(&wc, batch).await.map_err(err)?;
                out.lock()
                    .map_err(err)?
                    .extend(ds.into_iter().map(|d| (d.lease, Vec::new())));
                Ok(())
            })
            .await?;
            per_phase[1].0 += c;
            per_phase[1].1 += u;
            total_cpu += cpu;
            total_calls += c;
            let acks: Vec<(Lease, Vec<u8>)> = std::mem::take(&mut *leases.lock().map_err(err)?);
            let b = s.backend.clone();
            let wc = w.clone();
            let (cpu, c, u) = measure(probe, || async move {
                b.complete_many(&wc.id, acks, 0, false).await.map_err(err)?;
                Ok(())
            })
            .await?;
            per_phase[2].0 += c;
            per_phase[2].1 += u;
            total_cpu += cpu;
            total_calls += c;
        }
        // The CPU total above includes the INFO calls around each phase; measure again without
        // them for the headline figure.
        let clean = {
            let b = s.backend.clone();
            let wc = w.clone();
            let qn = q.clone();
            let mut t = Tasks::new(2, args.payload);
            measure(probe, || async move {
                for _ in 0..rounds {
                    b.submit_batch(t.batch(qn.as_str(), batch)?)
                        .await
                        .map_err(err)?;
                    let ds = b.receive(&wc, batch).await.map_err(err)?;
                    let acks = ds.into_iter().map(|d| (d.lease, Vec::new())).collect();
                    b.complete_many(&wc.id, acks, 0, false).await.map_err(err)?;
                }
                Ok(())
            })
            .await?
            .0
        };
        let _ = total_cpu;
        let per_task = clean / n as f64;
        let upc = |i: usize| per_phase[i].1 as f64 / per_phase[i].0.max(1) as f64;
        let times = |floor: Option<&f64>| match floor {
            Some(f) if *f > 0.0 => format!("{:.1}×", per_task / f),
            _ => "–".to_owned(),
        };
        println!(
            "| {batch} | {per_task:.2} µs | {} | {} | {:.2} / {:.2} / {:.2} | {:.3} |",
            times(Some(&floors.trivial)),
            times(floors.bare.get(&batch)),
            upc(0),
            upc(1),
            upc(2),
            total_calls as f64 / n as f64
        );
        s.cleanup(probe).await?;
    }
    println!(
        "\n(× trivial: CPU per task divided by the CPU of one `return 1` call; × bare: divided by \
         the bare lifecycle's CPU per task at the same batch size.)\n"
    );
    Ok(())
}
