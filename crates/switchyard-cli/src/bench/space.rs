//! Where the bench works: a fresh namespace per measurement (deleted afterwards), its queues
//! and workers, and the tasks it submits.

use super::*;

/// The instance token of every worker the bench registers itself.
pub(super) fn bench_instance() -> InstanceToken {
    static TOKEN: std::sync::OnceLock<InstanceToken> = std::sync::OnceLock::new();
    *TOKEN.get_or_init(InstanceToken::random)
}

/// A worker the bench registered, as it names itself (the bench's workers share one token per
/// process, so that a worker picked by a dispatch can be named).
pub(super) fn me(id: WorkerId) -> WorkerRef {
    WorkerRef {
        id,
        instance: bench_instance(),
    }
}

/// A fresh namespace on the server, deleted on `cleanup`.
pub(super) struct Space {
    pub(super) backend: RedisBackend,
    pub(super) namespace: String,
}

static NS: AtomicU64 = AtomicU64::new(0);

pub(super) async fn space(args: &BenchArgs, pool: usize) -> Res<Space> {
    let namespace = format!(
        "bench-{}-{}",
        std::process::id(),
        NS.fetch_add(1, Ordering::SeqCst)
    );
    let mut config = RedisConfig::new(&args.url, namespace.clone()).with_pool_size(pool);
    if let Some(replicas) = args.durable {
        config = config.with_durable(Durable::new(replicas, std::time::Duration::from_secs(1)));
    }
    let backend = RedisBackend::with_config(config).await.map_err(err)?;
    Ok(Space { backend, namespace })
}

impl Space {
    pub(super) async fn cleanup(self, probe: &mut Probe) -> Res<()> {
        let pattern = format!("sy:{{{}}}:*", self.namespace);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut probe.conn)
            .await
            .map_err(err)?;
        for chunk in keys.chunks(512) {
            let _: () = redis::cmd("UNLINK")
                .arg(chunk)
                .query_async(&mut probe.conn)
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Submits `n` tasks of `tasks` to `queue`, in batches of 256.
    pub(super) async fn fill(&self, tasks: &mut Tasks, queue: &QueueName, n: usize) -> Res<()> {
        let mut left = n;
        while left > 0 {
            let k = left.min(256);
            self.backend
                .submit_batch(tasks.batch(queue.as_str(), k)?)
                .await
                .map_err(err)?;
            left -= k;
        }
        Ok(())
    }

    pub(super) async fn queue(
        &self,
        name: &str,
        policy: Policy,
        strategy: Strategy,
    ) -> Res<QueueName> {
        self.queue_with(name, QueueConfig::new(policy, strategy))
            .await
    }

    /// A queue with `config` (results and timeouts of an hour, so that nothing expires).
    pub(super) async fn queue_with(&self, name: &str, config: QueueConfig) -> Res<QueueName> {
        let q = QueueName::new(name).map_err(err)?;
        let config = config
            .with_result_ttl(Duration::from_secs(3_600))
            .with_timeout(Duration::from_secs(3_600));
        self.backend.declare_queue(&q, config).await.map_err(err)?;
        Ok(q)
    }

    pub(super) async fn worker(&self, name: &str, queue: &str, capacity: u32) -> Res<WorkerRef> {
        let spec = WorkerSpec::new(name, [queue])
            .map_err(err)?
            .instance(bench_instance())
            .capacity(capacity)
            .heartbeat_ttl(Duration::from_secs(3_600));
        self.backend.register_worker(spec).await.map_err(err)?;
        Ok(me(WorkerId::new(name).map_err(err)?))
    }
}

pub(super) struct Tasks {
    pub(super) ids: TaskIdGenerator,
    payload: Vec<u8>,
    n: u64,
    /// Each task's deadline this far ahead (plus a few ms that vary), if set.
    deadline_in_ms: Option<u64>,
    /// Group keys `g0` … `g<n-1>` in turn, if set (a queue shared between groups).
    groups: Option<u64>,
}

impl Tasks {
    pub(super) fn new(seed: u64, payload: usize) -> Self {
        Tasks {
            ids: TaskIdGenerator::new(seed),
            payload: vec![b'x'; payload],
            n: 0,
            deadline_in_ms: None,
            groups: None,
        }
    }

    /// Tasks whose deadlines are `ms` ahead, in a varying order (for earliest-deadline-first).
    pub(super) fn with_deadlines(mut self, ms: u64) -> Self {
        self.deadline_in_ms = Some(ms);
        self
    }

    /// Tasks with group keys `g0` … `g<n-1>` in turn (for a queue shared between groups).
    pub(super) fn with_groups(mut self, n: u64) -> Self {
        self.groups = Some(n.max(1));
        self
    }

    pub(super) fn next(&mut self, queue: &str) -> Res<TaskSpec> {
        self.n += 1;
        let now = SystemClock.now_ms();
        let mut b = TaskSpec::builder(queue, "job")
            .id(self.ids.next_at(now))
            .payload(self.payload.clone())
            .priority((self.n % 10) as u16);
        if let Some(ms) = self.deadline_in_ms {
            b = b.deadline(now + ms + self.n % 97);
        }
        if let Some(n) = self.groups {
            b = b.group_key(format!("g{}", self.n % n));
        }
        b.build().map_err(err)
    }

    pub(super) fn batch(&mut self, queue: &str, n: usize) -> Res<Vec<TaskSpec>> {
        (0..n).map(|_| self.next(queue)).collect()
    }
}
