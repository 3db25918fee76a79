//! `switchyard submit`: submits tasks (one, or many in batches) and optionally awaits them.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use switchyard::{Error, TaskHandle, TaskId, TaskOutcome, TaskSpec};

use crate::remote::{Remote, millis, runtime};

/// Flags of `switchyard submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// The queue (declared beforehand with `switchyard declare`).
    pub queue: String,

    /// The task kind: the name a worker routes to its handler (`switchyard worker` knows
    /// echo, sleep and fail).
    pub kind: String,

    /// The payload: JSON text (checked), or any text with `--raw`. Default: `null`. For a
    /// large payload (the command line holds about 128 KiB), use `--payload-file`.
    pub payload: Option<String>,

    /// Read the payload from this file (`-` for standard input) instead of the command line;
    /// checked as JSON unless `--raw` (with `--raw` any bytes are sent as they are).
    #[arg(long, value_name = "PATH", conflicts_with = "payload")]
    pub payload_file: Option<std::path::PathBuf>,

    /// Send the payload as it is, without checking that it is JSON.
    #[arg(long)]
    pub raw: bool,

    /// How many tasks to submit (each with its own id and the same payload).
    #[arg(long, short = 'n', default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub count: u64,

    /// Tasks per round trip when submitting many.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,

    /// Priority, 0 (default, lowest) to 65535; higher runs first on priority queues.
    #[arg(long, allow_negative_numbers = true, value_parser = priority)]
    pub priority: Option<u16>,

    /// Expected run time in ms; used by shortest-job-first queues (which otherwise learn it).
    #[arg(long)]
    pub cost_ms: Option<u64>,

    /// Run no earlier than this many ms from now.
    #[arg(long)]
    pub delay_ms: Option<u64>,

    /// Should start within this many ms from now: earliest-deadline-first queues (`--policy
    /// edf`) run the earliest deadline first, and one declared with `--expire-late on` ends a
    /// task still waiting then `expired` instead of running it late.
    #[arg(long)]
    pub deadline_ms: Option<u64>,

    /// Attempts before the task goes to the dead-letter set (default: the queue's).
    #[arg(long)]
    pub max_attempts: Option<u32>,

    /// Per-attempt timeout in ms (default: the queue's).
    #[arg(long)]
    pub timeout_ms: Option<u64>,

    /// Affinity key: tasks with the same key go to the same worker on affinity queues.
    #[arg(long)]
    pub affinity: Option<String>,

    /// Dedup key: held for the queue's dedup window; a later submit with it is throttled (the
    /// task there answers) or debounced (the waiting task takes its payload and run time), by
    /// the queue's --dedup-mode.
    #[arg(long)]
    pub dedup: Option<String>,

    /// Group key (tenant) on a queue declared with --fair-share: groups take turns.
    #[arg(long, value_name = "KEY")]
    pub group: Option<String>,

    /// Wait up to this many ms (in all) for the outcomes, print them, and fail unless every
    /// task succeeded.
    #[arg(long)]
    pub wait_ms: Option<u64>,

    /// Print a summary instead of one line per task.
    #[arg(long)]
    pub quiet: bool,

    /// Print JSON: one object per task and line (`task`, `queue`, `duplicate`; with
    /// `--wait-ms` also `outcome` and `result` or `error`), or one summary with `--quiet`.
    #[arg(long)]
    pub json: bool,

    /// The id of the first task: task `i` of the run gets this id plus `i`. Without it a
    /// fresh one is drawn. A run that fails part-way prints the one it used: the same command
    /// with it submits only what is missing (the tasks stored already come back as duplicates).
    #[arg(long, value_name = "TASK-ID", value_parser = first_id)]
    pub first_id: Option<TaskId>,
}

/// Room for the index of a task in a run: 24 bits (`--count` is at most 10,000,000).
const RUN_INDEX_BITS: u32 = 24;

/// `--first-id`: a task id with room after it for every task of a run.
fn first_id(text: &str) -> Result<TaskId, String> {
    let id: TaskId = text.parse().map_err(|e: Error| e.to_string())?;
    if id.as_u128().checked_add(1 << RUN_INDEX_BITS).is_none() {
        return Err(format!("{text} leaves no room for the ids after it"));
    }
    Ok(id)
}

/// A fresh first id for a run: a new id with its lowest bits cleared, so that the run's ids
/// (first + index) keep the time of the first and differ from any other run's.
fn fresh_first_id() -> TaskId {
    TaskId::from_u128(TaskId::new().as_u128() & !((1u128 << RUN_INDEX_BITS) - 1))
}

/// Standard output that stops being written (and nothing else stops) when its reader goes
/// away: `switchyard submit … | head -1` still submits every task.
#[derive(Default)]
struct Output {
    gone: bool,
}

impl Output {
    fn line(&mut self, text: impl std::fmt::Display) {
        if self.gone {
            return;
        }
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{text}").is_err() {
            self.gone = true;
        }
    }
}

impl SubmitArgs {
    fn payload(&self) -> Result<Vec<u8>, String> {
        let bytes = match (&self.payload, &self.payload_file) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(path)) if path.as_os_str() == "-" => {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                    .map_err(|e| format!("cannot read the payload from standard input: {e}"))?;
                buf
            }
            (None, Some(path)) => std::fs::read(path)
                .map_err(|e| format!("cannot read the payload from {}: {e}", path.display()))?,
            (None, None) => return Ok(b"null".to_vec()),
        };
        if !self.raw {
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
                format!(
                    "the payload is not JSON ({e}); quote it, or pass --raw to send it as it is"
                )
            })?;
        }
        Ok(bytes)
    }

    fn spec(&self, payload: &[u8], id: TaskId) -> Result<TaskSpec, Error> {
        let mut b = TaskSpec::builder(&self.queue, &self.kind)
            .id(id)
            .payload(payload.to_vec());
        if let Some(p) = self.priority {
            b = b.priority(p);
        }
        if let Some(c) = self.cost_ms {
            b = b.cost_hint(millis(c));
        }
        if let Some(d) = self.delay_ms {
            b = b.delay(millis(d));
        }
        if let Some(a) = self.max_attempts {
            b = b.max_attempts(a);
        }
        if let Some(d) = self.deadline_ms {
            use switchyard_core::Clock as _;
            b = b.deadline(switchyard_core::SystemClock.now_ms().saturating_add(d));
        }
        if let Some(t) = self.timeout_ms {
            b = b.timeout(millis(t));
        }
        if let Some(k) = &self.affinity {
            b = b.affinity_key(k.clone());
        }
        if let Some(k) = &self.dedup {
            b = b.dedup_key(k.clone());
        }
        if let Some(k) = &self.group {
            b = b.group_key(k.clone());
        }
        b.build()
    }
}

/// `--priority`: a clear range message for anything else (a negative number included).
fn priority(text: &str) -> Result<u16, String> {
    text.parse().map_err(|_| {
        format!("{text} is not a priority: use a whole number from 0 (the lowest, and the default) to 65535")
    })
}

/// Submits, prints ids (and outcomes with `--wait-ms`).
pub fn run(args: &SubmitArgs) -> Result<(), String> {
    let payload = args.payload()?;
    let first = args.first_id.unwrap_or_else(fresh_first_id);
    // Validate once before connecting, so bad flags fail fast with the builder's message.
    args.spec(&payload, first).map_err(|e| e.to_string())?;
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let bar = ProgressBar::new(args.count);
        if args.count < 10_000 {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template("submitting {bar:40} {pos}/{len} ({per_sec})")
                .map_err(|e| e.to_string())?,
        );
        let mut out = Output::default();
        let mut handles: Vec<TaskHandle> = Vec::new();
        let mut duplicates = 0u64;
        let mut stored = 0u64;
        let mut next = 0u64;
        while next < args.count {
            let n = (args.count - next).min(args.batch);
            let specs = (next..next + n)
                .map(|i| args.spec(&payload, TaskId::from_u128(first.as_u128() + u128::from(i))))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            // Each stored task's handle (it says whether it was stored before: a duplicate).
            let (batch, failure): (Vec<TaskHandle>, _) = match client.submit_batch(specs).await {
                Ok(batch) => (batch, None),
                Err(Error::BatchIncomplete {
                    accepted, source, ..
                }) => {
                    let part = accepted
                        .into_iter()
                        .map(|(_, o)| client.submitted(&o))
                        .collect();
                    (part, Some(*source))
                }
                Err(e) => (Vec::new(), Some(e)),
            };
            for h in batch {
                stored += 1;
                duplicates += u64::from(h.was_duplicate());
                if !args.quiet && args.wait_ms.is_none() {
                    bar.suspend(|| {
                        if args.json {
                            out.line(submitted_json(&h, &args.queue));
                        } else {
                            out.line(submitted_line(&h));
                        }
                    });
                } else if !args.quiet && !args.json {
                    bar.suspend(|| out.line(h.id()));
                }
                if args.wait_ms.is_some() {
                    handles.push(h);
                }
            }
            if let Some(e) = failure {
                bar.finish_and_clear();
                return Err(incomplete(args, stored, first, &e));
            }
            next += n;
            bar.inc(n);
        }
        bar.finish_and_clear();
        if args.quiet && !args.json {
            out.line(format_args!(
                "submitted {} tasks to {} ({} duplicates)",
                args.count, args.queue, duplicates
            ));
        }
        let outcomes = match args.wait_ms {
            Some(ms) => Some(await_all(&handles, millis(ms), args, duplicates, &mut out).await),
            None => None,
        };
        if args.quiet && args.json && outcomes.is_none() {
            let summary = serde_json::json!({
                "queue": args.queue, "submitted": args.count, "duplicates": duplicates,
            });
            out.line(summary);
        }
        outcomes.unwrap_or(Ok(()))
    })
}

/// What a run that stopped part-way says: how many tasks are stored, why the rest are not,
/// and the command that submits only the rest.
fn incomplete(args: &SubmitArgs, stored: u64, first: TaskId, e: &Error) -> String {
    let again = if args.first_id.is_some() {
        "run the same command again".to_owned()
    } else {
        format!("run the same command again with --first-id {first}")
    };
    let unsure = if e.is_transient() {
        " (the call in flight when the connection failed may have stored its tasks too)"
    } else {
        ""
    };
    format!(
        "{stored} of {} tasks were stored before the submit failed{unsure}: {e}\n\
         to submit the rest without duplicates, {again} (stored tasks come back as duplicates)",
        args.count
    )
}

/// One submitted task as `--json` prints it.
/// A submitted task as a line: its id, and what its dedup key or id made of the submit
/// (`switchyard::flow::dedup`).
fn submitted_line(h: &TaskHandle) -> String {
    let differs = if h.payload_differed() {
        " (payload differs)"
    } else {
        ""
    };
    if h.was_replaced() {
        format!(
            "{} debounced: it takes this payload and run time{differs}",
            h.id()
        )
    } else if h.was_duplicate() {
        format!("{} duplicate{differs}", h.id())
    } else {
        h.id().to_string()
    }
}

fn submitted_json(h: &TaskHandle, queue: &str) -> serde_json::Value {
    serde_json::json!({
        "task": h.id().to_string(), "queue": queue, "duplicate": h.was_duplicate(),
        "payload_differs": h.payload_differed(), "replaced": h.was_replaced(),
    })
}

/// Awaits every handle within one overall deadline, printing each outcome (or, with
/// `--quiet`, a summary); fails unless all succeeded.
async fn await_all(
    handles: &[TaskHandle],
    within: Duration,
    args: &SubmitArgs,
    duplicates: u64,
    out: &mut Output,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let (mut ok, mut bad) = (0usize, 0usize);
    for h in handles {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut json = submitted_json(h, &args.queue);
        let (line, outcome, detail) = match h.wait(left).await {
            Ok(TaskOutcome::Succeeded(value)) => {
                ok += 1;
                let text = String::from_utf8_lossy(&value).into_owned();
                (format!("succeeded {text}"), "succeeded", ("result", text))
            }
            Ok(TaskOutcome::Dead(error)) => {
                bad += 1;
                (format!("dead: {error}"), "dead", ("error", error))
            }
            Ok(TaskOutcome::Cancelled) => {
                bad += 1;
                (
                    "cancelled".to_owned(),
                    "cancelled",
                    ("error", String::new()),
                )
            }
            Ok(TaskOutcome::Expired) => {
                bad += 1;
                (
                    "expired: still waiting at its deadline".to_owned(),
                    "expired",
                    ("error", String::new()),
                )
            }
            Ok(other) => {
                bad += 1;
                let text = format!("{other:?}");
                (text.clone(), "other", ("error", text))
            }
            Err(e) => {
                bad += 1;
                let e = e.to_string();
                (format!("no outcome: {e}"), "none", ("error", e))
            }
        };
        json["outcome"] = outcome.into();
        if !detail.1.is_empty() {
            json[detail.0] = detail.1.into();
        }
        match (args.quiet, args.json) {
            (false, true) => out.line(json),
            (false, false) => out.line(format_args!("{} {line}", h.id())),
            _ => {}
        }
    }
    match (args.quiet, args.json) {
        (true, true) => out.line(serde_json::json!({
            "queue": args.queue, "submitted": handles.len(), "duplicates": duplicates,
            "succeeded": ok, "failed": bad,
        })),
        (true, false) => out.line(format_args!("{ok} succeeded, {bad} did not")),
        _ => {}
    }
    if bad == 0 {
        Ok(())
    } else {
        Err(format!("{bad} of {} tasks did not succeed", handles.len()))
    }
}
