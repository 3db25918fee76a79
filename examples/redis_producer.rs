//! A producer process on Redis: submits a batch of tasks, awaits every result and shows how
//! the workers (running as other processes: see `redis_worker`) shared them.

mod shared;

use std::collections::BTreeMap;
use std::time::Duration;

use shared::{CountWords, Counted, QUEUE, namespace, redis_url};
use switchyard::{Client, Policy, QueueConfig, Strategy};

#[tokio::main]
async fn main() -> Result<(), switchyard::Error> {
    let client = Client::connect(&redis_url(), &namespace()).await?;
    let queue = client.queue(QUEUE)?;
    queue
        .declare(QueueConfig::new(Policy::Fcfs, Strategy::LeastLoaded))
        .await?;
    let texts = [
        "the quick brown fox",
        "jumps over",
        "the lazy dog",
        "again and again",
    ];
    let specs = (0..40)
        .map(|i| {
            let task = CountWords {
                text: texts[i % texts.len()].to_owned(),
                work_ms: 50,
            };
            Client::spec_builder(QUEUE, &task)?.build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let handles = queue.submit_batch(specs).await?;
    println!("submitted {} tasks; waiting for the workers", handles.len());

    let mut by_worker = BTreeMap::<String, usize>::new();
    let mut words = 0;
    for handle in &handles {
        let counted: Counted = handle.result(Duration::from_secs(60)).await?;
        words += counted.words;
        *by_worker.entry(counted.worker).or_default() += 1;
    }
    println!("{words} words counted");
    for (worker, n) in by_worker {
        println!("  {worker:<12} {n:>3} tasks");
    }
    Ok(())
}
