//! How the runtime waits and speaks while the backend fails: a jittered exponential
//! [`retry`] pause (a [`Retry`]) for every error path, and a [`Throttle`] that keeps a failure from
//! flooding the log.
//!
//! A worker must never spin against a backend that answers every call with an error (Redis
//! restarted empty, down, or failing over): each failed attempt doubles the pause before the
//! next, up to a cap, and the first success resets it. Its log says what happened once, then
//! at most once per [`Throttle`] period, with the number of repeats in between.

use std::sync::Mutex;
use std::time::Duration;

use switchyard_core::retry::Retry;
use tokio::time::Instant;

/// First pause after a failure.
pub(crate) const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between attempts.
pub(crate) const RETRY_CAP: Duration = Duration::from_secs(5);
/// Shortest time between two log lines of one [`Throttle`].
pub(crate) const LOG_PERIOD: Duration = Duration::from_secs(10);

/// The runtime's pauses between attempts: [`Retry`] from [`RETRY_FIRST`] up to [`RETRY_CAP`].
pub(crate) fn retry(seed: u64) -> Retry {
    Retry::new(seed, RETRY_FIRST, RETRY_CAP)
}

/// Lets one kind of log line through at most `burst` times per [`LOG_PERIOD`] (once, by
/// default), counting the ones it held back.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    state: Mutex<ThrottleState>,
    /// Lines let through per period beyond the first.
    extra: u32,
}

#[derive(Debug, Default)]
struct ThrottleState {
    /// When the current period began.
    last: Option<Instant>,
    /// Lines let through in it.
    passed: u32,
    held: u64,
}

impl Throttle {
    /// A throttle that lets `burst` lines through per period (at least one).
    pub(crate) fn with_burst(burst: u32) -> Self {
        Throttle {
            state: Mutex::default(),
            extra: burst.saturating_sub(1),
        }
    }

    /// `Some(n)` if a line may be written now (`n` lines were held back since the last one),
    /// `None` if it must be held back.
    pub(crate) fn pass(&self) -> Option<u64> {
        self.pass_at(Instant::now())
    }

    fn pass_at(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match state.last {
            Some(last) if now.duration_since(last) < LOG_PERIOD => {
                if state.passed <= self.extra {
                    state.passed += 1;
                    return Some(std::mem::take(&mut state.held));
                }
                state.held += 1;
                None
            }
            _ => {
                state.last = Some(now);
                state.passed = 1;
                Some(std::mem::take(&mut state.held))
            }
        }
    }

    /// Forgets the last line: after a recovery, the next failure is reported at once.
    pub(crate) fn reset(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = ThrottleState::default();
    }
}

/// `" (and N more like it in the last 10 s)"` for a throttle that held lines back, else `""`.
pub(crate) fn repeats(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(
            " ({held} more like it since the last report, in {} s)",
            LOG_PERIOD.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_line_through_per_period_and_counts_the_rest() {
        let t = Throttle::default();
        let start = Instant::now();
        assert_eq!(t.pass_at(start), Some(0));
        assert_eq!(t.pass_at(start + LOG_PERIOD / 2), None);
        assert_eq!(t.pass_at(start + LOG_PERIOD / 2), None);
        assert_eq!(t.pass_at(start + LOG_PERIOD), Some(2));
        t.reset();
        assert_eq!(t.pass_at(start + LOG_PERIOD), Some(0));
        let three = Throttle::with_burst(3);
        assert_eq!(three.pass_at(start), Some(0));
        assert_eq!(three.pass_at(start), Some(0));
        assert_eq!(three.pass_at(start), Some(0));
        assert_eq!(three.pass_at(start), None);
        assert_eq!(three.pass_at(start + LOG_PERIOD), Some(1));
        assert_eq!(repeats(0), "");
        assert!(repeats(3).contains("3 more"));
    }
}
