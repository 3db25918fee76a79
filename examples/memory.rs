//! Producer and workers in one process on the in-memory backend: no Redis needed.
//!
//! ```sh
//! cargo run --example memory
//! ```

use std::time::Duration;

use switchyard::{Client, Policy, QueueConfig, Strategy, TaskError, Worker};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::memory();
    let thumbnails = client.queue("thumbnails")?;
    thumbnails
        .declare(QueueConfig::new(Policy::SJF, Strategy::Weighted))
        .await?;

    // Two workers; the second is twice as strong, so the weighted strategy gives it twice the
    // share.
    let mut running = Vec::new();
    for (id, weight) in [("small", 1), ("large", 2)] {
        let worker = Worker::builder(&client, id, [&thumbnails])?
            .capacity(2 * weight)
            .weight(weight)
            .handle_json("resize", |ctx, side: u32| async move {
                tokio::time::sleep(Duration::from_millis(u64::from(side) / 10)).await;
                Ok::<_, TaskError>(format!("{side}px by {}", ctx.worker))
            })
            .build()?;
        running.push((id, worker.shutdown_handle(), tokio::spawn(worker.run())));
    }

    // The producer: a batch of tasks, then every result.
    let mut handles = Vec::new();
    for side in [640u32, 64, 320, 128, 1280, 32, 256, 512, 96] {
        handles.push(thumbnails.submit_json("resize", &side).await?);
    }
    for handle in handles {
        let done: String = handle.result(Duration::from_secs(10)).await?;
        println!("{}: {done}", handle.id());
    }

    for (id, stop, run) in running {
        stop.shutdown();
        let report = run.await??;
        println!("{id} completed {} tasks", report.completed);
    }
    Ok(())
}
