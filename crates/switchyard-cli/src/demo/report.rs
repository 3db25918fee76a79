//! Printing the demo's results.

use std::io::{self, Write};

use switchyard::Policy;

use super::sim::{MEAN_COST_MS, SimResult, Workload};

const BAR_WIDTH: usize = 32;

/// The workload summary and the worker table.
pub fn header(
    out: &mut impl Write,
    w: &Workload,
    policies: &[Policy],
    seed: u64,
) -> io::Result<()> {
    let span_s = w.tasks.last().map_or(0.0, |t| t.arrival_ms as f64 / 1000.0);
    writeln!(
        out,
        "Switchyard demo: memory backend, simulated clock, seed {seed}"
    )?;
    writeln!(
        out,
        "{} workers ({} slots), {} tasks arriving over {span_s:.1} s (offered load {:.0}% of capacity), {} {}",
        w.workers.len(),
        w.slots(),
        w.tasks.len(),
        w.load * 100.0,
        if policies.len() == 1 {
            "policy"
        } else {
            "policies"
        },
        policies
            .iter()
            .map(Policy::name)
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        out,
        "task costs: exponential, mean {MEAN_COST_MS:.0} ms at speed 1x; priorities 0-9 uniform"
    )?;
    writeln!(out)?;
    writeln!(out, "  worker  slots  speed  weight")?;
    for wk in &w.workers {
        writeln!(
            out,
            "  {:<6} {:>6} {:>5.2}x {:>7}",
            wk.id, wk.capacity, wk.speed, wk.weight
        )?;
    }
    writeln!(out)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mean(values: impl Iterator<Item = u64>) -> f64 {
    let (sum, n) = values.fold((0u128, 0u64), |(s, n), v| (s + u128::from(v), n + 1));
    if n == 0 { 0.0 } else { sum as f64 / n as f64 }
}

/// Jain's fairness index of `x`: 1 when all equal, 1/n when one takes everything.
pub fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let squares: f64 = x.iter().map(|v| v * v).sum();
    if squares == 0.0 {
        return 1.0;
    }
    sum * sum / (x.len() as f64 * squares)
}

/// The comparison table of one policy, under a heading naming it, then waits by class and
/// per-worker share bars.
pub fn table(
    out: &mut impl Write,
    w: &Workload,
    results: &[SimResult],
    policy: Policy,
) -> io::Result<Vec<Row>> {
    let title = format!("policy {}", policy.name());
    writeln!(out, "{title}")?;
    writeln!(out, "{}", "=".repeat(title.chars().count()))?;
    writeln!(
        out,
        "{:<13} {:>8} {:>9} {:>10} {:>9} {:>12} {:>11} {:>8}",
        "strategy",
        "tasks/s",
        "makespan",
        "mean wait",
        "p99 wait",
        "mean latency",
        "p99 latency",
        "Jain(w)"
    )?;
    let mut rows = Vec::new();
    for r in results {
        let row = Row::of(w, r);
        writeln!(
            out,
            "{:<13} {:>8.1} {:>7.2} s {:>7.1} ms {:>6} ms {:>9.1} ms {:>8} ms {:>8.3}",
            r.strategy.name(),
            row.tasks_per_s,
            row.makespan_s,
            row.mean_wait_ms,
            row.p99_wait_ms,
            row.mean_latency_ms,
            row.p99_latency_ms,
            row.jain
        )?;
        rows.push(row);
    }
    writeln!(out)?;
    writeln!(
        out,
        "tasks/s: simulated throughput; wait: arrival to start; latency: arrival to completion;\nJain(w): Jain's index of tasks per unit of weight (1 = shares exactly proportional to weights)\nstrategies choose among idle slots: a slot freed while tasks wait takes the next one whatever the\nstrategy, so under overload (--load above 1) the strategies behave alike"
    )?;
    class_waits(out, w, results, policy)?;
    writeln!(out)?;
    writeln!(
        out,
        "share of tasks per worker (| marks the worker's share of total weight)"
    )?;
    let total_weight: u32 = w.workers.iter().map(|wk| wk.weight).sum();
    for r in results {
        writeln!(out, "{}", r.strategy.name())?;
        let total: u64 = r.tasks_per_worker.iter().sum();
        for (n, wk) in r.tasks_per_worker.iter().zip(&w.workers) {
            let share = *n as f64 / total.max(1) as f64;
            let weight_share = f64::from(wk.weight) / f64::from(total_weight.max(1));
            writeln!(
                out,
                "  {:<5} {} {:>5.1}% (weight {:>4.1}%, busy {:>3.0}%)",
                wk.id,
                bar(share, weight_share, results_max_share(results)),
                share * 100.0,
                weight_share * 100.0,
                100.0 * r.busy_ms[w.workers.iter().position(|x| x.id == wk.id).unwrap_or(0)] as f64
                    / (r.makespan_ms as f64 * f64::from(wk.capacity))
            )?;
        }
    }
    Ok(rows)
}

/// One strategy's figures in a policy's table.
#[derive(Debug, Clone)]
pub struct Row {
    pub strategy: &'static str,
    pub tasks_per_s: f64,
    pub makespan_s: f64,
    pub mean_wait_ms: f64,
    pub p99_wait_ms: u64,
    pub mean_latency_ms: f64,
    pub p99_latency_ms: u64,
    /// Jain's index of tasks per unit of weight.
    pub jain: f64,
}

impl Row {
    fn of(w: &Workload, r: &SimResult) -> Row {
        let mut waits = r.waits.clone();
        waits.sort_unstable();
        let mut latencies = r.latencies.clone();
        latencies.sort_unstable();
        let relative: Vec<f64> = r
            .tasks_per_worker
            .iter()
            .zip(&w.workers)
            .map(|(n, wk)| *n as f64 / f64::from(wk.weight))
            .collect();
        Row {
            strategy: r.strategy.name(),
            tasks_per_s: r.waits.len() as f64 / (r.makespan_ms as f64 / 1000.0),
            makespan_s: r.makespan_ms as f64 / 1000.0,
            mean_wait_ms: mean(waits.iter().copied()),
            p99_wait_ms: percentile(&waits, 99.0),
            mean_latency_ms: mean(latencies.iter().copied()),
            p99_latency_ms: percentile(&latencies, 99.0),
            jain: jain(&relative),
        }
    }
}

/// The closing verdict: per policy, the fairest strategy (Jain's index closest to 1), the
/// fastest (tasks/s) and the one with the lowest p99 latency, and whether the differences are
/// big enough to matter on this run.
pub fn verdict(out: &mut impl Write, tables: &[(Policy, Vec<Row>)]) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "verdict (this run)")?;
    writeln!(out, "==================")?;
    for (policy, rows) in tables {
        let best = |key: fn(&Row) -> f64| {
            rows.iter()
                .max_by(|a, b| key(a).total_cmp(&key(b)))
                .cloned()
        };
        let (Some(fair), Some(fast), Some(quick)) = (
            best(|r| r.jain),
            best(|r| r.tasks_per_s),
            best(|r| -(r.p99_latency_ms as f64)),
        ) else {
            continue;
        };
        let spread = |key: fn(&Row) -> f64| {
            let (lo, hi) = rows
                .iter()
                .map(key)
                .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
            if hi > 0.0 { (hi - lo) / hi } else { 0.0 }
        };
        writeln!(
            out,
            "{:<14} fairest {} (Jain {:.3}), fastest {} ({:.1} tasks/s),",
            policy.name(),
            fair.strategy,
            fair.jain,
            fast.strategy,
            fast.tasks_per_s,
        )?;
        writeln!(
            out,
            "{:<14} lowest p99 latency {} ({} ms)",
            "", quick.strategy, quick.p99_latency_ms
        )?;
        let close = spread(|r| r.tasks_per_s) < 0.02 && spread(|r| r.p99_latency_ms as f64) < 0.05;
        if close {
            writeln!(
                out,
                "{:<14} (within 2% in throughput and 5% in p99 latency: alike at this load)",
                ""
            )?;
        }
    }
    if tables.len() > 1 {
        let waits: Vec<(String, f64)> = tables
            .iter()
            .map(|(p, rows)| {
                let n = rows.len().max(1) as f64;
                (
                    p.name(),
                    rows.iter().map(|r| r.mean_wait_ms).sum::<f64>() / n,
                )
            })
            .collect();
        if let Some((name, wait)) = waits.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
            let all: Vec<String> = waits
                .iter()
                .map(|(p, w)| format!("{p} {w:.0} ms"))
                .collect();
            writeln!(
                out,
                "across policies: lowest mean wait {name} ({wait:.0} ms; {})",
                all.join(", ")
            )?;
        }
    }
    Ok(())
}

fn results_max_share(results: &[SimResult]) -> f64 {
    results
        .iter()
        .flat_map(|r| {
            let total: u64 = r.tasks_per_worker.iter().sum();
            r.tasks_per_worker
                .iter()
                .map(move |n| *n as f64 / total.max(1) as f64)
        })
        .fold(0.0, f64::max)
}

/// A bar of `share` (scaled so that `max` fills it) with a `|` at `mark`.
fn bar(share: f64, mark: f64, max: f64) -> String {
    let scale = BAR_WIDTH as f64 / max.max(mark).max(1e-9);
    let filled = (share * scale).round() as usize;
    let mark = ((mark * scale).round() as usize).min(BAR_WIDTH);
    (0..=BAR_WIDTH)
        .map(|i| {
            if i == mark {
                '|'
            } else if i < filled {
                '#'
            } else {
                ' '
            }
        })
        .collect()
}

/// Mean wait per class: priority bands under the priority policy, cost terciles under SJF.
fn class_waits(
    out: &mut impl Write,
    w: &Workload,
    results: &[SimResult],
    policy: Policy,
) -> io::Result<()> {
    type Classifier<'a> = Box<dyn Fn(usize) -> usize + 'a>;
    let (title, names, classify): (&str, [&str; 3], Classifier<'_>) = match policy {
        Policy::Priority { .. } => (
            "mean wait by priority",
            ["high 7-9", "mid 3-6", "low 0-2"],
            Box::new(|i| match w.tasks[i].priority {
                7..=9 => 0,
                3..=6 => 1,
                _ => 2,
            }),
        ),
        Policy::ShortestJobFirst { .. } => {
            let mut costs: Vec<u32> = w.tasks.iter().map(|t| t.cost_ms).collect();
            costs.sort_unstable();
            let (a, b) = (costs[costs.len() / 3], costs[2 * costs.len() / 3]);
            (
                "mean wait by cost",
                ["short", "medium", "long"],
                Box::new(move |i| {
                    let c = w.tasks[i].cost_ms;
                    if c <= a {
                        0
                    } else if c <= b {
                        1
                    } else {
                        2
                    }
                }),
            )
        }
        _ => return Ok(()),
    };
    writeln!(out)?;
    writeln!(out, "{title}")?;
    writeln!(
        out,
        "{:<13} {:>12} {:>12} {:>12}",
        "strategy", names[0], names[1], names[2]
    )?;
    for r in results {
        let mut sums = [(0u128, 0u64); 3];
        for (i, wait) in r.waits.iter().enumerate() {
            let c = classify(i);
            sums[c].0 += u128::from(*wait);
            sums[c].1 += 1;
        }
        let m = |k: usize| sums[k].0 as f64 / sums[k].1.max(1) as f64;
        writeln!(
            out,
            "{:<13} {:>9.1} ms {:>9.1} ms {:>9.1} ms",
            r.strategy.name(),
            m(0),
            m(1),
            m(2)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_extremes() {
        assert!((jain(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[1.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
