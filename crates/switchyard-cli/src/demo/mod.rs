//! `switchyard demo`: a discrete-event simulation of workers and tasks on the memory backend.
//!
//! Every strategy (or the ones asked for) runs the same workload — the same workers, the same
//! arrivals, the same costs — on a fresh backend with a simulated clock, once per policy asked
//! for, so the same seed prints the same numbers. Progress bars and wall-clock timings go to
//! standard error, and only when the bars are drawn (a terminal, without `--no-progress`).

mod report;
mod sim;

use std::io::Write;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use switchyard::{Policy, Strategy};

pub use sim::{Workload, simulate};

/// Flags of `switchyard demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of simulated workers. Each gets a random capacity (1, 2, 4 or 8 slots), a random
    /// speed (0.5x to 2x) and a weight of capacity x speed x 10.
    #[arg(long, short = 'w', default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,

    /// Number of tasks. Each has a random priority (0-9) and a random cost hint (exponential,
    /// mean 100 ms at speed 1x); its real run time varies +-20% around the hint.
    #[arg(long, short = 'n', default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub tasks: u64,

    /// Dispatch strategies to compare, comma-separated: round-robin, random, weighted,
    /// least-loaded, affinity, affinity:VNODES, pull. Default: all of them.
    #[arg(long, short = 's', value_delimiter = ',')]
    pub strategy: Vec<Strategy>,

    /// Scheduling policies of the queue to compare, comma-separated: fcfs, priority,
    /// priority:STEP_MS (with aging), sjf, sjf:FACTOR (with aging). Every strategy runs under
    /// each policy, and each policy gets its own table.
    #[arg(long, short = 'p', value_delimiter = ',', default_value = "fcfs")]
    pub policy: Vec<Policy>,

    /// Offered load as a fraction of the workers' total capacity (arrival rate / service rate).
    /// Above 1.0 a backlog builds up.
    #[arg(long, default_value_t = 0.6)]
    pub load: f64,

    /// Seed for the workload and for the random strategy. The same seed prints the same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Number of distinct affinity keys (tasks are spread over them uniformly).
    #[arg(long, default_value_t = 64)]
    pub keys: u32,

    /// Do not draw progress bars on standard error, nor the wall-time line after each run.
    /// They are drawn only when standard error is a terminal anyway.
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs the demo and prints the report to standard output.
pub fn run(args: &DemoArgs) -> Result<(), String> {
    if !(args.load > 0.0 && args.load <= 10.0) {
        return Err(format!("--load {} is outside (0, 10]", args.load));
    }
    if args.keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    let strategies: Vec<Strategy> = if args.strategy.is_empty() {
        Strategy::ALL.to_vec()
    } else {
        args.strategy.clone()
    };
    let policies: Vec<Policy> = if args.policy.is_empty() {
        vec![Policy::Fcfs]
    } else {
        args.policy.clone()
    };
    let workload = Workload::generate(args.workers, args.tasks, args.load, args.keys, args.seed);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    report::header(&mut out, &workload, &policies, args.seed).map_err(|e| e.to_string())?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let mut tables = Vec::new();
    for (i, &policy) in policies.iter().enumerate() {
        // Name the policy on stderr only when there is more than one.
        let label = |strategy: Strategy| {
            if policies.len() > 1 {
                format!("{} / {}", strategy.name(), policy.name())
            } else {
                strategy.name().to_string()
            }
        };
        let mut results = Vec::new();
        for &strategy in &strategies {
            let bar = progress_bar(args, &label(strategy));
            let started = Instant::now();
            let result = runtime
                .block_on(simulate(&workload, strategy, policy, args.seed, |done| {
                    bar.set_position(done)
                }))
                .map_err(|e| format!("{} simulation failed: {e}", label(strategy)))?;
            bar.finish_and_clear();
            // Wall time differs from run to run: it goes with the progress bars, so that
            // standard output and error stay the same for a seed when no bar is drawn.
            if !bar.is_hidden() {
                eprintln!(
                    "{:>13}: simulated {} tasks in {:.2} s of wall time",
                    label(strategy),
                    workload.tasks.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            results.push(result);
        }
        if i > 0 {
            writeln!(out).map_err(|e| e.to_string())?;
        }
        let rows =
            report::table(&mut out, &workload, &results, policy).map_err(|e| e.to_string())?;
        tables.push((policy, rows));
        out.flush().map_err(|e| e.to_string())?;
    }
    report::verdict(&mut out, &tables).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    Ok(())
}

fn progress_bar(args: &DemoArgs, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(args.tasks), ProgressDrawTarget::stderr());
    if args.no_progress {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{prefix:>13} [{bar:40}] {pos}/{len} tasks ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    use super::DemoArgs;

    /// Every flag `DemoArgs` defines has a description, and `--help` shows it (so the process
    /// test in `tests/demo.rs`, which checks named flags, cannot miss a new one unnoticed).
    #[test]
    fn every_flag_is_explained_in_help() {
        let mut command = DemoArgs::augment_args(Command::new("demo"));
        let help = command.render_help().to_string();
        let mut flags = 0;
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            flags += 1;
            let about = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(!about.trim().is_empty(), "--{long} has no description");
            let line = help
                .lines()
                .find(|l| l.contains(&format!("--{long}")))
                .unwrap_or_else(|| panic!("--{long} is missing from --help:\n{help}"));
            let first_words: String = about
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(line.contains(&first_words), "--{long}: {line}");
        }
        assert!(flags >= 9, "{flags} flags (8 of ours and --help)");
    }
}
