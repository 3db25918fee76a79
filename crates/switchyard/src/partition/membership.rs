//! Workers on a partitioned namespace: a worker registers in the partitions that hold its
//! queues' tasks, a share of them at a time when it serves many (its rotation), and moves
//! between them as the work does (rebalancing); heartbeats, draining and deregistering reach
//! every partition it is in.

use super::*;

impl Partitioned {
    /// The partitions `spec`'s worker should serve now.
    async fn wanted(&self, spec: &WorkerSpec) -> Result<BTreeSet<u16>> {
        let roster = self.roster(&sorted(spec.queues())).await?;
        Ok(assignment(&roster, spec.id(), self.count()))
    }

    /// Registers `spec` (with its whole capacity: see `docs/scaling.md`) in `partitions`, and
    /// answers the ones it is registered in. A partition that is down is left for a later
    /// heartbeat's rebalance to take up; if one refuses (or none answers), the ones that
    /// succeeded are deregistered again (best effort) and the error returned.
    async fn register_in(
        &self,
        spec: &WorkerSpec,
        partitions: &BTreeSet<u16>,
    ) -> Result<(RegisterOutcome, BTreeSet<u16>)> {
        let wanted: Vec<u16> = partitions.iter().copied().collect();
        let results = self
            .on_each(&wanted, |_, b| b.register_worker(spec.clone()))
            .await;
        let mut out = RegisterOutcome::default();
        let mut failure = None;
        let mut done = BTreeSet::new();
        for (p, r) in results {
            match r {
                Ok(r) => {
                    out.replaced |= r.replaced;
                    out.assignments.extend(r.assignments);
                    done.insert(p);
                }
                Err(e) if e.is_transient() => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if done.is_empty() && failure.is_none() && !wanted.is_empty() {
            failure = Some(self.unreachable_error(&wanted));
        }
        if let Some(e) = failure {
            let done: Vec<u16> = done.into_iter().collect();
            self.leave(&spec.worker_ref(), &done).await;
            return Err(e);
        }
        Ok((out, done))
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
        // Partitions that do not answer are dealt with in a later round.
        let mut lost = BTreeSet::new();
        for p in m.serving.difference(&wanted) {
            tracing::info!(worker = %worker.id, partition = p, "leaving a partition");
            match self.part(*p).drain_worker(worker).await {
                Ok(back) => {
                    assignments.extend(back.assignments);
                    lost.insert(*p);
                    // A hand-off made there just before the drain may never be read (the
                    // worker no longer waits there): its next receive takes every task running
                    // on it there (those it holds already are skipped by the runtime).
                    match self.part(*p).running(worker).await {
                        Ok(running) => self.adopt(&worker.id, running),
                        Err(e) => {
                            tracing::debug!(worker = %worker.id, partition = p, "cannot list its running tasks: {e}")
                        }
                    }
                }
                Err(e) if e.is_transient() => self.health.record::<()>(*p, self.part(*p), &Err(e)),
                Err(e) => return Err(e),
            }
        }
        let mut left = BTreeSet::new();
        for p in m.leaving.iter().chain(&lost) {
            let stats = match self.part(*p).stats().await {
                Ok(stats) => stats,
                Err(e) if e.is_transient() => continue,
                Err(e) => return Err(e),
            };
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
        let gained = if gained.is_empty() {
            gained
        } else {
            tracing::info!(worker = %worker.id, ?gained, "serving more partitions");
            let (out, registered) = self.register_in(&m.spec, &gained).await?;
            assignments.extend(out.assignments);
            registered
        };
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
    pub(super) fn rotation(&self, worker: &WorkerId) -> Result<Vec<u16>> {
        let mut members = self.lock();
        let m = members
            .get_mut(worker)
            .ok_or_else(|| Error::UnknownWorker(worker.clone()))?;
        // Partitions left out for failing are skipped, unless all are (then the caller meets
        // the failure, and waits before it tries again).
        let mut serving: Vec<u16> = m
            .serving
            .iter()
            .copied()
            .filter(|p| self.health.usable(*p))
            .collect();
        if serving.is_empty() {
            serving = m.serving.iter().copied().collect();
        }
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
impl Membership for Partitioned {
    async fn register_worker(&self, spec: WorkerSpec) -> Result<RegisterOutcome> {
        let wanted = self.wanted(&spec).await?;
        let (out, registered) = self.register_in(&spec, &wanted).await?;
        let before = self.lock().insert(
            spec.id().clone(),
            Member {
                spec,
                serving: registered,
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

    /// Heartbeats in every partition the worker is registered in that answers. A partition
    /// that no longer knows it (it was reaped there while that partition was down) is dropped
    /// from its partitions, for the rebalance to register it again; only when no partition
    /// knows it is `UnknownWorker` the answer.
    async fn heartbeat(&self, worker: &WorkerRef) -> Result<HeartbeatReply> {
        let mut reply = HeartbeatReply::default();
        let registered = self.registered(&worker.id)?;
        let results = self.on_each(&registered, |_, b| b.heartbeat(worker)).await;
        let mut unknown = Vec::new();
        let mut answers = Vec::with_capacity(results.len());
        for (p, r) in results {
            match r {
                Err(Error::UnknownWorker(_)) => unknown.push(p),
                other => answers.push((p, other)),
            }
        }
        if answers.is_empty() && !unknown.is_empty() {
            return Err(Error::UnknownWorker(worker.id.clone()));
        }
        if !unknown.is_empty() {
            tracing::warn!(worker = %worker.id, partitions = ?unknown, "reaped in these partitions (its tasks there went back to their queues); registering there again");
            if let Some(m) = self.lock().get_mut(&worker.id) {
                m.serving.retain(|p| !unknown.contains(p));
                m.leaving.retain(|p| !unknown.contains(p));
            }
        }
        for (_, r) in Self::answered(answers)? {
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

    /// Drains in every partition that answers; one that is down keeps the registration until
    /// it expires there.
    async fn drain_worker(&self, worker: &WorkerRef) -> Result<HandBack> {
        let registered = self.registered(&worker.id)?;
        if let Some(m) = self.lock().get_mut(&worker.id) {
            m.draining = true;
        }
        let calls = registered.iter().map(|p| async move {
            let r = self.part(*p).drain_worker(worker).await;
            self.health.record(*p, self.part(*p), &r);
            (*p, r)
        });
        merge::hand_backs(join_all(calls).await)
    }

    /// Deregisters in every partition that answers; one that is down keeps the registration
    /// until it expires there and is reaped (which hands its tasks back).
    async fn deregister_worker(&self, worker: &WorkerRef) -> Result<HandBack> {
        let registered = self.registered(&worker.id)?;
        let calls = registered.iter().map(|p| async move {
            let r = self.part(*p).deregister_worker(worker).await;
            self.health.record(*p, self.part(*p), &r);
            (*p, r)
        });
        let out = merge::hand_backs(join_all(calls).await);
        if out.is_ok() {
            self.lock().remove(&worker.id);
            self.adopted(&worker.id);
        }
        out
    }
}
