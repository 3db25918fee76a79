//! Dedup keys: what a submit whose [dedup key](crate::TaskSpecBuilder::dedup_key) is taken
//! does — it throttles or it debounces, by the queue's [`DedupMode`].
//!
//! The rule both backends keep (memory `state/tasks.rs`, Lua `lua/submit.lua`, held equal by
//! the lockstep tests). A submit whose key no task of the queue holds creates its task, which
//! holds the key for the queue's [dedup window](crate::QueueConfig::dedup_window_ms) from now
//! (a window of 0 holds it for no time: every submit creates a task). A submit whose key is
//! held, by task `h`:
//!
//! * **throttle** (the default): creates nothing. The answer is a
//!   [duplicate](crate::SubmitOutcome::duplicate) with `h`'s id and state, and says whether
//!   this submit's payload [differs](crate::SubmitOutcome::payload_differs) from `h`'s — so
//!   "run this at most once a window" is kept, and a caller that meant different work is told.
//!   The window does not move: one task per key per window.
//! * **debounce**: if `h` has not started (it is scheduled or ready), `h` takes this submit's
//!   payload and run time, exactly as [`Tasks::change_task`](crate::Tasks::change_task) changes
//!   them (a run time that has come makes a scheduled `h` ready now; a ready `h` keeps its
//!   place), and the window starts again from now. The answer is a duplicate with `h`'s id,
//!   [`replaced`](crate::SubmitOutcome::replaced), and whether the payload differed. So a burst
//!   of submits each delayed by `d` runs once, `d` after the last of them, with the last
//!   payload. If `h` has started (dispatched, running, waiting for a retry) or ended, it may not
//!   see this submit's data: a new task is created and takes the key, as if it were free — no
//!   request is ever left to a run that began before it.
//!
//! A submit whose task id exists is a duplicate under either mode (ids are checked first) and
//! says, the same way, whether its payload differs from the stored task's (false if that record
//! was purged: then nothing is known of it).
//!
//! ```
//! use switchyard_core::flow::dedup::DedupMode;
//! use switchyard_core::{Policy, QueueConfig, Strategy};
//! use std::time::Duration;
//!
//! // "Rebuild the search index once things have been quiet for 30 s": submit each request
//! // delayed by 30 s with the same dedup key.
//! let config = QueueConfig::new(Policy::Fcfs, Strategy::Pull)
//!     .with_dedup_window(Duration::from_secs(60))
//!     .with_dedup_mode(DedupMode::Debounce);
//! assert_eq!(config.dedup_mode.name(), "debounce");
//! assert_eq!("throttle".parse::<DedupMode>().unwrap(), DedupMode::Throttle);
//! ```

use serde::{Deserialize, Serialize};

use crate::display::quoted;
use crate::{Error, TaskState};

/// What a submit whose dedup key is held does (the rule: [this module](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DedupMode {
    /// One task per key per window; later submits are answered with the existing task.
    #[default]
    Throttle,
    /// A later submit replaces the waiting task's payload and run time, and restarts the window.
    Debounce,
}

impl DedupMode {
    /// Every mode, in the order of its number on the wire.
    pub const ALL: [DedupMode; 2] = [DedupMode::Throttle, DedupMode::Debounce];

    /// Its name on the command line: `throttle`, `debounce`.
    pub fn name(self) -> &'static str {
        match self {
            DedupMode::Throttle => "throttle",
            DedupMode::Debounce => "debounce",
        }
    }

    /// Whether it is the default, [`Throttle`](DedupMode::Throttle) (serde skips it then).
    pub fn is_throttle(&self) -> bool {
        *self == DedupMode::Throttle
    }

    /// Whether a submit under this mode, finding the key held by a task in `holder` state,
    /// changes that task (true) rather than being answered by it (throttle) or creating a new
    /// task (debounce, the holder has started or ended).
    pub fn replaces(self, holder: TaskState) -> bool {
        self == DedupMode::Debounce && matches!(holder, TaskState::Scheduled | TaskState::Ready)
    }

    /// Whether a submit under this mode, finding the key held by a task in `holder` state
    /// (`None`: its record is gone), creates a task of its own.
    pub fn creates(self, holder: Option<TaskState>) -> bool {
        self == DedupMode::Debounce && !holder.is_some_and(|s| self.replaces(s))
    }
}

impl std::str::FromStr for DedupMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        DedupMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "dedup mode",
                    format!("{}: expected throttle or debounce", quoted(s)),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debounce_replaces_only_a_task_that_has_not_started() {
        use TaskState::*;
        for s in TaskState::ALL {
            let waiting = matches!(s, Scheduled | Ready);
            assert_eq!(DedupMode::Debounce.replaces(s), waiting, "{s:?}");
            assert_eq!(DedupMode::Debounce.creates(Some(s)), !waiting, "{s:?}");
            assert!(!DedupMode::Throttle.replaces(s));
            assert!(!DedupMode::Throttle.creates(Some(s)));
        }
        assert!(DedupMode::Debounce.creates(None));
        assert!(!DedupMode::Throttle.creates(None));
        assert!("bounce".parse::<DedupMode>().is_err());
    }
}
