//! The queue handle (`Client::queue`) on the memory backend: everything it does, declaring
//! as an idempotent step, and the names kept for one release as deprecated aliases.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard::admin::Purge;
use switchyard::{
    Client, Error, Policy, QueueConfig, Strategy, TaskError, TaskOutcome, TaskSpec, TaskState,
    Worker,
};

#[derive(Serialize, Deserialize)]
struct Resize {
    width: u32,
}

impl switchyard::Task for Resize {
    const KIND: &'static str = "resize";
}

#[tokio::test]
async fn a_queue_handle_submits_and_manages_its_queue() {
    let client = Client::memory();
    let images = client.queue("images").unwrap();
    assert_eq!(images.name().as_str(), "images");
    assert!(matches!(
        images.submit_json("resize", &1).await,
        Err(Error::UnknownQueue(_))
    ));
    assert!(matches!(images.stats().await, Err(Error::UnknownQueue(_))));

    images.declare(QueueConfig::default()).await.unwrap();
    let typed = images.enqueue(&Resize { width: 64 }).await.unwrap();
    let json = images
        .submit_json("resize", &Resize { width: 32 })
        .await
        .unwrap();
    let spec = images
        .spec_builder("raw")
        .payload(b"x".to_vec())
        .build()
        .unwrap();
    let raw = images.submit(spec).await.unwrap();
    let batch = images
        .submit_batch(vec![
            images.spec_builder("raw").build().unwrap(),
            images.spec_builder("raw").build().unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(typed.info().await.unwrap().unwrap().kind.as_str(), "resize");
    assert_eq!(images.stats().await.unwrap().ready, 5);

    // A spec built for another queue is refused, alone or in a batch, and nothing is stored.
    let elsewhere = TaskSpec::builder("other", "k").build().unwrap();
    let refused = images.submit(elsewhere.clone()).await.unwrap_err();
    assert!(
        refused.to_string().contains("handle of `images`"),
        "{refused}"
    );
    assert!(images.submit_batch(vec![elsewhere]).await.is_err());
    assert_eq!(images.stats().await.unwrap().ready, 5);

    images.pause().await.unwrap();
    assert!(images.stats().await.unwrap().paused);
    assert_eq!(
        images.resume().await.unwrap(),
        0,
        "no worker to dispatch to"
    );

    let purged = images.purge(Purge::Waiting, 2).await.unwrap();
    assert_eq!((purged.removed, purged.more), (2, true));
    assert_eq!(
        json.wait(Duration::from_secs(1)).await.unwrap(),
        TaskOutcome::Cancelled,
        "the oldest waiting tasks are purged first"
    );
    assert_eq!(raw.state().await.unwrap(), Some(TaskState::Ready));

    // Dead letters: a handler that fails fatally.
    let worker = Worker::builder(&client, "w", [&images])
        .unwrap()
        .handle("raw", |_ctx, _p| async move {
            Err::<Vec<u8>, _>(TaskError::fatal("bad input"))
        })
        .handle_task(|_ctx, r: Resize| async move { Ok::<_, TaskError>(r.width * 2) })
        .build()
        .unwrap();
    let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    assert!(matches!(
        raw.wait(Duration::from_secs(5)).await.unwrap(),
        TaskOutcome::Dead(_)
    ));
    let dead = images.dead_letters(10).await.unwrap();
    assert!(dead.iter().any(|t| t.id == raw.id()));
    assert!(
        dead.iter()
            .all(|t| t.last_error.as_deref() == Some("bad input"))
    );
    stop.shutdown();
    running.await.unwrap().unwrap();

    assert_eq!(images.config().await.unwrap(), Some(QueueConfig::default()));
    assert!(matches!(
        images.delete().await,
        Err(Error::QueueInUse { .. })
    ));
}

#[tokio::test]
async fn declaring_is_idempotent_and_a_conflict_names_each_field() {
    let client = Client::memory();
    let q = client.queue("jobs").unwrap();
    let config = QueueConfig::new(Policy::PRIORITY, Strategy::LeastLoaded).with_max_attempts(5);
    q.declare(config).await.unwrap();
    q.declare(config).await.unwrap();
    client.declare("jobs", config).await.unwrap();

    let mut other = config.with_timeout(Duration::from_secs(30));
    other.strategy = Strategy::Affinity { vnodes: 8 };
    let Err(e @ Error::QueueConflict { .. }) = q.declare(other).await else {
        panic!("a different configuration must conflict");
    };
    let text = e.to_string();
    assert!(
        text.contains("strategy least-loaded → affinity(8 vnodes)")
            && text.contains("timeout_ms 300000 → 30000")
            && !text.contains("max_attempts"),
        "{text}"
    );
    assert!(text.contains("reconfigure"), "{text}");
    assert_eq!(q.config().await.unwrap(), Some(config), "nothing changed");
    assert!(q.reconfigure(config.with_max_attempts(6)).await.unwrap());
}

#[tokio::test]
#[allow(deprecated)]
async fn the_old_names_still_work_for_one_release() {
    let client = Client::memory();
    client.declare("q", QueueConfig::default()).await.unwrap();
    let spec = Client::spec("q", &Resize { width: 1 })
        .unwrap()
        .build()
        .unwrap();
    let task = client.submit(spec).await.unwrap();
    assert_eq!(client.task(task.id()).id(), task.id());
    assert!(client.dead("q", 10).await.unwrap().is_empty());
    let worker = Worker::builder(&client, "w", ["q"])
        .unwrap()
        .task(|_ctx, r: Resize| async move { Ok::<_, TaskError>(r.width) })
        .build()
        .unwrap();
    let (stop, running) = (worker.shutdown_handle(), tokio::spawn(worker.run()));
    assert_eq!(task.result::<u32>(Duration::from_secs(5)).await.unwrap(), 1);
    stop.shutdown();
    running.await.unwrap().unwrap();
}
