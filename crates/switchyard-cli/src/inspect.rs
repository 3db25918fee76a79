//! Looking at and acting on a running deployment: `status`, `task`, `dead`, `events`.

use clap::Args;
use switchyard::{CancelOutcome, Client, TaskId, TaskOutcome};

use crate::remote::{Remote, millis, runtime};

/// Flags of `switchyard status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// Print the snapshot as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `switchyard task`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// The task's id, as `submit` printed it.
    pub id: TaskId,

    /// Cancel it: at once if it has not started, through its worker if it is running.
    #[arg(long)]
    pub cancel: bool,

    /// Wait up to this many ms for its outcome.
    #[arg(long)]
    pub wait_ms: Option<u64>,
}

/// Flags of `switchyard dead`.
#[derive(Debug, Args)]
pub struct DeadArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// The queue whose dead-letter set to list.
    pub queue: String,

    /// At most this many tasks, oldest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,

    /// Put the listed tasks back in their queue with fresh attempts.
    #[arg(long)]
    pub redrive: bool,
}

/// Flags of `switchyard events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// Only events after this position (the first column of an earlier listing).
    #[arg(long)]
    pub after: Option<String>,

    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// Prints queues (counts by state) and live workers.
pub fn status(args: &StatusArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let stats = client.stats().await.map_err(|e| e.to_string())?;
        if args.json {
            let text = serde_json::to_string_pretty(&stats).map_err(|e| e.to_string())?;
            println!("{text}");
            return Ok(());
        }
        println!(
            "{:<20} {:<12} {:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "queue",
            "policy",
            "strategy",
            "scheduled",
            "ready",
            "inbox",
            "running",
            "retrying",
            "succeeded",
            "dead",
            "cancelled"
        );
        for q in &stats.queues {
            let Some(name) = &q.queue else { continue };
            let config = client
                .backend()
                .queue_config(name)
                .await
                .map_err(|e| e.to_string())?;
            let (policy, strategy) = config
                .map(|c| (c.policy.name(), c.strategy.name().to_owned()))
                .unwrap_or_default();
            println!(
                "{:<20} {:<12} {:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name.as_str(),
                policy,
                strategy,
                q.scheduled,
                q.ready,
                q.dispatched,
                q.running,
                q.retry_scheduled,
                q.succeeded,
                q.dead,
                q.cancelled
            );
        }
        println!();
        println!(
            "{:<24} {:>8} {:>6} {:>8} {:<9} {:>12}  queues",
            "worker", "capacity", "weight", "in use", "state", "expires in"
        );
        let now = now_ms();
        for w in &stats.workers {
            let queues: Vec<&str> = w.queues.iter().map(|q| q.as_str()).collect();
            println!(
                "{:<24} {:>8} {:>6} {:>8} {:<9} {:>10}ms  {}",
                w.id.as_str(),
                w.capacity,
                w.weight,
                w.inflight,
                if w.draining { "draining" } else { "active" },
                w.expires_at.saturating_sub(now),
                queues.join(",")
            );
        }
        if stats.workers.is_empty() {
            println!("(no live workers)");
        }
        Ok(())
    })
}

/// Shows one task, optionally cancelling it or waiting for its outcome.
pub fn task(args: &TaskArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let handle = client.task(args.id);
        if args.cancel {
            match handle.cancel().await.map_err(|e| e.to_string())? {
                CancelOutcome::Cancelled { .. } => println!("cancelled"),
                CancelOutcome::Requested => {
                    println!("running: its worker was asked to stop it")
                }
                CancelOutcome::AlreadyFinished(state) => println!("already finished: {state}"),
            }
        }
        if let Some(ms) = args.wait_ms {
            match handle.wait(millis(ms)).await.map_err(|e| e.to_string())? {
                TaskOutcome::Succeeded(v) => println!("succeeded: {}", String::from_utf8_lossy(&v)),
                TaskOutcome::Dead(e) => println!("dead: {e}"),
                TaskOutcome::Cancelled => println!("cancelled"),
            }
        }
        print_task(&client, args.id).await
    })
}

async fn print_task(client: &Client, id: TaskId) -> Result<(), String> {
    let Some(info) = client.task(id).info().await.map_err(|e| e.to_string())? else {
        return Err(format!(
            "no task {id} (never submitted, or purged after its retention time)"
        ));
    };
    println!("id          {}", info.id);
    println!("queue       {}", info.queue.as_str());
    println!("kind        {}", info.kind.as_str());
    println!("state       {}", info.state);
    println!("attempts    {} of {}", info.attempts, info.max_attempts);
    println!("priority    {}", info.priority);
    println!("cost        {} ms", info.cost_ms);
    println!("timeout     {} ms", info.timeout_ms);
    if let Some(at) = info.run_at {
        println!("runs in     {} ms", at.saturating_sub(now_ms()));
    }
    if let Some(w) = &info.worker {
        println!("worker      {}", w.as_str());
    }
    if let Some(e) = &info.last_error {
        println!("last error  {e}");
    }
    if info.cancel_requested {
        println!("cancel      requested");
    }
    if let Some(k) = &info.affinity_key {
        println!("affinity    {k}");
    }
    if let Some(k) = &info.dedup_key {
        println!("dedup       {k}");
    }
    Ok(())
}

/// Lists (and optionally re-drives) a queue's dead-letter set.
pub fn dead(args: &DeadArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let dead = client
            .dead(&args.queue, args.limit)
            .await
            .map_err(|e| e.to_string())?;
        for t in &dead {
            println!(
                "{} {} attempts={} error={}",
                t.id,
                t.kind.as_str(),
                t.attempts,
                t.last_error.as_deref().unwrap_or("-")
            );
        }
        if args.redrive {
            for t in &dead {
                client.redrive(t.id).await.map_err(|e| e.to_string())?;
            }
            println!("re-drove {} tasks", dead.len());
        } else if dead.is_empty() {
            let queue = switchyard::QueueName::new(&args.queue).map_err(|e| e.to_string())?;
            let declared = client
                .backend()
                .queue_config(&queue)
                .await
                .map_err(|e| e.to_string())?;
            if declared.is_none() {
                return Err(format!(
                    "queue {} is not declared (`switchyard status` lists the queues)",
                    switchyard::display::quoted(&args.queue)
                ));
            }
            println!("(no dead tasks in {})", args.queue);
        }
        Ok(())
    })
}

/// Prints events from the capped log.
pub fn events(args: &EventsArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let events = client
            .events(args.after.as_deref(), args.limit)
            .await
            .map_err(|e| e.to_string())?;
        for e in &events {
            println!(
                "{} {:<10} {} {} {} {}",
                e.id,
                e.kind.as_str(),
                e.task,
                e.queue.as_str(),
                e.worker.as_ref().map_or("-", |w| w.as_str()),
                e.detail.as_deref().unwrap_or("")
            );
        }
        Ok(())
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
