//! The `switchyard` command.
//!
//! * `switchyard demo` — watch load balancing happen on the embedded memory backend, with a
//!   simulated clock (no Redis needed).
//! * `switchyard bench --url <redis>` — measure what tasks cost a real Redis.

mod bench;
mod demo;

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
    /// Measure what tasks cost a real Redis: CPU per lifecycle, growth, throughput, memory.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}
