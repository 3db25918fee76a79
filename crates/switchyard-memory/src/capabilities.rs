//! The capability traits of [`Backend`](switchyard_core::Backend) on the memory backend: each
//! call takes the lock for one step of the reference state machine (`state`), or several for
//! a large batch; the waits (`receive_wait`, `wait_outcome`, `wait_progress`,
//! `sleep_until_due`) sleep outside it.

use std::time::Duration;

use async_trait::async_trait;
use switchyard_core::admin::{Purge, PurgeReport};
use switchyard_core::backend::due_pause;
use switchyard_core::flow::bounded::Remaining;
use switchyard_core::flow::groups::{GroupInfo, GroupLimits};
use switchyard_core::progress::news;
use switchyard_core::schedule::{Claim, ScheduleInfo, ScheduleSpec, Upserted};
use switchyard_core::{
    Ack, AckOutcome, Assignment, Browse, CancelOutcome, Claimed, Delivery, Error, Event, HandBack,
    HeartbeatReply, Inspect, Lease, Leases, Maintain, MaintenanceReport, Membership, Produce,
    Progress, ProgressAck, QueueConfig, QueueName, Queues, RegisterOutcome, Result, ScheduleName,
    Schedules, Stats, SubmitOutcome, TaskChange, TaskId, TaskInfo, TaskKind, TaskOutcome, TaskPage,
    TaskSpec, Tasks, WorkerRef, WorkerSpec,
};
use tokio::time::Instant;

use crate::{MemoryBackend, SUBMIT_CHUNK};

#[async_trait]
impl Queues for MemoryBackend {
    async fn declare_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<()> {
        self.declare_now(queue, config)
    }

    async fn queue_config(&self, queue: &QueueName) -> Result<Option<QueueConfig>> {
        Ok(self.lock().queues.get(queue).map(|q| q.config))
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<Vec<Assignment>> {
        self.with(|s, now| s.set_paused(queue, paused, now))
    }

    async fn purge_queue(
        &self,
        queue: &QueueName,
        what: Purge,
        limit: usize,
    ) -> Result<PurgeReport> {
        self.with(|s, now| s.purge_queue(queue, what, limit, now))
    }

    async fn reconfigure_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<bool> {
        self.with(|s, _| s.reconfigure_queue(queue, config))
    }

    async fn delete_queue(&self, queue: &QueueName) -> Result<()> {
        self.with(|s, _| s.delete_queue(queue))
    }

    async fn set_group_weight(&self, queue: &QueueName, key: &str, weight: u32) -> Result<()> {
        self.with(|s, _| s.set_group_weight(queue, key, weight))
    }

    async fn set_group_limits(
        &self,
        queue: &QueueName,
        key: &str,
        limits: GroupLimits,
    ) -> Result<()> {
        self.with(|s, now| s.set_group_limits(queue, key, limits, now))
    }

    async fn groups(&self, queue: &QueueName) -> Result<Vec<GroupInfo>> {
        self.with(|s, _| s.groups(queue))
    }
}

#[async_trait]
impl Produce for MemoryBackend {
    async fn submit(&self, spec: TaskSpec) -> Result<SubmitOutcome> {
        self.submit_now(spec)
    }

    /// A wide flow is staged step by step, yielding the lock between steps, then committed
    /// (`switchyard_core::tree`, rule 6).
    async fn submit_flow(&self, flow: switchyard_core::tree::Flow) -> Result<Vec<SubmitOutcome>> {
        let nodes = flow.flatten()?;
        let steps = switchyard_core::tree::steps(nodes.len());
        let Some((first, later)) = steps.split_first().filter(|(_, later)| !later.is_empty())
        else {
            return self.with(|s, now| s.submit_flow(&nodes, now));
        };
        for (i, step) in later.iter().enumerate() {
            let staged =
                self.with_then_yield(|s, now| s.stage_flow(&nodes, step.clone(), i + 1, now))?;
            if let Some(duplicate) = staged {
                return Ok(vec![duplicate]);
            }
        }
        self.with(|s, now| s.commit_flow(&nodes, first.clone(), now))
    }

    /// Applies the batch [`SUBMIT_CHUNK`] tasks at a time, each chunk under one hold of the
    /// lock, yielding between chunks: a batch of a million tasks does not stall other callers.
    async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<SubmitOutcome>> {
        self.with(
            |s, _| match specs.iter().find(|t| !s.queues.contains_key(t.queue())) {
                Some(unknown) => Err(Error::UnknownQueue(unknown.queue().clone())),
                None => s.check_groups(&specs),
            },
        )?;
        let total = specs.len();
        // A batch of several steps: each step's room check also covers the batch's tasks to
        // each of its queues and groups from that step on.
        let mut rest = Remaining::of(&specs);
        let mut out = Vec::with_capacity(total);
        let mut specs = specs.into_iter();
        while specs.len() > 0 {
            let chunk: Vec<TaskSpec> = specs.by_ref().take(SUBMIT_CHUNK).collect();
            let failed = self.with_then_yield(|s, now| {
                if let Err(e) = s.check_room(&chunk, &rest, now) {
                    return Ok(Some(e));
                }
                rest.stored(&chunk);
                for spec in chunk {
                    match s.submit(spec, now) {
                        Ok(outcome) => out.push(outcome),
                        Err(e) => return Ok(Some(e)),
                    }
                }
                Ok(None)
            })?;
            match failed {
                None => {}
                Some(e) if out.is_empty() => return Err(e),
                Some(e) => {
                    return Err(Error::BatchIncomplete {
                        total,
                        accepted: out.into_iter().enumerate().collect(),
                        source: Box::new(e),
                    });
                }
            }
            tokio::task::yield_now().await;
        }
        Ok(out)
    }
}

#[async_trait]
impl Membership for MemoryBackend {
    async fn register_worker(&self, spec: WorkerSpec) -> Result<RegisterOutcome> {
        self.register_now(spec)
    }

    async fn heartbeat(&self, worker: &WorkerRef) -> Result<HeartbeatReply> {
        self.with(|s, now| {
            s.check_instance(worker)?;
            s.heartbeat(&worker.id, now)
        })
    }

    async fn drain_worker(&self, worker: &WorkerRef) -> Result<HandBack> {
        self.with(|s, now| {
            s.check_instance(worker)?;
            s.drain_worker(&worker.id, now)
        })
    }

    async fn deregister_worker(&self, worker: &WorkerRef) -> Result<HandBack> {
        self.with(|s, now| {
            s.check_instance(worker)?;
            s.deregister_worker(&worker.id, now)
        })
    }
}

#[async_trait]
impl Leases for MemoryBackend {
    async fn dispatch(&self, queue: &QueueName, limit: usize) -> Result<Vec<Assignment>> {
        self.with(|s, now| s.dispatch(queue, limit, now))
    }

    async fn receive(&self, worker: &WorkerRef, max: usize) -> Result<Vec<Delivery>> {
        self.receive_now(worker, max)
    }

    async fn receive_wait(
        &self,
        worker: &WorkerRef,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + timeout;
        loop {
            let (deliveries, waker) = self.with(|s, now| {
                // The twin of the wake-up subscription the Redis backend makes first.
                s.listen(&worker.id);
                s.check_instance(worker)?;
                // Hand-offs go to a waiting call only (see Leases::receive_wait).
                let mut deliveries = if timeout.is_zero() {
                    Vec::new()
                } else {
                    s.take_handed(&worker.id, max)
                };
                if deliveries.len() < max {
                    deliveries.extend(s.receive(&worker.id, max - deliveries.len(), now)?);
                }
                let waker = if deliveries.is_empty() {
                    Some(s.park(&worker.id))
                } else {
                    None
                };
                Ok((deliveries, waker))
            })?;
            let Some(waker) = waker.filter(|_| max > 0 && !timeout.is_zero()) else {
                return Ok(deliveries);
            };
            // A dispatch after the receive above leaves a permit, so no wake-up is lost.
            if tokio::time::timeout_at(deadline, waker.notified())
                .await
                .is_err()
            {
                return Ok(Vec::new());
            }
        }
    }

    async fn running(&self, worker: &WorkerRef) -> Result<Vec<Delivery>> {
        self.with(|s, _| {
            s.check_instance(worker)?;
            s.running_on(&worker.id)
        })
    }

    async fn complete(&self, lease: &Lease, value: Vec<u8>) -> Result<AckOutcome> {
        self.complete_now(lease, value)
    }

    async fn complete_and_receive(
        &self,
        lease: &Lease,
        value: Vec<u8>,
        max: usize,
    ) -> Result<(AckOutcome, Vec<Delivery>)> {
        self.with(|s, now| {
            let outcome = s.complete(lease, value, now)?;
            // Only a current lease may take more: see `Leases::complete_and_receive`.
            let deliveries = if max > 0 && outcome.ack == Ack::Completed {
                s.receive(&lease.worker, max, now)?
            } else {
                Vec::new()
            };
            Ok((outcome, deliveries))
        })
    }

    async fn fail(&self, lease: &Lease, error: &str, retry: bool) -> Result<AckOutcome> {
        self.with(|s, now| s.fail(lease, error, retry, now))
    }

    async fn throttle(&self, lease: &Lease, hold: Duration) -> Result<AckOutcome> {
        let hold = switchyard_core::flow::rate::hold_ms(hold)?;
        self.with(|s, now| s.throttle(lease, hold, now))
    }

    async fn progress(&self, lease: &Lease, progress: &Progress) -> Result<ProgressAck> {
        self.with(|s, now| s.progress(lease, progress, now))
    }
}

#[async_trait]
impl Tasks for MemoryBackend {
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        Ok(self.lock().get_task(id))
    }

    async fn children(
        &self,
        id: TaskId,
    ) -> Result<Option<Vec<switchyard_core::tree::ChildResult>>> {
        Ok(self.lock().children(id))
    }

    async fn get_outcome(&self, id: TaskId) -> Result<Option<TaskOutcome>> {
        Ok(self.lock().get_outcome(id))
    }

    async fn wait_outcome(&self, id: TaskId, timeout: Duration) -> Result<Option<TaskOutcome>> {
        let deadline = Instant::now() + timeout;
        let finished = self.lock().finished.clone();
        loop {
            let notified = finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.lock();
                if let Some(outcome) = state.get_outcome(id) {
                    return Ok(Some(outcome));
                }
                // A committed wide flow's task not yet seen can be awaited (as on Redis).
                if !state.tasks.contains_key(&id) {
                    return Err(Error::TaskNotFound(id));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn wait_progress(
        &self,
        id: TaskId,
        seen: Option<&Progress>,
        timeout: Duration,
    ) -> Result<Option<Progress>> {
        let deadline = Instant::now() + timeout;
        let (progressed, finished) = {
            let state = self.lock();
            (state.progressed.clone(), state.finished.clone())
        };
        loop {
            let announced = progressed.notified();
            let ended = finished.notified();
            tokio::pin!(announced, ended);
            announced.as_mut().enable();
            ended.as_mut().enable();
            let now = {
                let state = self.lock();
                let info = state.get_task(id).ok_or(Error::TaskNotFound(id))?;
                if news(info.progress.as_ref(), seen) || info.state.is_terminal() {
                    return Ok(info.progress);
                }
                info.progress
            };
            tokio::select! {
                () = &mut announced => {}
                () = &mut ended => {}
                () = tokio::time::sleep_until(deadline) => return Ok(now),
            }
        }
    }

    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        self.with(|s, now| s.cancel(id, now))
    }

    async fn list_dead(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskInfo>> {
        self.lock().list_dead(queue, limit)
    }

    async fn change_task(&self, id: TaskId, change: &TaskChange) -> Result<SubmitOutcome> {
        self.with(|s, now| s.change_task(id, change, now))
    }

    async fn redrive(&self, id: TaskId) -> Result<SubmitOutcome> {
        self.with(|s, now| s.redrive(id, now))
    }

    async fn delete_task(&self, id: TaskId) -> Result<()> {
        self.with(|s, _| s.delete_task(id))
    }
}

#[async_trait]
impl Inspect for MemoryBackend {
    async fn stats(&self) -> Result<Stats> {
        Ok(self.stats_now())
    }

    async fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>> {
        self.lock().peek_ready(queue, limit)
    }

    async fn browse(&self, query: &Browse) -> Result<TaskPage> {
        self.lock().browse(query)
    }

    async fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        self.lock().events(after, limit)
    }

    async fn learned_cost(&self, queue: &QueueName, kind: &TaskKind) -> Result<Option<u32>> {
        Ok(self.lock().learned_cost(queue, kind))
    }

    async fn memory(&self) -> Result<Vec<(QueueName, u64)>> {
        Ok(self.lock().memory())
    }
}

#[async_trait]
impl Schedules for MemoryBackend {
    async fn upsert_schedule(&self, spec: &ScheduleSpec) -> Result<Upserted> {
        self.with(|s, now| s.upsert_schedule(spec, now))
    }

    async fn get_schedule(&self, name: &ScheduleName) -> Result<Option<ScheduleInfo>> {
        Ok(self.lock().get_schedule(name))
    }

    async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        Ok(self.lock().all_schedules())
    }

    async fn set_schedule_paused(&self, name: &ScheduleName, paused: bool) -> Result<bool> {
        self.with(|s, now| s.set_schedule_paused(name, paused, now))
    }

    async fn remove_schedule(&self, name: &ScheduleName) -> Result<bool> {
        self.with(|s, _| Ok(s.remove_schedule(name)))
    }

    async fn claim_ticks(&self, name: &ScheduleName, claim: &Claim) -> Result<Option<Claimed>> {
        self.with(|s, now| s.claim_ticks(name, claim, now))
    }
}

#[async_trait]
impl Maintain for MemoryBackend {
    async fn until_due(&self) -> Result<Option<Duration>> {
        let due = self.lock().next_due();
        let now = self.shared.clock.now_ms();
        Ok(due.map(|at| Duration::from_millis(at.saturating_sub(now))))
    }

    async fn sleep_until_due(&self, at_most: Duration) -> Result<()> {
        let deadline = Instant::now() + at_most;
        let mut wake_at = deadline;
        let moved = self.lock().due_moved.clone();
        loop {
            // Listening before asking, so that a due time moved after the ask is not missed.
            let notified = moved.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let until_due = self.until_due().await?;
            let now = Instant::now();
            let Some(pause) = due_pause(until_due, deadline.saturating_duration_since(now)) else {
                return Ok(());
            };
            // Never later than an earlier pass promised (see the Redis backend).
            wake_at = wake_at.min(now + pause);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake_at) => return Ok(()),
            }
        }
    }

    async fn maintain(&self, limit: usize) -> Result<MaintenanceReport> {
        self.maintain_now(limit)
    }
}
