//! [`Queue`]: one named queue of a [`Client`], the handle a producer or an operator holds.

use serde::Serialize;
use switchyard_core::admin::{Purge, PurgeReport};
use switchyard_core::{
    Error, QueueConfig, QueueName, QueueStats, Result, TaskInfo, TaskSpec, TaskSpecBuilder,
};

use crate::client::{Client, Task};
use crate::handle::TaskHandle;
use crate::json::to_json;

/// One queue of a client: submitting to it and managing it, its name checked once (by
/// [`Client::queue`]). Cheap to clone; it holds no connection of its own.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use switchyard::{Client, QueueConfig, TaskError, Worker};
///
/// let client = Client::memory();
/// let emails = client.queue("emails")?;
/// emails.declare(QueueConfig::default()).await?;
/// emails.declare(QueueConfig::default()).await?; // the same configuration again: fine
///
/// let task = emails.submit_json("send", &serde_json::json!({"to": "ada@example.com"})).await?;
/// assert_eq!(emails.stats().await?.ready, 1);
///
/// let worker = Worker::builder(&client, "mailer", [&emails])?
///     .handle("send", |_ctx, _payload| async move { Ok::<_, TaskError>(b"sent".to_vec()) })
///     .build()?;
/// let stop = worker.shutdown_handle();
/// let running = tokio::spawn(worker.run());
/// assert_eq!(task.result_bytes(Duration::from_secs(5)).await?, b"sent");
/// stop.shutdown();
/// running.await.unwrap()?;
/// # Ok::<(), switchyard::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Queue {
    client: Client,
    name: QueueName,
}

impl AsRef<str> for Queue {
    fn as_ref(&self) -> &str {
        self.name.as_str()
    }
}

impl Client {
    /// The handle of queue `name` (checked here, once). Nothing is asked of the backend: the
    /// queue is declared with [`Queue::declare`], and a call on a queue that is not declared
    /// answers [`Error::UnknownQueue`].
    ///
    /// ```
    /// let client = switchyard::Client::memory();
    /// assert_eq!(client.queue("emails")?.name().as_str(), "emails");
    /// assert!(client.queue("no spaces").is_err());
    /// # Ok::<(), switchyard::Error>(())
    /// ```
    pub fn queue(&self, name: &str) -> Result<Queue> {
        Ok(Queue {
            client: self.clone(),
            name: QueueName::new(name)?,
        })
    }
}

impl Queue {
    /// The queue's name.
    pub fn name(&self) -> &QueueName {
        &self.name
    }

    /// The client this handle belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Declares the queue. Declaring it again with the same configuration changes nothing;
    /// with another one it is refused with [`Error::QueueConflict`], which names each
    /// differing field: change a declared queue with [`reconfigure`](Queue::reconfigure).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Client, Error, QueueConfig};
    /// let q = Client::memory().queue("q")?;
    /// q.declare(QueueConfig::default()).await?;
    /// let other = QueueConfig::default().with_max_attempts(9);
    /// let Err(Error::QueueConflict { detail, .. }) = q.declare(other).await else { panic!() };
    /// assert!(detail.contains("max_attempts 3 → 9"), "{detail}");
    /// assert!(q.reconfigure(other).await?);
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn declare(&self, config: QueueConfig) -> Result<()> {
        self.client
            .backend()
            .declare_queue(&self.name, config)
            .await
    }

    /// Declares the queue and keeps its configuration in the client, to declare it again by
    /// itself if the backend loses it (see [`Client::keep_declared`]).
    pub async fn keep_declared(&self, config: QueueConfig) -> Result<()> {
        self.declare(config).await?;
        self.client.keep(&self.name, config);
        Ok(())
    }

    /// The queue's configuration (`None` when it is not declared).
    pub async fn config(&self) -> Result<Option<QueueConfig>> {
        self.client.backend().queue_config(&self.name).await
    }

    /// Changes the queue's configuration; `false` if it already had this one (see
    /// [`Client::reconfigure`] for what may change when).
    pub async fn reconfigure(&self, config: QueueConfig) -> Result<bool> {
        let changed = self
            .client
            .backend()
            .reconfigure_queue(&self.name, config)
            .await?;
        self.client.rekeep(&self.name, config);
        Ok(changed)
    }

    /// Deletes the queue if it holds no task and no registered worker serves it (otherwise
    /// [`Error::QueueInUse`]); the client stops keeping it declared.
    pub async fn delete(&self) -> Result<()> {
        self.client.backend().delete_queue(&self.name).await?;
        self.client.forget(&self.name);
        Ok(())
    }

    /// A spec builder for a task of `kind` on this queue, to set its payload, priority, delay,
    /// dedup key and the rest before [`submit`](Queue::submit).
    pub fn spec_builder(&self, kind: &str) -> TaskSpecBuilder {
        TaskSpec::builder(self.name.as_str(), kind)
    }

    /// Submits a spec built for this queue (one for another queue is refused).
    pub async fn submit(&self, spec: TaskSpec) -> Result<TaskHandle> {
        self.check(&spec)?;
        self.client.submit(spec).await
    }

    /// Submits several specs built for this queue in one call (see [`Client::submit_batch`]).
    pub async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<TaskHandle>> {
        specs.iter().try_for_each(|s| self.check(s))?;
        self.client.submit_batch(specs).await
    }

    /// Submits `payload` encoded as JSON as a task of `kind`.
    pub async fn submit_json<T: Serialize + ?Sized>(
        &self,
        kind: &str,
        payload: &T,
    ) -> Result<TaskHandle> {
        let spec = self
            .spec_builder(kind)
            .payload(to_json("payload", payload)?)
            .build()?;
        self.client.submit(spec).await
    }

    /// Submits a typed task (its kind is [`Task::KIND`], its payload the value as JSON).
    pub async fn enqueue<T: Task>(&self, task: &T) -> Result<TaskHandle> {
        let spec = Client::spec_builder(self.name.as_str(), task)?.build()?;
        self.client.submit(spec).await
    }

    /// Pauses the queue: nothing is dispatched from it until [`resume`](Queue::resume);
    /// submissions are still accepted, running tasks finish and report.
    pub async fn pause(&self) -> Result<()> {
        self.client
            .backend()
            .set_paused(&self.name, true)
            .await
            .map(drop)
    }

    /// Resumes the queue; answers how many waiting tasks it dispatched at once.
    pub async fn resume(&self) -> Result<usize> {
        let dispatched = self.client.backend().set_paused(&self.name, false).await?;
        Ok(dispatched.len())
    }

    /// The queue's counts ([`Error::UnknownQueue`] if it is not declared).
    pub async fn stats(&self) -> Result<QueueStats> {
        self.client
            .stats()
            .await?
            .queues
            .into_iter()
            .find(|q| q.queue.as_ref() == Some(&self.name))
            .ok_or_else(|| Error::UnknownQueue(self.name.clone()))
    }

    /// The queue's dead tasks, oldest first, up to `limit`.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<TaskInfo>> {
        self.client.backend().list_dead(&self.name, limit).await
    }

    /// Removes up to `limit` tasks of one [`Purge`] class (see [`Client::purge`]).
    pub async fn purge(&self, what: Purge, limit: usize) -> Result<PurgeReport> {
        self.client
            .backend()
            .purge_queue(&self.name, what, limit)
            .await
    }

    fn check(&self, spec: &TaskSpec) -> Result<()> {
        if spec.queue() == &self.name {
            Ok(())
        } else {
            Err(Error::invalid(
                "queue",
                format!(
                    "a task for queue `{}` was submitted through the handle of `{}`",
                    spec.queue(),
                    self.name
                ),
            ))
        }
    }
}
