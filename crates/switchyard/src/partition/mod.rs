//! Partitioned namespaces: one namespace spread over several backends ("partitions"), each a
//! complete namespace of its own. On Redis each partition has its own hash tag, so on a
//! Cluster each lands on its own slot and can live on its own primary.
//!
//! [`Partitioned`] is a [`Backend`] over the partitions:
//!
//! * a task goes to the partition of its affinity key, else of its dedup key, else of its id
//!   (see [`route`]); its id names its partition, so every call about it (status, cancel,
//!   complete, await) goes straight there;
//! * a worker serves the partitions [assigned](route::assignment) to it from the roster of live
//!   workers (all partitions' registrations), with its capacity split over them. Each heartbeat
//!   reads the roster again: a partition it gains is registered at once; one it loses is
//!   drained (its inbox goes back, its running tasks finish) and left when nothing of it runs;
//! * calls about the whole namespace (declare, stats, maintenance, events) go to every
//!   partition and their answers are merged.
//!
//! Inside a partition every guarantee of `docs/architecture.md` holds unchanged: it *is* a
//! namespace. `docs/scaling.md` says what holds across partitions.

pub mod route;

mod merge;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::{join_all, select_all};
use switchyard_core::{
    AckOutcome, Assignment, Backend, CancelOutcome, Delivery, Error, Event, HandBack,
    HeartbeatReply, Lease, MaintenanceReport, QueueConfig, QueueName, RegisterOutcome, Result,
    Stats, SubmitOutcome, TaskId, TaskInfo, TaskKind, TaskOutcome, TaskSpec, WorkerId, WorkerRef,
    WorkerSpec,
};

use route::{MAX_PARTITIONS, assignment, partition_of};

/// A worker serving several partitions waits on one at a time for at most this long, then
/// looks at the others: how late it can notice a task in a partition it was not waiting on.
pub const WAIT_SLICE: Duration = Duration::from_millis(250);

/// One namespace over several partitions; see the module docs.
pub struct Partitioned {
    parts: Vec<Arc<dyn Backend>>,
    members: Mutex<HashMap<WorkerId, Member>>,
}

/// What this process knows of one of its workers.
#[derive(Debug, Clone)]
struct Member {
    spec: WorkerSpec,
    /// Partitions it is registered in and takes tasks from.
    serving: BTreeSet<u16>,
    /// Partitions it was drained from and will leave once nothing of it runs there.
    leaving: BTreeSet<u16>,
    /// Where its next wait starts (rotates).
    next: usize,
    /// Set by `drain_worker`: no more rebalancing.
    draining: bool,
}

impl std::fmt::Debug for Partitioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partitioned")
            .field("partitions", &self.parts.len())
            .finish_non_exhaustive()
    }
}

/// Refuses a partition count outside 1 to [`MAX_PARTITIONS`].
pub fn check_count(count: u16) -> Result<()> {
    if count == 0 || count > MAX_PARTITIONS {
        return Err(Error::invalid(
            "partitions",
            format!("{count}: a namespace has 1 to {MAX_PARTITIONS} partitions"),
        ));
    }
    Ok(())
}

impl Partitioned {
    /// The namespace made of `parts`, in partition order (1 to 256 of them; every process
    /// must list the same partitions in the same order).
    pub fn new(parts: Vec<Arc<dyn Backend>>) -> Result<Self> {
        check_count(u16::try_from(parts.len()).unwrap_or(0))?;
        Ok(Partitioned {
            parts,
            members: Mutex::new(HashMap::new()),
        })
    }

    /// How many partitions.
    pub fn count(&self) -> u16 {
        u16::try_from(self.parts.len()).unwrap_or(MAX_PARTITIONS)
    }

    /// The partitions, in order.
    pub fn partitions(&self) -> &[Arc<dyn Backend>] {
        &self.parts
    }

    /// The partitions `worker` serves now (empty if this process does not run it).
    pub fn serving(&self, worker: &WorkerId) -> BTreeSet<u16> {
        self.member(worker).map(|m| m.serving).unwrap_or_default()
    }

    fn part(&self, p: u16) -> &Arc<dyn Backend> {
        &self.parts[usize::from(p) % self.parts.len()]
    }

    fn of(&self, id: TaskId) -> &Arc<dyn Backend> {
        self.part(partition_of(id, self.count()))
    }

    fn member(&self, worker: &WorkerId) -> Option<Member> {
        self.lock().get(worker).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkerId, Member>> {
        self.members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The partitions a worker is registered in (serving or leaving), or `UnknownWorker`.
    fn registered(&self, worker: &WorkerId) -> Result<Vec<u16>> {
        let m = self
            .member(worker)
            .ok_or_else(|| Error::UnknownWorker(worker.clone()))?;
        Ok(m.serving.union(&m.leaving).copied().collect())
    }

    /// Every live, non-draining worker of the namespace, from every partition's registrations.
    async fn roster(&self) -> Result<BTreeSet<WorkerId>> {
        let mut roster = BTreeSet::new();
        for stats in join_all(self.parts.iter().map(|b| b.stats())).await {
            roster.extend(
                stats?
                    .workers
                    .into_iter()
                    .filter(|w| !w.draining)
                    .map(|w| w.id),
            );
        }
        Ok(roster)
    }

    /// `spec` as registered in one of `k` partitions: its capacity split over them.
    fn share(spec: &WorkerSpec, k: usize, index: usize) -> WorkerSpec {
        let (c, k) = (spec.get_capacity(), u32::try_from(k.max(1)).unwrap_or(1));
        let extra = u32::from(u32::try_from(index).unwrap_or(u32::MAX) < c % k);
        spec.clone().capacity((c / k + extra).max(1))
    }

    /// Registers `spec` in those of `all` (the partitions it serves) that are in `new`, each
    /// with its share of the capacity over `all`.
    async fn register_in(
        &self,
        spec: &WorkerSpec,
        all: &BTreeSet<u16>,
        new: &BTreeSet<u16>,
    ) -> Result<RegisterOutcome> {
        let calls = all
            .iter()
            .enumerate()
            .filter(|(_, p)| new.contains(p))
            .map(|(i, p)| {
                self.part(*p)
                    .register_worker(Self::share(spec, all.len(), i))
            });
        let mut out = RegisterOutcome::default();
        for r in join_all(calls).await {
            let r = r?;
            out.replaced |= r.replaced;
            out.assignments.extend(r.assignments);
        }
        Ok(out)
    }

    /// After a heartbeat: takes up partitions the roster now assigns to `worker`, drains the
    /// ones it no longer does, and leaves drained ones where nothing of it runs any more.
    async fn rebalance(&self, worker: &WorkerRef) -> Result<Vec<Assignment>> {
        let Some(m) = self.member(&worker.id).filter(|m| !m.draining) else {
            return Ok(Vec::new());
        };
        let wanted = assignment(&self.roster().await?, &worker.id, self.count());
        let mut assignments = Vec::new();
        let gained: BTreeSet<u16> = wanted
            .difference(&m.serving)
            .filter(|p| !m.leaving.contains(p))
            .copied()
            .collect();
        let lost: BTreeSet<u16> = m.serving.difference(&wanted).copied().collect();
        if !gained.is_empty() {
            tracing::info!(worker = %worker.id, ?gained, "serving more partitions");
            let out = self.register_in(&m.spec, &wanted, &gained).await?;
            assignments.extend(out.assignments);
        }
        for p in &lost {
            tracing::info!(worker = %worker.id, partition = p, "leaving a partition");
            assignments.extend(self.part(*p).drain_worker(worker).await?.assignments);
        }
        let mut left = BTreeSet::new();
        for p in m.leaving.iter().chain(&lost) {
            let stats = self.part(*p).stats().await?;
            let busy = stats
                .workers
                .iter()
                .any(|w| w.id == worker.id && w.inflight > 0);
            if !busy {
                assignments.extend(self.part(*p).deregister_worker(worker).await?.assignments);
                left.insert(*p);
            }
        }
        if let Some(m) = self.lock().get_mut(&worker.id) {
            m.serving.extend(&gained);
            m.serving.retain(|p| !lost.contains(p));
            m.leaving.extend(&lost);
            m.leaving.retain(|p| !left.contains(p));
        }
        Ok(assignments)
    }

    /// The serving partitions of `worker`, starting with the next in its rotation.
    fn rotation(&self, worker: &WorkerId) -> Result<Vec<u16>> {
        let mut members = self.lock();
        let m = members
            .get_mut(worker)
            .ok_or_else(|| Error::UnknownWorker(worker.clone()))?;
        let serving: Vec<u16> = m.serving.iter().copied().collect();
        if serving.is_empty() {
            return Ok(serving);
        }
        let start = m.next % serving.len();
        m.next = m.next.wrapping_add(1);
        Ok(serving[start..]
            .iter()
            .chain(&serving[..start])
            .copied()
            .collect())
    }
}

#[async_trait]
impl Backend for Partitioned {
    async fn declare_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<()> {
        for b in &self.parts {
            b.declare_queue(queue, config).await?;
        }
        Ok(())
    }

    async fn queue_config(&self, queue: &QueueName) -> Result<Option<QueueConfig>> {
        self.parts[0].queue_config(queue).await
    }

    async fn submit(&self, spec: TaskSpec) -> Result<SubmitOutcome> {
        let (p, spec) = route::route(spec, self.count());
        self.part(p).submit(spec).await
    }

    async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<SubmitOutcome>> {
        merge::submit_batch(self, specs).await
    }

    async fn register_worker(&self, spec: WorkerSpec) -> Result<RegisterOutcome> {
        let wanted = assignment(&self.roster().await?, spec.id(), self.count());
        let out = self.register_in(&spec, &wanted, &wanted).await?;
        self.lock().insert(
            spec.id().clone(),
            Member {
                spec,
                serving: wanted,
                leaving: BTreeSet::new(),
                next: 0,
                draining: false,
            },
        );
        Ok(out)
    }

    async fn heartbeat(&self, worker: &WorkerRef) -> Result<HeartbeatReply> {
        let mut reply = HeartbeatReply::default();
        let calls = self.registered(&worker.id)?;
        for r in join_all(calls.iter().map(|p| self.part(*p).heartbeat(worker))).await {
            let r = r?;
            reply.cancel.extend(r.cancel);
            reply.expired.extend(r.expired);
            reply.assignments.extend(r.assignments);
        }
        reply.assignments.extend(self.rebalance(worker).await?);
        Ok(reply)
    }

    async fn drain_worker(&self, worker: &WorkerRef) -> Result<HandBack> {
        let registered = self.registered(&worker.id)?;
        if let Some(m) = self.lock().get_mut(&worker.id) {
            m.draining = true;
        }
        let calls = registered
            .iter()
            .map(|p| self.part(*p).drain_worker(worker));
        merge::hand_backs(join_all(calls).await)
    }

    async fn deregister_worker(&self, worker: &WorkerRef) -> Result<HandBack> {
        let registered = self.registered(&worker.id)?;
        let calls = registered
            .iter()
            .map(|p| self.part(*p).deregister_worker(worker));
        let out = merge::hand_backs(join_all(calls).await);
        if out.is_ok() {
            self.lock().remove(&worker.id);
        }
        out
    }

    async fn dispatch(&self, queue: &QueueName, limit: usize) -> Result<Vec<Assignment>> {
        let mut all = Vec::new();
        for b in &self.parts {
            all.extend(b.dispatch(queue, limit.saturating_sub(all.len())).await?);
        }
        Ok(all)
    }

    async fn receive(&self, worker: &WorkerRef, max: usize) -> Result<Vec<Delivery>> {
        let mut got = Vec::new();
        for p in self.rotation(&worker.id)? {
            if got.len() >= max {
                break;
            }
            got.extend(self.part(p).receive(worker, max - got.len()).await?);
        }
        Ok(got)
    }

    async fn receive_wait(
        &self,
        worker: &WorkerRef,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>> {
        let order = self.rotation(&worker.id)?;
        match order.as_slice() {
            [] => {
                tokio::time::sleep(timeout.min(WAIT_SLICE)).await;
                Ok(Vec::new())
            }
            [only] => self.part(*only).receive_wait(worker, max, timeout).await,
            [first, rest @ ..] => {
                let mut got = Vec::new();
                for p in rest {
                    got.extend(
                        self.part(*p)
                            .receive(worker, max.saturating_sub(got.len()))
                            .await?,
                    );
                }
                if !got.is_empty() {
                    return Ok(got);
                }
                self.part(*first)
                    .receive_wait(worker, max, timeout.min(WAIT_SLICE))
                    .await
            }
        }
    }

    async fn complete(&self, lease: &Lease, value: Vec<u8>) -> Result<AckOutcome> {
        self.of(lease.task).complete(lease, value).await
    }

    async fn complete_and_receive(
        &self,
        lease: &Lease,
        value: Vec<u8>,
        max: usize,
    ) -> Result<(AckOutcome, Vec<Delivery>)> {
        let p = partition_of(lease.task, self.count());
        let serving = self
            .member(&lease.worker)
            .is_some_and(|m| m.serving.contains(&p));
        if serving {
            return self.part(p).complete_and_receive(lease, value, max).await;
        }
        // A partition being left: complete there, take nothing more from it.
        Ok((self.part(p).complete(lease, value).await?, Vec::new()))
    }

    async fn fail(&self, lease: &Lease, error: &str, retry: bool) -> Result<AckOutcome> {
        self.of(lease.task).fail(lease, error, retry).await
    }

    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        self.of(id).cancel(id).await
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        self.of(id).get_task(id).await
    }

    async fn get_outcome(&self, id: TaskId) -> Result<Option<TaskOutcome>> {
        self.of(id).get_outcome(id).await
    }

    async fn wait_outcome(&self, id: TaskId, timeout: Duration) -> Result<Option<TaskOutcome>> {
        self.of(id).wait_outcome(id, timeout).await
    }

    async fn list_dead(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskInfo>> {
        let mut all = Vec::new();
        for r in join_all(self.parts.iter().map(|b| b.list_dead(queue, limit))).await {
            all.extend(r?);
        }
        all.sort_by_key(|t| (t.created_at, t.id));
        all.truncate(limit);
        Ok(all)
    }

    async fn redrive(&self, id: TaskId) -> Result<SubmitOutcome> {
        self.of(id).redrive(id).await
    }

    async fn stats(&self) -> Result<Stats> {
        let all = join_all(self.parts.iter().map(|b| b.stats())).await;
        Ok(merge::stats(all.into_iter().collect::<Result<Vec<_>>>()?))
    }

    async fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>> {
        let mut all = Vec::new();
        for b in &self.parts {
            all.extend(b.peek_ready(queue, limit.saturating_sub(all.len())).await?);
        }
        Ok(all)
    }

    async fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        merge::events(self, after, limit).await
    }

    async fn learned_cost(&self, queue: &QueueName, kind: &TaskKind) -> Result<Option<u32>> {
        for b in &self.parts {
            if let Some(c) = b.learned_cost(queue, kind).await? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    async fn until_due(&self) -> Result<Option<Duration>> {
        let mut first: Option<Duration> = None;
        for r in join_all(self.parts.iter().map(|b| b.until_due())).await {
            if let Some(d) = r? {
                first = Some(first.map_or(d, |f| f.min(d)));
            }
        }
        Ok(first)
    }

    async fn sleep_until_due(&self, at_most: Duration) -> Result<()> {
        // Sleeping changes nothing: the first partition to wake ends the sleep of all.
        let sleeps = self.parts.iter().map(|b| b.sleep_until_due(at_most));
        select_all(sleeps).await.0
    }

    async fn maintain(&self, limit: usize) -> Result<MaintenanceReport> {
        let all = join_all(self.parts.iter().map(|b| b.maintain(limit))).await;
        let mut report = MaintenanceReport::default();
        for r in all {
            let r = r?;
            report.promoted += r.promoted;
            report.workers_reaped.extend(r.workers_reaped);
            report.tasks_returned += r.tasks_returned;
            report.records_purged += r.records_purged;
            report.assignments.extend(r.assignments);
            report.more |= r.more;
        }
        Ok(report)
    }
}
