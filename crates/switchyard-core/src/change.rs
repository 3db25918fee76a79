//! Changing a task that has not started ([`Tasks::change_task`](crate::Tasks::change_task)):
//! its priority, its payload or its run time.
//!
//! The rule both backends keep (memory `state/change.rs`, Lua `lua/change.lua`, held equal by
//! the lockstep tests): only a task that is **scheduled, ready or waiting for a retry** can be
//! changed; any other is refused with [`Error::WrongState`](crate::Error::WrongState) and nothing
//! changes. The parts given are applied in this order:
//!
//! 1. **payload**: what its handler will receive.
//! 2. **priority**: a ready task moves in its queue's order by what the policy makes of the
//!    difference ([`Policy::rekeyed`](crate::Policy::rekeyed)): under a priority policy it
//!    passes the tasks it now outranks, keeping its arrival among equals (and, under aging, the
//!    age it has); other policies ignore priority.
//! 3. **run time**: a scheduled task (or one waiting for its retry) is rescheduled for the new
//!    time, or made ready now if that time has come (then it may be dispatched at once, like a
//!    task promoted by maintenance); a ready task given a future time leaves the ready set and
//!    is scheduled (it becomes ready again, behind those there, when that time comes); a ready
//!    task given a time that has come stays where it is.
//!
//! ```
//! use switchyard_core::TaskChange;
//! let change = TaskChange::new().priority(9).payload(b"{\"size\": 2}".to_vec());
//! assert!(change.validate().is_ok());
//! assert!(TaskChange::new().validate().is_err()); // nothing to change
//! ```

use crate::clock::Millis;
use crate::task::{MAX_PAYLOAD_BYTES, MAX_RUN_AT_MS};
use crate::{Error, Result};

/// What to change in a task that has not started; each part left `None` stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskChange {
    /// The new priority.
    pub priority: Option<u16>,
    /// The new run time, in ms since the epoch (a time that has come: now).
    pub run_at: Option<Millis>,
    /// The new payload.
    pub payload: Option<Vec<u8>>,
}

impl TaskChange {
    /// A change of nothing yet.
    pub fn new() -> TaskChange {
        TaskChange::default()
    }

    /// Sets the new priority.
    pub fn priority(mut self, priority: u16) -> TaskChange {
        self.priority = Some(priority);
        self
    }

    /// Sets the new run time (ms since the epoch).
    pub fn run_at(mut self, at: Millis) -> TaskChange {
        self.run_at = Some(at);
        self
    }

    /// Sets the new payload.
    pub fn payload(mut self, payload: Vec<u8>) -> TaskChange {
        self.payload = Some(payload);
        self
    }

    /// Checks the parts given: at least one, a payload of at most [`MAX_PAYLOAD_BYTES`], a run
    /// time of at most [`MAX_RUN_AT_MS`].
    pub fn validate(&self) -> Result<()> {
        if self.priority.is_none() && self.run_at.is_none() && self.payload.is_none() {
            return Err(Error::invalid(
                "change",
                "nothing to change: give a priority, a run time or a payload",
            ));
        }
        if let Some(p) = &self.payload
            && p.len() > MAX_PAYLOAD_BYTES
        {
            return Err(Error::invalid(
                "payload",
                format!("{} bytes; at most {MAX_PAYLOAD_BYTES}", p.len()),
            ));
        }
        if let Some(at) = self.run_at
            && at > MAX_RUN_AT_MS
        {
            return Err(Error::invalid(
                "run time",
                format!("{at} ms is past the latest time a task can run at ({MAX_RUN_AT_MS})"),
            ));
        }
        Ok(())
    }
}

/// What [`Error::WrongState`](crate::Error::WrongState) names when a change is refused.
pub const CHANGE_OPERATION: &str =
    "change (only a task that has not started: scheduled, ready or waiting for a retry)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_needs_a_part_and_parts_in_range() {
        assert!(TaskChange::new().priority(0).validate().is_ok());
        assert!(TaskChange::new().run_at(0).validate().is_ok());
        let big = TaskChange::new().payload(vec![0; MAX_PAYLOAD_BYTES + 1]);
        assert!(big.validate().unwrap_err().to_string().contains("at most"));
        let late = TaskChange::new().run_at(MAX_RUN_AT_MS + 1);
        assert!(late.validate().is_err());
    }
}
