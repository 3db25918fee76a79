//! Looking at and acting on a running deployment: `status`, `task`, `tasks`, `dead`, `events`.

use clap::Args;
use switchyard::{TaskId, TaskState};

use crate::remote::{Remote, millis, runtime};
use crate::views::Reader;

mod events;
mod table;
mod task;
mod tasks;

pub use events::events;
pub use task::{dead, task};
pub use tasks::{state_arg, tasks};

/// Flags of `switchyard status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// Print the snapshot as JSON (field names are the table's headings; the rest are listed
    /// in the operations guide, "Looking at a running system").
    #[arg(long)]
    pub json: bool,

    /// Refresh in place until Ctrl-C, with rates (succeeded/s, failed/s) since the last
    /// refresh.
    #[arg(long, short = 'w')]
    pub watch: bool,

    /// With `--watch`: ms between refreshes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub interval_ms: u64,
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

    /// Wait up to this many ms for its outcome; the command fails unless it succeeded.
    #[arg(long)]
    pub wait_ms: Option<u64>,

    /// With `--wait-ms`: print its progress while waiting, a line each time its handler's
    /// report is announced (at most one a second; `ctx.progress` in a handler).
    #[arg(long, requires = "wait_ms", conflicts_with_all = ["json", "result"])]
    pub progress: bool,

    /// Change its priority (it must not have started: scheduled, ready or waiting for a
    /// retry; a ready task moves in its queue's order).
    #[arg(long, value_name = "PRIORITY", conflicts_with_all = ["cancel", "redrive", "delete"])]
    pub set_priority: Option<u16>,

    /// Change its payload (it must not have started), e.g. `'{"size": 2}'`.
    #[arg(long, value_name = "PAYLOAD", conflicts_with_all = ["cancel", "redrive", "delete"])]
    pub set_payload: Option<String>,

    /// Change its run time to this many ms from now; 0 makes it ready now (it must not have
    /// started; a ready task given a later time waits until then).
    #[arg(long, value_name = "MS", conflicts_with_all = ["cancel", "redrive", "delete"])]
    pub run_in_ms: Option<u64>,

    /// Put it back in its queue with fresh attempts (it must be dead).
    #[arg(long, conflicts_with = "cancel")]
    pub redrive: bool,

    /// Delete it with its result (it must have finished: succeeded, dead, cancelled or
    /// expired).
    #[arg(long, conflicts_with_all = ["cancel", "redrive", "wait_ms"])]
    pub delete: bool,

    /// Print it as JSON (with its outcome and its events).
    #[arg(long)]
    pub json: bool,

    /// Print only its result, whole and as it is (bytes, no newline added), e.g. to a file;
    /// fails unless the task succeeded. (Otherwise a result is shown as a short preview.)
    #[arg(long, conflicts_with_all = ["json", "delete", "cancel", "redrive"])]
    pub result: bool,
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

    /// Put every task of the dead-letter set back in its queue with fresh attempts, not only
    /// the listed ones (`task <id> --redrive` re-drives one, `task <id> --delete` deletes one,
    /// `purge <queue> --dead` deletes all of them).
    #[arg(long)]
    pub redrive: bool,

    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `switchyard tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// The queue whose tasks to list.
    pub queue: String,

    /// The state listed: scheduled, ready, inbox, running, retrying, succeeded, dead,
    /// cancelled or expired.
    #[arg(long, default_value = "ready", value_parser = tasks::state_arg)]
    pub state: TaskState,

    /// The newest first (ready: the last in line first; scheduled: the latest run-at first;
    /// finished: the latest first). Oldest first otherwise.
    #[arg(long)]
    pub newest: bool,

    /// Only tasks of this kind.
    #[arg(long)]
    pub kind: Option<String>,

    /// Only tasks whose id starts with this.
    #[arg(long)]
    pub id: Option<String>,

    /// At most this many tasks (1 to 256); a page examines at most 256 tasks, so with a
    /// filter it may hold fewer and still be followed by another.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,

    /// Go on from where an earlier page stopped (the cursor it printed).
    #[arg(long)]
    pub cursor: Option<String>,

    /// Re-drive every dead task the filters select (with `--state dead`), in bounded steps.
    #[arg(long, conflicts_with_all = ["cancel", "delete", "cursor"])]
    pub redrive: bool,

    /// Cancel every task the filters select (a state that has not finished), in bounded steps.
    #[arg(long, conflicts_with_all = ["delete", "cursor"])]
    pub cancel: bool,

    /// Delete every task the filters select (a finished state), in bounded steps.
    #[arg(long, conflicts_with = "cursor")]
    pub delete: bool,

    /// Print the page (or what an action did) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `switchyard events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// Only events after this one (the `id` of an earlier event, as `--json` prints it).
    #[arg(long, conflicts_with = "newest_first")]
    pub after: Option<String>,

    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,

    /// Only the events of this queue.
    #[arg(long)]
    pub queue: Option<String>,

    /// The newest first (the last `--limit` events, newest at the top).
    #[arg(long, conflicts_with = "follow")]
    pub newest_first: bool,

    /// Keep printing new events as they happen, until Ctrl-C. Starts like `tail -f`: the last
    /// `--limit` events, then the new ones (with `--after`: from that position on).
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// One JSON object per event and line.
    #[arg(long)]
    pub json: bool,
}

/// Prints queues (counts by state) and live workers; with `--watch`, again and again.
pub fn status(args: &StatusArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let mut reader = Reader::new(client);
        if !args.watch {
            let (view, _) = reader.read().await.map_err(|e| e.to_string())?;
            if args.json {
                let text = serde_json::to_string_pretty(&view).map_err(|e| e.to_string())?;
                println!("{text}");
            } else {
                print!("{}", table::render(&view, &args.remote.namespace, None));
            }
            return Ok(());
        }
        let every = millis(args.interval_ms);
        let stopped = crate::remote::stop_signal()?;
        tokio::pin!(stopped);
        let in_place = std::io::IsTerminal::is_terminal(&std::io::stdout()) && !args.json;
        loop {
            let shown = match reader.read().await {
                Ok((view, _)) if args.json => {
                    serde_json::to_string(&view).map_err(|e| e.to_string())? + "\n"
                }
                Ok((view, _)) => table::render(&view, &args.remote.namespace, Some(every)),
                Err(e) => format!("reading the namespace failed: {e} (retrying)\n"),
            };
            if in_place {
                // Home, then clear: the new table replaces the old one.
                print!("\x1b[H\x1b[2J{shown}");
            } else {
                print!("{shown}");
                if !args.json {
                    println!();
                }
            }
            std::io::Write::flush(&mut std::io::stdout()).map_err(|e| e.to_string())?;
            tokio::select! {
                _ = &mut stopped => return Ok(()),
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}
