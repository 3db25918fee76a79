//! Durable mode: after every script call, `WAIT` until enough replicas have its writes.
//!
//! Redis replicates asynchronously: a primary that acknowledged a write and then died may have
//! sent it to no replica, and the replica promoted in its place never saw it. In durable mode
//! each script call is followed, **on the same connection** (`WAIT` counts the writes of the
//! connection that sends it), by `WAIT <replicas> <timeout>`; the call succeeds only if that
//! many replicas confirmed. With `replicas` equal to the number of replicas, a submit or a
//! completion that was acknowledged survives the failover of its primary to any of them.
//!
//! `WAIT` blocks its connection on the server, so these calls run on connections no other
//! call shares meanwhile. Receives are not confirmed (a lease lost with the primary only
//! makes its task run again, and the reply carries the leased tasks). A completion that also
//! received tasks and then failed `NotReplicated` keeps those tasks for the worker's next
//! receive, so they are not left leased and unrun.
//!
//! When too few confirm in time the caller gets [`Error::NotReplicated`]: the change was
//! applied, and stays applied, but may be lost if the primary fails before its replicas catch
//! up. Redis's own `min-replicas-to-write` makes the primary refuse writes while too few
//! replicas are connected at all; the two combine (see `docs/operations.md`).

use std::time::Duration;

use switchyard_core::{Error, Result};

/// How many replicas must confirm each state change, and how long to wait for them.
///
/// ```
/// use std::time::Duration;
/// use switchyard_redis::{Durable, RedisConfig};
/// let config = RedisConfig::new("redis+sentinel://127.0.0.1:26379/jobs", "shop")
///     .with_durable(Durable::new(2, Duration::from_millis(500)));
/// assert_eq!(config.durable.map(|d| d.replicas), Some(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// Replicas that must confirm (at least 1).
    pub replicas: u32,
    /// How long one call waits for them (at least 1 ms: `WAIT` with 0 would wait forever).
    pub timeout: Duration,
}

impl Durable {
    /// `replicas` confirmations within `timeout` per call.
    pub fn new(replicas: u32, timeout: Duration) -> Self {
        Durable { replicas, timeout }
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Checks the settings; `response_timeout` is how long a call may wait for its reply,
    /// which must leave room for the `WAIT`.
    pub(crate) fn validate(&self, response_timeout: Duration) -> Result<()> {
        if self.replicas == 0 {
            return Err(Error::invalid(
                "durable mode",
                "replicas must be at least 1 (leave durable mode off for none)",
            ));
        }
        if self.timeout_ms() == 0 {
            return Err(Error::invalid(
                "durable mode",
                "the timeout must be at least 1 ms (WAIT with 0 would block forever)",
            ));
        }
        if self.timeout.saturating_mul(2) > response_timeout {
            return Err(Error::invalid(
                "durable mode",
                format!(
                    "the timeout ({}) must be at most half the reply timeout ({}): a call waits \
                     for both the script and the replicas",
                    switchyard_core::display::duration(self.timeout),
                    switchyard_core::display::duration(response_timeout)
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn wait_command(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.replicas).arg(self.timeout_ms());
        cmd
    }

    pub(crate) fn not_confirmed(&self, confirmed: u64) -> Error {
        Error::NotReplicated {
            confirmed,
            wanted: self.replicas,
            timeout_ms: self.timeout_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let reply = Duration::from_secs(30);
        let none = Durable::new(0, Duration::from_secs(1)).validate(reply);
        assert!(none.unwrap_err().to_string().contains("at least 1"));
        let forever = Durable::new(1, Duration::ZERO).validate(reply);
        assert!(forever.unwrap_err().to_string().contains("block forever"));
        let long = Durable::new(1, Duration::from_secs(20)).validate(reply);
        assert!(long.unwrap_err().to_string().contains("at most half"));
        assert!(
            Durable::new(2, Duration::from_millis(1))
                .validate(reply)
                .is_ok()
        );
    }

    #[test]
    fn a_short_confirmation_says_what_was_applied() {
        let message = Durable::new(2, Duration::from_millis(250))
            .not_confirmed(1)
            .to_string();
        assert!(message.contains("applied on the primary"), "{message}");
        assert!(message.contains("only 1 of 2 replicas"), "{message}");
        assert!(message.contains("250 ms"), "{message}");
    }
}
