//! Property tests of the memory backend: the invariants of `docs/architecture.md` ("The state machine") after every step of random
//! operation sequences, each strategy's fairness property, policy order and SJF optimality.

use std::sync::Arc;
use std::time::Duration;
use switchyard_testkit::{me, test_worker};

use proptest::prelude::*;
use switchyard_core::prelude::*;
use switchyard_core::{
    Clock, ManualClock, Policy, QueueConfig, QueueName, Strategy, TaskIdGenerator, TaskSpec,
};
use switchyard_memory::MemoryBackend;
use switchyard_testkit::fairness;
use switchyard_testkit::scenario::{self, Runner, START_MS};

fn backend() -> (MemoryBackend, ManualClock) {
    let clock = ManualClock::new(START_MS);
    (MemoryBackend::with_clock(Arc::new(clock.clone())), clock)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Invariants 1–5 after every step of random sequences of every operation.
    #[test]
    fn invariants_hold_after_every_step(s in scenario::any_scenario(80)) {
        let rt = scenario::runtime();
        let result: Result<(), String> = rt.block_on(async {
            let (b, clock) = backend();
            let mut runner = Runner::new(b, clock, &s.configs).await?
                .with_audit(Box::new(|b: &MemoryBackend| Box::pin(async move { b.audit() })));
            runner.run(&s.ops).await
        });
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    /// Round-robin: while every worker stays eligible, the counts of all workers (a starved one
    /// counts 0) differ by at most one after every task.
    #[test]
    fn round_robin_is_fair(workers in 1usize..9, tasks in 0usize..200) {
        let rt = scenario::runtime();
        let r = rt.block_on(async { fairness::round_robin(&backend().0, workers, tasks).await });
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// Random: uniform by a chi-square test, and the same seed gives the same sequence.
    #[test]
    fn random_is_uniform_and_reproducible(seed in any::<u64>(), workers in 2usize..10) {
        let rt = scenario::runtime();
        let r = rt.block_on(async { fairness::random(&backend().0, seed, workers, 1_500).await });
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        let again = rt.block_on(async {
            let weights = vec![1; workers];
            let pool = fairness::Pool { queue: "r", strategy: Strategy::Random, seed, weights: &weights, capacity: 100 };
            let a = fairness::assign(&backend().0, &pool, 50, None).await;
            let b = fairness::assign(&backend().0, &pool, 50, None).await;
            (a, b)
        });
        prop_assert_eq!(again.0, again.1);
    }

    /// Weighted: every worker's count stays within 2 of N·wᵢ/W at every prefix (the bound
    /// documented on `switchyard_core::strategy::Weighted`; 1.875 is reached in this range).
    #[test]
    fn weighted_follows_weights(weights in proptest::collection::vec(1u32..12, 1..7), tasks in 1usize..400) {
        let rt = scenario::runtime();
        let r = rt.block_on(async { fairness::weighted(&backend().0, &weights, tasks, 2.0).await });
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// Least-loaded: never picks a worker with a higher load ratio than another eligible one.
    #[test]
    fn least_loaded_picks_the_lowest_ratio(
        capacities in proptest::collection::vec(1u32..6, 1..6),
        steps in proptest::collection::vec(any::<bool>(), 1..120),
    ) {
        let rt = scenario::runtime();
        let r = rt.block_on(async { fairness::least_loaded(&backend().0, &capacities, &steps).await });
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// Affinity: same key, same worker; on a join only keys to the newcomer move, and their
    /// fraction is within `fairness::join_move_bounds`; on a leave only the leaver's keys move.
    #[test]
    fn affinity_is_sticky_and_moves_little(workers in 2usize..8, keys in 1usize..400, vnodes in 1u16..=128) {
        let rt = scenario::runtime();
        let r = rt.block_on(async { fairness::affinity(&backend().0, workers, keys, vnodes).await });
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// Affinity with enough vnodes and keys: a join moves at most 2.5/(w+1) of the keys. The
    /// ring and keys are fixed by their names, so this cannot flake: over this whole range the
    /// largest fraction seen is 1.5/(w+1) (see `fairness::join_move_bounds` for the theory).
    #[test]
    fn affinity_join_moves_about_one_share(workers in 2usize..8, keys in 300usize..600, vnodes in 32u16..=128) {
        let rt = scenario::runtime();
        let moved = rt
            .block_on(async { fairness::affinity(&backend().0, workers, keys, vnodes).await })
            .map_err(TestCaseError::fail)?;
        let share = 1.0 / (workers as f64 + 1.0);
        prop_assert!(moved <= 2.5 * share, "a join moved {moved:.3} of the keys, fair share {share:.3}");
        prop_assert!(moved > 0.0, "the newcomer took no keys");
    }

    /// Policy order: a queue drained by one worker of capacity 1 releases its tasks sorted by
    /// (policy key, submit order).
    #[test]
    fn drain_order_follows_the_policy(
        policy in scenario::any_policy(),
        tasks in proptest::collection::vec((any::<u16>(), 0u32..1_000, 0u64..50), 1..60),
    ) {
        let rt = scenario::runtime();
        let r: Result<(), String> = rt.block_on(async {
            let (b, clock) = backend();
            let q = QueueName::new("order").map_err(|e| e.to_string())?;
            b.declare_queue(&q, QueueConfig::new(policy, Strategy::RoundRobin)).await.map_err(|e| e.to_string())?;
            let mut ids = TaskIdGenerator::new(1);
            let mut expected = Vec::new();
            for (seq, (priority, cost, wait)) in tasks.iter().enumerate() {
                clock.advance(Duration::from_millis(*wait));
                let spec = TaskSpec::builder("order", "job")
                    .id(ids.next_at(clock.now_ms()))
                    .priority(*priority)
                    .cost_hint(Duration::from_millis(u64::from(*cost)))
                    .build().map_err(|e| e.to_string())?;
                let key = policy.sort_key(&switchyard_core::policy::KeyInput {
                    priority: *priority, cost_ms: *cost, enqueued_at: clock.now_ms(), deadline: None,
                });
                expected.push((key, seq, spec.id()));
                b.submit(spec).await.map_err(|e| e.to_string())?;
            }
            expected.sort();
            let w = me("drainer");
            b.register_worker(test_worker("drainer", ["order"])).await.map_err(|e| e.to_string())?;
            let mut got = Vec::new();
            loop {
                let d = b.receive(&w, 1).await.map_err(|e| e.to_string())?;
                let Some(d) = d.into_iter().next() else { break };
                got.push(d.lease.task);
                b.complete(&d.lease, Vec::new()).await.map_err(|e| e.to_string())?;
            }
            let want: Vec<_> = expected.into_iter().map(|(_, _, id)| id).collect();
            if got != want { return Err(format!("drained {got:?}, expected {want:?}")); }
            Ok(())
        });
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// SJF on one worker of capacity 1, every task present at t = 0, gives the smallest mean
    /// waiting time of any order (brute force over all permutations).
    #[test]
    fn sjf_minimises_mean_wait(costs in proptest::collection::vec(1u64..1_000, 1..=7)) {
        let rt = scenario::runtime();
        let r: Result<(u64, u64), String> = rt.block_on(async {
            let (b, clock) = backend();
            let q = QueueName::new("sjf").map_err(|e| e.to_string())?;
            b.declare_queue(&q, QueueConfig::new(Policy::SJF, Strategy::RoundRobin)).await.map_err(|e| e.to_string())?;
            let mut ids = TaskIdGenerator::new(3);
            for c in &costs {
                let spec = TaskSpec::builder("sjf", "job").id(ids.next_at(START_MS))
                    .cost_hint(Duration::from_millis(*c)).build().map_err(|e| e.to_string())?;
                b.submit(spec).await.map_err(|e| e.to_string())?;
            }
            let w = me("solo");
            b.register_worker(test_worker("solo", ["sjf"])).await.map_err(|e| e.to_string())?;
            let mut total_wait = 0;
            loop {
                let d = b.receive(&w, 1).await.map_err(|e| e.to_string())?;
                let Some(d) = d.into_iter().next() else { break };
                total_wait += clock.now_ms() - START_MS;
                let info = b.get_task(d.lease.task).await.map_err(|e| e.to_string())?.ok_or("task gone")?;
                clock.advance(Duration::from_millis(u64::from(info.cost_ms)));
                b.complete(&d.lease, Vec::new()).await.map_err(|e| e.to_string())?;
            }
            Ok((total_wait, best_total_wait(&costs)))
        });
        let (sjf, best) = r.map_err(TestCaseError::fail)?;
        prop_assert_eq!(sjf, best);
    }
}

/// The smallest total waiting time over every order of `costs`, by brute force.
fn best_total_wait(costs: &[u64]) -> u64 {
    fn go(rest: &mut Vec<u64>, elapsed: u64, acc: u64, best: &mut u64) {
        if rest.is_empty() {
            *best = (*best).min(acc);
            return;
        }
        for i in 0..rest.len() {
            let c = rest.remove(i);
            go(rest, elapsed + c, acc + elapsed, best);
            rest.insert(i, c);
        }
    }
    let mut best = u64::MAX;
    go(&mut costs.to_vec(), 0, 0, &mut best);
    best
}
