//! Which partitions answer. A partition whose server fails with a transient error (it is down,
//! or its Cluster node is) is left out of the calls that span partitions — a worker's waits,
//! heartbeats and maintenance, registering, the namespace's stats — so that the others are
//! served without waiting for its timeouts (on a Cluster, a call to a dead node takes about
//! 2 s of retries). A probe in the background (a read, [`Maintain::until_due`]) tries it again
//! after a pause, twice as long after each failure up to [`CAP`]; the first answer brings it
//! back. Calls about one task still go to its partition, and fail while it is down: an outage
//! stops that partition only.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use switchyard_core::prelude::*;
use switchyard_core::{Error, Result};

/// The pause before the first probe of a partition that failed.
const FIRST: Duration = Duration::from_millis(500);
/// The longest pause between two probes.
const CAP: Duration = Duration::from_secs(5);
/// How long a probe may take before it counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Health of every partition of a namespace.
#[derive(Debug)]
pub(super) struct Health {
    parts: Vec<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Left out, and probed in the background.
    down: bool,
    /// The failure that left it out, for `stats` to show.
    last_error: String,
}

impl Health {
    pub(super) fn new(partitions: usize) -> Arc<Self> {
        Arc::new(Health {
            parts: (0..partitions).map(|_| Mutex::default()).collect(),
        })
    }

    fn state(&self, p: u16) -> std::sync::MutexGuard<'_, State> {
        self.parts[usize::from(p) % self.parts.len()]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether calls that span partitions may go to partition `p`.
    pub(super) fn usable(&self, p: u16) -> bool {
        !self.state(p).down
    }

    /// Why partition `p` is left out, if it is.
    pub(super) fn down(&self, p: u16) -> Option<String> {
        let s = self.state(p);
        s.down.then(|| format!("partition {p}: {}", s.last_error))
    }

    /// Notes how a call to partition `p` (served by `backend`) went: a transient failure
    /// leaves it out and starts probing it; a success or any other error says it answers.
    pub(super) fn record<T>(
        self: &Arc<Self>,
        p: u16,
        backend: &Arc<dyn Backend>,
        result: &Result<T>,
    ) {
        match result {
            Err(e) if e.is_transient() => self.failed(p, backend, e),
            _ => self.up(p),
        }
    }

    fn up(&self, p: u16) {
        let mut s = self.state(p);
        if s.down {
            tracing::info!(partition = p, "partition answers again");
        }
        *s = State::default();
    }

    fn failed(self: &Arc<Self>, p: u16, backend: &Arc<dyn Backend>, e: &Error) {
        let mut s = self.state(p);
        s.last_error = e.to_string();
        if s.down {
            return;
        }
        s.down = true;
        tracing::warn!(
            partition = p,
            "partition does not answer ({e}); serving the others while it is probed"
        );
        tokio::spawn(probe(Arc::downgrade(self), p, backend.clone()));
    }
}

/// Probes partition `p` until it answers (or the namespace is dropped).
async fn probe(health: Weak<Health>, p: u16, backend: Arc<dyn Backend>) {
    let mut pause = FIRST;
    loop {
        tokio::time::sleep(pause).await;
        let Some(h) = health.upgrade() else { return };
        let answer = tokio::time::timeout(PROBE_TIMEOUT, backend.until_due()).await;
        match answer {
            Ok(Ok(_)) => {
                h.up(p);
                return;
            }
            Ok(Err(e)) if !e.is_transient() => {
                h.up(p);
                return;
            }
            Ok(Err(e)) => h.state(p).last_error = e.to_string(),
            Err(_) => {
                h.state(p).last_error = format!(
                    "no answer within {}",
                    switchyard_core::display::duration(PROBE_TIMEOUT)
                );
            }
        }
        pause = (pause * 2).min(CAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failing_partition_is_left_out_until_a_probe_gets_an_answer() {
        // The memory backend always answers: the first probe brings the partition back.
        let backend: Arc<dyn Backend> = Arc::new(switchyard_memory::MemoryBackend::new());
        let h = Health::new(3);
        assert!(h.usable(1));
        let refused: Result<()> = Err(Error::backend(
            switchyard_core::BackendErrorKind::Connection,
            "connection refused",
        ));
        h.record(1, &backend, &refused);
        assert!(!h.usable(1) && h.usable(0));
        assert!(h.down(1).unwrap().contains("connection refused"));
        tokio::time::sleep(FIRST / 2).await;
        assert!(!h.usable(1), "left out until the first probe");
        tokio::time::sleep(FIRST).await;
        assert!(
            h.usable(1) && h.down(1).is_none(),
            "the probe brought it back"
        );
        // A refusal that is not about the server's health leaves it in.
        h.record::<()>(2, &backend, &Err(Error::invalid("x", "y")));
        assert!(h.usable(2));
    }
}
