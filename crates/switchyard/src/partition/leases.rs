//! Leases on a partitioned namespace: receiving from the partitions a worker is in (waiting on
//! all of them at once), and acknowledging on the partition that holds the task; deliveries
//! one partition answered while the caller had stopped listening are adopted for its next
//! receive.

use super::*;

impl Partitioned {
    /// Keeps `deliveries` for `worker`'s next receive (see `adopted`).
    pub(super) fn adopt(&self, worker: &WorkerId, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        self.adopted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(worker.clone())
            .or_default()
            .extend(deliveries);
    }

    /// Takes what was kept for `worker`'s next receive.
    pub(super) fn adopted(&self, worker: &WorkerId) -> Vec<Delivery> {
        self.adopted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(worker)
            .unwrap_or_default()
    }
}

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
        let order = self.rotation(&worker.id)?;
        let mut got = self.adopted(&worker.id);
        let mut failure = None;
        for p in &order {
            if got.len() >= max {
                break;
            }
            match self.answer(*p, self.part(*p).receive(worker, max - got.len()).await) {
                Ok(ds) => got.extend(ds),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        self.some_or(got, failure, order.len())
    }

    async fn receive_wait(
        &self,
        worker: &WorkerRef,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>> {
        let order = self.rotation(&worker.id)?;
        let adopted = self.adopted(&worker.id);
        if !adopted.is_empty() {
            return Ok(adopted);
        }
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
                let mut failure = None;
                for p in rest {
                    let waited = self
                        .part(*p)
                        .receive_wait(worker, max.saturating_sub(got.len()), REST_WAIT)
                        .await;
                    match self.answer(*p, waited) {
                        Ok(ds) => got.extend(ds),
                        Err(e) => {
                            failure.get_or_insert(e);
                        }
                    }
                }
                if !got.is_empty() {
                    return Ok(got);
                }
                let waited = self
                    .part(*first)
                    .receive_wait(worker, max, timeout.min(WAIT_SLICE))
                    .await;
                match self.answer(*first, waited) {
                    Ok(ds) => Ok(ds),
                    Err(e) => self.some_or(got, failure.or(Some(e)), order.len()),
                }
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
        let mut failure = None;
        for p in &serving {
            match self.answer(*p, self.part(*p).running(worker).await) {
                Ok(ds) => all.extend(ds),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        self.some_or(all, failure, serving.len())
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

    async fn throttle(&self, lease: &Lease, hold: Duration) -> Result<AckOutcome> {
        self.of(lease.task).throttle(lease, hold).await
    }

    async fn progress(
        &self,
        lease: &Lease,
        progress: &switchyard_core::Progress,
    ) -> Result<switchyard_core::ProgressAck> {
        self.of(lease.task).progress(lease, progress).await
    }
}
