//! The floor of the side-by-side harness' awaited single shape (`shared/bench-anchors`), in
//! its process shape: a producer process awaiting each call of a script that only stores the
//! task and publishes it whole to the waiting worker, and a worker process that acknowledges
//! each with a script that only stores its result (`hand` and `ack` in
//! `crates/switchyard-cli/src/bench/bare_lifecycle.lua`). No validation, ordering, strategy, lease
//! or accounting: what any awaited single submit with a push delivery costs the server.
//!
//! It speaks the harness' `enqueue | work` flags and prints its `READY` and `RESULT` lines, so
//! the harness measures it next to BullMQ in one run:
//!
//! ```sh
//! cargo build --release --example anchor_bare_floor
//! ONLY=single SYSTEMS=bullmq,switchyard \
//!   SWITCHYARD_CMD=$PWD/target/release/examples/anchor_bare_floor ../shared/bench-anchors/run.sh
//! ```
//!
//! (The harness labels its rows `switchyard-single`: here that row is the floor.) Only
//! `--chunk 1` exists; the server is `REDIS_HOST:REDIS_PORT` (127.0.0.1:6390 by default, the
//! harness' own server).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

// The bare floor's script, keys and call, as `switchyard bench` measures them.
#[path = "../crates/switchyard-cli/src/bench/bare.rs"]
#[allow(dead_code)]
mod bare;

use bare::Bare;

/// Where the harness' runs of the floor keep their keys.
const TAG: &str = "sy:{anchor-bare}:";

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The value of `--name`, or `default`.
fn opt(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| *a == format!("--{name}"))
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

/// The bare lifecycle on the harness' keys.
fn floor() -> &'static Bare {
    static BARE: std::sync::OnceLock<Bare> = std::sync::OnceLock::new();
    BARE.get_or_init(|| Bare::new(TAG))
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = opt(&args, "n", "10000").parse()?;
    let host = std::env::var("REDIS_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6390".into());
    let client = redis::Client::open(format!("redis://{host}:{port}"))?;
    match args.first().map(String::as_str) {
        Some("enqueue") => {
            let chunk = opt(&args, "chunk", "1");
            if chunk != "1" {
                return Err(format!(
                    "--chunk {chunk}: the bare floor has only the single shape (--chunk 1)"
                )
                .into());
            }
            let mut conn = client.get_multiplexed_async_connection().await?;
            let t_start = now_ms();
            for i in 0..n {
                let payload = format!("{{\"i\":{i}}}");
                let bare = floor();
                let done: usize = bare
                    .call("hand", 1, &[payload.as_bytes(), bare.channel().as_bytes()])
                    .invoke_async(&mut conn)
                    .await?;
                if done != 1 {
                    return Err("a hand call stored no task".into());
                }
            }
            let t_end = now_ms();
            println!(
                "RESULT {{\"system\":\"switchyard\",\"version\":\"bare floor\",\"role\":\"enqueue\",\"n\":{n},\"chunk\":1,\"t_start\":{t_start},\"t_end\":{t_end}}}"
            );
        }
        Some("work") => work(&client, n, &opt(&args, "concurrency", "50")).await?,
        _ => {
            return Err(
                "usage: anchor_bare_floor enqueue|work --n N [--chunk 1] [--concurrency C]".into(),
            );
        }
    }
    Ok(())
}

/// Acknowledges `n` published tasks (each in its own task, as a worker's slots would), then
/// prints the harness' RESULT line; at most 10 minutes.
async fn work(client: &redis::Client, n: usize, concurrency: &str) -> Res<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(floor().channel()).await?;
    let conn = client.get_multiplexed_async_connection().await?;
    println!("READY");
    let t_ready = now_ms();
    let deadline = Instant::now() + Duration::from_secs(600);
    let done = Arc::new(AtomicUsize::new(0));
    let mut t_first = 0.0;
    let mut acks = tokio::task::JoinSet::new();
    let mut messages = pubsub.on_message();
    for seen in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(left, messages.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Err("the subscription ended".into()),
            Err(_) => return Err(format!("{seen} of {n} tasks arrived within 10 minutes").into()),
        };
        if seen == 0 {
            t_first = now_ms();
        }
        let id = Bare::handed_id(message.get_payload_bytes()).to_vec();
        let (mut conn, done) = (conn.clone(), done.clone());
        acks.spawn(async move {
            let acked: usize = floor()
                .call("ack", 1, &[&id])
                .invoke_async(&mut conn)
                .await?;
            if acked == 1 {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Res::Ok(())
        });
    }
    while let Some(ack) = acks.join_next().await {
        ack??;
    }
    let t_last = now_ms();
    let done = done.load(Ordering::Relaxed);
    if done != n {
        return Err(format!("{done} of {n} acks found their task").into());
    }
    println!(
        "RESULT {{\"system\":\"switchyard\",\"version\":\"bare floor\",\"role\":\"work\",\"n\":{n},\"concurrency\":{concurrency},\"t_ready\":{t_ready},\"t_first\":{t_first},\"t_last\":{t_last},\"done\":{done}}}"
    );
    Ok(())
}
