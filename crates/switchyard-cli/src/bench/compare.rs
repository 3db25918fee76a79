//! `switchyard bench --compare`: the workload shapes of the side-by-side harness
//! (`shared/bench-anchors`, which runs BullMQ and apalis-redis on them too), built in so that
//! anyone can reproduce Switchyard's side of its table against their own Redis, and one more
//! row: submit-to-start latency at half the rate a producer reaches one awaited submit at a time.
//!
//! Each shape runs one producer and one `switchyard::Worker` (50 slots, a pull queue, a no-op
//! handler) in this process, on a fresh namespace. "Done" is *succeeded in Redis*
//! (acknowledged), as the harness holds Switchyard to.

use std::sync::Mutex;

use futures_util::StreamExt;

use super::bare::Bare;
use super::*;

/// One shape of the harness.
#[derive(Clone, Copy)]
enum Shape {
    /// `n` tasks submitted in batches of `chunk` while the worker runs them.
    Bulk { n: usize, chunk: usize },
    /// `n` tasks submitted one at a time, each awaited before the next.
    Single { n: usize },
}

impl Shape {
    fn n(self) -> usize {
        match self {
            Shape::Bulk { n, .. } | Shape::Single { n } => n,
        }
    }

    fn label(self) -> String {
        match self {
            Shape::Bulk { chunk, .. } => format!("bulk {chunk}"),
            Shape::Single { .. } => "single, awaited".to_owned(),
        }
    }
}

/// What a shape's handler does with each payload.
type OnTask = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Worker slots in every shape (the harness' `c=50`).
const SLOTS: u32 = 50;

pub(super) async fn compare(probe: &mut Probe, args: &BenchArgs) -> Res<()> {
    println!("## Side by side: the harness' shapes\n");
    println!(
        "One producer and one `switchyard::Worker` ({SLOTS} slots, pull, no-op handler) in this process; tasks/s from the first submit to the last task acknowledged.\n"
    );
    println!(
        "| shape | tasks | tasks/s | Redis CPU per task | script calls per task | Redis commands per task |\n| --- | --- | --- | --- | --- | --- |"
    );
    let (bulk, single) = match args.compare_tasks[..] {
        [bulk, single] if bulk > 0 && single > 0 => (bulk, single),
        _ => return Err("--compare-tasks: expected two positive counts, BULK,SINGLE".into()),
    };
    run_shape(
        probe,
        args,
        Shape::Bulk {
            n: bulk,
            chunk: 1_000.min(bulk),
        },
    )
    .await?;
    let single_rate = run_shape(probe, args, Shape::Single { n: single }).await?;
    bare_single(probe, args, single).await?;
    println!(
        "\n(The bare floor: one producer awaiting each call of a script that only stores the task and publishes it whole to the one waiting worker, which acknowledges it with a script that only stores its result — `hand` and `ack` in `crates/switchyard-cli/src/bench/bare_lifecycle.lua`; no validation, ordering, strategy, lease or accounting. It is what any awaited single submit with a push delivery costs on this server.)\n"
    );
    latency(probe, args, single_rate / 2.0).await
}

/// All commands the server ran (scripts' commands included), from its commandstats.
async fn commands(probe: &mut Probe) -> Res<u64> {
    let info = probe.info("commandstats").await?;
    Ok(info
        .values()
        .filter_map(|v| v.strip_prefix("calls="))
        .filter_map(|v| v.split(',').next())
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}

/// A worker the shapes run, started.
struct Running {
    stop: switchyard::ShutdownHandle,
    run: tokio::task::JoinHandle<switchyard::Result<switchyard::WorkerReport>>,
    /// Handler runs so far.
    ran: Arc<AtomicUsize>,
}

impl Running {
    /// A worker of [`SLOTS`] slots on `queue` whose handler calls `on_task` with the payload,
    /// registered before this returns.
    async fn start(s: &Space, client: &Client, queue: &QueueName, on_task: OnTask) -> Res<Self> {
        let ran = Arc::new(AtomicUsize::new(0));
        let count = ran.clone();
        let worker = Worker::builder(client, "compare-w", [queue.as_str()])
            .map_err(err)?
            .capacity(SLOTS)
            .handle("job", move |_ctx, payload: Vec<u8>| {
                let (on_task, count) = (on_task.clone(), count.clone());
                async move {
                    on_task(&payload);
                    count.fetch_add(1, Ordering::Relaxed);
                    Ok(Vec::new())
                }
            })
            .build()
            .map_err(err)?;
        let stop = worker.shutdown_handle();
        let run = tokio::spawn(worker.run());
        while s.backend.stats().await.map_err(err)?.workers.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Running { stop, run, ran })
    }

    async fn stop(self) -> Res<()> {
        self.stop.shutdown();
        self.run.await.map_err(err)?.map_err(err)?;
        Ok(())
    }
}

/// Waits until the handler ran `n` times (`ran`), then until `n` tasks of the namespace
/// succeeded, polling every millisecond as the harness does (at most 10 minutes in all).
async fn until_succeeded(s: &Space, n: usize, ran: &AtomicUsize) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while ran.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return Err(format!("{n} tasks did not run within 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    loop {
        let stats = s.backend.stats().await.map_err(err)?;
        if stats.queues.iter().map(|q| q.succeeded).sum::<u64>() as usize >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{n} tasks did not finish within 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs one shape and prints its row; returns its tasks/s.
async fn run_shape(probe: &mut Probe, args: &BenchArgs, shape: Shape) -> Res<f64> {
    let s = space(args, 4).await?;
    let q = s.queue("compare", Policy::Fcfs, Strategy::Pull).await?;
    let client = Client::new(s.backend.clone());
    let worker = Running::start(&s, &client, &q, Arc::new(|_| {})).await?;
    let mut tasks = Tasks::new(200, args.payload);
    let n = shape.n();
    let before = Snapshot::take(probe).await?;
    let commands_before = commands(probe).await?;
    match shape {
        Shape::Bulk { chunk, .. } => {
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk);
                client
                    .submit_batch(tasks.batch(q.as_str(), k)?)
                    .await
                    .map_err(err)?;
                left -= k;
            }
        }
        Shape::Single { .. } => {
            for _ in 0..n {
                client.submit(tasks.next(q.as_str())?).await.map_err(err)?;
            }
        }
    }
    until_succeeded(&s, n, &worker.ran).await?;
    let rate = n as f64 / before.started.elapsed().as_secs_f64();
    print_row(probe, &shape.label(), n, &before, commands_before).await?;
    worker.stop().await?;
    s.cleanup(probe).await?;
    Ok(rate)
}

/// Prints the row `label` of the table for `n` tasks run since `before` (and
/// `commands_before`, from [`commands`]).
async fn print_row(
    probe: &mut Probe,
    label: &str,
    n: usize,
    before: &Snapshot,
    commands_before: u64,
) -> Res<()> {
    let cells = before.cells_since(probe, n).await?;
    // tasks/s | CPU | calls | usec_per_call: this table shows the first three.
    let cells: Vec<&str> = cells.split(" | ").take(3).collect();
    let per_task = (commands(probe).await? - commands_before) as f64 / n as f64;
    println!("| {label} | {n} | {} | {per_task:.1} |", cells.join(" | "));
    Ok(())
}

/// The floor of the awaited single shape: `n` tasks, each a `hand` call of the bare lifecycle
/// awaited by the producer, published to a subscribed worker that acknowledges it with an
/// `ack` call; prints its row.
async fn bare_single(probe: &mut Probe, args: &BenchArgs, n: usize) -> Res<()> {
    let bare = Arc::new(Bare::new(&format!(
        "sy:{{bench-bare1-{}}}:",
        std::process::id()
    )));
    let client = redis::Client::open(args.url.as_str()).map_err(err)?;
    let mut pubsub = client.get_async_pubsub().await.map_err(err)?;
    pubsub.subscribe(bare.channel()).await.map_err(err)?;
    let acker = client
        .get_multiplexed_async_connection()
        .await
        .map_err(err)?;
    let acking = bare.clone();
    let worker = tokio::spawn(async move {
        let mut messages = pubsub.on_message();
        let mut acks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let Some(message) = messages.next().await else {
                return Err("bare floor: the worker's subscription ended".to_owned());
            };
            let id = Bare::handed_id(message.get_payload_bytes()).to_vec();
            let (bare, mut conn) = (acking.clone(), acker.clone());
            acks.spawn(async move {
                let done: usize = bare
                    .call("ack", 1, &[&id])
                    .invoke_async(&mut conn)
                    .await
                    .map_err(err)?;
                if done == 1 {
                    Ok(())
                } else {
                    Err("bare floor: an ack found no task".to_owned())
                }
            });
        }
        while let Some(done) = acks.join_next().await {
            done.map_err(err)??;
        }
        Ok(())
    });
    let payload = vec![b'x'; args.payload];
    let mut conn = probe.conn.clone();
    let before = Snapshot::take(probe).await?;
    let commands_before = commands(probe).await?;
    for _ in 0..n {
        let _: usize = bare
            .call("hand", 1, &[&payload, bare.channel().as_bytes()])
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
    }
    let ran = tokio::time::timeout(Duration::from_secs(600), worker).await;
    ran.map_err(|_| format!("bare floor: {n} tasks were not acknowledged within 10 minutes"))?
        .map_err(err)??;
    print_row(probe, "single, bare floor", n, &before, commands_before).await?;
    let _: () = redis::cmd("UNLINK")
        .arg(bare.keys())
        .query_async(&mut probe.conn)
        .await
        .map_err(err)?;
    Ok(())
}

/// Submit-to-start latency with one producer submitting at `rate` tasks/s without waiting
/// for its earlier submits (an open loop), for about three seconds.
async fn latency(probe: &mut Probe, args: &BenchArgs, rate: f64) -> Res<()> {
    let rate = rate.max(10.0);
    let n = ((rate * 3.0) as usize).clamp(100, 50_000);
    println!(
        "Submit-to-start latency at {rate:.0} tasks/s (half the awaited single-submit rate above), {n} tasks, one producer not awaiting its submits:\n"
    );
    let s = space(args, 4).await?;
    let q = s.queue("latency", Policy::Fcfs, Strategy::Pull).await?;
    let client = Client::new(s.backend.clone());
    let base = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let seen = samples.clone();
    let on_task = Arc::new(move |payload: &[u8]| {
        let Ok(bytes) = <[u8; 8]>::try_from(payload) else {
            return;
        };
        let started = base.elapsed().as_micros() as u64;
        let waited = started.saturating_sub(u64::from_be_bytes(bytes));
        seen.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(waited);
    });
    let worker = Running::start(&s, &client, &q, on_task).await?;
    let mut ids = Tasks::new(300, 0);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = Vec::with_capacity(n);
    for _ in 0..n {
        tick.tick().await;
        let stamp = (base.elapsed().as_micros() as u64).to_be_bytes().to_vec();
        let spec = TaskSpec::builder(q.as_str(), "job")
            .id(ids.ids.next_at(SystemClock.now_ms()))
            .payload(stamp)
            .build()
            .map_err(err)?;
        let client = client.clone();
        sent.push(tokio::spawn(async move { client.submit(spec).await }));
    }
    for submit in sent {
        submit.await.map_err(err)?.map_err(err)?;
    }
    until_succeeded(&s, n, &worker.ran).await?;
    worker.stop().await?;
    let mut waited = samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    waited.sort_unstable();
    let at = |p: f64| waited[((waited.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    if waited.len() != n {
        return Err(format!("{} of {n} tasks started", waited.len()));
    }
    println!(
        "| p50 | p99 | max |\n| --- | --- | --- |\n| {:.2} ms | {:.2} ms | {:.2} ms |\n",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    s.cleanup(probe).await
}
