//! Bounded queues and bounded groups (`switchyard_core::flow::bounded`), on the memory
//! reference and on a real Redis: eight producers submit single tasks and batches (some larger
//! than one step, some with re-sent ids and held dedup keys, some delayed) to a queue bounded
//! at 1,000 while a worker drains it in bursts — and to a queue bounded at 500 and shared
//! between six groups with a bound of 200 per group besides, half the tasks in one group. A
//! watcher reads the counts all along. Checked by task id:
//!
//! * the queue never holds more than its bound, no group more than 200, and the bound that
//!   binds was reached (refusals seen: the queue's in the plain queue, a group's in the shared
//!   one);
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
use switchyard_core::flow::groups::GroupShare;
use switchyard_core::prelude::*;
use switchyard_core::rng::Minstd;
use switchyard_core::{
    Error, Policy, QueueConfig, QueueName, Strategy, TaskId, TaskSpec, TaskState,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const BOUND: u32 = 1_000;
/// The shared queue's bound: its first group (half the tasks) fills before it.
const SHARED_BOUND: u32 = 500;
const GROUP_BOUND: u32 = 200;
const PRODUCERS: usize = 8;
const QUEUE: &str = "bounded";

/// The group keys of the shared queue's tasks, besides tasks without one (the group `""`).
const KEYS: [&str; 5] = ["acme", "globex", "initech", "umbrella", "hooli"];

/// One producer's plan: its batch sizes (1 is a single submit) and a seed for what each
/// task is (new, a re-sent id, a dedup key, delayed).
#[derive(Debug, Clone)]
struct Plan {
    sizes: Vec<usize>,
    seed: u64,
    /// To the queue shared between groups: each task with one of `KEYS` or none.
    shared: bool,
}

fn plans() -> impl proptest::strategy::Strategy<Value = Vec<Plan>> {
    let size = prop_oneof![6 => 1usize..20, 3 => 20usize..120, 1 => 257usize..400];
    let plan =
        (proptest::collection::vec(size, 8..20), any::<u64>()).prop_map(|(sizes, seed)| Plan {
            sizes,
            seed,
            shared: false,
        });
    proptest::collection::vec(plan, PRODUCERS)
}

/// What the producers saw: the ids answered as stored, the ids of refused submits, and how
/// many submits were refused.
#[derive(Default)]
struct Seen {
    stored: HashSet<TaskId>,
    refused: HashSet<TaskId>,
    refusals: u64,
    /// Of the refusals, those of a full group.
    group_refusals: u64,
}

/// Whether `e` is a bound's refusal (of a group: its bound per group is `GROUP_BOUND`).
fn refusal(e: &Error) -> Option<bool> {
    match e {
        Error::QueueFull { bound, .. } => {
            assert!([BOUND, SHARED_BOUND].contains(bound), "{bound}");
            Some(false)
        }
        Error::GroupFull { bound, group, .. } => {
            assert_eq!(*bound, GROUP_BOUND);
            assert!(
                group.is_empty() || KEYS.contains(&group.as_str()),
                "{group}"
            );
            Some(true)
        }
        _ => None,
    }
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
            if plan.shared {
                // Half to the first group, so that it meets its bound before the queue does.
                let k = rng.below(2 * KEYS.len() as u64) as usize;
                if let Some(key) = KEYS.get(k.saturating_sub(KEYS.len() - 1)) {
                    builder = builder.group_key(*key);
                }
            }
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
            Err(e) if refusal(&e).is_some() => {
                seen.refused.extend(&ids);
                seen.refusals += 1;
                seen.group_refusals += u64::from(refusal(&e) == Some(true));
                refusals.fetch_add(1, Ordering::SeqCst);
            }
            Err(Error::BatchIncomplete {
                accepted, source, ..
            }) => {
                let of_group = refusal(&source).unwrap_or_else(|| panic!("{source}"));
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
                seen.group_refusals += u64::from(of_group);
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
async fn never_past_the_bound(
    b: Arc<dyn Backend>,
    mut plans: Vec<Plan>,
    shared: bool,
) -> Result<(), String> {
    let q = QueueName::new(QUEUE).unwrap();
    let bound = if shared { SHARED_BOUND } else { BOUND };
    let mut config = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin).with_max_waiting(bound);
    if shared {
        config = config.with_groups(GroupShare::default().with_max_waiting(GROUP_BOUND));
        for plan in &mut plans {
            plan.shared = true;
        }
    }
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
            let q = QueueName::new(QUEUE).unwrap();
            let (mut most, mut most_in_group) = (0, 0);
            while !done.load(Ordering::SeqCst) {
                let n = waiting(&b.stats().await.unwrap());
                assert!(
                    n <= u64::from(bound),
                    "{n} tasks wait in a queue bounded at {bound}"
                );
                most = most.max(n);
                if shared {
                    for g in b.groups(&q).await.unwrap() {
                        let n = g.ready + g.scheduled;
                        assert!(
                            n <= u64::from(GROUP_BOUND),
                            "{n} tasks of group {:?} wait, bounded at {GROUP_BOUND}",
                            g.key
                        );
                        most_in_group = most_in_group.max(n);
                    }
                }
                tokio::task::yield_now().await;
            }
            (most, most_in_group)
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
        seen.group_refusals += s.group_refusals;
    }
    done.store(true, Ordering::SeqCst);
    drainer
        .await
        .map_err(|e| format!("the drain panicked: {e}"))?;
    let (most, most_in_group) = watcher
        .await
        .map_err(|e| format!("the watcher saw the bound passed: {e}"))?;
    let last = waiting(&b.stats().await.unwrap());
    if last > u64::from(bound) {
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
        "{} stored, {} refused submits ({} by a group; {} tasks), at most {most} waiting \
         ({most_in_group} in one group), {last} at the end",
        seen.stored.len(),
        seen.refusals,
        seen.group_refusals,
        seen.refused.difference(&seen.stored).count()
    );
    // The queue's bound is met in the plain queue; in the shared one its groups' (mostly the
    // first's) come first, and the queue's only at times (each_group_has_its_own_bound shows
    // the two together).
    if !shared && (seen.refusals == 0 || most < u64::from(bound) * 3 / 5) {
        return Err(format!(
            "the bound was not reached: {} refusals, at most {most} waiting",
            seen.refusals
        ));
    }
    // (A large batch may be refused by a group that holds few: the watcher's most is not
    // checked against the bound.)
    if shared && seen.group_refusals == 0 {
        return Err(format!(
            "no group reached its bound: {} refusals of a group, at most {most_in_group} waiting in one",
            seen.group_refusals
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

fn on_memory(cases_n: u32, shared: bool) {
    let rt = runtime();
    cases(cases_n, |plans| {
        let memory = MemoryBackend::new();
        rt.block_on(never_past_the_bound(
            Arc::new(memory.clone()),
            plans,
            shared,
        ))?;
        memory.audit().map_err(|e| e.to_string())
    });
}

fn on_redis(cases_n: u32, shared: bool) {
    let server = RedisServer::start().expect("a redis-server for the test");
    let rt = runtime();
    let case = AtomicU64::new(0);
    cases(cases_n, |plans| {
        let ns = format!("bounded-{}", case.fetch_add(1, Ordering::SeqCst));
        rt.block_on(async {
            let redis = RedisBackend::with_config(RedisConfig::new(server.url(), ns))
                .await
                .unwrap();
            never_past_the_bound(Arc::new(redis.clone()), plans, shared).await?;
            let audit = redis.audit().await.unwrap();
            if audit.is_empty() {
                Ok(())
            } else {
                Err(format!("audit: {audit:?}"))
            }
        })
    });
}

#[test]
fn concurrent_producers_never_pass_the_bound_on_memory() {
    on_memory(6, false);
}

#[test]
fn concurrent_producers_never_pass_the_bound_on_redis() {
    on_redis(4, false);
}

#[test]
fn concurrent_producers_never_pass_a_group_bound_on_memory() {
    on_memory(6, true);
}

#[test]
fn concurrent_producers_never_pass_a_group_bound_on_redis() {
    on_redis(4, true);
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

/// A queue bounded per group: each group's ready, scheduled and retry-scheduled tasks count
/// against its own bound (the group `""` too); a batch of several steps that would take a group
/// past it is refused whole before its first step; the other groups go on, up to the queue's
/// own bound (checked first); a cancelled task makes room; turning sharing off waits for the
/// scheduled tasks.
async fn each_group_has_its_own_bound(b: Arc<dyn Backend>) {
    let q = QueueName::new(QUEUE).unwrap();
    let share = GroupShare::default().with_max_waiting(GROUP_BOUND);
    let config = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)
        .with_max_waiting(700)
        .with_groups(share)
        .with_backoff(switchyard_core::Backoff {
            base_ms: 3_600_000,
            max_ms: 3_600_000,
            jitter_pct: 0,
        });
    b.declare_queue(&q, config).await.unwrap();
    let specs = |key: Option<&str>, n: usize, later: bool| -> Vec<TaskSpec> {
        (0..n)
            .map(|_| {
                let mut t = TaskSpec::builder(QUEUE, "k");
                if let Some(key) = key {
                    t = t.group_key(key);
                }
                if later {
                    t = t.delay(Duration::from_secs(3_600));
                }
                t.build().unwrap()
            })
            .collect()
    };
    let full = |r: Result<Vec<switchyard_core::SubmitOutcome>, Error>| match r {
        Err(Error::GroupFull {
            group,
            waiting,
            bound,
            adding,
            ..
        }) => (group, waiting, bound, adding),
        other => panic!("expected a full group, got {other:?}"),
    };
    b.submit_batch(specs(Some("acme"), 150, false))
        .await
        .unwrap();
    b.submit_batch(specs(Some("globex"), 100, true))
        .await
        .unwrap();
    b.submit_batch(specs(Some("globex"), 50, false))
        .await
        .unwrap();
    let groups = b.groups(&q).await.unwrap();
    let shown: Vec<(&str, u64, u64)> = groups
        .iter()
        .map(|g| (g.key.as_str(), g.ready, g.scheduled))
        .collect();
    assert_eq!(shown, [("acme", 150, 0), ("globex", 50, 100)]);

    // Scheduled tasks count: 150 + 51 > 200.
    let refused = full(b.submit_batch(specs(Some("globex"), 51, false)).await);
    assert_eq!(refused, ("globex".to_owned(), 150, GROUP_BOUND, 51));

    // A batch of two steps (256 + 44): its second step would take acme past the bound, so
    // the first step is refused too; nothing of it is stored.
    let mut batch = specs(Some("initech"), 200, false);
    batch.extend(specs(Some("hooli"), 56, false));
    batch.extend(specs(Some("acme"), 44, false));
    batch.extend(specs(Some("acme"), 16, true));
    assert!(batch.len() > switchyard_core::flow::bounded::BATCH_STEP);
    let ids: Vec<TaskId> = batch.iter().map(TaskSpec::id).collect();
    let refused = full(b.submit_batch(batch).await);
    assert_eq!(refused, ("acme".to_owned(), 150, GROUP_BOUND, 60));
    for id in ids {
        assert!(b.get_task(id).await.unwrap().is_none(), "{id} was stored");
    }

    // The group without a key has its own bound too, and its refusal names it.
    b.submit_batch(specs(None, 200, false)).await.unwrap();
    let e = b.submit(specs(None, 1, false).remove(0)).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("group `` of queue `bounded` is full: 200 of its tasks wait and the bound per group is 200"),
        "{e}"
    );
    // The other groups go on; a group up to its bound exactly is fine.
    b.submit_batch(specs(Some("acme"), 50, false))
        .await
        .unwrap();
    let refused = full(b.submit_batch(specs(Some("acme"), 1, true)).await);
    assert_eq!(refused, ("acme".to_owned(), 200, GROUP_BOUND, 1));
    // 550 wait: a group with room still meets the queue's bound, which is checked first.
    for (key, n) in [("initech", 151), ("acme", 160)] {
        let refused = b.submit_batch(specs(Some(key), n, false)).await;
        let Err(Error::QueueFull {
            waiting,
            bound,
            adding,
            ..
        }) = refused
        else {
            panic!("{refused:?}")
        };
        assert_eq!((waiting, bound, adding), (550, 700, n as u64));
    }

    // A task dispatched and failed for a retry an hour away waits again: retry-scheduled, it
    // counts. Cancelling a scheduled one makes room for one.
    let w = me("bounded-worker");
    b.register_worker(test_worker("bounded-worker", [QUEUE]).capacity(1))
        .await
        .unwrap();
    let got = b.receive(&w, 1).await.unwrap();
    assert_eq!(got.len(), 1);
    b.fail(&got[0].lease, "later", true).await.unwrap();
    let retried = got[0].lease.task;
    let group = b
        .get_task(retried)
        .await
        .unwrap()
        .unwrap()
        .group_key
        .unwrap_or_default();
    // The ring's head: acme joined it first.
    assert_eq!(group, "acme");
    let info = b.groups(&q).await.unwrap();
    let g = info.iter().find(|g| g.key == group).unwrap();
    assert_eq!(g.ready + g.scheduled, 200, "{g:?}");
    assert_eq!(
        b.get_task(retried).await.unwrap().unwrap().state,
        TaskState::RetryScheduled
    );
    let key = (!group.is_empty()).then_some(group.as_str());
    let refused = full(b.submit_batch(specs(key, 1, false)).await);
    assert_eq!(refused.1, 200);
    b.cancel(retried).await.unwrap();
    b.submit_batch(specs(key, 1, false)).await.unwrap();
    // The worker goes: what it holds comes back to its group.
    b.deregister_worker(&w).await.unwrap();

    // Turning sharing off needs no waiting task: the scheduled ones keep it on.
    let scheduled = b
        .groups(&q)
        .await
        .unwrap()
        .iter()
        .map(|g| g.scheduled)
        .sum::<u64>();
    assert_eq!(scheduled, 100);
    b.purge_queue(&q, switchyard_core::admin::Purge::Waiting, 10_000)
        .await
        .unwrap();
    let later = specs(None, 1, true);
    b.submit_batch(later.clone()).await.unwrap();
    let mut plain = config;
    plain.groups = None;
    let refused = b.reconfigure_queue(&q, plain).await;
    assert!(
        matches!(
            refused,
            Err(Error::QueueInUse {
                reason: switchyard_core::admin::InUse::Shared(1),
                ..
            })
        ),
        "{refused:?}"
    );
    b.cancel(later[0].id()).await.unwrap();
    assert!(b.reconfigure_queue(&q, plain).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_has_its_own_bound_on_memory() {
    let memory = MemoryBackend::new();
    each_group_has_its_own_bound(Arc::new(memory.clone())).await;
    memory.audit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_has_its_own_bound_on_redis() {
    let server = RedisServer::start().unwrap();
    let redis = RedisBackend::with_config(RedisConfig::new(server.url(), "per-group"))
        .await
        .unwrap();
    each_group_has_its_own_bound(Arc::new(redis.clone())).await;
    assert_eq!(redis.audit().await.unwrap(), Vec::<String>::new());
}

/// A batch of many group keys (a new tenant per task) to a queue bounded at one task per group:
/// stored whole; the same batch with one key repeated in its last step is refused whole at its
/// first step (that step's check covers every group of the batch), nothing stored.
async fn a_batch_of_many_keys_is_checked_whole(b: Arc<dyn Backend>) {
    let q = QueueName::new(QUEUE).unwrap();
    let config = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)
        .with_groups(GroupShare::default().with_max_waiting(1));
    b.declare_queue(&q, config).await.unwrap();
    let batch = |tag: &str, n: usize| -> Vec<TaskSpec> {
        (0..n)
            .map(|i| {
                TaskSpec::builder(QUEUE, "k")
                    .group_key(format!("{tag}-{i}"))
                    .build()
                    .unwrap()
            })
            .collect()
    };
    let first = batch("tenant", 2_000);
    let out = b.submit_batch(first).await.unwrap();
    assert_eq!(out.len(), 2_000);
    let mut second = batch("other", 1_999);
    second.push(
        TaskSpec::builder(QUEUE, "k")
            .group_key("other-1998")
            .build()
            .unwrap(),
    );
    let ids: Vec<TaskId> = second.iter().map(TaskSpec::id).collect();
    let refused = b.submit_batch(second).await;
    let Err(Error::GroupFull {
        group,
        waiting,
        adding,
        ..
    }) = refused
    else {
        panic!("{refused:?}")
    };
    assert_eq!((group.as_str(), waiting, adding), ("other-1998", 0, 2));
    for id in ids {
        assert!(b.get_task(id).await.unwrap().is_none(), "{id} was stored");
    }
    let waiting: u64 = b.groups(&q).await.unwrap().iter().map(|g| g.ready).sum();
    assert_eq!(waiting, 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_many_keys_is_checked_whole_on_memory() {
    let memory = MemoryBackend::new();
    a_batch_of_many_keys_is_checked_whole(Arc::new(memory.clone())).await;
    memory.audit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_many_keys_is_checked_whole_on_redis() {
    let server = RedisServer::start().unwrap();
    let redis = RedisBackend::with_config(RedisConfig::new(server.url(), "many-keys"))
        .await
        .unwrap();
    a_batch_of_many_keys_is_checked_whole(Arc::new(redis.clone())).await;
    assert_eq!(redis.audit().await.unwrap(), Vec::<String>::new());
}
