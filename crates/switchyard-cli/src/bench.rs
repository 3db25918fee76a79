//! `switchyard bench`: what one task costs Redis, measured on a real server.
//!
//! Every figure is measured in one run against the server given by `--url`, which nothing else
//! should be using (CPU and memory are read from `INFO`): Redis CPU per task lifecycle as a
//! `used_cpu_user + used_cpu_sys` delta, the same next to two floors (a trivial `return 1`
//! script, and a bare lifecycle that only runs the commands any queue needs), per-script
//! `usec_per_call` from `INFO commandstats`, growth with queue depth and worker count, end-to-end throughput with producers and workers running at once, and memory
//! per queued task. Each run uses a fresh namespace and deletes it afterwards.
//!
//! One module per measurement: [`floor`], [`lifecycle`], [`flow`] (what flow control costs),
//! [`growth`] (queue depth, worker count), [`e2e`], [`memory`], and [`compare`] (the side-by-side harness' shapes); [`bare`]
//! is the bare floor's script and call (shared with `examples/anchor_bare_floor.rs`), [`probe`]
//! what is read from the server, [`space`] the namespaces, queues, workers and tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod bare;
mod browse;
mod compare;
mod e2e;
mod floor;
mod flow;
mod growth;
mod lifecycle;
mod memory;
mod probe;
mod space;

use probe::{Probe, Snapshot, measure};
use space::{Space, Tasks, me, space};

use clap::Args;
use switchyard::backend::prelude::*;
use switchyard::backend::{
    Clock, InstanceToken, Lease, SystemClock, TaskIdGenerator, WorkerRef, WorkerSpec,
};
use switchyard::{
    Client, Durable, Policy, QueueConfig, QueueName, RedisBackend, RedisConfig, Strategy, TaskSpec,
    Worker, WorkerId,
};
use switchyard_core::display;

/// Flags of `switchyard bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The Redis to measure, e.g. `redis://127.0.0.1:7777`. Use a server nothing else is using:
    /// CPU and memory figures are read from its INFO. Start one with
    /// `redis-server --port 7777 --save '' --appendonly no`.
    #[arg(long, env = "SWITCHYARD_URL", hide_env_values = true)]
    pub url: String,

    /// Task lifecycles per CPU measurement.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,

    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,

    /// Tasks in each end-to-end run.
    #[arg(long, default_value_t = 200_000)]
    pub e2e_tasks: usize,

    /// Concurrent producers in end-to-end runs.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,

    /// Workers in end-to-end runs.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,

    /// Deepest backlog for the growth measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_depth: usize,

    /// The shapes of the side-by-side harness (`shared/bench-anchors`: bulk submits and
    /// awaited single submits to one 50-slot worker) and submit-to-start latency at half the
    /// single-submit rate, instead of the sections of `--only`.
    #[arg(long)]
    pub compare: bool,

    /// Tasks of `--compare`'s bulk and single shapes (the harness' 50,000 and 10,000 by
    /// default; smaller for a run under callgrind).
    #[arg(long, value_delimiter = ',', value_name = "BULK,SINGLE", default_values_t = [50_000usize, 10_000])]
    pub compare_tasks: Vec<usize>,

    /// Sections to run, comma-separated: floor, lifecycle, flow, depth, workers, e2e, memory,
    /// browse (the task browser on a `--max-depth` queue; not in the default list).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,lifecycle,flow,depth,workers,e2e,memory"
    )]
    pub only: Vec<String>,

    /// The queues of the flow section, comma-separated (plain, bounded, concurrency, rate,
    /// edf, groups, groups-rate, groups-bounded); fewer for a run under callgrind (`benches/callgrind_flow.sh`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "plain,bounded,concurrency,rate,edf,groups,groups-rate,groups-bounded"
    )]
    pub flow_queues: Vec<String>,

    /// Batch sizes of the flow section, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub flow_batches: Vec<usize>,

    /// Batch sizes of the end-to-end runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,128")]
    pub e2e_batches: Vec<usize>,

    /// Durable mode in every measurement: after each call, WAIT until this many replicas
    /// confirmed it (1 s timeout). The server must have that many replicas.
    #[arg(long, value_name = "REPLICAS")]
    pub durable: Option<u32>,
}

type Res<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs the benchmark and prints a markdown report.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &BenchArgs) -> Res<()> {
    if args.url.contains(":6379") {
        eprintln!("warning: measuring the server on port 6379; make sure nothing else uses it");
    }
    let client = redis::Client::open(args.url.as_str()).map_err(err)?;
    let mut probe = Probe {
        conn: client
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new().set_response_timeout(None),
            )
            .await
            .map_err(|e| format!("cannot reach {}: {e}", display::url(&args.url)))?,
    };
    let info = probe.info("server").await?;
    println!(
        "# switchyard bench\n\nRedis {} on {}; {} tasks per CPU figure, {}-byte payloads.\n",
        info.get("redis_version").map_or("?", String::as_str),
        display::url(&args.url),
        args.tasks,
        args.payload
    );
    if args.compare {
        return compare::compare(&mut probe, args).await;
    }
    let want = |s: &str| args.only.iter().any(|o| o == s);
    let mut floors = floor::Floors::default();
    if want("floor") {
        floors = floor::floor(&mut probe, args).await?;
    }
    if want("lifecycle") {
        lifecycle::lifecycle(&mut probe, args, &floors).await?;
    }
    if want("flow") {
        flow::flow_control(&mut probe, args).await?;
    }
    if want("depth") {
        growth::depth(&mut probe, args).await?;
    }
    if want("workers") {
        growth::workers(&mut probe, args).await?;
    }
    if want("e2e") {
        e2e::end_to_end(&mut probe, args).await?;
    }
    if want("memory") {
        memory::memory(&mut probe, args).await?;
    }
    if want("browse") {
        browse::browse(&mut probe, args).await?;
    }
    Ok(())
}
