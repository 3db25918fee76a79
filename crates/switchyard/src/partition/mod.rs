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
//!   partition and their answers are merged;
//! * a partition whose server is down stops only itself: the calls that span partitions (a
//!   worker's waits, heartbeats and maintenance, registering, stats) leave it out while it
//!   fails and try it again now and then (see the `health` module); `stats` names it in its warnings.
//!
//! Inside a partition every guarantee of `docs/architecture.md` holds unchanged: it *is* a
//! namespace. `docs/scaling.md` says what holds across partitions.
//!
//! Here: the handle, fan-out to partitions, and the capabilities that route by queue or task
//! (queues, produce, tasks, inspect, maintain). Workers' registrations and rotation are in
//! `membership`, receiving and acknowledging in `leases`, merging answers in `merge`, the
//! administrative calls in `admin`, partition health in `health`, routing in [`route`].

pub mod route;

mod admin;
mod health;
mod leases;
mod membership;
mod merge;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::{join_all, select_all};
use switchyard_core::prelude::*;
use switchyard_core::schedule::{Claim, ScheduleInfo, ScheduleSpec, Upserted};
use switchyard_core::{
    AckOutcome, Assignment, Browse, CancelOutcome, Claimed, Clock, Delivery, Error, Event,
    HandBack, HeartbeatReply, Lease, MaintenanceReport, QueueName, RegisterOutcome, Result,
    ScheduleName, Stats, SubmitOutcome, SystemClock, TaskId, TaskInfo, TaskKind, TaskOutcome,
    TaskPage, TaskSpec, WorkerId, WorkerRef, WorkerSpec,
};

use health::Health;
use route::{MAX_PARTITIONS, assignment, partition_of};

/// A worker serving several partitions waits on one at a time for at most this long, then
/// looks at the others: how late it can notice a task in a partition it was not waiting on.
pub const WAIT_SLICE: Duration = Duration::from_millis(250);

/// One namespace over several partitions; see the module docs.
pub struct Partitioned {
    parts: Vec<Arc<dyn Backend>>,
    members: Mutex<HashMap<WorkerId, Member>>,
    health: Arc<Health>,
    /// Per worker, tasks running on it in a partition it just left, which it may not have seen
    /// (a hand-off published as the drain went through): its next receive hands them out.
    adopted: Mutex<HashMap<WorkerId, Vec<Delivery>>>,
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
            health: Health::new(parts.len()),
            parts,
            members: Mutex::new(HashMap::new()),
            adopted: Mutex::new(HashMap::new()),
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

    /// Runs `call` on each of `partitions` that is usable (see [`health`]), all at once, and
    /// notes how each went.
    async fn on_each<'a, T, F, Fut>(&'a self, partitions: &[u16], call: F) -> Vec<(u16, Result<T>)>
    where
        F: Fn(u16, &'a Arc<dyn Backend>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let usable: Vec<u16> = partitions
            .iter()
            .copied()
            .filter(|p| self.health.usable(*p))
            .collect();
        let calls = usable.iter().map(|p| {
            let call = call(*p, self.part(*p));
            async move { (*p, call.await) }
        });
        let results = join_all(calls).await;
        for (p, r) in &results {
            self.health.record(*p, self.part(*p), r);
        }
        results
    }

    /// Every partition's number.
    fn all(&self) -> Vec<u16> {
        (0..self.count()).collect()
    }

    /// The answers of the partitions that answered. An error that is not transient is
    /// returned at once; transient ones (a partition down) are left out, unless no partition
    /// answered at all.
    fn answered<T>(results: Vec<(u16, Result<T>)>) -> Result<Vec<(u16, T)>> {
        let mut ok = Vec::with_capacity(results.len());
        let mut failure = None;
        for (p, r) in results {
            match r {
                Ok(v) => ok.push((p, v)),
                Err(e) if e.is_transient() => {
                    failure.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match failure {
            Some(e) if ok.is_empty() => Err(e),
            _ => Ok(ok),
        }
    }

    /// The live, non-draining workers of the namespace that serve exactly `queues` (sorted), from
    /// every partition's registrations. Workers with another queue list are assigned among
    /// themselves, so that every partition of every queue has a worker. A registration whose
    /// heartbeat expired (by this machine's clock) no longer counts, reaped or not.
    async fn roster(&self, queues: &[QueueName]) -> Result<BTreeSet<WorkerId>> {
        let now = SystemClock.now_ms();
        let mut roster = BTreeSet::new();
        let all = self.on_each(&self.all(), |_, b| b.stats()).await;
        for (_, stats) in Self::answered(all)? {
            for w in stats.workers {
                if !w.draining && w.expires_at >= now && sorted(&w.queues) == queues {
                    roster.insert(w.id);
                }
            }
        }
        Ok(roster)
    }

    /// The error for calls none of whose `partitions` answered.
    fn unreachable_error(&self, partitions: &[u16]) -> Error {
        let why: Vec<String> = partitions
            .iter()
            .filter_map(|p| self.health.down(*p))
            .collect();
        Error::backend(
            switchyard_core::BackendErrorKind::Connection,
            format!("no partition answered ({})", why.join("; ")),
        )
    }
}

impl Partitioned {
    /// Notes how a call to partition `p` went and passes its result on.
    fn answer<T>(&self, p: u16, result: Result<T>) -> Result<T> {
        self.health.record(p, self.part(p), &result);
        result
    }

    /// What calls to `asked` partitions in turn got, given that `failure` is the first error
    /// met: a transient failure of some partitions leaves the rest's answer standing; any
    /// other error, or every partition failing, is the answer.
    fn some_or<T>(&self, got: Vec<T>, failure: Option<Error>, asked: usize) -> Result<Vec<T>> {
        match failure {
            None => Ok(got),
            Some(e) if e.is_transient() && (asked > 1 || !got.is_empty()) => Ok(got),
            Some(e) => Err(e),
        }
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

    async fn submit_flow(&self, flow: switchyard_core::tree::Flow) -> Result<Vec<SubmitOutcome>> {
        let (p, flow) = route::route_flow(flow, self.count())?;
        self.part(p).submit_flow(flow).await
    }
}

/// How long a worker's wait looks at each partition but the one it sleeps on.
const REST_WAIT: Duration = Duration::from_millis(1);

#[async_trait]
impl Tasks for Partitioned {
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        self.of(id).get_task(id).await
    }

    async fn get_outcome(&self, id: TaskId) -> Result<Option<TaskOutcome>> {
        self.of(id).get_outcome(id).await
    }

    async fn children(
        &self,
        id: TaskId,
    ) -> Result<Option<Vec<switchyard_core::tree::ChildResult>>> {
        self.of(id).children(id).await
    }

    async fn wait_outcome(&self, id: TaskId, timeout: Duration) -> Result<Option<TaskOutcome>> {
        self.of(id).wait_outcome(id, timeout).await
    }

    async fn wait_progress(
        &self,
        id: TaskId,
        seen: Option<&switchyard_core::Progress>,
        timeout: Duration,
    ) -> Result<Option<switchyard_core::Progress>> {
        self.of(id).wait_progress(id, seen, timeout).await
    }

    async fn change_task(
        &self,
        id: TaskId,
        change: &switchyard_core::TaskChange,
    ) -> Result<SubmitOutcome> {
        self.of(id).change_task(id, change).await
    }

    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        self.of(id).cancel(id).await
    }

    async fn list_dead(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskInfo>> {
        let mut all = Vec::new();
        let listed = self
            .on_each(&self.all(), |_, b| b.list_dead(queue, limit))
            .await;
        for (_, dead) in Self::answered(listed)? {
            all.extend(dead);
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
    /// The partitions that answer, merged (with their warnings); the others are named in
    /// `warnings`.
    async fn stats(&self) -> Result<Stats> {
        let all = self.on_each(&self.all(), |_, b| b.stats()).await;
        let answered = Self::answered(all)?;
        let mut merged = merge::stats(answered.iter().map(|(_, s)| s.clone()).collect());
        let unreachable = self
            .all()
            .into_iter()
            .filter(|p| !answered.iter().any(|(q, _)| q == p))
            .map(|p| {
                let why = self
                    .health
                    .down(p)
                    .unwrap_or_else(|| format!("partition {p}: no answer"));
                format!("unreachable, left out of the figures: {why}")
            });
        let mut warnings: Vec<String> = unreachable.collect();
        for (p, s) in &answered {
            warnings.extend(s.warnings.iter().map(|w| format!("partition {p}: {w}")));
        }
        warnings.dedup();
        merged.warnings = warnings;
        Ok(merged)
    }

    async fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>> {
        let mut all = Vec::new();
        let mut failure = None;
        let usable: Vec<u16> = self
            .all()
            .into_iter()
            .filter(|p| self.health.usable(*p))
            .collect();
        for p in &usable {
            let peeked = self
                .part(*p)
                .peek_ready(queue, limit.saturating_sub(all.len()))
                .await;
            match self.answer(*p, peeked) {
                Ok(ids) => all.extend(ids),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        self.some_or(all, failure, usable.len())
    }

    /// Partition by partition (each in its state's order), one partition per call: the
    /// cursor is `<partition>/<that partition's cursor>`.
    async fn browse(&self, query: &Browse) -> Result<TaskPage> {
        let bad = || {
            Error::invalid(
                "cursor",
                "not a cursor of this partitioned namespace (`<partition>/<cursor>`)",
            )
        };
        let (p, inner) = match &query.cursor {
            None => (0, None),
            Some(c) => {
                let (p, rest) = c.split_once('/').ok_or_else(bad)?;
                let p: u16 = p.parse().map_err(|_| bad())?;
                (p, (!rest.is_empty()).then(|| rest.to_owned()))
            }
        };
        if p >= self.count() {
            return Err(bad());
        }
        let asked = query.clone().after(inner);
        let mut page = self.answer(p, self.part(p).browse(&asked).await)?;
        page.next = match page.next.take() {
            Some(next) => Some(format!("{p}/{next}")),
            None if p + 1 < self.count() => Some(format!("{}/", p + 1)),
            None => None,
        };
        Ok(page)
    }

    async fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        merge::events(self, after, limit).await
    }

    async fn learned_cost(&self, queue: &QueueName, kind: &TaskKind) -> Result<Option<u32>> {
        let learned = self
            .on_each(&self.all(), |_, b| b.learned_cost(queue, kind))
            .await;
        let mut costs = Self::answered(learned)?;
        costs.sort_by_key(|(p, _)| *p);
        Ok(costs.into_iter().find_map(|(_, c)| c))
    }

    /// Each queue's bytes summed over the partitions.
    async fn memory(&self) -> Result<Vec<(QueueName, u64)>> {
        let parts = self.on_each(&self.all(), |_, b| b.memory()).await;
        let mut sums: std::collections::BTreeMap<QueueName, u64> = Default::default();
        for (_, queues) in Self::answered(parts)? {
            for (q, bytes) in queues {
                *sums.entry(q).or_default() += bytes;
            }
        }
        Ok(sums.into_iter().collect())
    }
}

#[async_trait]
impl Maintain for Partitioned {
    async fn until_due(&self) -> Result<Option<Duration>> {
        let mut first: Option<Duration> = None;
        let all = self.on_each(&self.all(), |_, b| b.until_due()).await;
        for (_, due) in Self::answered(all)? {
            if let Some(d) = due {
                first = Some(first.map_or(d, |f| f.min(d)));
            }
        }
        Ok(first)
    }

    async fn sleep_until_due(&self, at_most: Duration) -> Result<()> {
        // Sleeping changes nothing: the first partition to wake ends the sleep of all. A
        // partition that fails at once does not end it: the others are slept on.
        let usable: Vec<&Arc<dyn Backend>> = self
            .all()
            .into_iter()
            .filter(|p| self.health.usable(*p))
            .map(|p| self.part(p))
            .collect();
        if usable.is_empty() {
            tokio::time::sleep(at_most).await;
            return Ok(());
        }
        let mut sleeps: Vec<_> = usable
            .into_iter()
            .map(|b| b.sleep_until_due(at_most))
            .collect();
        loop {
            let (slept, _, rest) = select_all(sleeps).await;
            if slept.is_ok() || rest.is_empty() {
                return slept;
            }
            sleeps = rest;
        }
    }

    async fn maintain(&self, limit: usize) -> Result<MaintenanceReport> {
        let all = self.on_each(&self.all(), |_, b| b.maintain(limit)).await;
        let mut report = MaintenanceReport::default();
        for (_, r) in Self::answered(all)? {
            report.promoted += r.promoted;
            report.tasks_expired += r.tasks_expired;
            report.workers_reaped.extend(r.workers_reaped);
            report.tasks_returned += r.tasks_returned;
            report.records_purged += r.records_purged;
            report.ticked.extend(r.ticked);
            report.assignments.extend(r.assignments);
            report.more |= r.more;
        }
        Ok(report)
    }
}

/// Schedules are not available on a partitioned namespace yet: a tick's task would be created
/// in the schedule's partition under an id that routes to another (`docs/scaling.md`). Creating
/// one is refused with the reason; there are none to read, pause, remove or claim.
#[async_trait]
impl Schedules for Partitioned {
    async fn upsert_schedule(&self, _spec: &ScheduleSpec) -> Result<Upserted> {
        Err(Error::invalid(
            "schedule",
            "schedules are not available on a partitioned namespace yet; declare the schedule \
             on an unpartitioned namespace (see docs/scaling.md)",
        ))
    }

    async fn get_schedule(&self, _name: &ScheduleName) -> Result<Option<ScheduleInfo>> {
        Ok(None)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        Ok(Vec::new())
    }

    async fn set_schedule_paused(&self, _name: &ScheduleName, _paused: bool) -> Result<bool> {
        Ok(false)
    }

    async fn remove_schedule(&self, _name: &ScheduleName) -> Result<bool> {
        Ok(false)
    }

    async fn claim_ticks(&self, _name: &ScheduleName, _claim: &Claim) -> Result<Option<Claimed>> {
        Ok(None)
    }
}
