//! Combining concurrent single-task calls into one script call.
//!
//! A Lua call has a fixed cost on the server (parsing the request, building `KEYS` and `ARGV`,
//! defining the script's helpers) that is several times the cost of one more task in the same
//! call. When many callers submit one task each at the same time, the backend therefore sends
//! what is waiting as one `submit.lua` call: each caller still gets its own outcome, and a
//! caller that submits alone is sent at once, alone. Nothing waits for a batch to fill;
//! combining only uses what accumulated while earlier calls were on the wire (the idea of
//! auto-pipelining in Redis clients, one level up).
//!
//! Callers queue jobs; while fewer than `max_runners` runners are active, a caller starts one
//! (a spawned task, so that a caller that gives up waiting cannot lose other callers' jobs).
//! A runner takes every waiting job (up to [`MAX_COMBINED`]), runs them as one call, answers
//! each caller, and repeats until the queue is empty.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Largest number of jobs combined into one call.
pub(crate) const MAX_COMBINED: usize = 256;

/// A job and where to send its answer.
pub(crate) type Job<J, R> = (J, oneshot::Sender<R>);

#[derive(Debug)]
struct Waiting<J, R> {
    queue: VecDeque<Job<J, R>>,
    runners: usize,
}

/// The queue of jobs waiting to be combined, and the count of active runners.
#[derive(Debug)]
pub(crate) struct Combiner<J, R> {
    waiting: Mutex<Waiting<J, R>>,
    max_runners: usize,
}

impl<J, R> Combiner<J, R> {
    /// A combiner allowing `max_runners` calls in flight at once.
    pub(crate) fn new(max_runners: usize) -> Self {
        Combiner {
            waiting: Mutex::new(Waiting {
                queue: VecDeque::new(),
                runners: 0,
            }),
            max_runners: max_runners.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting<J, R>> {
        // A panic while holding the lock leaves the queue consistent (pushes and drains are
        // single statements), so a poisoned lock is still usable.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a job. Returns `true` if the caller must start a runner (a task that calls
    /// [`Combiner::next_batch`] until it returns `None`).
    pub(crate) fn push(&self, job: Job<J, R>) -> bool {
        let mut w = self.lock();
        w.queue.push_back(job);
        if w.runners < self.max_runners {
            w.runners += 1;
            true
        } else {
            false
        }
    }

    /// The jobs a runner should send next, oldest first; `None` when the queue is empty, in
    /// which case the runner stops (and is no longer counted).
    pub(crate) fn next_batch(&self) -> Option<Vec<Job<J, R>>> {
        let mut w = self.lock();
        if w.queue.is_empty() {
            w.runners -= 1;
            return None;
        }
        let n = w.queue.len().min(MAX_COMBINED);
        Some(w.queue.drain(..n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runners_are_bounded_and_drain_everything() {
        let c: Combiner<u32, u32> = Combiner::new(2);
        let mut answers = Vec::new();
        let mut starts = 0;
        for i in 0..5 {
            let (tx, rx) = oneshot::channel();
            answers.push(rx);
            if c.push((i, tx)) {
                starts += 1;
            }
        }
        assert_eq!(starts, 2, "at most two runners");
        let first = c.next_batch().expect("jobs are waiting");
        assert_eq!(
            first.iter().map(|j| j.0).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert!(c.next_batch().is_none(), "the first runner stops");
        assert!(c.next_batch().is_none(), "the second runner stops");
        let (tx, _rx) = oneshot::channel();
        assert!(
            c.push((9, tx)),
            "with no runner left, the next caller starts one"
        );
    }
}
