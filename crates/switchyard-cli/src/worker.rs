//! `switchyard worker`: a worker process with built-in handlers, for trying Switchyard out,
//! for load and failure tests, and as the template of a real worker (see `examples/`).
//!
//! Built-in task kinds:
//!
//! * `echo` returns its payload;
//! * `sleep` waits the number of milliseconds in its payload (`250` or `{"ms": 250}`), stopping
//!   early if the task is cancelled, then returns its payload (with
//!   `RUST_LOG=switchyard_cli::sleep=debug` it logs when each one starts and ends);
//! * `fail` fails with the message in its payload (`"disk full"` or
//!   `{"message": "disk full", "fatal": true}`); retryable unless `fatal`.

use std::time::Duration;

use clap::Args;
use serde_json::Value;
use switchyard::backend::WorkerSpec;
use switchyard::{ShutdownHandle, TaskContext, TaskError, Worker};
use switchyard_core::display;

use crate::declare::QueueFlags;
use crate::remote::{Remote, millis, runtime};

/// The built-in task kinds and what they do, for `--help` and the start-up line.
pub const BUILT_IN: [&str; 3] = ["echo", "sleep", "fail"];

/// Flags of `switchyard worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// This worker's id, unique among live workers. An id held by another live process is
    /// refused; the previous process of the id, if it died, is waited for until its
    /// heartbeat expires (its tasks then go back to their queues). Default:
    /// `<host>-<process id>-<random>`, unique per process even where every container's process
    /// is pid 1.
    #[arg(long)]
    pub id: Option<String>,

    /// Queues to take tasks from, in preference order (repeat the flag or separate by commas).
    /// They must have been declared (`switchyard declare`), unless `--declare` is given.
    #[arg(long = "queue", short = 'q', value_delimiter = ',', required = true)]
    pub queues: Vec<String>,

    /// Declare the queues with the configuration below (the flags of `switchyard declare`),
    /// at start and again whenever Redis has lost them (a restart without persistence, a
    /// flush, a failover to a replica without the data), so that the worker recovers by
    /// itself. A queue that exists with another configuration stops the worker at start.
    #[arg(long)]
    pub declare: bool,

    /// Tasks run at once.
    #[arg(long, short = 'c', default_value_t = 4)]
    pub capacity: u32,

    /// Weight for the weighted strategy (share of tasks relative to other workers).
    #[arg(long, default_value_t = 1)]
    pub weight: u32,

    /// How long the backend waits without a heartbeat before it declares this worker dead and
    /// hands its tasks to others. Heartbeats are sent every third of it.
    #[arg(long, default_value_t = 15_000)]
    pub heartbeat_ttl_ms: u64,

    /// On SIGINT/SIGTERM: how long running tasks may take to finish before they are cancelled
    /// (and handed back to their queues).
    #[arg(long, default_value_t = 30_000)]
    pub grace_ms: u64,

    /// Mean interval of the maintenance pass this worker runs (promote due tasks, reap dead
    /// workers, purge expired records), jittered; every worker runs it, no leader needed.
    /// 0 turns it off.
    #[arg(long, default_value_t = 1_000)]
    pub maintenance_ms: u64,

    /// Serve Prometheus metrics on this address (`GET /metrics`): attempts and their outcomes,
    /// run times, retries, dead letters, tasks in flight, backend errors, reconnects.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,

    #[command(flatten, next_help_heading = "Queue configuration (with --declare)")]
    pub queue_flags: QueueFlags,
}

/// Runs a worker until SIGINT or SIGTERM, then shuts it down gracefully.
pub fn run(args: &WorkerArgs) -> Result<(), String> {
    let declared = if args.declare {
        Some(args.queue_flags.config()?)
    } else {
        None
    };
    let id = args.id.clone().unwrap_or_else(default_id);
    // Checked before connecting: a bad flag fails at once, with the reason.
    WorkerSpec::new(&id, args.queues.iter().map(String::as_str))
        .map(|spec| {
            spec.capacity(args.capacity)
                .weight(args.weight)
                .heartbeat_ttl(millis(args.heartbeat_ttl_ms))
        })
        .and_then(|spec| spec.validate())
        .map_err(|e| e.to_string())?;
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let mut builder = Worker::builder(&client, &id, args.queues.iter().map(String::as_str))
            .map_err(|e| e.to_string())?;
        if let Some(config) = declared {
            for queue in &args.queues {
                builder = builder.declare(queue, config).map_err(|e| e.to_string())?;
            }
        }
        if let Some(addr) = args.metrics {
            builder = builder.metrics(addr);
        }
        let worker = builder
            .capacity(args.capacity)
            .weight(args.weight)
            .heartbeat_ttl(millis(args.heartbeat_ttl_ms))
            .shutdown_grace(millis(args.grace_ms))
            .maintenance((args.maintenance_ms > 0).then(|| millis(args.maintenance_ms)))
            .handle("echo", |_ctx, payload| async move { Ok(payload) })
            .handle("sleep", sleep)
            .handle("fail", |_ctx, payload| async move { Err(fail(&payload)) })
            .build()
            .map_err(|e| e.to_string())?;
        stop_on_signals(worker.shutdown_handle())?;
        eprintln!(
            "switchyard worker {id}: starting on {} (namespace {}), queues {}{}, capacity {}, \
             weight {}, kinds {}",
            display::url(args.remote.url()?),
            args.remote.namespace,
            args.queues.join(","),
            if args.declare { " (declared)" } else { "" },
            args.capacity,
            args.weight,
            BUILT_IN.join(", ")
        );
        // What the operator must know before trusting this worker with work (a primary with no
        // replica in sync, a partition that does not answer).
        match client.stats().await {
            Ok(stats) => {
                for warning in stats.warnings {
                    eprintln!("switchyard worker {id}: warning: {warning}");
                }
            }
            Err(e) => eprintln!("switchyard worker {id}: cannot read the namespace yet: {e}"),
        }
        let report = worker.run().await.map_err(|e| e.to_string())?;
        eprintln!(
            "switchyard worker {id} stopped: {} completed, {} failed, {} refused, {} handed back",
            report.completed,
            report.failed,
            report.refused,
            report.drained + report.handed_back
        );
        Ok(())
    })
}

/// A worker id unique per process: the host name, the process id, and a random suffix (in
/// containers every replica's process may be pid 1 on a host named alike).
fn default_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii() && switchyard_core::is_name_byte(c as u8) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let host = if host.is_empty() {
        "worker".into()
    } else {
        host
    };
    let suffix = switchyard_core::rng::entropy() & 0xff_ffff;
    format!("{host}-{}-{suffix:06x}", std::process::id())
}

/// Shuts the worker down on the first SIGINT or SIGTERM.
fn stop_on_signals(handle: ShutdownHandle) -> Result<(), String> {
    let stopped = crate::remote::stop_signal()?;
    tokio::spawn(async move {
        stopped.await;
        eprintln!("switchyard worker: shutting down (running tasks may finish)");
        handle.shutdown();
    });
    Ok(())
}

/// `sleep`: waits the payload's milliseconds unless cancelled.
async fn sleep(ctx: TaskContext, payload: Vec<u8>) -> Result<Vec<u8>, TaskError> {
    let ms = match serde_json::from_slice::<Value>(&payload) {
        Ok(Value::Number(n)) => n.as_u64(),
        Ok(Value::Object(o)) => o.get("ms").and_then(Value::as_u64),
        _ => None,
    }
    .ok_or_else(|| {
        TaskError::fatal("sleep expects a payload of milliseconds: 250 or {\"ms\": 250}")
    })?;
    // One line when it starts and one when it ends (at debug level, target
    // `switchyard_cli::sleep`), so that tests and operators can see when a task ran where.
    tracing::debug!(target: "switchyard_cli::sleep", task = %ctx.id, attempt = ctx.attempt, "started, {ms} ms");
    let total = Duration::from_millis(ms);
    let started = tokio::time::Instant::now();
    let outcome = loop {
        let left = total.saturating_sub(started.elapsed());
        if left.is_zero() {
            break Ok(payload);
        }
        tokio::select! {
            () = tokio::time::sleep(left.min(Duration::from_secs(1))) => {}
            () = ctx.cancelled() => break Err(TaskError::fatal("cancelled while sleeping")),
        }
        // Its progress after each full second (`switchyard task <id>` shows it); best effort.
        let slept = started.elapsed();
        if slept < total {
            let report = format!("slept {} of {ms} ms", slept.as_millis());
            let fraction = slept.as_secs_f64() / total.as_secs_f64();
            if let Err(e) = ctx.progress(fraction, report).await {
                tracing::debug!(target: "switchyard_cli::sleep", task = %ctx.id, "progress not reported: {e}");
            }
        }
    };
    tracing::debug!(target: "switchyard_cli::sleep", task = %ctx.id, attempt = ctx.attempt, ok = outcome.is_ok(), "ended");
    outcome
}

/// `fail`: the error its payload asks for.
fn fail(payload: &[u8]) -> TaskError {
    let (message, fatal) = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::String(s)) => (s, false),
        Ok(Value::Object(o)) => (
            o.get("message")
                .and_then(Value::as_str)
                .unwrap_or("asked to fail")
                .to_owned(),
            o.get("fatal").and_then(Value::as_bool).unwrap_or(false),
        ),
        _ => ("asked to fail".to_owned(), false),
    };
    if fatal {
        TaskError::fatal(message)
    } else {
        TaskError::retry(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ids_are_valid_and_differ() {
        let (a, b) = (default_id(), default_id());
        assert_ne!(a, b);
        for id in [a, b] {
            switchyard::WorkerId::new(&id).unwrap();
            assert!(id.contains(&format!("-{}-", std::process::id())), "{id}");
        }
    }

    #[test]
    fn fail_reads_message_and_fatality() {
        let e = fail(br#"{"message": "disk full", "fatal": true}"#);
        assert_eq!(e.message(), "disk full");
        assert!(!e.is_retryable());
        let e = fail(br#""try later""#);
        assert_eq!(e.message(), "try later");
        assert!(e.is_retryable());
        assert_eq!(fail(b"not json").message(), "asked to fail");
    }
}
