//! `Tap`: a backend that passes every call through but can silence, cut or swallow one
//! worker's calls, as a lost network would, and counts maintenance passes.

use super::*;

/// A backend that passes every call through, except the heartbeats of the workers it was told
/// to silence: those answer as if all was well but never reach the backend — a worker whose
/// heartbeats are lost while it goes on working. It counts the maintenance passes.
pub(crate) struct Tap {
    pub(crate) inner: Arc<dyn Backend>,
    silenced: Mutex<HashSet<WorkerId>>,
    /// Workers whose heartbeats fail with a connection error (a network partition).
    cut: Mutex<HashSet<WorkerId>>,
    /// Workers whose waits for tasks take effect but never answer (a reply lost on the way):
    /// the tasks start on the worker, which does not know it.
    swallowed: Mutex<HashSet<WorkerId>>,
    pub(crate) maintains: AtomicU64,
}

impl Tap {
    pub(crate) fn new(inner: Arc<dyn Backend>) -> Self {
        Tap {
            inner,
            silenced: Mutex::new(HashSet::new()),
            cut: Mutex::new(HashSet::new()),
            swallowed: Mutex::new(HashSet::new()),
            maintains: AtomicU64::new(0),
        }
    }

    /// Makes `worker`'s heartbeats fail (or work again), as a network partition would.
    pub(crate) fn cut(&self, worker: &str, cut: bool) {
        let id: WorkerId = worker.parse().unwrap();
        let mut set = self.cut.lock().unwrap();
        if cut {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    /// Makes `worker`'s waits for tasks take effect and then never answer.
    pub(crate) fn swallow(&self, worker: &str) {
        let id: WorkerId = worker.parse().unwrap();
        self.swallowed.lock().unwrap().insert(id);
    }

    pub(crate) fn silence(&self, worker: &str, silent: bool) {
        let id: WorkerId = worker.parse().unwrap();
        let mut set = self.silenced.lock().unwrap();
        if silent {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }
}

#[async_trait]
impl Queues for Tap {
    async fn declare_queue(&self, q: &QueueName, config: QueueConfig) -> switchyard::Result<()> {
        self.inner.declare_queue(q, config).await
    }

    async fn queue_config(&self, q: &QueueName) -> switchyard::Result<Option<QueueConfig>> {
        self.inner.queue_config(q).await
    }

    async fn set_paused(
        &self,
        queue: &QueueName,
        paused: bool,
    ) -> switchyard::Result<Vec<Assignment>> {
        self.inner.set_paused(queue, paused).await
    }

    async fn purge_queue(
        &self,
        queue: &QueueName,
        what: switchyard::admin::Purge,
        limit: usize,
    ) -> switchyard::Result<switchyard::admin::PurgeReport> {
        self.inner.purge_queue(queue, what, limit).await
    }

    async fn reconfigure_queue(
        &self,
        queue: &QueueName,
        config: switchyard::QueueConfig,
    ) -> switchyard::Result<bool> {
        self.inner.reconfigure_queue(queue, config).await
    }

    async fn delete_queue(&self, queue: &QueueName) -> switchyard::Result<()> {
        self.inner.delete_queue(queue).await
    }

    async fn set_group_weight(
        &self,
        queue: &QueueName,
        key: &str,
        weight: u32,
    ) -> switchyard::Result<()> {
        self.inner.set_group_weight(queue, key, weight).await
    }

    async fn set_group_limits(
        &self,
        queue: &QueueName,
        key: &str,
        limits: switchyard::flow::groups::GroupLimits,
    ) -> switchyard::Result<()> {
        self.inner.set_group_limits(queue, key, limits).await
    }

    async fn groups(
        &self,
        queue: &QueueName,
    ) -> switchyard::Result<Vec<switchyard::flow::groups::GroupInfo>> {
        self.inner.groups(queue).await
    }
}

#[async_trait]
impl Produce for Tap {
    async fn submit(&self, spec: TaskSpec) -> switchyard::Result<SubmitOutcome> {
        self.inner.submit(spec).await
    }

    async fn submit_batch(&self, specs: Vec<TaskSpec>) -> switchyard::Result<Vec<SubmitOutcome>> {
        self.inner.submit_batch(specs).await
    }

    async fn submit_flow(
        &self,
        flow: switchyard::tree::Flow,
    ) -> switchyard::Result<Vec<SubmitOutcome>> {
        self.inner.submit_flow(flow).await
    }
}

#[async_trait]
impl Membership for Tap {
    async fn register_worker(&self, spec: WorkerSpec) -> switchyard::Result<RegisterOutcome> {
        self.inner.register_worker(spec).await
    }

    async fn heartbeat(&self, worker: &WorkerRef) -> switchyard::Result<HeartbeatReply> {
        if self.silenced.lock().unwrap().contains(&worker.id) {
            return Ok(HeartbeatReply::default());
        }
        if self.cut.lock().unwrap().contains(&worker.id) {
            return Err(Error::backend(
                switchyard::BackendErrorKind::Connection,
                "cut off by the test",
            ));
        }
        self.inner.heartbeat(worker).await
    }

    async fn drain_worker(&self, worker: &WorkerRef) -> switchyard::Result<HandBack> {
        self.inner.drain_worker(worker).await
    }

    async fn deregister_worker(&self, worker: &WorkerRef) -> switchyard::Result<HandBack> {
        self.inner.deregister_worker(worker).await
    }
}

#[async_trait]
impl Leases for Tap {
    async fn dispatch(&self, q: &QueueName, limit: usize) -> switchyard::Result<Vec<Assignment>> {
        self.inner.dispatch(q, limit).await
    }

    async fn receive(&self, worker: &WorkerRef, max: usize) -> switchyard::Result<Vec<Delivery>> {
        self.inner.receive(worker, max).await
    }

    async fn receive_wait(
        &self,
        worker: &WorkerRef,
        max: usize,
        timeout: Duration,
    ) -> switchyard::Result<Vec<Delivery>> {
        let received = self.inner.receive_wait(worker, max, timeout).await;
        if self.swallowed.lock().unwrap().contains(&worker.id) {
            return std::future::pending().await;
        }
        received
    }

    async fn running(&self, worker: &WorkerRef) -> switchyard::Result<Vec<Delivery>> {
        self.inner.running(worker).await
    }

    async fn complete(&self, lease: &Lease, value: Vec<u8>) -> switchyard::Result<AckOutcome> {
        self.inner.complete(lease, value).await
    }

    async fn complete_and_receive(
        &self,
        lease: &Lease,
        value: Vec<u8>,
        max: usize,
    ) -> switchyard::Result<(AckOutcome, Vec<Delivery>)> {
        self.inner.complete_and_receive(lease, value, max).await
    }

    async fn fail(
        &self,
        lease: &Lease,
        error: &str,
        retry: bool,
    ) -> switchyard::Result<AckOutcome> {
        self.inner.fail(lease, error, retry).await
    }

    async fn throttle(&self, lease: &Lease, hold: Duration) -> switchyard::Result<AckOutcome> {
        self.inner.throttle(lease, hold).await
    }

    async fn progress(
        &self,
        lease: &Lease,
        progress: &switchyard::Progress,
    ) -> switchyard::Result<switchyard::backend::ProgressAck> {
        self.inner.progress(lease, progress).await
    }
}

#[async_trait]
impl Tasks for Tap {
    async fn get_task(&self, id: TaskId) -> switchyard::Result<Option<TaskInfo>> {
        self.inner.get_task(id).await
    }

    async fn get_outcome(&self, id: TaskId) -> switchyard::Result<Option<TaskOutcome>> {
        self.inner.get_outcome(id).await
    }

    async fn children(
        &self,
        id: TaskId,
    ) -> switchyard::Result<Option<Vec<switchyard::tree::ChildResult>>> {
        self.inner.children(id).await
    }

    async fn change_task(
        &self,
        id: TaskId,
        change: &switchyard::TaskChange,
    ) -> switchyard::Result<switchyard::backend::SubmitOutcome> {
        self.inner.change_task(id, change).await
    }

    async fn wait_progress(
        &self,
        id: TaskId,
        seen: Option<&switchyard::Progress>,
        timeout: std::time::Duration,
    ) -> switchyard::Result<Option<switchyard::Progress>> {
        self.inner.wait_progress(id, seen, timeout).await
    }

    async fn wait_outcome(
        &self,
        id: TaskId,
        timeout: Duration,
    ) -> switchyard::Result<Option<TaskOutcome>> {
        self.inner.wait_outcome(id, timeout).await
    }

    async fn cancel(&self, id: TaskId) -> switchyard::Result<CancelOutcome> {
        self.inner.cancel(id).await
    }

    async fn list_dead(&self, q: &QueueName, limit: usize) -> switchyard::Result<Vec<TaskInfo>> {
        self.inner.list_dead(q, limit).await
    }

    async fn redrive(&self, id: TaskId) -> switchyard::Result<SubmitOutcome> {
        self.inner.redrive(id).await
    }

    async fn delete_task(&self, id: TaskId) -> switchyard::Result<()> {
        self.inner.delete_task(id).await
    }
}

#[async_trait]
impl Inspect for Tap {
    async fn stats(&self) -> switchyard::Result<Stats> {
        self.inner.stats().await
    }

    async fn peek_ready(&self, q: &QueueName, limit: usize) -> switchyard::Result<Vec<TaskId>> {
        self.inner.peek_ready(q, limit).await
    }

    async fn events(&self, after: Option<&str>, limit: usize) -> switchyard::Result<Vec<Event>> {
        self.inner.events(after, limit).await
    }

    async fn learned_cost(
        &self,
        q: &QueueName,
        kind: &TaskKind,
    ) -> switchyard::Result<Option<u32>> {
        self.inner.learned_cost(q, kind).await
    }

    async fn memory(&self) -> switchyard::Result<Vec<(QueueName, u64)>> {
        self.inner.memory().await
    }

    async fn browse(&self, query: &switchyard::Browse) -> switchyard::Result<switchyard::TaskPage> {
        self.inner.browse(query).await
    }
}

#[async_trait]
impl Maintain for Tap {
    async fn until_due(&self) -> switchyard::Result<Option<Duration>> {
        self.inner.until_due().await
    }

    async fn sleep_until_due(&self, at_most: Duration) -> switchyard::Result<()> {
        self.inner.sleep_until_due(at_most).await
    }

    async fn maintain(&self, limit: usize) -> switchyard::Result<MaintenanceReport> {
        self.maintains.fetch_add(1, Ordering::SeqCst);
        self.inner.maintain(limit).await
    }
}

#[async_trait]
impl Schedules for Tap {
    async fn upsert_schedule(&self, spec: &ScheduleSpec) -> switchyard::Result<Upserted> {
        self.inner.upsert_schedule(spec).await
    }

    async fn get_schedule(&self, name: &ScheduleName) -> switchyard::Result<Option<ScheduleInfo>> {
        self.inner.get_schedule(name).await
    }

    async fn schedules(&self) -> switchyard::Result<Vec<ScheduleInfo>> {
        self.inner.schedules().await
    }

    async fn set_schedule_paused(
        &self,
        name: &ScheduleName,
        paused: bool,
    ) -> switchyard::Result<bool> {
        self.inner.set_schedule_paused(name, paused).await
    }

    async fn remove_schedule(&self, name: &ScheduleName) -> switchyard::Result<bool> {
        self.inner.remove_schedule(name).await
    }

    async fn claim_ticks(
        &self,
        name: &ScheduleName,
        claim: &Claim,
    ) -> switchyard::Result<Option<Claimed>> {
        self.inner.claim_ticks(name, claim).await
    }
}
