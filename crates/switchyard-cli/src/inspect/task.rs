//! `switchyard task` and `switchyard dead`.

use std::time::Duration;

use switchyard::{CancelOutcome, Client, Progress, TaskChange, TaskHandle, TaskOutcome};
use switchyard_core::Clock;
use switchyard_core::display;

use super::{DeadArgs, TaskArgs};
use crate::remote::{millis, runtime};
use crate::views::{self, TaskView, utc};

/// Shows one task; cancels or re-drives it, or waits for its outcome, first when asked. With
/// `--wait-ms`, fails unless the task succeeded.
pub fn task(args: &TaskArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let handle = client.task_handle(args.id);
        if args.delete {
            client
                .delete_task(args.id)
                .await
                .map_err(|e| e.to_string())?;
            if args.json {
                println!("{}", serde_json::json!({"id": args.id, "deleted": true}));
            } else {
                println!("task {} deleted, with its result", args.id);
            }
            return Ok(());
        }
        if args.cancel {
            let said = match handle.cancel().await.map_err(|e| e.to_string())? {
                CancelOutcome::Cancelled { .. } => "cancelled".to_owned(),
                CancelOutcome::Requested => "running: its worker was asked to stop it".to_owned(),
                CancelOutcome::AlreadyFinished(state) => format!("already finished: {state}"),
                other => format!("{other:?}"),
            };
            if !args.json {
                println!("{said}");
            }
        }
        if args.set_priority.is_some() || args.set_payload.is_some() || args.run_in_ms.is_some() {
            let mut change = TaskChange::new();
            change.priority = args.set_priority;
            change.payload = args.set_payload.clone().map(String::into_bytes);
            if let Some(ms) = args.run_in_ms {
                let now = switchyard_core::SystemClock.now_ms();
                change.run_at = Some(now.saturating_add(ms));
            }
            let moved = handle.change(&change).await.map_err(|e| e.to_string())?;
            if !args.json {
                let now = moved
                    .state
                    .map_or("gone".to_owned(), |s| s.as_str().to_owned());
                println!("changed: {now} now");
            }
        }
        if args.redrive {
            client.redrive(args.id).await.map_err(|e| e.to_string())?;
            if !args.json {
                println!("re-driven: back in its queue with fresh attempts");
            }
        }
        if args.result {
            let outcome = match args.wait_ms {
                Some(ms) => Some(handle.wait(millis(ms)).await.map_err(|e| e.to_string())?),
                None => client
                    .backend()
                    .get_outcome(args.id)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            return match outcome {
                Some(TaskOutcome::Succeeded(v)) => {
                    use std::io::Write;
                    std::io::stdout().write_all(&v).map_err(|e| e.to_string())
                }
                Some(other) => Err(format!("task {} has no result: {other:?}", args.id)),
                None => Err(format!(
                    "task {} has no outcome yet (add --wait-ms to wait for it)",
                    args.id
                )),
            };
        }
        let mut failed = None;
        if let Some(ms) = args.wait_ms {
            let mut wait = millis(ms);
            if args.progress {
                let started = std::time::Instant::now();
                follow_progress(&handle, wait).await?;
                wait = wait.saturating_sub(started.elapsed());
            }
            let said = match handle.wait(wait).await.map_err(|e| e.to_string())? {
                // A preview: a result may be megabytes (`--result` prints it whole).
                TaskOutcome::Succeeded(v) => format!(
                    "succeeded: {} ({} bytes; --result prints it whole)",
                    views::preview(&v),
                    v.len()
                ),
                TaskOutcome::Dead(e) => {
                    failed = Some(format!("task {} is dead: {e}", args.id));
                    format!("dead: {e}")
                }
                TaskOutcome::Cancelled => {
                    failed = Some(format!("task {} was cancelled", args.id));
                    "cancelled".to_owned()
                }
                TaskOutcome::Expired => {
                    failed = Some(format!(
                        "task {} expired: it was still waiting at its deadline",
                        args.id
                    ));
                    "expired".to_owned()
                }
                other => {
                    failed = Some(format!("task {} ended: {other:?}", args.id));
                    format!("{other:?}")
                }
            };
            if !args.json {
                println!("{said}");
            }
        }
        let view = views::task_view(&client, args.id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "no task {} (never submitted, or purged after its retention time)",
                    args.id
                )
            })?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&view).map_err(|e| e.to_string())?
            );
        } else {
            print_task(&view);
        }
        failed.map_or(Ok(()), Err)
    })
}

/// Prints the task's progress each time it is announced, until it finishes or `within` ends.
async fn follow_progress(handle: &TaskHandle, within: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + within;
    let mut seen = None;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let now = handle
            .wait_progress(seen.as_ref(), left)
            .await
            .map_err(|e| e.to_string())?;
        if now != seen
            && let Some(p) = &now
        {
            println!("progress {}", progress_text(p));
        }
        seen = now;
        let done = handle
            .state()
            .await
            .map_err(|e| e.to_string())?
            .is_none_or(|s| s.is_terminal());
        if done || left.is_zero() {
            return Ok(());
        }
    }
}

/// A progress report as `task` shows it: `42.5% resized 17 of 40 (attempt 1, report 12, at …)`.
fn progress_text(p: &Progress) -> String {
    let mut out = p.percent_text();
    if !p.message().is_empty() {
        out.push(' ');
        out.push_str(p.message());
    }
    format!(
        "{out} (attempt {}, report {}, at {} UTC)",
        p.attempt(),
        p.reports(),
        utc(p.at())
    )
}

fn print_task(view: &TaskView) {
    let info = &view.info;
    // The labels are the JSON field names (`--json`).
    let row = |label: &str, value: &str| println!("{label:<15}{value}");
    row("id", &info.id.to_string());
    row("queue", info.queue.as_str());
    row("kind", info.kind.as_str());
    row("state", info.state.as_str());
    row(
        "attempts",
        &format!("{} (max_attempts {})", info.attempts, info.max_attempts),
    );
    row("priority", &info.priority.to_string());
    row("cost_ms", &info.cost_ms.to_string());
    row("timeout_ms", &info.timeout_ms.to_string());
    row("created_at", &format!("{} UTC", utc(info.created_at)));
    if let Some(at) = info.run_at {
        row("run_at", &format!("{} UTC", utc(at)));
    }
    if let Some(at) = info.start_by {
        row("start_by", &format!("{} UTC (its deadline)", utc(at)));
    }
    if let Some(at) = info.deadline {
        row("deadline", &format!("{} UTC (the lease ends)", utc(at)));
    }
    if let Some(at) = info.finished_at {
        row("finished_at", &format!("{} UTC", utc(at)));
    }
    if let Some(w) = &info.worker {
        row("worker", w.as_str());
    }
    if let Some(p) = &info.progress {
        row("progress", &progress_text(p));
    }
    if let Some(e) = &info.last_error {
        row("last_error", e);
    }
    if info.cancel_requested {
        row("cancel_requested", "yes");
    }
    if let Some(k) = &info.affinity_key {
        row("affinity_key", k);
    }
    if let Some(k) = &info.dedup_key {
        row("dedup_key", k);
    }
    row(
        "payload",
        &format!("{} bytes: {}", view.payload_bytes, view.payload_preview),
    );
    if let Some(o) = &view.outcome
        && let (Some(n), Some(p)) = (o.result_bytes, &o.result_preview)
    {
        row("result", &format!("{n} bytes: {p}"));
    }
    if let Some(t) = &info.trace_parent {
        row("trace_parent", t.as_str());
    }
    for line in crate::tree::lines(&view.children, 20) {
        println!("{line}");
    }
    if let Some(s) = &info.trace_state {
        row("trace_state", s.as_str());
    }
    if view.events.is_empty() {
        row(
            "events",
            "(none in the log; a queue records failures only unless declared with --events all)",
        );
        return;
    }
    println!("events");
    for e in &view.events {
        println!(
            "  {}  {:<10} {}",
            utc(e.at),
            e.kind.as_str(),
            super::events::labelled(e)
        );
    }
    if !view.events_complete {
        println!("  (the log is longer than could be searched: newer events may be missing)");
    }
}

/// Lists (and optionally re-drives) a queue's dead-letter set.
pub fn dead(args: &DeadArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let dead = client
            .dead_letters(&args.queue, args.limit)
            .await
            .map_err(|e| e.to_string())?;
        if dead.is_empty() {
            declared(&client, &args.queue).await?;
        }
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&dead).map_err(|e| e.to_string())?
            );
        } else if dead.is_empty() {
            println!("(no dead tasks in {})", args.queue);
        } else {
            println!(
                "{:<26}  {:<16} {:>8}  {:<23}  error",
                "task", "kind", "attempts", "finished_at (UTC)"
            );
            for t in &dead {
                println!(
                    "{:<26}  {:<16} {:>8}  {:<23}  {}",
                    t.id,
                    t.kind.as_str(),
                    t.attempts,
                    t.finished_at.map(utc).unwrap_or_default(),
                    t.last_error.as_deref().unwrap_or("-")
                );
            }
        }
        if args.redrive {
            let redriven = redrive_all(&client, &args.queue, !args.json).await?;
            if !args.json {
                println!("re-drove {redriven} tasks");
            }
        }
        Ok(())
    })
}

/// How many dead tasks `redrive_all` reads at a time.
const REDRIVE_PAGE: usize = 256;

/// Puts every task of a queue's dead-letter set back in the queue, a page at a time (oldest
/// first), and answers how many. A task that dies again while this runs (its handler fails at
/// once) is not taken a second time: the work ends when a page holds only tasks re-driven
/// already. With `progress`, says on stderr how far it got every 10,000 tasks.
async fn redrive_all(client: &Client, queue: &str, progress: bool) -> Result<usize, String> {
    let mut done = std::collections::HashSet::new();
    loop {
        let page = client
            .dead_letters(queue, REDRIVE_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let fresh: Vec<_> = page.iter().filter(|t| !done.contains(&t.id)).collect();
        if fresh.is_empty() {
            return Ok(done.len());
        }
        for t in fresh {
            match client.redrive(t.id).await {
                Ok(_) => {}
                // Re-driven, deleted or expired by someone else since the page was read.
                Err(switchyard::Error::WrongState { .. } | switchyard::Error::TaskNotFound(_)) => {}
                Err(e) => {
                    return Err(format!(
                        "re-drove {} tasks, then: {e} (run it again for the rest)",
                        done.len()
                    ));
                }
            }
            done.insert(t.id);
            if progress && done.len() % 10_000 == 0 {
                eprintln!("re-drove {} tasks so far", done.len());
            }
        }
    }
}

/// Fails with a clear message when `queue` is not declared.
async fn declared(client: &Client, queue: &str) -> Result<(), String> {
    let name = switchyard::QueueName::new(queue).map_err(|e| e.to_string())?;
    let config = client
        .backend()
        .queue_config(&name)
        .await
        .map_err(|e| e.to_string())?;
    match config {
        Some(_) => Ok(()),
        None => Err(format!(
            "queue {} is not declared (`switchyard status` lists the queues)",
            display::quoted(queue)
        )),
    }
}
