//! Clock skew between a worker and its backend: timeouts and the maintenance pace hold.

use super::*;

/// A clock `by` ms ahead of (or, negative, behind) the system clock.
#[derive(Debug)]
pub(crate) struct Skewed(i64);

impl Clock for Skewed {
    fn now_ms(&self) -> u64 {
        SystemClock.now_ms().saturating_add_signed(self.0)
    }
}

/// A client whose backend's clock is skewed by `by` ms against this process's clock.
pub(crate) async fn skewed_client(redis: Option<&RedisServer>, by: i64) -> Client {
    static NS: AtomicU64 = AtomicU64::new(0);
    let clock: Arc<dyn Clock> = Arc::new(Skewed(by));
    match redis {
        None => Client::new(switchyard::MemoryBackend::with_clock(clock)),
        Some(server) => {
            let ns = format!("skew{}", NS.fetch_add(1, Ordering::SeqCst));
            let config = RedisConfig::new(server.url(), ns).with_clock(clock);
            Client::new(RedisBackend::with_config(config).await.unwrap())
        }
    }
}

/// Per-task timeouts run on the worker's clock: with the backend's clock an hour behind or
/// ahead, a quick task still succeeds and a slow one still times out on time.
pub(crate) async fn timeouts_ignore_clock_skew(redis: Option<&RedisServer>) {
    for skew in [-3_600_000, 3_600_000] {
        let c = skewed_client(redis, skew).await;
        c.declare("q", QueueConfig::default()).await.unwrap();
        let worker = Worker::builder(&c, "w", ["q"])
            .unwrap()
            .capacity(2)
            .handle("sleep", |_ctx, p| async move {
                let ms: u64 = String::from_utf8(p).unwrap().parse().unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(b"done".to_vec())
            })
            .build()
            .unwrap();
        let (stop, run) = spawn(worker);
        let spec = |ms: &str, timeout_ms: u64| {
            TaskSpec::builder("q", "sleep")
                .payload(ms.as_bytes().to_vec())
                .timeout(Duration::from_millis(timeout_ms))
                .max_attempts(1)
                .build()
                .unwrap()
        };
        let quick_task = c.submit(spec("50", 10_000)).await.unwrap();
        let slow_task = c.submit(spec("60000", 300)).await.unwrap();
        assert_eq!(
            quick_task.wait(Duration::from_secs(20)).await.unwrap(),
            TaskOutcome::Succeeded(b"done".to_vec()),
            "skew {skew}"
        );
        assert_eq!(
            slow_task.wait(Duration::from_secs(20)).await.unwrap(),
            TaskOutcome::Dead(timeout_error(300)),
            "skew {skew}"
        );
        stop.shutdown();
        run.await.unwrap().unwrap();
    }
}

/// The maintenance loop sleeps until the backend says something is due, on the backend's
/// clock: a worker whose clock is an hour off neither spins (due times all in its past) nor
/// oversleeps its interval.
pub(crate) async fn maintenance_keeps_its_pace_under_clock_skew(redis: Option<&RedisServer>) {
    for skew in [-3_600_000, 3_600_000] {
        let c = skewed_client(redis, skew).await;
        let tap = Arc::new(Tap::new(c.backend().clone()));
        let c = Client::from_arc(tap.clone());
        c.declare("q", QueueConfig::default()).await.unwrap();
        let worker = Worker::builder(&c, "w", ["q"])
            .unwrap()
            .maintenance(Some(Duration::from_millis(200)))
            .handle("noop", |_ctx, _p| async move { Ok(Vec::new()) })
            .build()
            .unwrap();
        let (stop, run) = spawn(worker);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        // Counted before the shutdown, which can take a receive slice (seconds) more.
        let passes = tap.maintains.load(Ordering::SeqCst);
        stop.shutdown();
        run.await.unwrap().unwrap();
        // About 5 passes (every 160-240 ms); a loop that took the backend's due times for its
        // own clock's would run one every 5 ms with the backend behind (about 200).
        assert!(
            (2..=20).contains(&passes),
            "skew {skew}: {passes} maintenance passes in 1 s"
        );
    }
}
