//! Rate limits: [`QueueConfig::rate`](crate::QueueConfig::rate), and the pause a handler asks
//! for with [`TaskError::rate_limited`](crate::TaskError::rate_limited).
//!
//! A queue limited to `max` per `per` ms keeps the times of its dispatches still inside the
//! window (its **log**: the dispatches at `t` with `t + per > now`). A dispatch at `now` takes
//! a **token**, and there are `max − |log|` of them: so no window of `per` ms holds more than
//! `max` dispatches of the queue (a sliding window, exact, never a fixed one). A queue may also
//! be **held** until a time a handler asked for. While it has no token, or is held, it
//! dispatches nothing (like a paused queue) and its tasks keep their places in the policy
//! order; the step that took the last token (or set the hold) marks the queue with the time it
//! opens again ([`opens_at`]), and maintenance, which sleeps until the earliest such mark
//! beside the due delayed tasks, takes the queue up then. The exact rule and its bound are in
//! `docs/architecture.md` ("Flow control").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::duration_ms;
use crate::{Error, Millis, Result};

/// The largest `max` of a rate limit: the log holds up to `max` times (8 bytes each in
/// memory, about 14 on Redis).
pub const MAX_RATE: u32 = 100_000;

/// The longest window of a rate limit, in ms (one day).
pub const MAX_WINDOW_MS: u64 = 86_400_000;

/// At most `max` dispatches of a queue in any window of `per_ms` milliseconds.
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::flow::rate::RateLimit;
/// let api = RateLimit::new(100, Duration::from_secs(1));
/// assert_eq!((api.max, api.per_ms), (100, 1_000));
/// assert_eq!(api.to_string(), "100 per 1s");
/// assert_eq!(RateLimit::new(5, Duration::from_millis(200)).to_string(), "5 per 200ms");
/// assert_eq!(RateLimit::new(9, Duration::from_secs(5400)).to_string(), "9 per 90m");
/// assert!(RateLimit::new(0, Duration::from_secs(1)).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Dispatches allowed in one window (`1..=`[`MAX_RATE`]).
    pub max: u32,
    /// The window, in ms (`1..=`[`MAX_WINDOW_MS`]).
    pub per_ms: u64,
}

impl RateLimit {
    /// `max` dispatches per `per` (check with [`validate`](RateLimit::validate)).
    pub fn new(max: u32, per: Duration) -> Self {
        RateLimit {
            max,
            per_ms: duration_ms(per),
        }
    }

    /// Checks both bounds.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_RATE).contains(&self.max) {
            return Err(Error::invalid(
                "rate limit",
                format!("{} dispatches is outside 1..={MAX_RATE}", self.max),
            ));
        }
        if !(1..=MAX_WINDOW_MS).contains(&self.per_ms) {
            return Err(Error::invalid(
                "rate limit window",
                format!("{} ms is outside 1..={MAX_WINDOW_MS} ms", self.per_ms),
            ));
        }
        Ok(())
    }

    /// Whether a dispatch at `at` still counts at `now` (is in the window ending at `now`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchyard_core::flow::rate::RateLimit;
    /// let r = RateLimit::new(2, Duration::from_millis(100));
    /// assert!(r.counts(1_000, 1_099));
    /// assert!(!r.counts(1_000, 1_100));
    /// ```
    pub fn counts(&self, at: Millis, now: Millis) -> bool {
        at.saturating_add(self.per_ms) > now
    }

    /// Tokens left with `in_window` dispatches in the window (0 after the limit was lowered
    /// below them).
    pub fn tokens(&self, in_window: usize) -> u32 {
        let used = u32::try_from(in_window).unwrap_or(u32::MAX);
        self.max.saturating_sub(used)
    }
}

/// `100 per 1s`, `5 per 200ms`, `1000 per 1h`: the window in the largest unit (h, m, s, ms)
/// that divides it, as `switchyard declare --rate 100/1s` takes it.
impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (n, unit) = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
            .into_iter()
            .find(|(ms, _)| self.per_ms.is_multiple_of(*ms))
            .map_or((self.per_ms, "ms"), |(ms, unit)| (self.per_ms / ms, unit));
        write!(f, "{} per {n}{unit}", self.max)
    }
}

/// A hold asked for by [`Leases::throttle`](crate::Leases::throttle), in ms: at most
/// [`MAX_WINDOW_MS`] (one day).
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::flow::rate::hold_ms;
/// assert_eq!(hold_ms(Duration::from_secs(2)).unwrap(), 2_000);
/// assert!(hold_ms(Duration::from_secs(2 * 86_400)).is_err());
/// ```
pub fn hold_ms(hold: Duration) -> Result<u64> {
    let ms = duration_ms(hold);
    if ms > MAX_WINDOW_MS {
        return Err(Error::invalid(
            "throttle hold",
            format!("{ms} ms is above {MAX_WINDOW_MS} ms (one day)"),
        ));
    }
    Ok(ms)
}

/// When a queue opens again: at `hold_until` (0: no hold) if it has a token, otherwise when the
/// oldest dispatch of its window (`oldest`, with `tokens` 0) leaves it, whichever is later.
/// Both backends mark a queue with this time when it is greater than `now`.
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::flow::rate::{RateLimit, opens_at};
/// let r = Some(RateLimit::new(2, Duration::from_millis(100)));
/// assert_eq!(opens_at(r, 0, Some(1_000), 0, 1_050), 1_100);
/// assert_eq!(opens_at(r, 1, Some(1_000), 0, 1_050), 1_050);
/// assert_eq!(opens_at(r, 0, Some(1_000), 1_500, 1_050), 1_500);
/// assert_eq!(opens_at(None, 0, None, 1_500, 1_050), 1_500);
/// ```
pub fn opens_at(
    limit: Option<RateLimit>,
    tokens: u32,
    oldest: Option<Millis>,
    hold_until: Millis,
    now: Millis,
) -> Millis {
    let token_at = match (limit, oldest) {
        (Some(l), Some(at)) if tokens == 0 => at.saturating_add(l.per_ms),
        _ => now,
    };
    token_at.max(hold_until).max(now)
}
