//! `switchyard schedule add|list|show|pause|resume|remove|run`: named schedules that create one
//! task per tick (the rule: `switchyard::schedule`). Every worker's maintenance claims the due
//! ticks; `schedule run` is a ticker for a process that runs no worker.

use clap::{Args, Subcommand};
use switchyard::schedule::{
    Every, Misfire, Overlap, Recurrence, ScheduleInfo, ScheduleSpec, TaskTemplate, Upserted,
};
use switchyard::{Client, QueueName, ScheduleName, TaskKind};

use crate::remote::{Remote, millis, runtime, stop_signal};
use crate::views::{every_text, utc};

/// Flags of `switchyard schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    pub remote: Remote,

    #[command(subcommand)]
    pub command: ScheduleCommand,
}

/// What `switchyard schedule` does.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule, or replace its definition (the same definition changes nothing; a
    /// new one takes effect from its first tick after now).
    Add(AddArgs),
    /// List the schedules: next tick, ticks run, state.
    List(JsonFlag),
    /// Show one schedule: its definition and state.
    Show(NameArgs),
    /// Pause a schedule: no tick is claimed until it is resumed.
    Pause(NameArgs),
    /// Resume a paused schedule, from its first tick after now.
    Resume(NameArgs),
    /// Remove a schedule (the tasks it created stay).
    Remove(NameArgs),
    /// Run a ticker (maintenance: claims due ticks, promotes due tasks) for a process that
    /// runs no worker, until SIGINT or SIGTERM, or for --for-ms.
    Run(RunArgs),
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A schedule's name.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The schedule.
    pub name: String,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `schedule run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stop after this many ms.
    #[arg(long, value_name = "MS")]
    pub for_ms: Option<u64>,
}

/// Flags of `schedule add`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("when").required(true).args(["cron", "every_ms"])))]
pub struct AddArgs {
    /// The schedule's name (letters, digits, `_`, `-`, `.`, `:`).
    pub name: String,

    /// The queue of the tasks it creates.
    #[arg(long)]
    pub queue: String,

    /// The kind (handler) of the tasks it creates.
    #[arg(long)]
    pub kind: String,

    /// Their payload: JSON text (checked). Default: `null`.
    #[arg(long)]
    pub payload: Option<String>,

    /// Their priority.
    #[arg(long, default_value_t = 0)]
    pub priority: u16,

    /// A cron expression: five fields, or six with seconds first (`0 0 2 * * *`: 02:00 every
    /// day); names, `L`, `#`, `W` and `@daily` are understood.
    #[arg(long)]
    pub cron: Option<String>,

    /// The IANA time zone the cron expression's times are in (daylight saving included).
    #[arg(long, default_value = "UTC", requires = "cron")]
    pub tz: String,

    /// Instead of cron: every this many ms, from --start-ms or from now.
    #[arg(long, value_name = "MS")]
    pub every_ms: Option<u64>,

    /// No tick before this time (ms since the epoch).
    #[arg(long, value_name = "MS")]
    pub start_ms: Option<u64>,

    /// No tick after this time (ms since the epoch).
    #[arg(long, value_name = "MS")]
    pub end_ms: Option<u64>,

    /// At most this many ticks in all.
    #[arg(long)]
    pub limit: Option<u64>,

    /// What a ticker that comes late runs: `run-once` (the latest missed tick), `skip:<ms>`
    /// (the latest only if at most that late) or `catch-up:<n>` (the latest n, oldest first).
    #[arg(long, default_value = "run-once", value_parser = parse_misfire)]
    pub misfire: Misfire,

    /// While the last tick's task has not finished: `allow` another, or `skip` the tick.
    #[arg(long, default_value = "allow", value_parser = parse_overlap)]
    pub overlap: Overlap,
}

fn parse_misfire(s: &str) -> Result<Misfire, String> {
    let number = |v: &str, what: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("`{s}`: {what} must be a whole number"))
    };
    match s.split_once(':') {
        None if s == "run-once" => Ok(Misfire::RunOnce),
        Some(("skip", ms)) => Ok(Misfire::Skip {
            grace_ms: number(ms, "the grace in ms")?,
        }),
        Some(("catch-up", n)) => {
            let n =
                u32::try_from(number(n, "the count")?).map_err(|_| format!("`{s}`: too many"))?;
            Ok(Misfire::CatchUp(n))
        }
        _ => Err(format!(
            "`{s}`: expected run-once, skip:<grace ms> or catch-up:<n>"
        )),
    }
}

fn parse_overlap(s: &str) -> Result<Overlap, String> {
    match s {
        "allow" => Ok(Overlap::Allow),
        "skip" => Ok(Overlap::Skip),
        _ => Err(format!("`{s}`: expected allow or skip")),
    }
}

impl AddArgs {
    fn spec(&self) -> Result<ScheduleSpec, String> {
        let name = ScheduleName::new(&self.name).map_err(|e| e.to_string())?;
        let queue = QueueName::new(&self.queue).map_err(|e| e.to_string())?;
        let kind = TaskKind::new(&self.kind).map_err(|e| e.to_string())?;
        let payload = self.payload.as_deref().unwrap_or("null");
        serde_json::from_str::<serde_json::Value>(payload)
            .map_err(|e| format!("--payload: not JSON ({e})"))?;
        let every = match (&self.cron, self.every_ms) {
            (Some(expr), _) => Every::cron(expr.clone(), self.tz.clone()),
            (None, Some(ms)) => Every::interval_ms(ms),
            (None, None) => return Err("give --cron or --every-ms".into()),
        };
        let mut recurrence = Recurrence::new(every);
        recurrence.start = self.start_ms;
        recurrence.end = self.end_ms;
        recurrence.limit = self.limit;
        let template = TaskTemplate::new(queue, kind)
            .payload(payload.as_bytes().to_vec())
            .priority(self.priority);
        Ok(ScheduleSpec::new(name, recurrence, template)
            .with_misfire(self.misfire)
            .with_overlap(self.overlap))
    }
}

/// Runs `switchyard schedule …`.
pub fn run(args: &ScheduleArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        match &args.command {
            ScheduleCommand::Add(add) => {
                let spec = add.spec()?;
                let upserted = client
                    .backend()
                    .upsert_schedule(&spec)
                    .await
                    .map_err(|e| e.to_string())?;
                let info = read(&client, &add.name).await?;
                let what = match upserted {
                    Upserted::Created => "created",
                    Upserted::Unchanged => "unchanged (the same definition was there)",
                    _ => "changed: takes effect from its next tick",
                };
                println!("schedule {} {what}; next tick {}", add.name, next(&info));
                Ok(())
            }
            ScheduleCommand::List(flag) => {
                let all = client
                    .backend()
                    .schedules()
                    .await
                    .map_err(|e| e.to_string())?;
                if flag.json {
                    let rows: Vec<serde_json::Value> = all.iter().map(json).collect();
                    println!("{}", serde_json::Value::Array(rows));
                } else if all.is_empty() {
                    println!("no schedules");
                } else {
                    for s in &all {
                        println!("{}", line(s));
                    }
                }
                Ok(())
            }
            ScheduleCommand::Show(n) => {
                let info = read(&client, &n.name).await?;
                if n.json {
                    println!("{}", json(&info));
                } else {
                    println!("{}", line(&info));
                    let definition =
                        serde_json::to_string_pretty(&info.spec).map_err(|e| e.to_string())?;
                    println!("{definition}");
                }
                Ok(())
            }
            ScheduleCommand::Pause(n) | ScheduleCommand::Resume(n) => {
                let pause = matches!(args.command, ScheduleCommand::Pause(_));
                let name = ScheduleName::new(&n.name).map_err(|e| e.to_string())?;
                let found = client
                    .backend()
                    .set_schedule_paused(&name, pause)
                    .await
                    .map_err(|e| e.to_string())?;
                if !found {
                    return Err(format!("no schedule {}", n.name));
                }
                let info = read(&client, &n.name).await?;
                let done = if pause { "paused" } else { "resumed" };
                println!("schedule {} {done}; next tick {}", n.name, next(&info));
                Ok(())
            }
            ScheduleCommand::Remove(n) => {
                let name = ScheduleName::new(&n.name).map_err(|e| e.to_string())?;
                if client
                    .backend()
                    .remove_schedule(&name)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    println!("schedule {} removed (the tasks it created stay)", n.name);
                    Ok(())
                } else {
                    Err(format!("no schedule {}", n.name))
                }
            }
            ScheduleCommand::Run(r) => ticker(&client, r).await,
        }
    })
}

/// Maintenance until a signal (or --for-ms): sleeps until something is due, then runs a pass.
async fn ticker(client: &Client, args: &RunArgs) -> Result<(), String> {
    let stop = stop_signal()?;
    tokio::pin!(stop);
    let deadline = args
        .for_ms
        .map(|ms| tokio::time::Instant::now() + millis(ms));
    let backend = client.backend();
    loop {
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(());
        }
        let pass = async {
            backend.sleep_until_due(millis(1_000)).await?;
            backend.maintain(1_000).await
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            report = pass => match report {
                Ok(report) if !report.ticked.is_empty() => {
                    tracing::info!(ticked = report.ticked.len(), "schedule ticks claimed");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("maintenance failed (retried): {e}"),
            },
        }
    }
}

async fn read(client: &Client, name: &str) -> Result<ScheduleInfo, String> {
    let name = ScheduleName::new(name).map_err(|e| e.to_string())?;
    client
        .backend()
        .get_schedule(&name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no schedule {name}"))
}

fn next(info: &ScheduleInfo) -> String {
    match (info.state.paused, info.state.next) {
        (true, _) => "none (paused)".into(),
        (false, Some(at)) => utc(at),
        (false, None) => "none (ended)".into(),
    }
}

fn line(info: &ScheduleInfo) -> String {
    let s = &info.state;
    format!(
        "{}  {}  -> {} {}  next {}  runs {} (skipped {})",
        info.spec.name,
        every_text(info),
        info.spec.task.queue,
        info.spec.task.kind,
        next(info),
        s.runs,
        s.skipped,
    )
}

fn json(info: &ScheduleInfo) -> serde_json::Value {
    serde_json::json!({
        "name": info.spec.name.as_str(),
        "definition": info.spec,
        "next": info.state.next,
        "paused": info.state.paused,
        "runs": info.state.runs,
        "skipped": info.state.skipped,
        "last_tick": info.state.last_tick,
        "last_task": info.state.last_task.map(|t| t.to_string()),
        "version": info.state.version,
    })
}
