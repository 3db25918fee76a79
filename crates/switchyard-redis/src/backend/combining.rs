//! Single submits and completions made at the same time, combined into one script call (see
//! the `combine` module for the combiner itself).

use switchyard_core::{
    AckOutcome, BackendErrorKind, Delivery, Error, Lease, QueueName, Result, SubmitOutcome,
    TaskSpec, WorkerId,
};

use super::{Inner, RedisBackend};
use crate::codec::protocol;
use crate::combine::{Combiner, Job};

/// A completion waiting to be combined: the lease, the result, and how many tasks the caller
/// would receive in the same call.
pub(super) type Completion = (Lease, Vec<u8>, usize);

/// What a combined completion answers: the acknowledgement and the caller's received tasks.
pub(super) type Completed = Result<(AckOutcome, Vec<Delivery>)>;

/// A kind of single call the backend combines with others made at the same time (see the
/// `combine` module): where such calls wait, and how a batch of them is sent.
pub(super) trait Combined: Sized + Send + 'static {
    /// What each caller gets back.
    type Answer: Send + 'static;
    fn combiner(inner: &Inner) -> &Combiner<Self, Result<Self::Answer>>;
    fn run(
        backend: &RedisBackend,
        batch: Vec<Job<Self, Result<Self::Answer>>>,
    ) -> impl std::future::Future<Output = ()> + Send + '_;
}

impl Combined for TaskSpec {
    type Answer = SubmitOutcome;
    fn combiner(inner: &Inner) -> &Combiner<Self, Result<SubmitOutcome>> {
        &inner.submits
    }
    fn run(
        backend: &RedisBackend,
        batch: Vec<Job<Self, Result<SubmitOutcome>>>,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        backend.run_submits(batch)
    }
}

impl Combined for Completion {
    type Answer = (AckOutcome, Vec<Delivery>);
    fn combiner(inner: &Inner) -> &Combiner<Self, Completed> {
        &inner.completes
    }
    fn run(
        backend: &RedisBackend,
        batch: Vec<Job<Self, Completed>>,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        backend.run_completes(batch)
    }
}

impl RedisBackend {
    /// Queues `job` with the calls of its kind and waits for its answer, starting a runner if
    /// fewer than the allowed number are active (see the `combine` module). `what` names the
    /// call in the error a caller gets if its runtime shuts down before the answer.
    pub(super) async fn combined<J: Combined>(&self, job: J, what: &str) -> Result<J::Answer> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if J::combiner(&self.inner).push((job, tx)) {
            let backend = self.clone();
            tokio::spawn(async move {
                while let Some(batch) = J::combiner(&backend.inner).next_batch() {
                    J::run(&backend, batch).await;
                }
            });
        }
        rx.await.map_err(|e| {
            let message = format!(
                "the {what} was interrupted (its runtime shut down); its outcome is unknown: \
                 look the task up by id"
            );
            Error::backend_caused(BackendErrorKind::Other, message, e)
        })?
    }

    /// Sends combined single submits as one call and answers each caller. Tasks for queues
    /// that are not declared are answered `UnknownQueue` without holding up the others. If the
    /// call fails otherwise, each task is sent again on its own, so that every caller gets its
    /// own answer (the script validates everything before it writes, so the failed call
    /// changed nothing).
    pub(super) async fn run_submits(&self, batch: Vec<Job<TaskSpec, Result<SubmitOutcome>>>) {
        let mut queues: Vec<QueueName> = Vec::new();
        for (spec, _) in &batch {
            if !queues.contains(spec.queue()) {
                queues.push(spec.queue().clone());
            }
        }
        let (mut specs, mut answers) = (Vec::with_capacity(batch.len()), Vec::new());
        if queues.len() > 1 {
            let names: Vec<&QueueName> = queues.iter().collect();
            // If the check itself fails, the submit below reports the error.
            let declared = self
                .declared(&names)
                .await
                .unwrap_or_else(|_| vec![true; queues.len()]);
            for (spec, answer) in batch {
                let known = queues
                    .iter()
                    .position(|q| q == spec.queue())
                    .is_none_or(|i| declared.get(i).copied().unwrap_or(true));
                if known {
                    specs.push(spec);
                    answers.push(answer);
                } else {
                    let _ = answer.send(Err(Error::UnknownQueue(spec.queue().clone())));
                }
            }
        } else {
            (specs, answers) = batch.into_iter().unzip();
        }
        if specs.is_empty() {
            return;
        }
        match self.submit_specs(&specs).await {
            Ok(outcomes) => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            Err(Error::UnknownQueue(q)) => {
                for answer in answers {
                    let _ = answer.send(Err(Error::UnknownQueue(q.clone())));
                }
            }
            Err(e) if specs.len() == 1 => {
                if let Some(answer) = answers.into_iter().next() {
                    let _ = answer.send(Err(e));
                }
            }
            Err(e) => {
                // Tasks stored before the failure are answered; the rest go again one by one.
                let mut stored: Vec<Option<SubmitOutcome>> = vec![None; specs.len()];
                if let Error::BatchIncomplete { accepted, .. } = e {
                    for (i, outcome) in accepted {
                        if let Some(slot) = stored.get_mut(i) {
                            *slot = Some(outcome);
                        }
                    }
                }
                for ((spec, answer), stored) in specs.iter().zip(answers).zip(stored) {
                    let one = match stored {
                        Some(outcome) => Ok(outcome),
                        None => self
                            .submit_specs(std::slice::from_ref(spec))
                            .await
                            .and_then(|mut o| {
                                o.pop().ok_or_else(|| protocol("empty submit reply"))
                            }),
                    };
                    let _ = answer.send(one);
                }
            }
        }
    }

    /// Sends combined completions, one `complete` call per worker (in the order they came),
    /// and answers each caller with its acknowledgement and the tasks received right after its
    /// own completion: each caller's answer is the one it would have had calling alone at that
    /// point (concurrent calls have no order among themselves; these are ordered by worker,
    /// then as they came). If a call fails, its completions are sent again one by one so that
    /// each caller gets its own answer (a script refuses a stale lease without changing
    /// anything, and fails before it writes anything otherwise).
    pub(super) async fn run_completes(&self, batch: Vec<Job<Completion, Completed>>) {
        let mut by_worker: Vec<(WorkerId, Vec<_>)> = Vec::new();
        for job in batch {
            let worker = &job.0.0.worker;
            match by_worker.iter_mut().find(|(w, _)| w == worker) {
                Some((_, jobs)) => jobs.push(job),
                None => by_worker.push((worker.clone(), vec![job])),
            }
        }
        for (worker, jobs) in by_worker {
            let (acks, answers): (Vec<Completion>, Vec<_>) = jobs.into_iter().unzip();
            match self.complete_leases(&worker, &acks, 0, false).await {
                Ok((outcomes, _)) => {
                    for (answer, outcome) in answers.into_iter().zip(outcomes) {
                        let _ = answer.send(Ok(outcome));
                    }
                }
                Err(e) if answers.len() == 1 => {
                    if let Some(answer) = answers.into_iter().next() {
                        let _ = answer.send(Err(e));
                    }
                }
                // Applied, unconfirmed: sending them again one by one would only be refused.
                Err(Error::NotReplicated {
                    confirmed,
                    wanted,
                    timeout_ms,
                }) => {
                    for answer in answers {
                        let _ = answer.send(Err(Error::NotReplicated {
                            confirmed,
                            wanted,
                            timeout_ms,
                        }));
                    }
                }
                Err(_) => {
                    for (ack, answer) in acks.into_iter().zip(answers) {
                        let one = self
                            .complete_leases(&worker, std::slice::from_ref(&ack), 0, false)
                            .await
                            .and_then(|(mut outcomes, _)| {
                                outcomes
                                    .pop()
                                    .ok_or_else(|| protocol("empty complete reply"))
                            });
                        let _ = answer.send(one);
                    }
                }
            }
        }
    }
}
