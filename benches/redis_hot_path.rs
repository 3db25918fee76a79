//! The Lua dispatch hot path on a real Redis (started on a free port for the run):
//! submit → dispatch → receive → complete, at batch sizes 1 / 16 / 128, queue depths
//! 1k / 100k / 1M and worker counts 4 / 64 / 1,024.
//!
//! Next to each benchmark it prints Redis's own cost: `usec_per_call` of our scripts from
//! `INFO commandstats` (and per task), and the `usec_per_call` of a trivial `return 1` script
//! run right after in the same benchmark, as the floor.
//!
//! `cargo bench --bench redis_hot_path` (set `SY_BENCH_MAX_DEPTH` to shorten the 1M fill).
#![allow(clippy::expect_used, clippy::unwrap_used)] // set-up failures should abort the bench

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchyard_core::prelude::*;
use switchyard_core::{
    InstanceToken, Lease, Policy, QueueConfig, QueueName, Strategy, SystemClock, TaskIdGenerator,
    TaskSpec, WorkerId, WorkerRef, WorkerSpec,
};

/// A benched worker as it names itself: every one registers with instance token 1.
fn me(id: WorkerId) -> WorkerRef {
    WorkerRef {
        id,
        instance: InstanceToken::new(1).unwrap(),
    }
}
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use tokio::runtime::Runtime;

static NS: AtomicU64 = AtomicU64::new(0);

struct Bench {
    rt: Runtime,
    server: RedisServer,
    probe: redis::aio::MultiplexedConnection,
}

impl Bench {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = RedisServer::start().expect("redis-server for the bench");
        let client = redis::Client::open(server.url()).unwrap();
        let probe = rt
            .block_on(client.get_multiplexed_async_connection())
            .unwrap();
        Bench { rt, server, probe }
    }

    fn backend(
        &self,
        strategy: Strategy,
        policy: Policy,
        workers: usize,
        capacity: u32,
    ) -> (RedisBackend, Vec<WorkerRef>) {
        self.rt.block_on(async {
            let ns = format!("hot{}", NS.fetch_add(1, Ordering::SeqCst));
            let b = RedisBackend::with_config(
                RedisConfig::new(self.server.url(), ns).with_pool_size(4),
            )
            .await
            .unwrap();
            let q = QueueName::new("q").unwrap();
            let day = Duration::from_secs(86_400);
            b.declare_queue(
                &q,
                QueueConfig::new(policy, strategy)
                    .with_timeout(day)
                    .with_result_ttl(Duration::from_secs(60)),
            )
            .await
            .unwrap();
            let mut ids = Vec::new();
            for i in 0..workers {
                let spec = WorkerSpec::new(format!("w{i:04}"), ["q"])
                    .unwrap()
                    .instance(InstanceToken::new(1).unwrap())
                    .capacity(capacity)
                    .heartbeat_ttl(day);
                b.register_worker(spec).await.unwrap();
                ids.push(me(WorkerId::new(format!("w{i:04}")).unwrap()));
            }
            (b, ids)
        })
    }

    /// `(calls, usec)` of `command` (`fcall`: our functions; `evalsha`: the floor) so far.
    fn calls(&mut self, command: &str) -> (u64, u64) {
        let text: String = self
            .rt
            .block_on(
                redis::cmd("INFO")
                    .arg("commandstats")
                    .query_async(&mut self.probe),
            )
            .unwrap();
        let line = text
            .lines()
            .find(|l| {
                l.strip_prefix("cmdstat_")
                    .and_then(|l| l.strip_prefix(command))
                    .is_some_and(|l| l.starts_with(':'))
            })
            .unwrap_or("");
        let field = |name: &str| {
            line.split([':', ','])
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("calls"), field("usec"))
    }

    /// `usec_per_call` of a trivial script, measured now.
    fn floor(&mut self) -> f64 {
        let script = redis::Script::new("return 1");
        let before = self.calls("evalsha");
        let mut conn = self.probe.clone();
        self.rt.block_on(async {
            for _ in 0..2_000 {
                let _: i64 = script.invoke_async(&mut conn).await.unwrap();
            }
        });
        let after = self.calls("evalsha");
        (after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64
    }

    fn report(&mut self, name: &str, before: (u64, u64), tasks: u64) {
        let after = self.calls("fcall");
        let (calls, usec) = (after.0 - before.0, after.1 - before.1);
        let floor = self.floor();
        println!(
            "{name}: our scripts {:.2} usec_per_call, {:.2} usec per task ({:.1}× the floor); trivial script floor {:.2} usec_per_call",
            usec as f64 / calls.max(1) as f64,
            usec as f64 / tasks.max(1) as f64,
            usec as f64 / tasks.max(1) as f64 / floor,
            floor
        );
    }
}

fn specs(ids: &mut TaskIdGenerator, n: usize) -> Vec<TaskSpec> {
    (0..n)
        .map(|_| {
            TaskSpec::builder("q", "job")
                .id(ids.next_at(switchyard_core::Clock::now_ms(&SystemClock)))
                .payload(vec![b'x'; 64])
                .build()
                .unwrap()
        })
        .collect()
}

fn lifecycle(c: &mut Criterion, bench: &mut Bench) {
    let mut group = c.benchmark_group("redis/lifecycle");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for batch in [1usize, 16, 128] {
        let (b, workers) = bench.backend(Strategy::RoundRobin, Policy::Fcfs, 1, batch as u32);
        let w = workers[0].clone();
        let ids = Arc::new(std::sync::Mutex::new(TaskIdGenerator::new(batch as u64)));
        let tasks = Arc::new(AtomicU64::new(0));
        let before = bench.calls("fcall");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::from_parameter(batch), |bencher| {
            bencher.to_async(&bench.rt).iter(|| {
                let (b, w, ids, tasks) = (b.clone(), w.clone(), ids.clone(), tasks.clone());
                async move {
                    let batch_specs = specs(&mut ids.lock().unwrap(), batch);
                    b.submit_batch(batch_specs).await.unwrap();
                    let got = b.receive(&w, batch).await.unwrap();
                    let acks: Vec<(Lease, Vec<u8>)> =
                        got.into_iter().map(|d| (d.lease, Vec::new())).collect();
                    b.complete_many(&w.id, acks, 0, false).await.unwrap();
                    tasks.fetch_add(batch as u64, Ordering::Relaxed);
                }
            })
        });
        bench.report(
            &format!("redis/lifecycle/{batch}"),
            before,
            tasks.load(Ordering::Relaxed),
        );
    }
    group.finish();
}

fn depth(c: &mut Criterion, bench: &mut Bench) {
    let max_depth: usize = std::env::var("SY_BENCH_MAX_DEPTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut group = c.benchmark_group("redis/depth");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    // Capped depths that coincide run once (criterion refuses duplicate ids).
    let mut depths = [1_000usize, 100_000, 1_000_000].map(|d| d.min(max_depth.max(1)));
    depths.sort_unstable();
    let mut depths = depths.to_vec();
    depths.dedup();
    for depth in depths {
        let (b, workers) = bench.backend(Strategy::RoundRobin, Policy::PRIORITY, 1, 1);
        let w = workers[0].clone();
        let mut ids = TaskIdGenerator::new(depth as u64);
        let lease = bench.rt.block_on(async {
            let mut left = depth + 1;
            while left > 0 {
                let n = left.min(512);
                b.submit_batch(specs(&mut ids, n)).await.unwrap();
                left -= n;
            }
            b.receive(&w, 1).await.unwrap().pop().unwrap().lease
        });
        let state = Arc::new(std::sync::Mutex::new((lease, ids)));
        let tasks = Arc::new(AtomicU64::new(0));
        let before = bench.calls("fcall");
        group.bench_function(BenchmarkId::from_parameter(depth), |bencher| {
            bencher.to_async(&bench.rt).iter(|| {
                let (b, state, tasks) = (b.clone(), state.clone(), tasks.clone());
                async move {
                    let (lease, spec) = {
                        let mut s = state.lock().unwrap();
                        let spec = specs(&mut s.1, 1).pop().unwrap();
                        (s.0.clone(), spec)
                    };
                    let (_, mut next) =
                        b.complete_and_receive(&lease, Vec::new(), 1).await.unwrap();
                    b.submit(spec).await.unwrap();
                    state.lock().unwrap().0 = next.pop().unwrap().lease;
                    tasks.fetch_add(1, Ordering::Relaxed);
                }
            })
        });
        bench.report(
            &format!("redis/depth/{depth}"),
            before,
            tasks.load(Ordering::Relaxed),
        );
    }
    group.finish();
}

fn workers(c: &mut Criterion, bench: &mut Bench) {
    let mut group = c.benchmark_group("redis/workers");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    for strategy in [
        Strategy::RoundRobin,
        Strategy::LeastLoaded,
        Strategy::Weighted,
    ] {
        for count in [4usize, 64, 1024] {
            let (b, _) = bench.backend(strategy, Policy::Fcfs, count, 4);
            let ids = Arc::new(std::sync::Mutex::new(TaskIdGenerator::new(count as u64)));
            let tasks = Arc::new(AtomicU64::new(0));
            let before = bench.calls("fcall");
            group.bench_function(BenchmarkId::new(strategy.name(), count), |bencher| {
                bencher.to_async(&bench.rt).iter(|| {
                    let (b, ids, tasks) = (b.clone(), ids.clone(), tasks.clone());
                    async move {
                        let spec = specs(&mut ids.lock().unwrap(), 1).pop().unwrap();
                        let w = me(b.submit(spec).await.unwrap().assigned.unwrap());
                        for d in b.receive(&w, 1).await.unwrap() {
                            b.complete(&d.lease, Vec::new()).await.unwrap();
                        }
                        tasks.fetch_add(1, Ordering::Relaxed);
                    }
                })
            });
            bench.report(
                &format!("redis/workers/{}/{count}", strategy.name()),
                before,
                tasks.load(Ordering::Relaxed),
            );
        }
    }
    group.finish();
}

fn hot_path(c: &mut Criterion) {
    let mut bench = Bench::new();
    lifecycle(c, &mut bench);
    depth(c, &mut bench);
    workers(c, &mut bench);
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
