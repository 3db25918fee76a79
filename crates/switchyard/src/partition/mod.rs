//! Partitioned namespaces: one namespace spread over several backends ("partitions"), each a
//! complete namespace of its own. On Redis each partition has its own hash tag, so on a
//! Cluster each lands on its own slot and can live on its own primary.
//!
//! [`Partitioned`] is a [`Backend`] over the partitions:
//!
//! * a task goes to the partition of its affinity key, else of its dedup key, else of its id
//!   (see [`route`]); its id names its partition, so every call about it (status, cancel,
//!   complete, await) goes straight there;
//! * a worker serves the partitions [assigned](route::assignment) to it among the live workers
//!   that serve the same queues (all partitions' registrations), registered in each with its
//!   whole capacity. Each heartbeat reads the roster again: a partition it gains is registered
//!   at once; one it loses is drained (its inbox goes back, its running tasks finish) and left
//!   when nothing of it runs there;
//! * calls about the whole namespace (declare, stats, maintenance, events) go to every
//!   partition and their answers are merged.
//!
//! Inside a partition every guarantee of `docs/architecture.md` holds unchanged: it *is* a
//! namespace. `docs/scaling.md` says what holds across partitions.

pub mod route;

mod admin;
mod merge;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::{join_all, select_all};
use switchyard_core::admin::{Purge, PurgeReport};
use switchyard_core::prelude::*;
use switchyard_core::{
    AckOutcome, Assignment, CancelOutcome, Clock, Delivery, Error, Event, HandBack, HeartbeatReply,
    Lease, MaintenanceReport, QueueConfig, QueueName, RegisterOutcome, Result, Stats,
    SubmitOutcome, SystemClock, TaskId, TaskInfo, TaskKind, TaskOutcome, TaskSpec, WorkerId,
    WorkerRef, WorkerSpec,
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

/// `queues`, sorted: workers serving the same queues in another order are one group.
fn sorted(queues: &[QueueName]) -> Vec<QueueName> {
    let mut q = queues.to_vec();
    q.sort();
    q
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

    /// The live, non-draining workers of the namespace that serve exactly `queues` (sorted), from
    /// every partition's registrations. Workers with another queue list are assigned among
    /// themselves, so that every partition of every queue has a worker. A registration whose
    /// heartbeat expired (by this machine's clock) no longer counts, reaped or not.
    async fn roster(&self, queues: &[QueueName]) -> Result<BTreeSet<WorkerId>> {
        let now = SystemClock.now_ms();
        let mut roster = BTreeSet::new();
        for stats in join_all(self.parts.iter().map(|b| b.stats())).await {
            for w in stats?.workers {
                if !w.draining && w.expires_at >= now && sorted(&w.queues) == queues {
                    roster.insert(w.id);
                }
            }
        }
        Ok(roster)
    }

    /// The partitions `spec`'s worker should serve now.
    async fn wanted(&self, spec: &WorkerSpec) -> Result<BTreeSet<u16>> {
        let roster = self.roster(&sorted(spec.queues())).await?;
        Ok(assignment(&roster, spec.id(), self.count()))
    }

    /// Registers `spec` (with its whole capacity: see `docs/scaling.md`) in `partitions`. If
    /// one fails, the ones that succeeded are deregistered again (best effort) and the error
    /// returned.
    async fn register_in(
        &self,
        spec: &WorkerSpec,
        partitions: &BTreeSet<u16>,
    ) -> Result<RegisterOutcome> {
        let calls = partitions
            .iter()
            .map(|p| async move { (*p, self.part(*p).register_worker(spec.clone()).await) });
        let mut out = RegisterOutcome::default();
        let mut failure = None;
        let mut done = Vec::new();
        for (p, r) in join_all(calls).await {
            match r {
                Ok(r) => {
                    out.replaced |= r.replaced;
                    out.assignments.extend(r.assignments);
                    done.push(p);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            self.leave(&spec.worker_ref(), &done).await;
            return Err(e);
        }
        Ok(out)
    }

    /// Deregisters `worker` from `partitions`, best effort (for clean-ups whose failure
    /// changes nothing: the registrations expire and are reaped).
    async fn leave(&self, worker: &WorkerRef, partitions: &[u16]) {
        for p in partitions {
            if let Err(e) = self.part(*p).deregister_worker(worker).await {
                tracing::debug!(worker = %worker.id, partition = p, "cannot leave a partition: {e}");
            }
        }
    }

    /// After a heartbeat: takes up partitions the roster now assigns to `worker`, drains the
    /// ones it no longer does, and leaves drained ones where nothing of it runs any more (and
    /// takes such a one up again at once if it is wanted again).
    async fn rebalance(&self, worker: &WorkerRef) -> Result<Vec<Assignment>> {
        let Some(m) = self.member(&worker.id).filter(|m| !m.draining) else {
            return Ok(Vec::new());
        };
        let wanted = self.wanted(&m.spec).await?;
        let mut assignments = Vec::new();
        let lost: BTreeSet<u16> = m.serving.difference(&wanted).copied().collect();
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
        // A partition still being left cannot be taken up again until its drained
        // registration ended (a new registration would hand its running tasks back).
        let gained: BTreeSet<u16> = wanted
            .iter()
            .filter(|p| !m.serving.contains(p) && (!m.leaving.contains(p) || left.contains(p)))
            .copied()
            .collect();
        if !gained.is_empty() {
            tracing::info!(worker = %worker.id, ?gained, "serving more partitions");
            assignments.extend(self.register_in(&m.spec, &gained).await?.assignments);
        }
        // `None`: deregistered while this ran; `Some(true)`: a drain began meanwhile.
        let draining = self.lock().get_mut(&worker.id).map(|m| {
            m.serving.extend(&gained);
            m.serving.retain(|p| !lost.contains(p));
            m.leaving.extend(&lost);
            m.leaving.retain(|p| !left.contains(p));
            m.draining
        });
        let Some(drained_meanwhile) = draining else {
            // The new registrations go too.
            let gained: Vec<u16> = gained.iter().copied().collect();
            self.leave(worker, &gained).await;
            return Ok(assignments);
        };
        // A shutdown that began while this ran drained only what was registered before it.
        if drained_meanwhile {
            for p in &gained {
                assignments.extend(self.part(*p).drain_worker(worker).await?.assignments);
            }
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
impl Queues for Partitioned {
    async fn declare_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<()> {
        for b in &self.parts {
            b.declare_queue(queue, config).await?;
        }
        Ok(())
    }

    async fn queue_config(&self, queue: &QueueName) -> Result<Option<QueueConfig>> {
        self.parts[0].queue_config(queue).await
    }

    /// Every partition of the queue, one after the other (a resume dispatches in each).
    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<Vec<Assignment>> {
        let mut all = Vec::new();
        for b in &self.parts {
            all.extend(b.set_paused(queue, paused).await?);
        }
        Ok(all)
    }

    async fn purge_queue(
        &self,
        queue: &QueueName,
        what: Purge,
        limit: usize,
    ) -> Result<PurgeReport> {
        self.purge_parts(queue, what, limit).await
    }

    async fn reconfigure_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<bool> {
        self.reconfigure_parts(queue, config).await
    }

    async fn delete_queue(&self, queue: &QueueName) -> Result<()> {
        self.delete_parts(queue).await
    }
}

#[async_trait]
impl Produce for Partitioned {
    async fn submit(&self, spec: TaskSpec) -> Result<SubmitOutcome> {
        let (p, spec) = route::route(spec, self.count());
        self.part(p).submit(spec).await
    }

    async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<SubmitOutcome>> {
        merge::submit_batch(self, specs).await
    }
}

#[async_trait]
impl Membership for Partitioned {
    async fn register_worker(&self, spec: WorkerSpec) -> Result<RegisterOutcome> {
        let wanted = self.wanted(&spec).await?;
        let out = self.register_in(&spec, &wanted).await?;
        let before = self.lock().insert(
            spec.id().clone(),
            Member {
                spec,
                serving: wanted.clone(),
                leaving: BTreeSet::new(),
                next: 0,
                draining: false,
            },
        );
        // A registration again (after the worker was reaped somewhere): the earlier one's other
        // partitions would otherwise stay registered, unserved, until they expire.
        if let Some(old) = before {
            let stale: Vec<u16> = old
                .serving
                .union(&old.leaving)
                .filter(|p| !wanted.contains(p))
                .copied()
                .collect();
            self.leave(&old.spec.worker_ref(), &stale).await;
        }
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
        // The heartbeat itself went through: a failed rebalance is tried again next time.
        match self.rebalance(worker).await {
            Ok(assignments) => reply.assignments.extend(assignments),
            Err(e) => tracing::warn!(worker = %worker.id, "cannot rebalance partitions yet: {e}"),
        }
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
}

/// How long a worker's wait looks at each partition but the one it sleeps on.
const REST_WAIT: Duration = Duration::from_millis(1);

#[async_trait]
impl Leases for Partitioned {
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
                // A short wait, not a bare receive: the worker may be parked in these
                // partitions too, and a wait also takes the hand-offs that arrived there.
                let mut got = Vec::new();
                for p in rest {
                    got.extend(
                        self.part(*p)
                            .receive_wait(worker, max.saturating_sub(got.len()), REST_WAIT)
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

    /// Each partition's running tasks of the worker, partition by partition.
    async fn running(&self, worker: &WorkerRef) -> Result<Vec<Delivery>> {
        let serving: Vec<u16> = {
            let members = self.lock();
            let m = members
                .get(&worker.id)
                .ok_or_else(|| Error::UnknownWorker(worker.id.clone()))?;
            m.serving.iter().copied().collect()
        };
        let mut all = Vec::new();
        for p in serving {
            all.extend(self.part(p).running(worker).await?);
        }
        Ok(all)
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
}

#[async_trait]
impl Tasks for Partitioned {
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        self.of(id).get_task(id).await
    }

    async fn get_outcome(&self, id: TaskId) -> Result<Option<TaskOutcome>> {
        self.of(id).get_outcome(id).await
    }

    async fn wait_outcome(&self, id: TaskId, timeout: Duration) -> Result<Option<TaskOutcome>> {
        self.of(id).wait_outcome(id, timeout).await
    }

    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        self.of(id).cancel(id).await
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

    async fn delete_task(&self, id: TaskId) -> Result<()> {
        self.of(id).delete_task(id).await
    }
}

#[async_trait]
impl Inspect for Partitioned {
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
}

#[async_trait]
impl Maintain for Partitioned {
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
