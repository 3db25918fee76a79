//! Stopping a worker: the [`ShutdownHandle`], the signals that fire it, and the graceful
//! sequence (drain, grace period, stop, deregister).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchyard_core::{Error, Result};
use tokio_util::sync::CancellationToken;

use super::loops::Work;
use super::{Inner, WorkerReport};

/// Stops a running [`Worker`](crate::Worker). Cheap to clone.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use switchyard::{Client, QueueConfig, TaskError, Worker, WorkerReport};
/// let client = Client::memory();
/// client.declare("jobs", QueueConfig::default()).await?;
/// let worker = Worker::builder(&client, "worker-1", ["jobs"])?
///     .handle("noop", |_ctx, _payload| async move { Ok::<_, TaskError>(Vec::new()) })
///     .build()?;
/// let stop = worker.shutdown_handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_millis(50)).await;
///     stop.shutdown();
/// });
/// let report = worker.run().await?; // returns once the handle fired
/// assert_eq!(report, WorkerReport::default());
/// # Ok::<(), switchyard::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownHandle(pub(super) CancellationToken);

impl ShutdownHandle {
    /// Asks the worker to stop: no new tasks, running ones finish within the grace period.
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// Listens for the signals that ask a worker to stop, and resolves with the first one's name.
/// The listeners are in place when this returns.
pub(super) fn stop_signal() -> std::io::Result<impl Future<Output = &'static str> + Send + 'static>
{
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                // Without a working listener, only the shutdown handle stops the worker.
                Err(_) => std::future::pending().await,
            }
        })
    }
}

impl Inner {
    /// Another instance holds the id: every lease of this one is gone (its handlers were
    /// stopped), and draining or deregistering would act on the other's registration. Waits
    /// for the slots and the loops, and answers why the worker ended.
    pub(super) async fn end_fenced(&self, mut work: Work) -> Error {
        while work.tasks.join_next().await.is_some() {}
        work.stop_loops().await;
        self.take_fence_error()
            .unwrap_or_else(|| Error::WorkerReplaced(self.spec.id().clone()))
    }

    /// The graceful shutdown, in a fixed order (see `Worker`'s docs).
    pub(super) async fn shut_down(
        self: &Arc<Self>,
        mut work: Work,
        shutdown: &CancellationToken,
    ) -> Result<WorkerReport> {
        // 1. take no new tasks (the inbox goes back to the queues at once);
        self.draining.store(true, Ordering::SeqCst);
        let drained = match self.backend.drain_worker(&self.me).await {
            Ok(back) => back.returned.len(),
            Err(e) => {
                tracing::warn!(worker = %self.spec.id(), "cannot drain: {e}");
                0
            }
        };
        //    what was handed to it and not started yet runs now, within the grace period:
        //    deliveries that waited for a slot, and hand-offs it may not have seen (asked
        //    for once no more can come);
        self.adopt(&mut work, shutdown).await;
        // 2. let running handlers finish within the grace period, reporting as usual. The
        //    wait is for every slot task, not for free permits: an adopted delivery waits for
        //    a permit inside its task, so all permits can be free for a moment while its
        //    handler has yet to start (and would then run past the grace period unstopped);
        let finished = tokio::time::timeout(self.settings.shutdown_grace, async {
            while work.tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            // 3. then stop the rest: under one lock, every running handler is marked stopped by
            //    shutdown and its token fires, and no handler starts any more. Each slot drops
            //    its handler at most `cancel_grace` later and reports nothing for a stopped
            //    task (unless the handler returned a value), so no slot is aborted half-way
            //    through a report;
            tracing::warn!(worker = %self.spec.id(), "grace period over: stopping running tasks; they go back to their queues");
            self.stop_for_shutdown();
            while work.tasks.join_next().await.is_some() {}
        }
        // 4. only when every slot is done, stop heartbeating and deregister: the tasks of the
        //    stopped handlers go back to their queues, attempt counted.
        work.stop_loops().await;
        let handed_back = match self.backend.deregister_worker(&self.me).await {
            Ok(back) => back.returned.len(),
            Err(Error::UnknownWorker(_) | Error::WorkerReplaced(_)) => 0,
            Err(e) => return Err(e),
        };
        Ok(self.stats.report(drained, handed_back))
    }
}
