//! The fairness property of each dispatch strategy (`docs/architecture.md`, "Strategies"), as checks over any backend.
//!
//! Each check declares a fresh queue on the backend it is given, registers workers, drives
//! tasks through it and returns the assignment data it observed, or a description of the
//! violation. The same checks run on the memory backend and on Redis.

use std::collections::BTreeMap;

use switchyard_core::prelude::*;
use switchyard_core::{
    Policy, QueueConfig, QueueName, Strategy, TaskIdGenerator, TaskSpec, WorkerId, WorkerRef,
    WorkerSpec,
};

use crate::scenario::instance_token;

/// How many tasks each worker received, by worker.
pub type Counts = BTreeMap<WorkerId, u64>;

fn name(prefix: &str, i: usize) -> Result<WorkerId, String> {
    WorkerId::new(format!("{prefix}{i:03}")).map_err(|e| e.to_string())
}

/// The spec of a worker these checks register: one fixed instance token, so that later calls
/// can name the worker ([`me`]).
fn spec(id: &WorkerId, queue: &str) -> Result<WorkerSpec, String> {
    Ok(WorkerSpec::new(id.as_str(), [queue])
        .map_err(|e| e.to_string())?
        .instance(instance_token(0)))
}

/// A worker registered with [`spec`], as it names itself.
fn me(id: &WorkerId) -> WorkerRef {
    WorkerRef {
        id: id.clone(),
        instance: instance_token(0),
    }
}

/// A queue and the workers serving it, for [`assign`].
#[derive(Debug, Clone)]
pub struct Pool<'a> {
    /// Queue name; workers are named `<queue>-w000` ….
    pub queue: &'a str,
    /// The queue's strategy.
    pub strategy: Strategy,
    /// The queue's seed.
    pub seed: u64,
    /// One worker per weight.
    pub weights: &'a [u32],
    /// Every worker's capacity.
    pub capacity: u32,
}

/// Declares the pool's queue, registers its workers, submits `tasks` tasks and returns who got
/// each (in submit order). Tasks use affinity keys from `key` when given.
pub async fn assign<B: Backend>(
    backend: &B,
    pool: &Pool<'_>,
    tasks: usize,
    key: Option<&dyn Fn(usize) -> String>,
) -> Result<Vec<Option<WorkerId>>, String> {
    let queue = pool.queue;
    let q = QueueName::new(queue).map_err(|e| e.to_string())?;
    backend
        .declare_queue(
            &q,
            QueueConfig::new(Policy::Fcfs, pool.strategy).with_seed(pool.seed),
        )
        .await
        .map_err(|e| e.to_string())?;
    for (i, w) in pool.weights.iter().enumerate() {
        let spec = spec(&name(&format!("{queue}-w"), i)?, queue)?
            .capacity(pool.capacity)
            .weight(*w);
        backend
            .register_worker(spec)
            .await
            .map_err(|e| e.to_string())?;
    }
    submit_n(backend, queue, tasks, key, pool.seed).await
}

/// Submits `tasks` tasks to `queue` and returns who got each.
pub async fn submit_n<B: Backend>(
    backend: &B,
    queue: &str,
    tasks: usize,
    key: Option<&dyn Fn(usize) -> String>,
    seed: u64,
) -> Result<Vec<Option<WorkerId>>, String> {
    let mut ids = TaskIdGenerator::new(seed ^ 0xA5A5);
    let mut out = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let mut b = TaskSpec::builder(queue, "job").id(ids.next_at(1_700_000_000_000));
        if let Some(k) = key {
            b = b.affinity_key(k(i));
        }
        let spec = b.build().map_err(|e| e.to_string())?;
        out.push(
            backend
                .submit(spec)
                .await
                .map_err(|e| e.to_string())?
                .assigned,
        );
    }
    Ok(out)
}

/// The ids of the pool's workers, `<queue>-w000` …, in registration (and id) order.
pub fn worker_ids(pool: &Pool<'_>) -> Result<Vec<WorkerId>, String> {
    (0..pool.weights.len())
        .map(|i| name(&format!("{}-w", pool.queue), i))
        .collect()
}

/// Counts assignments per worker. Every worker of `workers` is counted from zero, so one that
/// received nothing shows up with 0 (a starved worker is visible in `min`); an assignment to a
/// worker outside `workers` is counted too.
pub fn counts(workers: &[WorkerId], assigned: &[Option<WorkerId>]) -> Counts {
    let mut c: Counts = workers.iter().map(|w| (w.clone(), 0)).collect();
    for w in assigned.iter().flatten() {
        *c.entry(w.clone()).or_default() += 1;
    }
    c
}

/// Round-robin: with every worker eligible throughout, the assignment counts of all registered
/// workers (those that got nothing included) differ by at most one after every task, not just
/// at the end.
pub async fn round_robin<B: Backend>(
    backend: &B,
    workers: usize,
    tasks: usize,
) -> Result<Counts, String> {
    let weights = vec![1; workers];
    let pool = Pool {
        queue: "fair-rr",
        strategy: Strategy::RoundRobin,
        seed: 0,
        weights: &weights,
        // Room for every task: all workers stay eligible throughout.
        capacity: tasks as u32 + 1,
    };
    let assigned = assign(backend, &pool, tasks, None).await?;
    let ids = worker_ids(&pool)?;
    let mut c = counts(&ids, &[]);
    for (n, w) in assigned.iter().enumerate() {
        let w = w
            .as_ref()
            .ok_or_else(|| format!("task {n} was not dispatched although every worker had room"))?;
        *c.get_mut(w)
            .ok_or_else(|| format!("task {n} went to {w}, which is not registered"))? += 1;
        let (min, max) = (
            c.values().min().copied().unwrap_or(0),
            c.values().max().copied().unwrap_or(0),
        );
        if max - min > 1 {
            return Err(format!(
                "after {} tasks, round-robin counts differ by {}: {c:?}",
                n + 1,
                max - min
            ));
        }
    }
    Ok(c)
}

/// The upper critical value of the chi-square distribution with `dof` degrees of freedom at
/// significance `1e-6` (Wilson–Hilferty approximation, z = 4.7534).
pub fn chi_square_critical(dof: usize) -> f64 {
    let k = dof as f64;
    let z = 4.7534;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

/// Random: the counts pass a chi-square test of uniformity at significance 1e-6; returns the
/// statistic and the critical value.
pub async fn random<B: Backend>(
    backend: &B,
    seed: u64,
    workers: usize,
    tasks: usize,
) -> Result<(f64, f64), String> {
    let weights = vec![1; workers];
    let pool = Pool {
        queue: "fair-random",
        strategy: Strategy::Random,
        seed,
        weights: &weights,
        capacity: tasks as u32 + 1,
    };
    let assigned = assign(backend, &pool, tasks, None).await?;
    let c = counts(&worker_ids(&pool)?, &assigned);
    if c.len() != workers {
        return Err(format!("a task went to a worker outside the pool: {c:?}"));
    }
    let expected = tasks as f64 / workers as f64;
    let stat: f64 = c
        .values()
        .map(|observed| (*observed as f64 - expected).powi(2) / expected)
        .sum();
    let critical = chi_square_critical(workers - 1);
    if stat > critical {
        return Err(format!(
            "chi-square {stat:.2} > {critical:.2} for {workers} workers: {c:?}"
        ));
    }
    Ok((stat, critical))
}

/// Weighted: each worker's count stays within `bound` of `N · wᵢ / W`; returns the largest
/// deviation seen.
pub async fn weighted<B: Backend>(
    backend: &B,
    weights: &[u32],
    tasks: usize,
    bound: f64,
) -> Result<f64, String> {
    let pool = Pool {
        queue: "fair-weighted",
        strategy: Strategy::Weighted,
        seed: 0,
        weights,
        capacity: tasks as u32 + 1,
    };
    let assigned = assign(backend, &pool, tasks, None).await?;
    let total: u32 = weights.iter().sum();
    let mut worst: f64 = 0.0;
    // Check every prefix, not just the end: the bound must hold all along.
    let mut running = vec![0u64; weights.len()];
    for (n, w) in assigned.iter().enumerate() {
        let w = w.as_ref().ok_or("a task was not dispatched")?;
        let i = w
            .as_str()
            .rsplit('w')
            .next()
            .and_then(|d| d.parse::<usize>().ok())
            .ok_or("worker name")?;
        running[i] += 1;
        for (j, c) in running.iter().enumerate() {
            let ideal = (n + 1) as f64 * f64::from(weights[j]) / f64::from(total);
            worst = worst.max((*c as f64 - ideal).abs());
        }
    }
    if worst > bound {
        return Err(format!(
            "weighted share off by {worst:.2} > {bound} (weights {weights:?})"
        ));
    }
    Ok(worst)
}

/// Least-loaded: over a random mix of submits and completions, every dispatch at submit goes to
/// a worker that had a free slot and whose load ratio is the smallest among eligible workers.
pub async fn least_loaded<B: Backend>(
    backend: &B,
    capacities: &[u32],
    steps: &[bool],
) -> Result<usize, String> {
    let queue = "fair-ll";
    let q = QueueName::new(queue).map_err(|e| e.to_string())?;
    backend
        .declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::LeastLoaded))
        .await
        .map_err(|e| e.to_string())?;
    let mut workers = Vec::new();
    for (i, cap) in capacities.iter().enumerate() {
        let id = name("fair-ll-w", i)?;
        let spec = spec(&id, queue)?.capacity(*cap);
        backend
            .register_worker(spec)
            .await
            .map_err(|e| e.to_string())?;
        workers.push(id);
    }
    let mut ids = TaskIdGenerator::new(7);
    let mut checked = 0;
    let mut leases = Vec::new();
    for (n, submit) in steps.iter().enumerate() {
        if *submit || leases.is_empty() {
            let stats = backend.stats().await.map_err(|e| e.to_string())?;
            let ratio = |w: &WorkerId| {
                stats
                    .workers
                    .iter()
                    .find(|s| &s.id == w)
                    .map(|s| (s.inflight, s.capacity))
            };
            let spec = TaskSpec::builder(queue, "job")
                .id(ids.next_at(1_700_000_000_000))
                .build()
                .map_err(|e| e.to_string())?;
            let out = backend.submit(spec).await.map_err(|e| e.to_string())?;
            if let Some(chosen) = out.assigned {
                let (ci, cc) = ratio(&chosen).ok_or("chosen worker has no stats")?;
                // The chosen worker itself was eligible: it had a free slot before the submit.
                if ci >= cc {
                    return Err(format!(
                        "step {n}: picked {chosen}, which was full at {ci}/{cc}"
                    ));
                }
                for w in &workers {
                    let (i, c) = ratio(w).ok_or("worker has no stats")?;
                    // chosen/cc <= i/c for every eligible worker (i < c)
                    if i < c && u64::from(ci) * u64::from(c) > u64::from(i) * u64::from(cc) {
                        return Err(format!(
                            "step {n}: picked {chosen} at {ci}/{cc} while {w} was at {i}/{c}"
                        ));
                    }
                }
                checked += 1;
                let got = backend
                    .receive(&me(&chosen), 16)
                    .await
                    .map_err(|e| e.to_string())?;
                leases.extend(got.into_iter().map(|d| d.lease));
            }
        } else {
            let lease = leases.remove(n % leases.len());
            backend
                .complete(&lease, Vec::new())
                .await
                .map_err(|e| e.to_string())?;
            let got = backend
                .receive(&me(&lease.worker), 16)
                .await
                .map_err(|e| e.to_string())?;
            leases.extend(got.into_iter().map(|d| d.lease));
        }
    }
    Ok(checked)
}

/// `ln(1/δ)` with `δ = 10⁻⁶`: the chance, per tail, that a correct ring fails
/// [`join_move_bounds`].
const LN_INV_DELTA: f64 = 13.815_510_557_964_274;

/// Kullback–Leibler divergence of Bernoulli(`b`) from Bernoulli(`a`): `KL(a ‖ b)`.
fn kl(a: f64, b: f64) -> f64 {
    if b <= 0.0 || b >= 1.0 {
        return if a == b { 0.0 } else { f64::INFINITY };
    }
    let mut d = 0.0;
    if a > 0.0 {
        d += a * (a / b).ln();
    }
    if a < 1.0 {
        d += (1.0 - a) * ((1.0 - a) / (1.0 - b)).ln();
    }
    d
}

/// The point closest to `outside` that still satisfies `ok`, by bisection from `inside`
/// (which satisfies it); `ok` must hold on one interval around `inside`.
fn boundary(inside: f64, outside: f64, ok: impl Fn(f64) -> bool) -> f64 {
    if ok(outside) {
        return outside;
    }
    let (mut a, mut b) = (inside, outside);
    for _ in 0..100 {
        let m = (a + b) / 2.0;
        if ok(m) {
            a = m;
        } else {
            b = m;
        }
    }
    a
}

/// Bounds `(low, high)` on the fraction of `keys` distinct keys that move when one worker joins
/// `existing` workers on an affinity ring of `vnodes` points per worker. Written `c/(w+1)` with
/// `w = existing`, the newcomer's fair share being `1/(w+1)`.
///
/// Why these numbers. Ring points are hashes, so they behave like uniform random points. The
/// keys that move are exactly those falling on the arcs that end at the newcomer's `v` points;
/// the total length `S` of those arcs is the sum of `v` of the `N = (w+1)·v` spacings of the
/// ring, which is Beta(`v`, `w·v`)-distributed with mean `p = 1/(w+1)`. Its Chernoff bound is
/// `P(S ≥ s) ≤ exp(−N·KL(p ‖ s))` for `s > p` (and the same for `S ≤ s`, `s < p`), so `S` stays
/// within `[s₋, s₊]`, the points where `N·KL(p ‖ s) = ln(1/δ)`, except with probability `δ`
/// per side. Given `S`, the number of the `n` keys that move is Binomial(`n`, `S`), whose
/// Chernoff bound `exp(−n·KL(f ‖ s))` puts the moved fraction `f` within `[f₋, f₊]`, the
/// points where `n·KL(f ‖ s∓) = ln(1/δ)`. With `δ = 10⁻⁶` a correct ring fails with
/// probability below `4·10⁻⁶` per case.
///
/// So `c` shrinks as vnodes and keys grow: for `w = 7`, `c ≤ 3.2` at 32 vnodes and 300 keys,
/// `≤ 2.3` at 64 vnodes and 1,000 keys, and `→ 1.72` at 64 vnodes and unlimited keys (the
/// remaining slack is the ring's own spread, about `1/√v`). With few vnodes the bound is rightly
/// loose: with one point per worker, a newcomer can own most of the ring.
///
/// The check is deterministic for given names, so it cannot flake: every combination of
/// `existing` 2..=8, `vnodes` 1..=128 and `keys` 1..=400 of [`affinity`]'s ring was checked
/// when this was written; the worst case used 59% of the allowance above the fair share and 57%
/// of the one below it.
pub fn join_move_bounds(existing: usize, keys: usize, vnodes: u16) -> (f64, f64) {
    let p = 1.0 / (existing as f64 + 1.0);
    let points = (existing as f64 + 1.0) * f64::from(vnodes.max(1));
    let ring_ok = |s: f64| points * kl(p, s) <= LN_INV_DELTA;
    let (s_low, s_high) = (boundary(p, 0.0, ring_ok), boundary(p, 1.0, ring_ok));
    let n = keys as f64;
    (
        boundary(s_low, 0.0, |f| n * kl(f, s_low) <= LN_INV_DELTA),
        boundary(s_high, 1.0, |f| n * kl(f, s_high) <= LN_INV_DELTA),
    )
}

/// Affinity: equal keys go to the same worker while every worker has room; when a worker joins,
/// the keys that move all move to it, and their fraction lies within [`join_move_bounds`]
/// (about `1/(w+1)` of them, neither much more nor none); when a worker leaves, only its keys
/// move. Returns the fraction of keys moved by the join.
pub async fn affinity<B: Backend>(
    backend: &B,
    workers: usize,
    keys: usize,
    vnodes: u16,
) -> Result<f64, String> {
    let queue = "fair-aff";
    let key = |i: usize| format!("user-{}", i % keys);
    let cap = (keys * 8) as u32 + 8;
    let weights = vec![1; workers];
    let pool = Pool {
        queue,
        strategy: Strategy::Affinity { vnodes },
        seed: 0,
        weights: &weights,
        capacity: cap,
    };
    let first = assign(backend, &pool, keys * 2, Some(&key)).await?;
    let mut owner = BTreeMap::new();
    for (i, w) in first.iter().enumerate() {
        let w = w.clone().ok_or("a task was not dispatched")?;
        if let Some(prev) = owner.insert(key(i), w.clone())
            && prev != w
        {
            return Err(format!("key {} went to {prev} and then to {w}", key(i)));
        }
    }
    // A worker joins.
    let newcomer = name(&format!("{queue}-w"), workers)?;
    let spec = spec(&newcomer, queue)?.capacity(cap);
    backend
        .register_worker(spec)
        .await
        .map_err(|e| e.to_string())?;
    let after_join = submit_n(backend, queue, keys, Some(&key), 11).await?;
    let mut moved = 0;
    for (i, w) in after_join.iter().enumerate() {
        let w = w.clone().ok_or("a task was not dispatched")?;
        let before = owner.get(&key(i)).ok_or("unknown key")?;
        if &w != before {
            if w != newcomer {
                return Err(format!(
                    "on join, key {} moved from {before} to {w}, not to the newcomer",
                    key(i)
                ));
            }
            moved += 1;
            owner.insert(key(i), w);
        }
    }
    let fraction = moved as f64 / keys as f64;
    let (low, high) = join_move_bounds(workers, keys, vnodes);
    if !(low..=high).contains(&fraction) {
        return Err(format!(
            "on join, {moved} of {keys} keys moved to the newcomer; with {workers} workers and \
             {vnodes} vnodes it should be {:.2} to {:.2} keys (fair share {:.2})",
            low * keys as f64,
            high * keys as f64,
            keys as f64 / (workers as f64 + 1.0)
        ));
    }
    // A worker leaves.
    let leaving = name(&format!("{queue}-w"), 0)?;
    backend
        .deregister_worker(&me(&leaving))
        .await
        .map_err(|e| e.to_string())?;
    let after_leave = submit_n(backend, queue, keys, Some(&key), 12).await?;
    for (i, w) in after_leave.iter().enumerate() {
        let w = w.clone().ok_or("a task was not dispatched")?;
        let before = owner.get(&key(i)).ok_or("unknown key")?;
        if &w != before && before != &leaving {
            return Err(format!(
                "on leave, key {} moved from {before} to {w} though {before} stayed",
                key(i)
            ));
        }
    }
    Ok(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `c` in `fraction ≤ c/(w+1)`.
    fn c_high(existing: usize, keys: usize, vnodes: u16) -> f64 {
        join_move_bounds(existing, keys, vnodes).1 * (existing as f64 + 1.0)
    }

    #[test]
    fn join_bounds_match_the_documented_constants() {
        assert!((c_high(7, 300, 32) - 3.18).abs() < 0.01);
        assert!((c_high(7, 1_000, 64) - 2.28).abs() < 0.01);
        assert!((c_high(7, 1 << 40, 64) - 1.72).abs() < 0.01);
        // One point per worker: the newcomer may own nearly everything.
        assert!(c_high(7, 1_000, 1) > 6.0);
    }

    #[test]
    fn join_bounds_bracket_the_fair_share_and_tighten_with_keys_and_vnodes() {
        for existing in 1..9 {
            let share = 1.0 / (existing as f64 + 1.0);
            let mut last = (0.0, 1.0);
            for keys in [10, 100, 1_000, 10_000] {
                let (low, high) = join_move_bounds(existing, keys, 64);
                assert!(
                    low < share && share < high,
                    "{existing} {keys}: {low} {high}"
                );
                assert!(low >= last.0 && high <= last.1, "more keys, tighter bounds");
                last = (low, high);
            }
            let (loose, tight) = (
                join_move_bounds(existing, 1_000, 8),
                join_move_bounds(existing, 1_000, 128),
            );
            assert!(
                tight.0 > loose.0 && tight.1 < loose.1,
                "more vnodes, tighter bounds"
            );
        }
        // A single key either moves or not.
        assert_eq!(join_move_bounds(3, 1, 16), (0.0, 1.0));
    }
}
