//! The memory backend's decisions per second: one task through submit (the strategy's
//! decision), receive and complete, for each strategy and several worker counts.
//!
//! `cargo bench --bench memory_backend`
#![allow(clippy::expect_used)] // set-up failures should abort the bench

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchyard_core::{
    InstanceToken, ManualClock, Policy, QueueConfig, QueueName, Strategy, TaskIdGenerator,
    TaskSpec, WorkerId, WorkerRef, WorkerSpec,
};
use switchyard_memory::MemoryBackend;

/// The instance token of every benched worker.
fn instance() -> InstanceToken {
    InstanceToken::new(1).expect("valid token")
}

fn me(id: WorkerId) -> WorkerRef {
    WorkerRef {
        id,
        instance: instance(),
    }
}

fn setup(strategy: Strategy, workers: usize) -> MemoryBackend {
    let backend = MemoryBackend::with_clock(Arc::new(ManualClock::new(1_700_000_000_000)));
    let queue = QueueName::new("bench").expect("valid name");
    backend
        .declare_now(
            &queue,
            // Results are not kept, so maintenance purges finished records as the bench runs.
            QueueConfig::new(Policy::Fcfs, strategy)
                .with_seed(1)
                .with_result_ttl(std::time::Duration::ZERO),
        )
        .expect("declare");
    for i in 0..workers {
        let spec = WorkerSpec::new(format!("w{i:05}"), ["bench"])
            .expect("valid worker")
            .instance(instance())
            .capacity(4)
            .weight(1 + (i % 7) as u32);
        backend.register_now(spec).expect("register");
    }
    backend
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory/submit-receive-complete");
    group.throughput(Throughput::Elements(1));
    for strategy in Strategy::ALL {
        for workers in [4usize, 64, 1024] {
            let backend = setup(strategy, workers);
            let mut ids = TaskIdGenerator::new(9);
            let mut n = 0u64;
            group.bench_with_input(
                BenchmarkId::new(strategy.name(), workers),
                &workers,
                |b, _| {
                    b.iter(|| {
                        n += 1;
                        let spec = TaskSpec::builder("bench", "job")
                            .id(ids.next_at(1_700_000_000_000))
                            .affinity_key(format!("k{}", n % 97))
                            .build()
                            .expect("valid spec");
                        let out = backend.submit_now(spec).expect("submit");
                        let worker = me(match out.assigned {
                            Some(w) => w,
                            // Pull: the first worker takes it.
                            None => "w00000".parse().expect("valid worker"),
                        });
                        for d in backend.receive_now(&worker, 1).expect("receive") {
                            black_box(
                                backend
                                    .complete_now(&d.lease, Vec::new())
                                    .expect("complete"),
                            );
                        }
                        if n.is_multiple_of(4096) {
                            black_box(backend.maintain_now(8192).expect("maintain"));
                        }
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
