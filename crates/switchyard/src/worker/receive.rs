//! Receiving: waiting for tasks while slots are free, and, during a shutdown, taking up what
//! was handed to the worker and not started yet.

use std::sync::Arc;

use switchyard_core::display::duration;
use switchyard_core::{Delivery, Error};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::loops::Work;
use super::recovery::repeats;
use super::{Inner, recorded};

impl Inner {
    /// Receives while slots are free, until shutdown. A delivery that finds no free slot (the
    /// backend handed off a task as a slot freed) waits in `pending` for the next one.
    pub(super) async fn receive_loop(
        self: &Arc<Self>,
        work: &mut Work,
        shutdown: &CancellationToken,
    ) {
        let Work {
            slots,
            tasks,
            pending,
            ..
        } = work;
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.fenced.cancelled() => return,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let mut permits = vec![first];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            while let Some((delivery, received)) = pending.pop_front() {
                let Some(permit) = permits.pop() else {
                    pending.push_front((delivery, received));
                    break;
                };
                tasks.spawn(
                    self.clone()
                        .slot(delivery, received, permit, shutdown.clone()),
                );
            }
            if permits.is_empty() {
                continue;
            }
            let seen = self.generation().await;
            // A stop ends the wait at once, so that the drain that follows comes before any
            // further delivery. A wait dropped half-way may have started tasks here (its reply
            // unread): the drain's `adopt` finds and runs them.
            let asked = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = self.fenced.cancelled() => return,
                asked = self.backend.receive_wait(&self.me, permits.len(), self.settings.receive_slice) => asked,
            };
            match asked {
                Ok(deliveries) => {
                    self.retry.reset();
                    self.receive_log.reset();
                    let received = Instant::now();
                    for delivery in deliveries {
                        if !self.claim(&delivery) {
                            continue;
                        }
                        match permits.pop() {
                            Some(permit) => {
                                tasks.spawn(self.clone().slot(
                                    delivery,
                                    received,
                                    permit,
                                    shutdown.clone(),
                                ));
                            }
                            None => pending.push_back((delivery, received)),
                        }
                    }
                }
                Err(Error::UnknownWorker(_)) => self.reregister(seen).await,
                Err(e @ Error::WorkerReplaced(_)) => {
                    self.fence(e);
                    return;
                }
                Err(e) => {
                    recorded::backend_error("receive");
                    let pause = self.retry.next();
                    if let Some(held) = self.receive_log.pass() {
                        tracing::warn!(
                            worker = %self.spec.id(),
                            "receive failed: {e}; retrying in {}{}",
                            duration(pause),
                            repeats(held)
                        );
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = self.fenced.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
            // Reap finished slot tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
        }
    }

    /// After the drain: runs the deliveries that waited for a slot, and any task running on
    /// this worker in the backend that it does not hold (a hand-off it never saw), each as a
    /// slot frees.
    pub(super) async fn adopt(self: &Arc<Self>, work: &mut Work, shutdown: &CancellationToken) {
        let mut adopted: Vec<(Delivery, Instant)> = std::mem::take(&mut work.pending).into();
        match self.backend.running(&self.me).await {
            Ok(running) => {
                let now = Instant::now();
                adopted.extend(
                    running
                        .into_iter()
                        .filter(|d| self.claim(d))
                        .map(|d| (d, now)),
                );
            }
            Err(e) => {
                tracing::warn!(worker = %self.spec.id(), "cannot list its running tasks: {e}");
            }
        }
        for (delivery, received) in adopted {
            let (inner, slots, shutdown) = (self.clone(), work.slots.clone(), shutdown.clone());
            work.tasks.spawn(async move {
                if let Ok(permit) = slots.acquire_owned().await {
                    inner.slot(delivery, received, permit, shutdown).await;
                }
            });
        }
    }
}
