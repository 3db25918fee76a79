//! [`Leases`] on Redis: dispatch, receive (with the per-worker stash of pushed deliveries),
//! complete and fail.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use switchyard_core::backend::normalize_error;
use switchyard_core::{
    AckOutcome, Assignment, Delivery, Error, Lease, Leases, Progress, ProgressAck, QueueName,
    Result, WorkerId, WorkerRef,
};

use super::combining::Completion;
use super::{RedisBackend, verified};
use crate::codec;
use crate::codec::{array, assignments};
use crate::error::Failure;

#[async_trait]
impl Leases for RedisBackend {
    async fn dispatch(&self, queue: &QueueName, limit: usize) -> Result<Vec<Assignment>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().dispatch, &[queue], &now);
        inv.arg(queue.as_str()).arg(limit.min(1_000_000));
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        assignments(&mut array(v)?.into_iter(), None)
    }

    async fn receive(&self, worker: &WorkerRef, max: usize) -> Result<Vec<Delivery>> {
        self.receive_inner(worker, max, false).await
    }

    async fn receive_wait(
        &self,
        me: &WorkerRef,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>> {
        let worker = &me.id;
        let deadline = tokio::time::Instant::now() + timeout;
        let slot = self.waiter(worker).await;
        let mut waiter = slot.lock().await;
        loop {
            let epoch = self.membership_epoch(worker);
            if waiter.pubsub.is_some() && waiter.subscribed_in != epoch {
                // A registration, drain or deregistration of the worker went through this
                // backend since the subscription was made: what it holds may be for a
                // registration that is gone. Start afresh (see `renew_waiting`).
                waiter.pubsub = None;
            }
            if waiter.pubsub.is_some() && Self::moved_since(waiter.moves.as_ref()) {
                // The primary moved: the subscription is on the old one, and hand-offs made
                // on the new one before this subscription was renewed are unseen.
                waiter.pubsub = None;
                waiter.lost = true;
            }
            if waiter.pubsub.is_none() {
                // Subscribe before asking, so that a dispatch right after the ask is not missed.
                let channel = self.inner.keys.wake_channel(worker);
                let moves = self.inner.topology.moves();
                waiter.pubsub = Some(self.subscribe(&channel).await?);
                waiter.moves = Some(moves);
                waiter.subscribed_in = epoch;
                waiter.parked = None;
            }
            let mut got = Vec::new();
            if waiter.lost {
                // Hand-offs published while the subscription was down never arrive: take every
                // task running here (the caller skips those it holds).
                got = self.running(me).await?;
                waiter.lost = false;
            }
            if max == 0 || timeout.is_zero() || !waiter.is_parked(epoch) {
                let asked = self
                    .receive_inner(me, max.saturating_sub(got.len()), true)
                    .await?;
                // Receiving nothing parked the worker (see `Waiter`).
                waiter.parked = asked
                    .is_empty()
                    .then(|| (tokio::time::Instant::now(), epoch));
                got.extend(asked);
                if !got.is_empty() || max == 0 || timeout.is_zero() {
                    return Ok(got);
                }
            }
            let mut moves = waiter.moves.clone();
            let Some(pubsub) = waiter.pubsub.as_mut() else {
                continue;
            };
            let mut messages = pubsub.on_message();
            let message = tokio::select! {
                m = tokio::time::timeout_at(deadline, messages.next()) => m,
                // The primary moved: the wait is on the old one. Renewed at the top.
                Some(Ok(())) = async { Some(moves.as_mut()?.changed().await) } => {
                    drop(messages);
                    continue;
                }
            };
            let mut wake = false;
            let mut broken = false;
            let mut replaced = false;
            match message {
                Err(_) => return Ok(got),
                // A hand-off is returned with whatever else has arrived already; a plain
                // wake-up means: ask.
                Ok(Some(first)) => {
                    let mut next = Some(first);
                    while let Some(message) = next.take() {
                        match codec::hand_off(message.get_payload_bytes(), worker) {
                            Ok(Some(h)) if h.instance != me.instance.get() => {
                                replaced = true;
                                break;
                            }
                            Ok(Some(h)) => {
                                got.push(h.delivery);
                                if !h.parked {
                                    wake = true;
                                }
                            }
                            Ok(None) => {
                                wake = true;
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(%worker, "unreadable hand-off ({e}); reconciling");
                                broken = true;
                                break;
                            }
                        }
                        if got.len() < max {
                            next = messages.next().now_or_never().flatten();
                        }
                    }
                }
                // The connection dropped (restart, failover): resubscribe, reconcile, ask.
                Ok(None) => {
                    tracing::warn!(%worker, "wake-up connection lost; reconnecting");
                    broken = true;
                }
            }
            drop(messages);
            if replaced {
                // Handed to another instance of the id: this one was replaced.
                waiter.pubsub = None;
                return Err(Error::WorkerReplaced(worker.clone()));
            }
            if broken {
                waiter.pubsub = None;
                waiter.lost = true;
            }
            if wake || broken {
                // Not parked any more, or not known to be: ask (the parked mark of a hand-off
                // is not renewed, so it is trusted for PARKED_TRUST from the ask at most).
                waiter.parked = None;
            }
            if !got.is_empty() {
                return Ok(got);
            }
        }
    }

    async fn running(&self, me: &WorkerRef) -> Result<Vec<Delivery>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().running, &[], &now);
        inv.arg(me.id.as_str()).arg(me.instance.get());
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        codec::deliveries(&mut array(v)?.into_iter(), &me.id, None)
    }

    /// Concurrent completions are sent together (see `RedisConfig::complete_calls_in_flight`).
    async fn complete(&self, lease: &Lease, value: Vec<u8>) -> Result<AckOutcome> {
        Ok(self.complete_and_receive(lease, value, 0).await?.0)
    }

    /// Concurrent completions are sent together, one call per worker (see
    /// `RedisConfig::complete_calls_in_flight`); each caller gets the answer it would have had
    /// alone: its own acknowledgement and, if accepted, up to `max` tasks received right after
    /// it (`lua/complete.lua`; the call pops them together, see `POP_AHEAD`).
    async fn complete_and_receive(
        &self,
        lease: &Lease,
        value: Vec<u8>,
        max: usize,
    ) -> Result<(AckOutcome, Vec<Delivery>)> {
        self.combined((lease.clone(), value, max), "completion")
            .await
    }

    async fn fail(&self, lease: &Lease, error: &str, retry: bool) -> Result<AckOutcome> {
        let error = &normalize_error(error);
        verified("fail", |attempt| async move {
            let queues = self
                .queues_of(&lease.worker, attempt > 0)
                .await?
                .unwrap_or_default();
            let now = self.now_arg();
            let mut inv = self.worker_call(&self.functions().fail, &lease.worker, 0, &queues, &now);
            inv.arg(lease.task.to_string())
                .arg(lease.queue.as_str())
                .arg(lease.token.0)
                .arg(error)
                .arg(u8::from(retry));
            Ok(codec::failed(self.exec_durable(&inv).await?)?)
        })
        .await
    }

    async fn throttle(&self, lease: &Lease, hold: Duration) -> Result<AckOutcome> {
        let hold = switchyard_core::flow::rate::hold_ms(hold)?;
        verified("throttle", |attempt| async move {
            let queues = self
                .queues_of(&lease.worker, attempt > 0)
                .await?
                .unwrap_or_default();
            let now = self.now_arg();
            let f = &self.functions().throttle;
            let mut inv = self.worker_call(f, &lease.worker, 0, &queues, &now);
            inv.arg(lease.task.to_string())
                .arg(lease.queue.as_str())
                .arg(lease.token.0)
                .arg(hold);
            Ok(codec::failed(self.exec_durable(&inv).await?)?)
        })
        .await
    }

    /// Not durable: a report changes no task state, and a lost one is replaced by the next.
    async fn progress(&self, lease: &Lease, progress: &Progress) -> Result<ProgressAck> {
        verified("progress", |_| async move {
            let now = self.now_arg();
            let f = &self.functions().progress;
            let mut inv = self.invocation(f, &[&lease.queue], &now);
            inv.arg(lease.queue.as_str())
                .arg(lease.task.to_string())
                .arg(lease.worker.as_str())
                .arg(lease.token.0)
                .arg(progress.ppm())
                .arg(progress.message());
            let v = self.exec(&inv).await.map_err(|f| f.into_error())?;
            Ok(codec::progressed(v)?)
        })
        .await
    }
}

impl RedisBackend {
    /// Keeps tasks received with completions that failed `NotReplicated` for the worker's next
    /// receive.
    pub(super) fn stash(&self, worker: &WorkerId, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let mut stashed = self
            .inner
            .stashed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        stashed
            .entry(worker.clone())
            .or_default()
            .extend(deliveries);
    }

    /// Up to `max` stashed tasks of `worker` (see [`stash`](Self::stash)).
    pub(super) fn unstash(&self, worker: &WorkerId, max: usize) -> Vec<Delivery> {
        let mut stashed = self
            .inner
            .stashed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(list) = stashed.get_mut(worker) else {
            return Vec::new();
        };
        let taken: Vec<Delivery> = list.drain(..max.min(list.len())).collect();
        if list.is_empty() {
            stashed.remove(worker);
        }
        taken
    }

    pub(super) async fn receive_inner(
        &self,
        me: &WorkerRef,
        max: usize,
        park: bool,
    ) -> Result<Vec<Delivery>> {
        let worker = &me.id;
        // Tasks kept from an unconfirmed completion go out only once the script accepted the
        // worker (still registered, same instance); the script fills the rest of `max`.
        let stashed = self.unstash(worker, max);
        let (max, park) = match stashed.len() {
            0 => (max, park),
            n => (max - n, false),
        };
        let fresh = self.receive_script(me, max, park).await;
        match fresh {
            Ok(mut fresh) => {
                let mut all = stashed;
                all.append(&mut fresh);
                Ok(all)
            }
            // Not this worker's any more: its leases went with its registration.
            Err(e @ (Error::UnknownWorker(_) | Error::WorkerReplaced(_))) => Err(e),
            Err(e) => {
                self.stash(worker, stashed);
                Err(e)
            }
        }
    }

    pub(super) async fn receive_script(
        &self,
        me: &WorkerRef,
        max: usize,
        park: bool,
    ) -> Result<Vec<Delivery>> {
        let worker = &me.id;
        verified("receive", |attempt| async move {
            let queues = self.worker_queues(worker, attempt).await?;
            let now = self.now_arg();
            let receive = &self.functions().receive;
            let mut inv = self.worker_call(receive, worker, me.instance.get(), &queues, &now);
            inv.arg(max.min(100_000)).arg(u8::from(park));
            let v = self.exec(&inv).await?;
            Ok(codec::deliveries(&mut array(v)?.into_iter(), worker, None)?)
        })
        .await
        .inspect_err(|e| self.forget_if_unknown(e))
    }

    /// Completes several running tasks of one worker in one script, then receives up to `max`
    /// more: the batched form of [`Leases::complete_and_receive`](switchyard_core::Leases::complete_and_receive). With `park`, a worker that
    /// receives nothing is marked waiting in the same call, so that it can sleep on its wake
    /// channel (as in [`Leases::receive_wait`](switchyard_core::Leases::receive_wait)) without asking again first.
    pub async fn complete_many(
        &self,
        worker: &WorkerId,
        acks: Vec<(Lease, Vec<u8>)>,
        max: usize,
        park: bool,
    ) -> Result<(Vec<AckOutcome>, Vec<Delivery>)> {
        let acks: Vec<_> = acks.into_iter().map(|(l, v)| (l, v, 0)).collect();
        let (outcomes, deliveries) = self.complete_leases(worker, &acks, max, park).await?;
        Ok((
            outcomes.into_iter().map(|(ack, _)| ack).collect(),
            deliveries,
        ))
    }

    /// The `complete` script: completes each lease of `acks` in order, each accepted one
    /// followed by receiving up to its own count of tasks (what that caller gets, as if it had
    /// called [`Leases::complete_and_receive`](switchyard_core::Leases::complete_and_receive)
    /// alone at that moment); then up to `max` more for the call as a whole.
    pub(super) async fn complete_leases(
        &self,
        worker: &WorkerId,
        acks: &[Completion],
        max: usize,
        park: bool,
    ) -> Result<codec::Completed> {
        verified("complete", |attempt| async move {
            let queues = self
                .queues_of(worker, attempt > 0)
                .await?
                .unwrap_or_default();
            let now = self.now_arg();
            let mut inv = self.worker_call(&self.functions().complete, worker, 0, &queues, &now);
            inv.arg(acks.len());
            for (lease, value, take) in acks {
                // A lease of another worker can never be current for this one: the script
                // refuses it as stale.
                let task = lease.task.to_string();
                inv.arg(task).arg(lease.queue.as_str()).arg(lease.token.0);
                inv.arg(if &lease.worker == worker {
                    value.as_slice()
                } else {
                    &[][..]
                });
                inv.arg((*take).min(100_000));
            }
            inv.arg(max.min(100_000)).arg(u8::from(park));
            let (v, unconfirmed) = self.exec_confirmed(&inv).await?;
            let (outcomes, deliveries) = codec::completed(v, acks.len(), worker)?;
            if let Some(e) = unconfirmed {
                // The completions are applied but unconfirmed; the received tasks are
                // leased to the worker: its next receive hands them out.
                let taken = outcomes.into_iter().flat_map(|(_, d)| d);
                self.stash(worker, taken.chain(deliveries).collect());
                return Err(e.into());
            }
            Ok((outcomes, deliveries))
        })
        .await
    }
}
