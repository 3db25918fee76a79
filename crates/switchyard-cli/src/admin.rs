//! Queue administration: `pause`, `resume`, `purge`, `reconfigure`, `delete-queue`.
//!
//! Each says what it did in words; refusals say what stands in the way and what to do about
//! it (the reasons themselves come from `switchyard_core::admin`, shared with the library).

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use switchyard::admin::Purge;
use switchyard::{Client, Error, QueueConfig, QueueStats};
use switchyard_core::display;

use crate::declare::{QueueFlags, settings};
use crate::remote::{Remote, runtime};

/// Flags of `switchyard pause`, `resume` and `delete-queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// The queue.
    pub queue: String,
}

/// Flags of `switchyard purge`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["waiting", "dead", "finished"])))]
pub struct PurgeArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// The queue.
    pub queue: String,

    /// Cancel the tasks waiting to run (ready, scheduled, waiting for a retry); whoever awaits
    /// them learns they were cancelled. Running tasks are left alone.
    #[arg(long)]
    pub waiting: bool,

    /// Delete the dead-letter set.
    #[arg(long)]
    pub dead: bool,

    /// Delete every finished task (succeeded, dead, cancelled) with its result.
    #[arg(long)]
    pub finished: bool,

    /// Tasks removed per step (one atomic call each; other clients go on between steps).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,

    /// Do not ask first (needed when the input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `switchyard reconfigure`.
#[derive(Debug, Args)]
pub struct ReconfigureArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// The queue.
    pub queue: String,

    /// Show what would change, and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub flags: QueueFlags,
}

/// A backend error in words, with what to do for an undeclared queue.
fn said(queue: &str, e: Error) -> String {
    match e {
        Error::UnknownQueue(_) => format!(
            "queue {} is not declared (`switchyard status` lists the queues)",
            display::quoted(queue)
        ),
        other => other.to_string(),
    }
}

/// Pauses (`paused`) or resumes a queue and says what that did.
pub fn pause(args: &QueueArgs, paused: bool) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let shown = display::quoted(&args.queue);
        let result = if paused {
            client.pause(&args.queue).await.map(|()| {
                format!(
                    "queue {shown} paused: nothing is dispatched from it; submissions wait, \
                     running tasks finish (`switchyard resume {}` to go on)",
                    args.queue
                )
            })
        } else {
            client
                .resume(&args.queue)
                .await
                .map(|n| format!("queue {shown} resumed: {n} waiting tasks dispatched at once"))
        };
        println!("{}", result.map_err(|e| said(&args.queue, e))?);
        Ok(())
    })
}

/// How many tasks of `what` the queue holds, as its counts say.
fn held(stats: &QueueStats, what: Purge) -> u64 {
    match what {
        Purge::Waiting => stats.ready + stats.scheduled + stats.retry_scheduled,
        Purge::Dead => stats.dead,
        Purge::Finished => stats.succeeded + stats.dead + stats.cancelled,
    }
}

/// The queue's counts, or the undeclared-queue message.
async fn queue_stats(client: &Client, queue: &str) -> Result<QueueStats, String> {
    let name = switchyard::QueueName::new(queue).map_err(|e| e.to_string())?;
    let stats = client.stats().await.map_err(|e| e.to_string())?;
    stats
        .queues
        .into_iter()
        .find(|q| q.queue.as_ref() == Some(&name))
        .ok_or_else(|| said(queue, Error::UnknownQueue(name)))
}

/// Asks on the terminal; without one, `--yes` must have been given.
fn confirmed(question: &str) -> Result<bool, String> {
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{question}: pass --yes to confirm (the input is not a terminal, so it cannot ask)"
        ));
    }
    eprint!("{question}? [y/N] ");
    std::io::stderr().flush().map_err(|e| e.to_string())?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Removes one class of a queue's tasks in bounded steps, showing progress on a terminal.
pub fn purge(args: &PurgeArgs) -> Result<(), String> {
    let what = if args.waiting {
        Purge::Waiting
    } else if args.dead {
        Purge::Dead
    } else {
        Purge::Finished
    };
    let verb = match what {
        Purge::Waiting => "cancelled",
        Purge::Dead | Purge::Finished => "deleted",
    };
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let before = held(&queue_stats(&client, &args.queue).await?, what);
        let shown = display::quoted(&args.queue);
        if !args.yes && before > 0 {
            let question = format!(
                "{} the {} {} tasks of queue {shown}",
                if what == Purge::Waiting {
                    "cancel"
                } else {
                    "delete"
                },
                before,
                what.name()
            );
            if !confirmed(&question)? {
                println!("nothing purged");
                return Ok(());
            }
        }
        let progress = std::io::stderr().is_terminal() && !args.json;
        let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
        let mut removed = 0u64;
        loop {
            let step = client
                .purge(&args.queue, what, batch)
                .await
                .map_err(|e| said(&args.queue, e))?;
            removed += step.removed;
            if !step.more {
                break;
            }
            if progress {
                eprint!("\r{removed} of about {before} {verb}…");
            }
        }
        if progress && removed >= args.batch {
            eprintln!();
        }
        if args.json {
            let out = serde_json::json!({
                "queue": args.queue,
                "purged": what.name(),
                "removed": removed,
            });
            println!("{out}");
        } else {
            println!("queue {shown}: {removed} {} tasks {verb}", what.name());
        }
        Ok(())
    })
}

/// The lines of what changes between two configurations (`flag  old -> new`).
fn diff(old: &QueueConfig, new: &QueueConfig) -> Vec<String> {
    settings(old)
        .into_iter()
        .zip(settings(new))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((flag, a), (_, b))| format!("  --{flag:<16} {a} -> {b}"))
        .collect()
}

/// Changes the settings given on the command line, keeping the others; shows the change.
pub fn reconfigure(args: &ReconfigureArgs) -> Result<(), String> {
    if args.flags.is_empty() {
        return Err(
            "nothing to change: give the settings to change, e.g. --max-attempts 10 \
                    (`switchyard reconfigure --help` lists them)"
                .to_owned(),
        );
    }
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let shown = display::quoted(&args.queue);
        let old = client
            .queue_config(&args.queue)
            .await
            .map_err(|e| said(&args.queue, e))?
            .ok_or_else(|| {
                format!("queue {shown} is not declared (`switchyard declare` creates it)")
            })?;
        let new = args.flags.over(old)?;
        let lines = diff(&old, &new);
        if lines.is_empty() {
            println!("queue {shown} already has this configuration: nothing changed");
            return Ok(());
        }
        if args.dry_run {
            println!("queue {shown} would change (dry run, nothing changed):");
            println!("{}", lines.join("\n"));
            return Ok(());
        }
        client
            .reconfigure(&args.queue, new)
            .await
            .map_err(|e| said(&args.queue, e))?;
        println!("queue {shown} reconfigured (applies to what happens from now on):");
        println!("{}", lines.join("\n"));
        Ok(())
    })
}

/// Deletes an empty queue nobody serves.
pub fn delete_queue(args: &QueueArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        client
            .delete_queue(&args.queue)
            .await
            .map_err(|e| said(&args.queue, e))?;
        println!(
            "queue {} deleted, with its counters (its dedup keys expire on their own)",
            display::quoted(&args.queue)
        );
        Ok(())
    })
}
