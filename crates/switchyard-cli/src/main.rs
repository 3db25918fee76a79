//! The `switchyard` command.
//!
//! * `switchyard demo` — watch load balancing happen on the embedded memory backend, with a
//!   simulated clock (no Redis needed).

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}
