//! The producer side: [`Client`] submits tasks (to a [`Queue`](crate::Queue) it hands out,
//! or naming the queue) and [`TaskHandle`] follows one.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_core::prelude::*;
use switchyard_core::{
    Error, QueueConfig, QueueName, Result, SubmitOutcome, TaskId, TaskSpec, TaskSpecBuilder,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};

use crate::json::to_json;

use crate::handle::TaskHandle;

/// A task type with a fixed kind: its value is the payload, encoded as JSON.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct SendWelcome { to: String }
/// impl switchyard::Task for SendWelcome {
///     const KIND: &'static str = "send_welcome";
/// }
/// ```
pub trait Task: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind workers route to the handler of this type.
    const KIND: &'static str;
}

/// Submits tasks and follows them. Cheap to clone.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use switchyard::{Client, QueueConfig};
/// let client = Client::memory();
/// client.declare("emails", QueueConfig::default()).await?;
/// let task = client.submit_json("emails", "send", &serde_json::json!({"to": "ada@example.com"})).await?;
/// assert_eq!(task.state().await?, Some(switchyard::TaskState::Ready));
/// # Ok::<(), switchyard::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Client {
    backend: Arc<dyn Backend>,
    /// Queues declared with `keep_declared`, shared by clones.
    kept: Arc<RwLock<BTreeMap<QueueName, QueueConfig>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client of any backend.
    pub fn new(backend: impl Backend + 'static) -> Self {
        Client::from_arc(Arc::new(backend))
    }

    /// A client of a shared backend.
    pub fn from_arc(backend: Arc<dyn Backend>) -> Self {
        Client {
            backend,
            kept: Arc::default(),
        }
    }

    /// A client of a fresh in-memory backend (tasks live in this process).
    pub fn memory() -> Self {
        Client::new(MemoryBackend::new())
    }

    /// Connects to `url`: `memory://` for a fresh in-memory backend, `redis://…` or `rediss://…`
    /// for Redis, keeping state under `namespace`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Client, QueueConfig};
    /// // "redis://127.0.0.1:6380" connects to Redis the same way, and
    /// // "redis+sentinel://127.0.0.1:26379/mymaster" to the primary Sentinels watch.
    /// let client = Client::connect("memory://", "shop").await?;
    /// client.declare("emails", QueueConfig::default()).await?;
    /// assert!(Client::connect("ftp://example.com", "shop").await.is_err());
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        if url == "memory://" || url == "memory" {
            return Ok(Client::memory());
        }
        if url.contains("://") && !url.starts_with("memory") {
            // Every Redis form (standalone, Sentinel, Cluster); an unknown scheme is refused
            // there with the list of those understood.
            return Client::redis(RedisConfig::new(url, namespace), None).await;
        }
        Err(Error::invalid(
            "url",
            format!(
                "{}: expected memory://, redis://host:port or \
                 redis+sentinel://host:port/master-name",
                switchyard_core::display::quoted(&switchyard_core::display::url(url))
            ),
        ))
    }

    /// Connects to Redis with `config`. A namespace declared with partitions (see
    /// [`partition`](crate::partition)) is used with all of them. `partitions` declares how many
    /// it has (1 to 256; the first client to connect decides, and a client that says otherwise
    /// is refused); `None` takes what was declared, and declares 1 if nothing was.
    ///
    /// ```no_run
    /// # async fn run() -> switchyard::Result<()> {
    /// use switchyard::{Client, RedisConfig};
    /// let config = RedisConfig::new("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "shop");
    /// let client = Client::redis(config, Some(3)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn redis(config: RedisConfig, partitions: Option<u16>) -> Result<Self> {
        let namespace = config.namespace.clone();
        let first = RedisBackend::with_config(config).await?;
        let stored = match partitions {
            Some(wanted) => {
                crate::partition::check_count(wanted)?;
                let stored = first.claim_partition_count(wanted).await?;
                if stored != wanted {
                    return Err(Error::invalid(
                        "partitions",
                        format!(
                            "namespace {} has {stored} partition(s), not {wanted} (the count is fixed \
                             when a namespace is first used: partition a new namespace)",
                            switchyard_core::display::quoted(&namespace)
                        ),
                    ));
                }
                stored
            }
            // A namespace nobody partitioned is pinned at one partition: a client that later
            // asks for more is refused instead of routing tasks where this one never looks.
            None => first.claim_partition_count(1).await?,
        };
        if stored <= 1 {
            return Ok(Client::new(first));
        }
        let mut parts: Vec<RedisBackend> = Vec::with_capacity(usize::from(stored));
        for i in 0..stored {
            parts.push(first.partition(i)?);
        }
        // Each partition's birth mark, to name a later loss of its data (partition 0's was
        // read when connecting).
        futures_util::future::join_all(parts.iter().skip(1).map(RedisBackend::remember_namespace))
            .await;
        let parts: Vec<Arc<dyn Backend>> = parts
            .into_iter()
            .map(|p| Arc::new(p) as Arc<dyn Backend>)
            .collect();
        Ok(Client::new(crate::Partitioned::new(parts)?))
    }

    /// The backend, for everything the client does not wrap.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Declares a queue (no-op if it exists with the same configuration; with another one,
    /// refused naming each differing field: see [`Queue::declare`](crate::Queue::declare)).
    pub async fn declare(&self, queue: &str, config: QueueConfig) -> Result<()> {
        self.queue(queue)?.declare(config).await
    }

    /// Declares a queue and keeps its configuration in this client (and its clones): whenever
    /// the backend answers a submit with [`Error::UnknownQueue`] or [`Error::DataLost`] for it — Redis restarted
    /// without persistence, was flushed, or failed over to a replica that lacked the data —
    /// the client declares it again and submits once more, so that a producer recovers by
    /// itself. Workers built from this client carry the queues they serve as well (see
    /// [`WorkerBuilder::declare`](crate::WorkerBuilder::declare)).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Client, QueueConfig};
    /// let client = Client::memory();
    /// client.keep_declared("emails", QueueConfig::default()).await?;
    /// client.submit_json("emails", "send", "ada@example.com").await?;
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn keep_declared(&self, queue: &str, config: QueueConfig) -> Result<()> {
        self.queue(queue)?.keep_declared(config).await
    }

    /// Keeps `queue` declared with `config` (see [`keep_declared`](Client::keep_declared)).
    pub(crate) fn keep(&self, queue: &QueueName, config: QueueConfig) {
        if let Ok(mut kept) = self.kept.write() {
            kept.insert(queue.clone(), config);
        }
    }

    /// Keeps `queue` with its new `config` if it is kept.
    pub(crate) fn rekeep(&self, queue: &QueueName, config: QueueConfig) {
        if let Ok(mut kept) = self.kept.write()
            && let Some(entry) = kept.get_mut(queue)
        {
            *entry = config;
        }
    }

    /// Stops keeping `queue` declared.
    pub(crate) fn forget(&self, queue: &QueueName) {
        if let Ok(mut kept) = self.kept.write() {
            kept.remove(queue);
        }
    }

    /// The kept configurations of those of `queues` this client keeps declared.
    pub(crate) fn kept_declarations(&self, queues: &[QueueName]) -> Vec<(QueueName, QueueConfig)> {
        let Ok(kept) = self.kept.read() else {
            return Vec::new();
        };
        queues
            .iter()
            .filter_map(|q| kept.get(q).map(|c| (q.clone(), *c)))
            .collect()
    }

    /// The kept configuration of `queue`, if this client keeps it declared.
    fn kept(&self, queue: &QueueName) -> Option<QueueConfig> {
        self.kept.read().ok()?.get(queue).copied()
    }

    /// Declares `queue` again after the backend answered that it does not know it; `false`
    /// if this client does not keep it (then the error stands).
    async fn redeclare(&self, queue: Option<&QueueName>) -> Result<bool> {
        let Some((queue, config)) = queue.and_then(|q| Some((q, self.kept(q)?))) else {
            return Ok(false);
        };
        tracing::warn!(%queue, "the backend lost queue `{queue}` (Redis restarted empty?): declaring it again");
        self.backend.declare_queue(queue, config).await?;
        Ok(true)
    }

    /// Whether a submit to `queue` could be retried after a re-declaration.
    fn keeps_any(&self) -> bool {
        self.kept.read().is_ok_and(|k| !k.is_empty())
    }

    /// Submits a validated spec.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use switchyard::{Client, QueueConfig, TaskSpec, TaskState};
    /// let client = Client::memory();
    /// client.declare("emails", QueueConfig::default()).await?;
    /// let spec = TaskSpec::builder("emails", "send")
    ///     .payload(b"ada@example.com".to_vec())
    ///     .priority(5)
    ///     .timeout(Duration::from_secs(30))
    ///     .build()?;
    /// let task = client.submit(spec).await?;
    /// assert_eq!(task.state().await?, Some(TaskState::Ready)); // no worker yet
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn submit(&self, spec: TaskSpec) -> Result<TaskHandle> {
        let spec = crate::trace::with_callers_context(spec);
        let again = self.keeps_any().then(|| spec.clone());
        let out = match (self.backend.submit(spec).await, again) {
            (Err(e), Some(spec)) if self.redeclare(e.missing_queue()).await? => {
                self.backend.submit(spec).await?
            }
            (result, _) => result?,
        };
        Ok(self.handle(&out))
    }

    /// Submits several specs in one call (per task, the same as submitting them in order).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Client, QueueConfig, TaskSpec};
    /// let client = Client::memory();
    /// client.declare("emails", QueueConfig::default()).await?;
    /// let specs = ["ada", "grace", "alan"]
    ///     .map(|to| TaskSpec::builder("emails", "send").payload(to.as_bytes().to_vec()).build());
    /// let tasks = client.submit_batch(specs.into_iter().collect::<Result<_, _>>()?).await?;
    /// assert_eq!(tasks.len(), 3);
    /// assert_eq!(client.stats().await?.queues[0].ready, 3);
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// A batch that fails part-way answers [`Error::BatchIncomplete`], which lists the tasks
    /// stored before the failure; submitting the same specs again completes it (stored ids
    /// come back as duplicates).
    pub async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<TaskHandle>> {
        let specs: Vec<TaskSpec> = specs
            .into_iter()
            .map(crate::trace::with_callers_context)
            .collect();
        let again = self.keeps_any().then(|| specs.clone());
        let outs = match (self.backend.submit_batch(specs).await, again) {
            (Err(e), Some(specs)) if self.redeclare(e.missing_queue()).await? => {
                self.backend.submit_batch(specs).await?
            }
            (result, _) => result?,
        };
        Ok(outs.iter().map(|o| self.handle(o)).collect())
    }

    /// Submits a [`Flow`](crate::tree::Flow): a tree of tasks stored whole, in which a task with
    /// children runs only when they have ended, and reads their results with
    /// [`TaskContext::children`](crate::TaskContext::children). Answers a handle per task in
    /// pre-order, the root first (a flow whose root exists: the root's alone). The rules:
    /// [`crate::tree`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::tree::{Flow, FlowNode, OnFailure};
    /// use switchyard::{Client, QueueConfig, TaskSpec, TaskState};
    /// let client = Client::memory();
    /// client.declare("images", QueueConfig::default()).await?;
    /// client.declare("archives", QueueConfig::default()).await?;
    /// let resize = |name: &str| TaskSpec::builder("images", "resize").payload(name.as_bytes().to_vec()).build();
    /// let flow = Flow::new(TaskSpec::builder("archives", "zip").build()?)
    ///     .child(FlowNode::new(resize("a.png")?))
    ///     .child(FlowNode::new(resize("b.png")?).on_failure(OnFailure::Ignore));
    /// let tasks = client.submit_flow(flow).await?;
    /// assert_eq!(tasks.len(), 3);
    /// assert_eq!(tasks[0].state().await?, Some(TaskState::WaitingChildren));
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn submit_flow(&self, flow: crate::tree::Flow) -> Result<Vec<TaskHandle>> {
        let flow = flow.map_specs(|spec| Ok(crate::trace::with_callers_context(spec)))?;
        let outs = self.backend.submit_flow(flow).await?;
        Ok(outs.iter().map(|o| self.handle(o)).collect())
    }

    /// Submits `payload` encoded as JSON as a task of `kind` on `queue`.
    pub async fn submit_json<T: Serialize + ?Sized>(
        &self,
        queue: &str,
        kind: &str,
        payload: &T,
    ) -> Result<TaskHandle> {
        let spec = TaskSpec::builder(queue, kind)
            .payload(to_json("payload", payload)?)
            .build()?;
        self.submit(spec).await
    }

    /// Submits a typed task on `queue`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use serde::{Deserialize, Serialize};
    /// use switchyard::{Client, QueueConfig};
    /// #[derive(Serialize, Deserialize)]
    /// struct Resize { width: u32 }
    /// impl switchyard::Task for Resize { const KIND: &'static str = "resize"; }
    ///
    /// let client = Client::memory();
    /// client.declare("images", QueueConfig::default()).await?;
    /// let task = client.enqueue("images", &Resize { width: 64 }).await?;
    /// let info = task.info().await?.unwrap();
    /// assert_eq!(info.kind.as_str(), "resize");
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn enqueue<T: Task>(&self, queue: &str, task: &T) -> Result<TaskHandle> {
        self.submit(Self::spec_builder(queue, task)?.build()?).await
    }

    /// A spec builder for a typed task (kind and JSON payload filled in), to set priority,
    /// delay, dedup key and the rest before submitting.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Resize { width: u32 }
    /// # impl switchyard::Task for Resize { const KIND: &'static str = "resize"; }
    /// let spec = switchyard::Client::spec_builder("images", &Resize { width: 64 })?
    ///     .priority(7)
    ///     .delay(std::time::Duration::from_secs(10))
    ///     .build()?;
    /// assert_eq!(spec.kind().as_str(), "resize");
    /// # Ok::<(), switchyard::Error>(())
    /// ```
    pub fn spec_builder<T: Task>(queue: &str, task: &T) -> Result<TaskSpecBuilder> {
        Ok(TaskSpec::builder(queue, T::KIND).payload(to_json("payload", task)?))
    }

    /// Renamed [`spec_builder`](Client::spec_builder): it returns a builder, not a spec.
    #[deprecated(since = "0.2.0", note = "renamed to `Client::spec_builder`")]
    pub fn spec<T: Task>(queue: &str, task: &T) -> Result<TaskSpecBuilder> {
        Self::spec_builder(queue, task)
    }

    /// A handle on an existing task, by id (nothing is asked of the backend until the handle
    /// is used).
    pub fn task_handle(&self, id: TaskId) -> TaskHandle {
        TaskHandle::new(id, self.backend.clone())
    }

    /// A handle on the task a submit answered `answer` for (as [`submit`](Client::submit)
    /// returns; for the answers an [`Error::BatchIncomplete`] carries).
    pub fn submitted(&self, answer: &SubmitOutcome) -> TaskHandle {
        TaskHandle::submitted(answer, self.backend.clone())
    }

    /// Renamed [`task_handle`](Client::task_handle): it returns a handle, not the task.
    #[deprecated(since = "0.2.0", note = "renamed to `Client::task_handle`")]
    pub fn task(&self, id: TaskId) -> TaskHandle {
        self.task_handle(id)
    }

    pub(crate) fn handle(&self, out: &SubmitOutcome) -> TaskHandle {
        TaskHandle::submitted(out, self.backend.clone())
    }
}
