//! The `switchyard` command.
//!
//! * `switchyard demo` — watch load balancing happen on the embedded memory backend, with a
//!   simulated clock (no Redis needed).
//! * `switchyard declare`, `submit`, `worker` — run Switchyard on a Redis: declare queues,
//!   submit tasks, run worker processes with built-in handlers;
//! * `switchyard status`, `task`, `dead`, `events` — look at (and act on) what is there;
//! * `switchyard pause`, `resume`, `purge`, `reconfigure`, `delete-queue` — administer a
//!   queue;
//! * `switchyard dashboard` — a live web view of a namespace (workers, queues, tasks);
//! * `switchyard bench --url <redis>` — measure what tasks cost a real Redis.

mod admin;
mod bench;
mod dashboard;
mod declare;
mod demo;
mod groups;
mod health;
mod inspect;
mod remote;
mod schedule;
mod submit;
mod tree;
mod views;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Distributed task scheduling with load balancing.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate workers and tasks on the embedded memory backend and compare dispatch strategies.
    Demo(demo::DemoArgs),
    /// Declare a queue on Redis: its policy, strategy, retries and retention.
    Declare(declare::DeclareArgs),
    /// Submit tasks to a queue (one or many), optionally waiting for their outcomes.
    Submit(submit::SubmitArgs),
    /// Run a worker process with the built-in handlers echo, sleep and fail, until SIGINT or
    /// SIGTERM (then it shuts down gracefully).
    Worker(worker::WorkerArgs),
    /// Show queues (tasks by state) and live workers.
    Status(inspect::StatusArgs),
    /// Show one task (state, times, payload, result, its events); cancel, re-drive or delete
    /// it, or wait for its outcome.
    Task(inspect::TaskArgs),
    /// List a queue's tasks in one state, a page at a time (by kind, by id prefix, oldest or
    /// newest first); re-drive, cancel or delete all of them.
    Tasks(inspect::TasksArgs),
    /// List a queue's dead-letter set (oldest first); re-drive it.
    Dead(inspect::DeadArgs),
    /// Read the event log (which events are kept is set per queue: `declare --events`).
    Events(inspect::EventsArgs),
    /// Pause a queue: nothing is dispatched from it; submissions wait, running tasks finish.
    Pause(admin::QueueArgs),
    /// Resume a paused queue: what waits is dispatched at once.
    Resume(admin::QueueArgs),
    /// Empty a queue of its waiting tasks (cancelled), its dead-letter set or its finished
    /// tasks (deleted), in bounded steps.
    Purge(admin::PurgeArgs),
    /// Change a declared queue's settings, keeping those not given; shows what changed.
    Reconfigure(admin::ReconfigureArgs),
    /// Delete a queue that holds no task and that no worker serves.
    DeleteQueue(admin::QueueArgs),
    /// The groups (tenants) of a queue declared with --fair-share: weights, ready and active
    /// tasks, turns; set a group's weight.
    Groups(groups::GroupsArgs),
    /// Named schedules that create one task per tick (cron with seconds in a time zone, or an
    /// interval): add, list, show, pause, resume, remove, or run a ticker.
    Schedule(schedule::ScheduleArgs),
    /// Serve a live web view of a namespace: queues, workers and their share of the work,
    /// tasks, dead letters (acting on them with `--allow-actions`).
    Dashboard(dashboard::DashboardArgs),
    /// Measure what tasks cost a real Redis: CPU per lifecycle, growth, throughput, memory.
    Bench(bench::BenchArgs),
}

/// Whether a failure is a write to our output failing because its reader went away (`| head`):
/// the bare I/O error of a `write!` to stdout (errors of Redis connections always come with
/// what was being done, so they never start this way).
fn reader_gone(message: &str) -> bool {
    message.starts_with("Broken pipe")
}

/// A command whose reader goes away (`switchyard status | head -1`) stops quietly, as Unix
/// tools do, instead of panicking in `println!` or printing the write error.
fn stop_quietly_when_the_reader_goes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout: Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    stop_quietly_when_the_reader_goes();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Declare(args) => declare::run(&args),
        Command::Schedule(args) => {
            init_logging();
            schedule::run(&args)
        }
        Command::Submit(args) => submit::run(&args),
        Command::Worker(args) => {
            init_logging();
            worker::run(&args)
        }
        Command::Status(args) => inspect::status(&args),
        Command::Task(args) => inspect::task(&args),
        Command::Tasks(args) => inspect::tasks(&args),
        Command::Dead(args) => inspect::dead(&args),
        Command::Events(args) => inspect::events(&args),
        Command::Groups(args) => groups::run(&args),
        Command::Pause(args) => admin::pause(&args, true),
        Command::Resume(args) => admin::pause(&args, false),
        Command::Purge(args) => admin::purge(&args),
        Command::Reconfigure(args) => admin::reconfigure(&args),
        Command::DeleteQueue(args) => admin::delete_queue(&args),
        Command::Dashboard(args) => {
            init_logging();
            dashboard::run(&args)
        }
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if reader_gone(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, at `info` unless `RUST_LOG` says otherwise. The redis crate's own lines
/// are kept to errors unless `RUST_LOG` names it: while a Cluster node is down its recovery
/// logs hundreds of lines a second, and Switchyard says what matters itself (throttled).
fn init_logging() {
    let given = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if !given
        .split(',')
        .any(|d| d.trim_start().starts_with("redis"))
        && let Ok(quiet) = "redis=error".parse()
    {
        filter = filter.add_directive(quiet);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
