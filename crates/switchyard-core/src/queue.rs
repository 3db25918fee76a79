//! Queue configuration: policy, strategy, retry and retention settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::duration_ms;
use crate::flow::dedup::DedupMode;
use crate::flow::groups::GroupShare;
use crate::flow::rate::RateLimit;
use crate::rng::Minstd;
use crate::task::{MAX_ATTEMPTS, MAX_DURATION_MS, bounded_ms};
use crate::{Error, EventLevel, Policy, Strategy};

/// Exponential backoff with jitter between attempts.
///
/// After failed attempt `a` (1-based) the delay is `d = min(base · 2^(a−1), max)`, shortened by
/// a jitter `j` drawn uniformly from `0..=⌊d · jitter_pct / 100⌋` with the queue's generator:
/// the task is ready again `d − j` ms after the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay after the first failure, in ms.
    pub base_ms: u32,
    /// Upper bound of the delay, in ms.
    pub max_ms: u32,
    /// Up to this percentage of the delay is taken off at random (`0..=100`).
    pub jitter_pct: u8,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1_000,
            max_ms: 3_600_000,
            jitter_pct: 20,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1-based), before jitter.
    pub fn raw_delay_ms(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1);
        let max = u64::from(self.max_ms);
        if shift >= 32 {
            return max;
        }
        (u64::from(self.base_ms) << shift).min(max)
    }

    /// The delay after failed attempt `attempt`, drawing jitter from `rng`.
    ///
    /// ```
    /// use switchyard_core::{Backoff, rng::Minstd};
    /// let b = Backoff { base_ms: 100, max_ms: 1_000, jitter_pct: 0 };
    /// let mut rng = Minstd::from_seed(1);
    /// assert_eq!(b.delay_ms(1, &mut rng), 100);
    /// assert_eq!(b.delay_ms(3, &mut rng), 400);
    /// assert_eq!(b.delay_ms(9, &mut rng), 1_000);
    /// ```
    pub fn delay_ms(&self, attempt: u32, rng: &mut Minstd) -> u64 {
        let d = self.raw_delay_ms(attempt);
        let span = d * u64::from(self.jitter_pct.min(100)) / 100;
        d - rng.below(span + 1)
    }

    fn validate(&self) -> Result<(), Error> {
        if self.base_ms > self.max_ms {
            return Err(Error::invalid(
                "backoff",
                format!("base {} ms is above max {} ms", self.base_ms, self.max_ms),
            ));
        }
        if self.jitter_pct > 100 {
            return Err(Error::invalid(
                "backoff jitter",
                format!("{}% is above 100%", self.jitter_pct),
            ));
        }
        Ok(())
    }
}

/// How a queue orders, dispatches, retries and keeps its tasks.
///
/// ```
/// use switchyard_core::{Policy, QueueConfig, Strategy};
/// use std::time::Duration;
/// let config = QueueConfig::new(Policy::PRIORITY, Strategy::LeastLoaded)
///     .with_max_attempts(5)
///     .with_timeout(Duration::from_secs(30));
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueConfig {
    /// Order of tasks inside the queue.
    pub policy: Policy,
    /// Choice of worker for each task.
    pub strategy: Strategy,
    /// Seed of the queue's generators (random strategy, retry jitter).
    pub seed: u64,
    /// Attempts for tasks that do not set their own (`1..=1000`). Default 3.
    pub max_attempts: u32,
    /// Per-attempt timeout for tasks that do not set their own, in ms. Default 5 minutes.
    pub timeout_ms: u32,
    /// Cost assumed by shortest-job-first for tasks without a cost hint, until run times of
    /// their kind have been measured (then the moving average is used), in ms. Default 1 s.
    pub default_cost_ms: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// How long results and finished task records are kept, in ms. Default 1 hour.
    pub result_ttl_ms: u64,
    /// How long a dedup key is held after its task was submitted, in ms. Default 1 hour.
    pub dedup_window_ms: u64,
    /// What a submit whose dedup key is held does: throttle (the default: answered by the
    /// task holding it) or debounce (the waiting task takes the new payload and run time).
    /// The rule, exactly: [`crate::flow::dedup`].
    #[serde(default, skip_serializing_if = "DedupMode::is_throttle")]
    pub dedup_mode: DedupMode,
    /// How long dead tasks stay in the dead-letter set, in ms. Default 7 days.
    pub dead_ttl_ms: u64,
    /// Which events are recorded. Default: failures only.
    pub events: EventLevel,
    /// The most tasks that may wait in the queue (ready, scheduled or retry-scheduled) for a
    /// submit to be accepted; `None` (the default) is unbounded. A submit that would take the
    /// queue past it is refused whole with [`Error::QueueFull`] and stores nothing (the rule,
    /// exactly: [`crate::flow::bounded`]). At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_waiting: Option<u32>,
    /// The most tasks of the queue that may be active (dispatched or running) at once, across
    /// all workers; `None` (the default) is unlimited. At the limit the queue dispatches
    /// nothing until one of its tasks ends, however it ends (the rule, exactly:
    /// [`crate::flow::concurrency`]). At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// At most this many dispatches of the queue in any window, across all workers; `None`
    /// (the default) is unlimited. Without a token the queue dispatches nothing, its tasks
    /// keep their places, and it takes up again by itself when a token returns (the rule,
    /// exactly: [`crate::flow::rate`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
    /// Ends a task still waiting at its [deadline](crate::TaskSpecBuilder::deadline) in
    /// [`Expired`](crate::TaskState::Expired) instead of running it late (no attempt used).
    /// Only under [`Policy::EarliestDeadlineFirst`], where the head of the ready set is the
    /// earliest deadline (the rule, exactly: [`crate::flow::deadline`]). Default off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expire_late: bool,
    /// Retention by count: keeps at most this many of the queue's tasks that ended succeeded,
    /// cancelled or expired, removing the rest first to last by the end of their retention
    /// (so oldest first), beside the retention by age ([`result_ttl_ms`](Self::result_ttl_ms));
    /// `None` (the default) keeps them until then. 0 keeps none. Enforced by maintenance, on a
    /// quiet queue too, in bounded steps (the rule: [`crate::admin::retention`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_finished: Option<u32>,
    /// Retention by count of the dead-letter set: keeps at most this many dead tasks, the
    /// earliest deaths removed first, beside [`dead_ttl_ms`](Self::dead_ttl_ms); `None` (the
    /// default) keeps them until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_dead: Option<u32>,
    /// Shares the queue's dispatches fairly between the group keys of its tasks (deficit
    /// round-robin by weight, optionally with a per-group concurrency limit); `None` (the
    /// default) is one plain queue, and a task with a group key is refused. The rule, exactly:
    /// [`crate::flow::groups`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<GroupShare>,
    /// A duration a `with_*` method could not store (out of range); `validate` reports it, so
    /// that nothing is silently clamped.
    #[serde(skip)]
    unfit: Option<Unfit>,
}

/// A duration given to a `with_*` method that does not fit its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unfit {
    field: &'static str,
    given: Duration,
    min: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            policy: Policy::Fcfs,
            strategy: Strategy::RoundRobin,
            seed: 0,
            max_attempts: 3,
            timeout_ms: 300_000,
            default_cost_ms: 1_000,
            backoff: Backoff::default(),
            result_ttl_ms: 3_600_000,
            dedup_window_ms: 3_600_000,
            dedup_mode: DedupMode::Throttle,
            dead_ttl_ms: 7 * 24 * 3_600_000,
            events: EventLevel::Failures,
            max_waiting: None,
            concurrency: None,
            rate: None,
            expire_late: false,
            keep_finished: None,
            keep_dead: None,
            groups: None,
            unfit: None,
        }
    }
}

impl QueueConfig {
    /// Defaults with the given policy and strategy.
    pub fn new(policy: Policy, strategy: Strategy) -> Self {
        QueueConfig {
            policy,
            strategy,
            ..QueueConfig::default()
        }
    }

    /// Sets the generator seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the default attempts.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the default per-attempt timeout (1 ms to [`MAX_DURATION_MS`] ms, as for a task's
    /// own; anything else is reported by [`validate`](QueueConfig::validate)).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.store("timeout", timeout, 1, |c, ms| c.timeout_ms = ms);
        self
    }

    /// Stores `given` in whole ms through `set`, or remembers that it does not fit.
    fn store(&mut self, field: &'static str, given: Duration, min: u64, set: fn(&mut Self, u32)) {
        match bounded_ms(field, given, min) {
            Ok(ms) => set(self, ms),
            Err(_) => self.unfit = Some(Unfit { field, given, min }),
        }
    }

    /// Sets the backoff.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets how long results are kept.
    pub fn with_result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl_ms = duration_ms(ttl);
        self
    }

    /// Sets the dedup window.
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window_ms = duration_ms(window);
        self
    }

    /// Sets what a submit whose dedup key is held does ([`crate::flow::dedup`]).
    pub fn with_dedup_mode(mut self, mode: DedupMode) -> Self {
        self.dedup_mode = mode;
        self
    }

    /// Sets how long dead tasks are kept.
    pub fn with_dead_ttl(mut self, ttl: Duration) -> Self {
        self.dead_ttl_ms = duration_ms(ttl);
        self
    }

    /// Sets which events are recorded.
    pub fn with_events(mut self, level: EventLevel) -> Self {
        self.events = level;
        self
    }

    /// Bounds the queue: at most `max` tasks waiting for a submit to be accepted (see
    /// [`max_waiting`](QueueConfig::max_waiting)).
    ///
    /// ```
    /// use switchyard_core::QueueConfig;
    /// let config = QueueConfig::default().with_max_waiting(1_000);
    /// assert_eq!(config.max_waiting, Some(1_000));
    /// assert!(QueueConfig::default().with_max_waiting(0).validate().is_err());
    /// ```
    pub fn with_max_waiting(mut self, max: u32) -> Self {
        self.max_waiting = Some(max);
        self
    }

    /// Keeps at most `n` tasks that ended succeeded, cancelled or expired, and at most `dead`
    /// dead ones (see [`keep_finished`](QueueConfig::keep_finished) and
    /// [`keep_dead`](QueueConfig::keep_dead)).
    ///
    /// ```
    /// use switchyard_core::QueueConfig;
    /// let config = QueueConfig::default().with_retention_counts(Some(1_000), Some(10_000));
    /// assert_eq!((config.keep_finished, config.keep_dead), (Some(1_000), Some(10_000)));
    /// ```
    pub fn with_retention_counts(mut self, n: Option<u32>, dead: Option<u32>) -> Self {
        self.keep_finished = n;
        self.keep_dead = dead;
        self
    }

    /// Limits the queue to `max` active tasks (dispatched or running) at once, across all
    /// workers (see [`concurrency`](QueueConfig::concurrency)).
    ///
    /// ```
    /// use switchyard_core::QueueConfig;
    /// let exports = QueueConfig::default().with_concurrency(5);
    /// assert_eq!(exports.concurrency, Some(5));
    /// assert!(QueueConfig::default().with_concurrency(0).validate().is_err());
    /// ```
    pub fn with_concurrency(mut self, max: u32) -> Self {
        self.concurrency = Some(max);
        self
    }

    /// Shares the queue fairly between the group keys of its tasks (see
    /// [`groups`](QueueConfig::groups)).
    ///
    /// ```
    /// use switchyard_core::QueueConfig;
    /// use switchyard_core::flow::groups::GroupShare;
    /// let imports = QueueConfig::default().with_groups(GroupShare::default());
    /// assert!(imports.groups.is_some());
    /// ```
    pub fn with_groups(mut self, share: GroupShare) -> Self {
        self.groups = Some(share);
        self
    }

    /// Dispatches at most `max` of the queue's tasks in any window of `per` (see
    /// [`rate`](QueueConfig::rate)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchyard_core::QueueConfig;
    /// let payments = QueueConfig::default().with_rate(100, Duration::from_secs(1));
    /// assert_eq!(payments.rate.unwrap().to_string(), "100 per 1s");
    /// assert!(QueueConfig::default().with_rate(0, Duration::from_secs(1)).validate().is_err());
    /// ```
    pub fn with_rate(mut self, max: u32, per: Duration) -> Self {
        self.rate = Some(RateLimit::new(max, per));
        self
    }

    /// Expires late tasks (see [`expire_late`](QueueConfig::expire_late)); needs the
    /// earliest-deadline-first policy.
    ///
    /// ```
    /// use switchyard_core::{Policy, QueueConfig, Strategy};
    /// let quotes = QueueConfig::new(Policy::EarliestDeadlineFirst, Strategy::Pull).with_expire_late();
    /// assert!(quotes.validate().is_ok());
    /// assert!(QueueConfig::default().with_expire_late().validate().is_err());
    /// ```
    pub fn with_expire_late(mut self) -> Self {
        self.expire_late = true;
        self
    }

    /// Sets the default cost for shortest-job-first (at most [`MAX_DURATION_MS`] ms; more is
    /// reported by [`validate`](QueueConfig::validate)).
    pub fn with_default_cost(mut self, cost: Duration) -> Self {
        self.store("default cost", cost, 0, |c, ms| c.default_cost_ms = ms);
        self
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(u) = self.unfit {
            bounded_ms(u.field, u.given, u.min)?;
        }
        self.policy.validate()?;
        self.strategy.validate()?;
        self.backoff.validate()?;
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(Error::invalid(
                "max attempts",
                format!("{} is outside 1..={MAX_ATTEMPTS}", self.max_attempts),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(Error::invalid("timeout", "must be at least 1 ms"));
        }
        if self.concurrency == Some(0) {
            return Err(Error::invalid(
                "concurrency",
                "must be at least 1 (leave it unset for no limit)",
            ));
        }
        if let Some(rate) = self.rate {
            rate.validate()?;
        }
        if let Some(groups) = self.groups {
            groups.validate()?;
        }
        if self.expire_late && self.policy != Policy::EarliestDeadlineFirst {
            return Err(Error::invalid(
                "expire late",
                format!(
                    "needs the edf policy (this queue's is {}): only there is the head of the queue the earliest deadline",
                    self.policy.name()
                ),
            ));
        }
        if self.max_waiting == Some(0) {
            return Err(Error::invalid(
                "max waiting",
                "must be at least 1 (leave it unset for an unbounded queue)",
            ));
        }
        for (field, value) in [
            ("result ttl", self.result_ttl_ms),
            ("dedup window", self.dedup_window_ms),
            ("dead ttl", self.dead_ttl_ms),
        ] {
            if value > MAX_DURATION_MS * 1000 {
                return Err(Error::invalid(field, format!("{value} ms is too long")));
            }
        }
        Ok(())
    }

    /// The queue's retry-jitter generator, fresh from its seed.
    pub fn jitter_rng(&self) -> Minstd {
        Minstd::from_seed(self.seed.wrapping_add(1))
    }
}

mod diff;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            base_ms: 1_000,
            max_ms: 10_000,
            jitter_pct: 0,
        };
        let delays: Vec<u64> = (1..=6).map(|a| b.raw_delay_ms(a)).collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(b.raw_delay_ms(1000), 10_000);
    }

    #[test]
    fn jitter_stays_in_band() {
        let b = Backoff {
            base_ms: 1_000,
            max_ms: 1_000,
            jitter_pct: 30,
        };
        let mut rng = Minstd::from_seed(9);
        for _ in 0..1000 {
            let d = b.delay_ms(1, &mut rng);
            assert!((700..=1_000).contains(&d), "{d}");
        }
    }

    #[test]
    fn validation() {
        assert!(QueueConfig::default().validate().is_ok());
        assert!(
            QueueConfig::default()
                .with_max_attempts(0)
                .validate()
                .is_err()
        );
        let bad = QueueConfig::default().with_backoff(Backoff {
            base_ms: 10,
            max_ms: 5,
            jitter_pct: 0,
        });
        assert!(bad.validate().is_err());
    }

    #[test]
    fn durations_out_of_range_are_reported_not_clamped() {
        let days_60 = Duration::from_secs(60 * 24 * 3600);
        let err = QueueConfig::default().with_timeout(days_60).validate();
        let err = err.unwrap_err().to_string();
        assert!(
            err.contains("5184000000 ms is outside 1..=4294967295 ms"),
            "{err}"
        );
        let err = QueueConfig::default()
            .with_timeout(Duration::from_micros(500))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("500 µs"), "{err}");
        let err = QueueConfig::default().with_default_cost(days_60).validate();
        assert!(err.unwrap_err().to_string().contains("default cost"));
        // The same limit as a task's own timeout.
        let task = crate::TaskSpec::builder("q", "k").timeout(days_60).build();
        assert!(task.is_err());
        let fine = QueueConfig::default().with_timeout(Duration::from_secs(30));
        assert_eq!(fine.timeout_ms, 30_000);
        fine.validate().unwrap();
    }
}
