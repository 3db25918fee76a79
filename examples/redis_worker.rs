//! A worker process on Redis: counts words until Ctrl-C or SIGTERM, then shuts down gracefully.
//!
//! ```sh
//! redis-server --port 6380 --save '' &
//! cargo run --example redis_worker -- worker-a &
//! cargo run --example redis_worker -- worker-b &
//! cargo run --example redis_producer
//! ```

mod shared;

use std::time::Duration;

use shared::{CountWords, Counted, QUEUE, namespace, redis_url};
use switchyard::{Client, Policy, QueueConfig, Strategy, TaskError, Worker};

#[tokio::main]
async fn main() -> Result<(), switchyard::Error> {
    let id = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let client = Client::connect(&redis_url(), &namespace()).await?;
    // Declaring is idempotent: whichever process starts first creates the queue.
    let queue = client.queue(QUEUE)?;
    queue
        .declare(QueueConfig::new(Policy::Fcfs, Strategy::LeastLoaded))
        .await?;
    let worker = Worker::builder(&client, &id, [&queue])?
        .capacity(4)
        .heartbeat_ttl(Duration::from_secs(5))
        .handle_task(|ctx, task: CountWords| async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(task.work_ms)) => {}
                _ = ctx.cancelled() => return Err(TaskError::fatal("cancelled")),
            }
            Ok(Counted {
                words: task.text.split_whitespace().count(),
                worker: ctx.worker.to_string(),
            })
        })
        .build()?;
    println!("{id}: serving `{QUEUE}` until Ctrl-C or SIGTERM");
    let report = worker.run_until_signal().await?;
    println!("{id}: stopped after {} tasks", report.completed);
    Ok(())
}
