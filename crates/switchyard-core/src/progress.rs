//! Progress: how far a running task has come, as its handler reports it
//! ([`Leases::progress`](crate::Leases::progress), `ctx.progress(…)` in a handler).
//!
//! The rule both backends keep (the memory reference in `state/progress.rs`, its Lua twin in
//! `lua/progress.lua`, held equal by the lockstep tests):
//!
//! * A report is accepted only under the task's current lease: the task is running, on that
//!   worker, under that lease token. Any other report is refused and changes nothing (a worker
//!   whose lease was taken back cannot overwrite the progress of the attempt that replaced it).
//! * An accepted report is always stored (the last one wins), and belongs to the attempt that
//!   made it: a task shows the progress of its latest attempt only (a retry starts with none).
//! * It is **announced** — a `progress` event logged (when the queue records every event,
//!   [`EventLevel::All`](crate::EventLevel::All)) and handles waiting for progress woken — if it is
//!   the attempt's first report, or at least [`PROGRESS_ANNOUNCE_GAP_MS`] after the attempt's
//!   last announced one. A handler reporting 1,000 times a second thus adds at most one event
//!   per second per task to the event log; the stored value is always the newest.
//! * Progress events are not counted in [`EventCounts`](crate::EventCounts) (they are not
//!   task lifecycle steps).
//!
//! ```
//! use switchyard_core::progress::{Progress, announced};
//!
//! let p = Progress::new(0.425, "resized 17 of 40 images")?;
//! assert_eq!(p.ppm(), 425_000);
//! assert_eq!(p.percent_text(), "42.5%");
//! assert!(announced(None, 1_000)); // the first report of an attempt
//! assert!(!announced(Some(1_000), 1_999));
//! assert!(announced(Some(1_000), 2_000));
//! assert!(Progress::new(1.5, "").is_err());
//! # Ok::<(), switchyard_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::{Error, Result};

/// Parts per million of a whole task: progress `1.0`.
pub const PPM_WHOLE: u32 = 1_000_000;

/// The longest progress message, in bytes.
pub const PROGRESS_MESSAGE_MAX: usize = 1024;

/// The least time between two announced reports of one attempt, in ms.
pub const PROGRESS_ANNOUNCE_GAP_MS: Millis = 1_000;

/// How far a task has come: a fraction in parts per million and a message, as its handler
/// last reported; read back with the time of the report and how many reports the attempt
/// made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    ppm: u32,
    message: String,
    #[serde(default)]
    attempt: u32,
    #[serde(default)]
    at: Millis,
    #[serde(default)]
    reports: u64,
    #[serde(default)]
    announced_at: Millis,
}

impl Progress {
    /// A report: `fraction` of the task done (`0.0..=1.0`), with a message of at most
    /// [`PROGRESS_MESSAGE_MAX`] bytes (may be empty). The fraction is kept to a millionth.
    pub fn new(fraction: f64, message: impl Into<String>) -> Result<Progress> {
        if !fraction.is_finite() || !(0.0..=1.0).contains(&fraction) {
            return Err(Error::invalid(
                "progress",
                format!("{fraction} is not a fraction between 0 and 1"),
            ));
        }
        // In range by the check above, so the cast keeps the value.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ppm = (fraction * f64::from(PPM_WHOLE)).round() as u32;
        Progress::from_ppm(ppm, message)
    }

    /// A report in parts per million (`0..=1_000_000`).
    pub fn from_ppm(ppm: u32, message: impl Into<String>) -> Result<Progress> {
        let message = message.into();
        if ppm > PPM_WHOLE {
            return Err(Error::invalid(
                "progress",
                format!("{ppm} parts per million is more than the whole task"),
            ));
        }
        if message.len() > PROGRESS_MESSAGE_MAX {
            return Err(Error::invalid(
                "progress message",
                format!("{} bytes; at most {PROGRESS_MESSAGE_MAX}", message.len()),
            ));
        }
        Ok(Progress {
            ppm,
            message,
            attempt: 0,
            at: 0,
            reports: 0,
            announced_at: 0,
        })
    }

    /// As a backend stores it: reported by `attempt` at `at`, the attempt's `reports`-th
    /// report, its last announced report made at `announced_at`.
    pub fn stored(
        mut self,
        attempt: u32,
        at: Millis,
        reports: u64,
        announced_at: Millis,
    ) -> Progress {
        self.attempt = attempt;
        self.at = at;
        self.reports = reports;
        self.announced_at = announced_at;
        self
    }

    /// The fraction done, `0.0..=1.0`.
    pub fn fraction(&self) -> f64 {
        f64::from(self.ppm) / f64::from(PPM_WHOLE)
    }

    /// The fraction done in parts per million.
    pub fn ppm(&self) -> u32 {
        self.ppm
    }

    /// The handler's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The attempt that reported it (0 on a report not stored yet).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When it was reported, in ms (backend clock; 0 on a report not stored yet).
    pub fn at(&self) -> Millis {
        self.at
    }

    /// How many reports its attempt made up to this one (1 for the first).
    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// When its attempt's last announced report was made, in ms (this one's `at` if it was
    /// announced).
    pub fn announced_at(&self) -> Millis {
        self.announced_at
    }

    /// The fraction as a percentage with one decimal, truncated (`"42.5%"`): what events and
    /// tools show. Integer arithmetic, so that both backends write the same text.
    pub fn percent_text(&self) -> String {
        let permille = self.ppm / 1000;
        format!("{}.{}%", permille / 10, permille % 10)
    }

    /// The detail of its `progress` event: the percentage, then the message if any.
    pub fn event_detail(&self) -> String {
        if self.message.is_empty() {
            self.percent_text()
        } else {
            format!("{} {}", self.percent_text(), self.message)
        }
    }
}

/// Whether a report at `now` is announced, given when the attempt's last announced report was
/// (`None`: this is its first report). See the module's rule.
pub fn announced(last_announced: Option<Millis>, now: Millis) -> bool {
    last_announced.is_none_or(|last| now.saturating_sub(last) >= PROGRESS_ANNOUNCE_GAP_MS)
}

/// Whether a task's progress `now` holds an announcement that one who has `seen` a value has
/// not seen: a report appeared or went (a new attempt), another attempt's, or a later
/// announcement of the same attempt. What [`Tasks::wait_progress`](crate::Tasks::wait_progress)
/// waits for: a caller that follows a handler reporting in a tight loop wakes once a second,
/// not once per report.
pub fn news(now: Option<&Progress>, seen: Option<&Progress>) -> bool {
    match (now, seen) {
        (None, None) => false,
        (Some(now), Some(seen)) => {
            now.attempt != seen.attempt || now.announced_at != seen.announced_at
        }
        _ => true,
    }
}

/// The answer to [`Leases::progress`](crate::Leases::progress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProgressAck {
    /// Stored; `announced` tells whether it was announced (see the module's rule).
    Stored {
        /// Whether an event was logged (if the queue records them) and waiting handles woken.
        announced: bool,
    },
    /// Refused: the lease is not the task's current one. Nothing changed.
    Rejected(crate::Rejection),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_checked_and_kept_to_a_millionth() {
        assert_eq!(Progress::new(0.0, "").unwrap().ppm(), 0);
        assert_eq!(Progress::new(1.0, "").unwrap().ppm(), PPM_WHOLE);
        assert_eq!(Progress::new(1.0 / 3.0, "").unwrap().ppm(), 333_333);
        for bad in [-0.1, 1.000_001, f64::NAN, f64::INFINITY] {
            assert!(Progress::new(bad, "").is_err(), "{bad}");
        }
        assert!(Progress::from_ppm(PPM_WHOLE + 1, "").is_err());
        assert!(Progress::new(0.5, "x".repeat(PROGRESS_MESSAGE_MAX)).is_ok());
        let long = Progress::new(0.5, "x".repeat(PROGRESS_MESSAGE_MAX + 1));
        assert!(long.unwrap_err().to_string().contains("at most 1024"));
    }

    #[test]
    fn percentages_truncate_to_one_decimal() {
        let text = |ppm| Progress::from_ppm(ppm, "").unwrap().percent_text();
        assert_eq!(text(0), "0.0%");
        assert_eq!(text(999), "0.0%");
        assert_eq!(text(1_000), "0.1%");
        assert_eq!(text(425_999), "42.5%");
        assert_eq!(text(PPM_WHOLE), "100.0%");
        let p = Progress::from_ppm(500_000, "half").unwrap();
        assert_eq!(p.event_detail(), "50.0% half");
    }

    #[test]
    fn news_is_a_new_announcement_or_attempt() {
        let p = |attempt, at, announced| {
            Progress::from_ppm(1, "")
                .unwrap()
                .stored(attempt, at, 1, announced)
        };
        assert!(!news(None, None));
        assert!(news(Some(&p(1, 5, 5)), None));
        assert!(news(None, Some(&p(1, 5, 5))));
        // A later report of the same announcement is no news; a later announcement is.
        assert!(!news(Some(&p(1, 700, 5)), Some(&p(1, 5, 5))));
        assert!(news(Some(&p(1, 1_005, 1_005)), Some(&p(1, 700, 5))));
        assert!(news(Some(&p(2, 5, 5)), Some(&p(1, 5, 5))));
    }

    #[test]
    fn announcements_keep_their_gap() {
        assert!(announced(None, 0));
        assert!(!announced(
            Some(5_000),
            5_000 + PROGRESS_ANNOUNCE_GAP_MS - 1
        ));
        assert!(announced(Some(5_000), 5_000 + PROGRESS_ANNOUNCE_GAP_MS));
        // A clock that went back announces nothing until it passes the gap again.
        assert!(!announced(Some(5_000), 4_000));
    }
}
