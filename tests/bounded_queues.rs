//! Bounded queues (`switchyard_core::flow::bounded`), on the memory reference and on a real
//! Redis: eight producers submit single tasks and batches (some larger than one step, some
//! with re-sent ids and held dedup keys, some delayed) to a queue bounded at 1,000 while a
//! worker drains it in bursts. A watcher reads the counts all along. Checked by task id:
//!
//! * the queue never holds more than 1,000 waiting tasks, and did reach its bound;
//! * every task answered as stored is found, and every task of a refused submit that no other
//!   answer stored is not (a refused submit stored nothing);
//! * a batch that does not fit is refused whole while nothing else submits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use proptest::test_runner::{Config, TestRunner};
use switchyard_core::prelude::*;
use switchyard_core::rng::Minstd;
use switchyard_core::{Error, Policy, QueueConfig, QueueName, Strategy, TaskId, TaskSpec};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const BOUND: u32 = 1_000;
const PRODUCERS: usize = 8;
const QUEUE: &str = "bounded";

/// One producer's plan: its batch sizes (1 is a single submit) and a seed for what each
/// task is (new, a re-sent id, a dedup key, delayed).
#[derive(Debug, Clone)]
struct Plan {
    sizes: Vec<usize>,
    seed: u64,
}

fn plans() -> impl proptest::strategy::Strategy<Value = Vec<Plan>> {
    let size = prop_oneof![6 => 1usize..20, 3 => 20usize..120, 1 => 257usize..400];
    let plan = (proptest::collection::vec(size, 8..20), any::<u64>())
        .prop_map(|(sizes, seed)| Plan { sizes, seed });
    proptest::collection::vec(plan, PRODUCERS)
}

/// What the producers saw: the ids answered as stored, the ids of refused submits, and how
/// many submits were refused.
#[derive(Default)]
struct Seen {
    stored: HashSet<TaskId>,
    refused: HashSet<TaskId>,
    refusals: u64,
}

fn waiting(stats: &switchyard_core::Stats) -> u64 {
    let q = stats
        .queues
        .iter()
        .find(|q| q.queue.as_ref().map(QueueName::as_str) == Some(QUEUE))
        .expect("the queue's stats");
    q.ready + q.scheduled + q.retry_scheduled
}

async fn produce(b: Arc<dyn Backend>, plan: Plan, refusals: Arc<AtomicU64>) -> Seen {
    let mut rng = Minstd::from_seed(plan.seed);
    let mut seen = Seen::default();
    let mut sent: Vec<TaskSpec> = Vec::new();
    for size in plan.sizes {
        let mut specs = Vec::with_capacity(size);
        for _ in 0..size {
            let pick = rng.below(100);
            if pick < 8 && !sent.is_empty() {
                let again = rng.below(sent.len() as u64) as usize;
                specs.push(sent[again].clone());
                continue;
            }
            let mut builder = TaskSpec::builder(QUEUE, "k");
            if pick >= 90 {
                builder = builder.dedup_key(format!("key-{}", rng.below(12)));
            } else if pick == 89 {
                builder = builder.delay(Duration::from_secs(3_600));
            }
            specs.push(builder.build().unwrap());
        }
        sent.extend(specs.iter().cloned());
        let ids: Vec<TaskId> = specs.iter().map(TaskSpec::id).collect();
        let answer = if size == 1 {
            b.submit(specs.pop().unwrap()).await.map(|o| vec![o])
        } else {
            b.submit_batch(specs).await
        };
        match answer {
            Ok(outcomes) => {
                for (id, o) in ids.iter().zip(outcomes) {
                    if !o.duplicate {
                        seen.stored.insert(*id);
                    }
                }
            }
            Err(Error::QueueFull { bound, .. }) => {
                assert_eq!(bound, BOUND);
                seen.refused.extend(&ids);
                seen.refusals += 1;
                refusals.fetch_add(1, Ordering::SeqCst);
            }
            Err(Error::BatchIncomplete {
                accepted, source, ..
            }) => {
                assert!(matches!(*source, Error::QueueFull { .. }), "{source}");
                let mut stored = HashSet::new();
                for (i, o) in accepted {
                    stored.insert(i);
                    if !o.duplicate {
                        seen.stored.insert(ids[i]);
                    }
                }
                for (i, id) in ids.iter().enumerate() {
                    if !stored.contains(&i) {
                        seen.refused.insert(*id);
                    }
                }
                seen.refusals += 1;
                refusals.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => panic!("submit failed: {e}"),
        }
    }
    seen
}

/// Drains up to 200 tasks each time the producers have seen another refusal, so that the
/// queue fills, refuses, and makes room again.
async fn drain(b: Arc<dyn Backend>, refusals: Arc<AtomicU64>, done: Arc<AtomicBool>) {
    let w = me("consumer");
    let mut answered = 0;
    let mut turns = 0u64;
    while !done.load(Ordering::SeqCst) {
        turns += 1;
        if turns.is_multiple_of(64) {
            b.heartbeat(&w).await.unwrap();
        }
        let now = refusals.load(Ordering::SeqCst);
        if now == answered {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        answered = now;
        let mut left = 200;
        while left > 0 {
            let got = b.receive(&w, 64).await.unwrap();
            if got.is_empty() {
                break;
            }
            left -= got.len().min(left);
            for d in got {
                b.complete(&d.lease, Vec::new()).await.unwrap();
            }
        }
    }
}

/// Runs the producers, the drain and the watcher, then counts by task id.
async fn never_past_the_bound(b: Arc<dyn Backend>, plans: Vec<Plan>) -> Result<(), String> {
    let q = QueueName::new(QUEUE).unwrap();
    let config = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin).with_max_waiting(BOUND);
    b.declare_queue(&q, config).await.unwrap();
    b.register_worker(test_worker("consumer", [QUEUE]).capacity(64))
        .await
        .unwrap();
    let (refusals, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let watcher = {
        let (b, done) = (b.clone(), done.clone());
        tokio::spawn(async move {
            let mut most = 0;
            while !done.load(Ordering::SeqCst) {
                let n = waiting(&b.stats().await.unwrap());
                assert!(
                    n <= u64::from(BOUND),
                    "{n} tasks wait in a queue bounded at {BOUND}"
                );
                most = most.max(n);
                tokio::task::yield_now().await;
            }
            most
        })
    };
    let drainer = tokio::spawn(drain(b.clone(), refusals.clone(), done.clone()));
    let producers: Vec<_> = plans
        .into_iter()
        .map(|plan| tokio::spawn(produce(b.clone(), plan, refusals.clone())))
        .collect();
    let mut seen = Seen::default();
    for p in producers {
        let s = p.await.map_err(|e| format!("a producer panicked: {e}"))?;
        seen.stored.extend(s.stored);
        seen.refused.extend(s.refused);
        seen.refusals += s.refusals;
    }
    done.store(true, Ordering::SeqCst);
    drainer
        .await
        .map_err(|e| format!("the drain panicked: {e}"))?;
    let most = watcher
        .await
        .map_err(|e| format!("the watcher saw the bound passed: {e}"))?;
    let last = waiting(&b.stats().await.unwrap());
    if last > u64::from(BOUND) {
        return Err(format!("{last} tasks wait at the end"));
    }
    // Counted by task id: what was answered stored is there, what was refused is not.
    let mut missing = 0;
    for id in &seen.stored {
        if b.get_task(*id).await.unwrap().is_none() {
            missing += 1;
        }
    }
    let mut leaked = 0;
    for id in seen.refused.difference(&seen.stored) {
        if b.get_task(*id).await.unwrap().is_some() {
            leaked += 1;
        }
    }
    if missing > 0 || leaked > 0 {
        return Err(format!(
            "{missing} of {} stored tasks are missing; {leaked} tasks of refused submits were stored",
            seen.stored.len()
        ));
    }
    eprintln!(
        "{} stored, {} refused submits ({} tasks), at most {most} waiting, {last} at the end",
        seen.stored.len(),
        seen.refusals,
        seen.refused.difference(&seen.stored).count()
    );
    if seen.refusals == 0 || most < u64::from(BOUND) - 400 {
        return Err(format!(
            "the bound was not reached: {} refusals, at most {most} waiting",
            seen.refusals
        ));
    }
    Ok(())
}

fn cases(n: u32, run: impl Fn(Vec<Plan>) -> Result<(), String>) {
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&plans(), |p| run(p).map_err(TestCaseError::fail)) {
        panic!("{e}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn concurrent_producers_never_pass_the_bound_on_memory() {
    let rt = runtime();
    cases(6, |plans| {
        let memory = MemoryBackend::new();
        rt.block_on(never_past_the_bound(Arc::new(memory.clone()), plans))?;
        memory.audit().map_err(|e| e.to_string())
    });
}

#[test]
fn concurrent_producers_never_pass_the_bound_on_redis() {
    let server = RedisServer::start().expect("a redis-server for the test");
    let rt = runtime();
    let case = AtomicU64::new(0);
    cases(4, |plans| {
        let ns = format!("bounded-{}", case.fetch_add(1, Ordering::SeqCst));
        rt.block_on(async {
            let redis = RedisBackend::with_config(RedisConfig::new(server.url(), ns))
                .await
                .unwrap();
            never_past_the_bound(Arc::new(redis.clone()), plans).await?;
            let audit = redis.audit().await.unwrap();
            if audit.is_empty() {
                Ok(())
            } else {
                Err(format!("audit: {audit:?}"))
            }
        })
    });
}

/// A batch that does not fit stores nothing, whether it takes one step or several; a batch
/// of re-sent ids is answered (duplicates) even when the queue is full.
async fn a_batch_that_does_not_fit_stores_nothing(b: Arc<dyn Backend>) {
    let q = QueueName::new(QUEUE).unwrap();
    let config = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin).with_max_waiting(BOUND);
    b.declare_queue(&q, config).await.unwrap();
    let specs = |n: usize| -> Vec<TaskSpec> {
        (0..n)
            .map(|_| TaskSpec::builder(QUEUE, "k").build().unwrap())
            .collect()
    };
    let first = specs(900);
    b.submit_batch(first.clone()).await.unwrap();
    for n in [101, 300] {
        let batch = specs(n);
        let ids: Vec<TaskId> = batch.iter().map(TaskSpec::id).collect();
        let Err(Error::QueueFull {
            waiting,
            bound,
            adding,
            ..
        }) = b.submit_batch(batch).await
        else {
            panic!("a batch of {n} fitted in 100 places");
        };
        assert_eq!((waiting, bound, adding), (900, BOUND, n as u64));
        for id in ids {
            assert!(b.get_task(id).await.unwrap().is_none(), "{id} was stored");
        }
    }
    b.submit_batch(specs(100)).await.unwrap();
    let full = b.submit(specs(1).remove(0)).await;
    let Err(e @ Error::QueueFull { .. }) = full else {
        panic!("{full:?}")
    };
    assert!(
        e.to_string()
            .contains("is full: 1000 tasks wait and its bound is 1000")
    );
    // Re-sent ids add nothing: answered as duplicates, not refused.
    let again = b.submit_batch(first[..10].to_vec()).await.unwrap();
    assert!(again.iter().all(|o| o.duplicate));
    assert_eq!(waiting(&b.stats().await.unwrap()), 1_000);
}

/// With a dedup window of 0 a dedup key holds nothing (it expires as it is claimed): two tasks
/// of one step with the same key are both stored, so both count against the bound.
async fn a_zero_dedup_window_claims_nothing(b: Arc<dyn Backend>) {
    let q = QueueName::new(QUEUE).unwrap();
    let config = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)
        .with_max_waiting(10)
        .with_dedup_window(Duration::ZERO);
    b.declare_queue(&q, config).await.unwrap();
    let plain = (0..9)
        .map(|_| TaskSpec::builder(QUEUE, "k").build().unwrap())
        .collect();
    b.submit_batch(plain).await.unwrap();
    let same_key = || {
        TaskSpec::builder(QUEUE, "k")
            .dedup_key("x")
            .build()
            .unwrap()
    };
    let refused = b.submit_batch(vec![same_key(), same_key()]).await;
    let Err(Error::QueueFull { adding, .. }) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(adding, 2);
    let one = b.submit_batch(vec![same_key()]).await.unwrap();
    assert!(!one[0].duplicate);
    assert_eq!(waiting(&b.stats().await.unwrap()), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_dedup_window_claims_nothing_on_memory() {
    a_zero_dedup_window_claims_nothing(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_dedup_window_claims_nothing_on_redis() {
    let server = RedisServer::start().unwrap();
    let redis = RedisBackend::with_config(RedisConfig::new(server.url(), "zero"))
        .await
        .unwrap();
    a_zero_dedup_window_claims_nothing(Arc::new(redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_does_not_fit_stores_nothing_on_memory() {
    a_batch_that_does_not_fit_stores_nothing(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_does_not_fit_stores_nothing_on_redis() {
    let server = RedisServer::start().unwrap();
    let redis = RedisBackend::with_config(RedisConfig::new(server.url(), "fit"))
        .await
        .unwrap();
    a_batch_that_does_not_fit_stores_nothing(Arc::new(redis)).await;
}
