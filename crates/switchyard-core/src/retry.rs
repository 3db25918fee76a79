//! Jittered exponential pauses between attempts against a backend, shared by everything that retries against Redis (the worker
//! runtime's loops, the topology's re-discovery of a primary).
//!
//! The `n`-th consecutive failure waits a uniformly drawn time in `[d/2, d]` with
//! `d = min(first · 2ⁿ⁻¹, cap)`, so that many clients that lost the same server do not come
//! back in step; a success resets the count.
//!
//! ```
//! use std::time::Duration;
//! use switchyard_core::retry::Retry;
//!
//! let b = Retry::new(7, Duration::from_millis(100), Duration::from_secs(5));
//! let first = b.next();
//! assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
//! let second = b.next();
//! assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
//! b.reset();
//! assert!(b.next() <= Duration::from_millis(100));
//! ```

use std::sync::Mutex;
use std::time::Duration;

use crate::rng::SplitMix64;

/// Pauses between attempts; see the module docs. Safe to share between tasks.
#[derive(Debug)]
pub struct Retry {
    first: Duration,
    cap: Duration,
    state: Mutex<(u32, SplitMix64)>,
}

impl Retry {
    /// Pauses starting at `first`, doubling up to `cap`, jittered from `seed`.
    pub fn new(seed: u64, first: Duration, cap: Duration) -> Self {
        Retry {
            first,
            cap,
            state: Mutex::new((0, SplitMix64::new(seed))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u32, SplitMix64)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pause after one more failure.
    pub fn next(&self) -> Duration {
        let mut state = self.lock();
        let (failures, rng) = &mut *state;
        *failures = failures.saturating_add(1);
        let doubled = self.first.saturating_mul(1 << (*failures - 1).min(16));
        let d = doubled.min(self.cap);
        d.mul_f64(0.5 + 0.5 * rng.next_f64())
    }

    /// How many failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.lock().0
    }

    /// A success: the next failure waits `first` again.
    pub fn reset(&self) {
        self.lock().0 = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_with_jitter_and_reset() {
        let first = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        let retry = Retry::new(7, first, cap);
        let pauses: Vec<Duration> = (0..12).map(|_| retry.next()).collect();
        for (i, p) in pauses.iter().enumerate() {
            let d = first.saturating_mul(1 << i.min(16)).min(cap);
            assert!(
                *p >= d / 2 && *p <= d,
                "pause {i}: {p:?} outside [{:?}, {d:?}]",
                d / 2
            );
        }
        assert!(pauses[11] >= cap / 2);
        assert_eq!(retry.failures(), 12);
        retry.reset();
        assert!(retry.next() <= first);
    }
}
