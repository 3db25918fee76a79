//! The loops beside the receiving: the heartbeat (which also fails overrunning tasks and
//! passes cancel requests on) and maintenance (on a jittered timer, sooner when a delayed task
//! falls due). They start with the worker's slots, and end last in a shutdown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_core::{Clock, Delivery, Error, Millis, SystemClock};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::recovery::repeats;
use super::running::Stop;
use super::{Inner, recorded};

/// A running worker's moving parts: its slots (one permit each), the tasks running in them,
/// deliveries that wait for a slot, and the background loops.
pub(super) struct Work {
    pub(super) slots: Arc<Semaphore>,
    pub(super) tasks: JoinSet<()>,
    pub(super) pending: VecDeque<(Delivery, Instant)>,
    background: CancellationToken,
    /// If the worker's future is dropped (it is killed), its loops stop with it.
    _stop_on_drop: DropGuard,
    heartbeat: JoinHandle<()>,
    maintenance: Option<JoinHandle<()>>,
}

impl Work {
    /// Stops the heartbeat and maintenance loops, and waits for them.
    pub(super) async fn stop_loops(&mut self) {
        self.background.cancel();
        let _ = (&mut self.heartbeat).await;
        if let Some(m) = self.maintenance.take() {
            let _ = m.await;
        }
    }
}

pub(super) fn now_ms() -> Millis {
    SystemClock.now_ms()
}

/// A pause of `base` ± 20 %, drawn from `rng`, so that many workers do not act in step.
pub(super) fn jittered(base: Duration, rng: &mut switchyard_core::rng::SplitMix64) -> Duration {
    base.mul_f64(0.8 + 0.4 * rng.next_f64())
}

impl Inner {
    /// Starts the heartbeat and maintenance loops, every slot free.
    pub(super) fn start(self: &Arc<Self>) -> Work {
        let background = CancellationToken::new();
        let heartbeat = tokio::spawn(self.clone().heartbeat_loop(background.clone()));
        let maintenance = self
            .settings
            .maintenance
            .map(|every| tokio::spawn(self.clone().maintenance_loop(every, background.clone())));
        Work {
            slots: Arc::new(Semaphore::new(self.spec.get_capacity() as usize)),
            tasks: JoinSet::new(),
            pending: VecDeque::new(),
            _stop_on_drop: background.clone().drop_guard(),
            background,
            heartbeat,
            maintenance,
        }
    }

    pub(super) async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        let every = Duration::from_millis(u64::from(self.spec.heartbeat_ttl_ms()) / 3);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let seen = self.generation().await;
            match self.backend.heartbeat(&self.me).await {
                Ok(reply) => {
                    self.touch();
                    self.heartbeat_log.reset();
                    self.leases_dropped.store(false, Ordering::SeqCst);
                    self.stop(Stop::Cancelled, |id| reply.cancel.contains(&id));
                    self.stop(Stop::LeaseLost, |id| reply.expired.contains(&id));
                }
                Err(Error::UnknownWorker(_)) => self.reregister(seen).await,
                Err(e @ Error::WorkerReplaced(_)) => {
                    self.fence(e);
                    return;
                }
                Err(e) => {
                    recorded::backend_error("heartbeat");
                    if let Some(held) = self.heartbeat_log.pass() {
                        tracing::warn!(worker = %self.spec.id(), "heartbeat failed: {e}{}", repeats(held));
                    }
                    self.drop_expired_leases();
                }
            }
        }
    }

    pub(super) async fn maintenance_loop(
        self: Arc<Self>,
        every: Duration,
        stop: CancellationToken,
    ) {
        let mut rng = switchyard_core::rng::SplitMix64::new(
            now_ms()
                ^ u64::from(std::process::id())
                ^ switchyard_core::strategy::hash52(self.spec.id().as_str().as_bytes()),
        );
        loop {
            let at_most = jittered(every, &mut rng);
            let slept = tokio::select! {
                _ = stop.cancelled() => return,
                slept = self.backend.sleep_until_due(at_most) => slept,
            };
            if let Err(e) = slept {
                // The backend could not say when: fall back to the interval.
                tracing::debug!(worker = %self.spec.id(), "sleep until due failed: {e}");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(at_most) => {}
                }
            }
            for _ in 0..16 {
                match self.backend.maintain(256).await {
                    Ok(report) if report.more => continue,
                    Ok(_) => break,
                    Err(e) => {
                        recorded::backend_error("maintenance");
                        if let Some(held) = self.maintenance_log.pass() {
                            tracing::warn!(worker = %self.spec.id(), "maintenance failed: {e}{}", repeats(held));
                        }
                        break;
                    }
                }
            }
        }
    }
}
