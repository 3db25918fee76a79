//! Cross-backend property tests: the same random operation sequences run against the memory
//! reference and a real Redis (started by the test on a free port) with the same manual clock.
//! After every step the two must have answered identically (every dispatch decision included),
//! hold identical task states, and each satisfy the invariants of `docs/architecture.md` ("The state machine") — Redis checked by
//! reading its state back. Each strategy's fairness property is checked on Redis too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use switchyard_core::{ManualClock, Strategy as Balance};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::scenario::{self, Runner, START_MS};
use switchyard_testkit::{fairness, scenario::Scenario};

static NAMESPACE: AtomicU64 = AtomicU64::new(0);

/// A Redis backend in a fresh namespace of `server`, on `clock`.
async fn redis(server: &RedisServer, clock: &ManualClock) -> RedisBackend {
    let ns = format!("t{}", NAMESPACE.fetch_add(1, Ordering::SeqCst));
    let config = RedisConfig::new(server.url(), ns)
        .with_clock(Arc::new(clock.clone()))
        .with_pool_size(2);
    RedisBackend::with_config(config)
        .await
        .expect("connect to the test server")
}

fn memory(clock: &ManualClock) -> MemoryBackend {
    MemoryBackend::with_clock(Arc::new(clock.clone()))
}

/// Runs one scenario on both backends in lockstep.
async fn lockstep(server: &RedisServer, s: &Scenario) -> Result<(), String> {
    let mem_clock = ManualClock::new(START_MS);
    let redis_clock = ManualClock::new(START_MS);
    let mut reference = Runner::new(memory(&mem_clock), mem_clock, &s.configs)
        .await?
        .with_audit(Box::new(|b: &MemoryBackend| {
            Box::pin(async move { b.audit() })
        }));
    let mut subject = Runner::new(redis(server, &redis_clock).await, redis_clock, &s.configs)
        .await?
        .with_audit(Box::new(|b: &RedisBackend| {
            Box::pin(async move {
                let problems = b.audit().await.map_err(|e| e.to_string())?;
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                }
            })
        }));
    for (n, op) in s.ops.iter().enumerate() {
        let fail = |what: String, r: &Runner<MemoryBackend>| {
            format!(
                "step {n} ({op:?}): {what}\nreference trace:\n{}",
                r.trace.join("\n")
            )
        };
        reference
            .apply(op)
            .await
            .map_err(|e| fail(format!("memory: {e}"), &reference))?;
        subject
            .apply(op)
            .await
            .map_err(|e| fail(format!("redis: {e}"), &reference))?;
        let (a, b) = (reference.trace.last(), subject.trace.last());
        if a != b {
            return Err(fail(
                format!("answers differ\n memory: {a:?}\n  redis: {b:?}"),
                &reference,
            ));
        }
        let (sa, sb) = (reference.snapshot().await?, subject.snapshot().await?);
        if sa != sb {
            return Err(fail(
                format!("states differ\n memory: {sa:?}\n  redis: {sb:?}"),
                &reference,
            ));
        }
    }
    Ok(())
}

/// `cases` cases; a failing case, once shrunk, is kept in
/// `tests/cross_backend.proptest-regressions` and run first from then on (commit that file).
fn config(cases: u32) -> Config {
    Config {
        cases,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// Runs `cases` scenarios of `scenarios` in lockstep on a fresh server; panics with the first
/// (shrunk) failure.
fn lockstep_cases(cases: u32, scenarios: impl proptest::strategy::Strategy<Value = Scenario>) {
    let server = RedisServer::start().expect("a redis-server for the test");
    let rt = scenario::runtime();
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&scenarios, |s| {
        rt.block_on(lockstep(&server, &s))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn redis_makes_the_reference_decisions() {
    lockstep_cases(256, scenario::any_scenario(60));
}

/// Hand-offs (tasks started on parked workers of pull queues) need pull queues and parked
/// workers, which the mixed scenarios above make only now and then.
#[test]
fn redis_hands_off_as_the_reference_does() {
    lockstep_cases(128, scenario::pull_scenario(60));
}

/// Running tasks' lives (progress reports a set time apart, next attempts, leases taken back),
/// which the mixed scenarios reach only now and then.
#[test]
fn redis_keeps_running_tasks_as_the_reference_does() {
    lockstep_cases(96, scenario::running_scenario(60));
}

/// Dedup keys' lives (throttled and debounced submits, windows restarted and lapsing, holders
/// starting between submits), which the mixed scenarios reach only now and then.
#[test]
fn redis_dedups_as_the_reference_does() {
    lockstep_cases(64, scenario::dedup_scenario(50));
}

/// Schedules' lives (ticks claimed by maintenance and by second tickers replaying a claim,
/// misfires, overlaps, pauses, limits, changed definitions).
#[test]
fn redis_ticks_schedules_as_the_reference_does() {
    lockstep_cases(64, scenario::schedule_scenario(50));
}

/// Queues shared between groups (tasks with group keys, per-group concurrency and rate limits,
/// holds of groups, weights; the ring and each group's turn, marks and their wake-ups; sharing
/// reconfigured), which the mixed scenarios reach only now and then.
#[test]
fn redis_shares_between_groups_as_the_reference_does() {
    lockstep_cases(64, scenario::group_scenario(50));
}

/// Flows (`switchyard_core::tree`): trees submitted whole, children ending under each failure
/// policy (and ending again after a re-drive: counted once), parents cancelled, maintenance
/// settling — every answer, state and counted end the same.
#[test]
fn redis_runs_flows_as_the_reference_does() {
    lockstep_cases(64, scenario::flow_scenario(50));
}

#[test]
fn fairness_holds_on_redis() {
    let server = RedisServer::start().expect("a redis-server for the test");
    let rt = scenario::runtime();
    let mut runner = TestRunner::new(config(64));
    let clock = ManualClock::new(START_MS);
    let params = (
        1usize..8,
        1usize..120,
        any::<u64>(),
        proptest::collection::vec(1u32..12, 1..6),
        1u16..48,
    );
    let result = runner.run(&params, |(workers, tasks, seed, weights, vnodes)| {
        rt.block_on(async {
            let r = fairness::round_robin(&redis(&server, &clock).await, workers, tasks).await?;
            assert_eq!(
                r,
                fairness::round_robin(&memory(&clock), workers, tasks).await?
            );
            fairness::random(&redis(&server, &clock).await, seed, workers.max(2), 600).await?;
            // Same seed, same sequence as the reference.
            let weights1 = vec![1; workers.max(2)];
            let pool = fairness::Pool {
                queue: "same",
                strategy: Balance::Random,
                seed,
                weights: &weights1,
                capacity: 200,
            };
            let on_redis =
                fairness::assign(&redis(&server, &clock).await, &pool, 100, None).await?;
            let on_memory = fairness::assign(&memory(&clock), &pool, 100, None).await?;
            if on_redis != on_memory {
                return Err("random picks differ between backends".to_string());
            }
            fairness::weighted(&redis(&server, &clock).await, &weights, tasks, 2.0).await?;
            let steps: Vec<bool> = (0..tasks)
                .map(|i| (seed >> (i % 64)) & 1 == 1 || i % 3 == 0)
                .collect();
            fairness::least_loaded(&redis(&server, &clock).await, &weights, &steps).await?;
            fairness::affinity(
                &redis(&server, &clock).await,
                workers.max(2),
                tasks.min(60),
                vnodes,
            )
            .await?;
            Ok::<(), String>(())
        })
        .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
