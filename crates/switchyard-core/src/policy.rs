//! Scheduling policies: the order in which tasks leave a queue.
//!
//! A policy is a pure function from a task to an integer **sort key**, computed once when the
//! task enters the ready set. The queue hands out the task with the smallest `(key, seq)`, where
//! `seq` is a per-queue sequence number assigned at the same moment, so ties always break
//! first-come-first-served and a pop is `O(log n)` with no rescans.
//!
//! | policy | key |
//! | --- | --- |
//! | FCFS | `0` (so the order is `seq`) |
//! | priority | `−priority` |
//! | priority with aging step `s` | `enqueued_at − priority · s` |
//! | shortest-job-first | `cost` |
//! | shortest-job-first with aging factor `f` | `enqueued_at + cost · f` |
//! | earliest-deadline-first | `deadline` (`2⁴⁸ − 1` for a task without one) |
//!
//! **Ranges.** `enqueued_at < 2⁴⁸` ms, `priority ≤ 65 535`, `s ≤ 2²⁴` ms, `cost < 2³²` ms and
//! `f ≤ 1024`, deadlines `< 2⁴⁸` ms, so `|key| < 2⁴⁹`: every key is an exact integer in an IEEE double, which is what a
//! Redis sorted-set score is. Out-of-range settings are refused by [`Policy::validate`].
//!
//! **Starvation bounds with aging.** Under priority aging, a task with priority `p` is never
//! overtaken by a task that enters the queue more than `(65 535 − p) · s` ms after it; under SJF
//! aging, a task of cost `c` is never overtaken by one entering more than `c · f` ms after it.
//! Its wait is therefore bounded by that window plus the time to drain what was ahead of it.
//!
//! **Deadlines.** Under earliest-deadline-first a task without a deadline sorts after every
//! task with one (FIFO among themselves). A queue may also *expire* late tasks
//! ([`QueueConfig::expire_late`](crate::QueueConfig::expire_late)): a task whose deadline has
//! come while it still waits ends in [`TaskState::Expired`](crate::TaskState::Expired) instead
//! of starting; the exact rule is [`crate::flow::deadline`].

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::clock::Millis;
use crate::display::quoted;

/// Largest aging step for the priority policy, in ms per priority level (2²⁴, about 4.7 hours).
pub const MAX_AGING_STEP_MS: u32 = 1 << 24;
/// Largest aging factor for shortest-job-first (ms of waiting per ms of cost).
pub const MAX_AGING_FACTOR: u32 = 1024;

/// The order in which a queue releases its ready tasks. See the module docs for the keys.
///
/// ```
/// use switchyard_core::{Policy, policy::KeyInput};
/// let sjf = Policy::ShortestJobFirst { aging_factor: None };
/// let short = KeyInput { priority: 0, cost_ms: 10, enqueued_at: 5_000, deadline: None };
/// let long = KeyInput { priority: 0, cost_ms: 900, enqueued_at: 1_000, deadline: None };
/// assert!(sjf.sort_key(&short) < sjf.sort_key(&long));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
#[non_exhaustive]
pub enum Policy {
    /// First come, first served.
    #[default]
    Fcfs,
    /// Highest priority first, FIFO among equals; with `aging_step_ms`, waiting
    /// `aging_step_ms` milliseconds is worth one priority level.
    Priority {
        /// Milliseconds of waiting worth one priority level (`1..=2²⁴`), or no aging.
        aging_step_ms: Option<u32>,
    },
    /// Smallest cost hint first, FIFO among equals; with `aging_factor`, each millisecond of
    /// cost counts as `aging_factor` milliseconds of later arrival.
    ShortestJobFirst {
        /// Milliseconds of arrival delay per millisecond of cost (`1..=1024`), or no aging.
        aging_factor: Option<u32>,
    },
    /// Earliest deadline first ([`TaskSpecBuilder::deadline`](crate::TaskSpecBuilder::deadline)),
    /// FIFO among equal deadlines; tasks without a deadline last.
    EarliestDeadlineFirst,
}

/// What a policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInput {
    /// The task's priority.
    pub priority: u16,
    /// The task's cost hint in ms (after the queue default was applied).
    pub cost_ms: u32,
    /// When the task entered the ready set, ms since the epoch (`< 2⁴⁸`).
    pub enqueued_at: Millis,
    /// The task's deadline, ms since the epoch, if it has one.
    pub deadline: Option<Millis>,
}

impl Policy {
    /// Priority without aging.
    pub const PRIORITY: Policy = Policy::Priority {
        aging_step_ms: None,
    };
    /// Shortest-job-first without aging.
    pub const SJF: Policy = Policy::ShortestJobFirst { aging_factor: None };

    /// Checks the aging parameters.
    pub fn validate(&self) -> Result<(), Error> {
        match *self {
            Policy::Priority {
                aging_step_ms: Some(step),
            } if step == 0 || step > MAX_AGING_STEP_MS => Err(Error::invalid(
                "aging step",
                format!("{step} ms is outside 1..={MAX_AGING_STEP_MS} ms"),
            )),
            Policy::ShortestJobFirst {
                aging_factor: Some(f),
            } if f == 0 || f > MAX_AGING_FACTOR => Err(Error::invalid(
                "aging factor",
                format!("{f} is outside 1..={MAX_AGING_FACTOR}"),
            )),
            _ => Ok(()),
        }
    }

    /// The sort key (smaller leaves first). Exact below 2⁴⁹ in magnitude for validated
    /// policies and in-range inputs.
    pub fn sort_key(&self, input: &KeyInput) -> i64 {
        let t =
            i64::try_from(input.enqueued_at.min(crate::task::MAX_RUN_AT_MS)).unwrap_or(i64::MAX);
        let p = i64::from(input.priority);
        let c = i64::from(input.cost_ms);
        match *self {
            Policy::Fcfs => 0,
            Policy::Priority {
                aging_step_ms: None,
            } => -p,
            Policy::Priority {
                aging_step_ms: Some(step),
            } => t - p * i64::from(step),
            Policy::ShortestJobFirst { aging_factor: None } => c,
            Policy::ShortestJobFirst {
                aging_factor: Some(f),
            } => t + c * i64::from(f),
            Policy::EarliestDeadlineFirst => {
                let d = input.deadline.map_or(crate::task::MAX_RUN_AT_MS, |d| {
                    d.min(crate::task::MAX_RUN_AT_MS)
                });
                i64::try_from(d).unwrap_or(i64::MAX)
            }
        }
    }

    /// The sort key of a ready task whose priority changes `from` → `to`, given its `key`
    /// ([`crate::TaskChange`]): under a priority policy the key moves by the difference (times
    /// the aging step: the age the task has is kept), other policies ignore priority. Exact
    /// wherever [`sort_key`](Self::sort_key) is.
    ///
    /// ```
    /// use switchyard_core::Policy;
    /// use switchyard_core::policy::KeyInput;
    /// let aging = Policy::Priority { aging_step_ms: Some(100) };
    /// let input = KeyInput { priority: 2, cost_ms: 0, enqueued_at: 5_000, deadline: None };
    /// let moved = KeyInput { priority: 7, ..input };
    /// assert_eq!(aging.rekeyed(aging.sort_key(&input), 2, 7), aging.sort_key(&moved));
    /// assert_eq!(Policy::Fcfs.rekeyed(0, 2, 7), 0);
    /// ```
    pub fn rekeyed(&self, key: i64, from: u16, to: u16) -> i64 {
        let delta = i64::from(to) - i64::from(from);
        match *self {
            Policy::Priority { aging_step_ms } => {
                key - delta * i64::from(aging_step_ms.unwrap_or(1))
            }
            _ => key,
        }
    }

    /// Short name for display: `fcfs`, `priority`, `sjf` (with `+aging` when aging is on).
    pub fn name(&self) -> String {
        match self {
            Policy::Fcfs => "fcfs".into(),
            Policy::Priority {
                aging_step_ms: None,
            } => "priority".into(),
            Policy::Priority {
                aging_step_ms: Some(s),
            } => format!("priority+aging({s}ms)"),
            Policy::ShortestJobFirst { aging_factor: None } => "sjf".into(),
            Policy::ShortestJobFirst {
                aging_factor: Some(f),
            } => format!("sjf+aging(x{f})"),
            Policy::EarliestDeadlineFirst => "edf".into(),
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = Error;

    /// Parses `fcfs`, `priority`, `priority:<step_ms>`, `sjf`, `sjf:<factor>`, `edf`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let number = |a: &str| {
            a.parse::<u32>().map_err(|_| {
                Error::invalid(
                    "policy",
                    format!("{} in {} is not a number", quoted(a), quoted(s)),
                )
            })
        };
        let policy = match (name, arg) {
            ("fcfs", None) => Policy::Fcfs,
            ("priority", None) => Policy::PRIORITY,
            ("priority", Some(a)) => Policy::Priority {
                aging_step_ms: Some(number(a)?),
            },
            ("sjf", None) => Policy::SJF,
            ("sjf", Some(a)) => Policy::ShortestJobFirst {
                aging_factor: Some(number(a)?),
            },
            ("edf", None) => Policy::EarliestDeadlineFirst,
            _ => {
                return Err(Error::invalid(
                    "policy",
                    format!(
                        "{}: expected fcfs, priority, priority:<aging step ms>, sjf, sjf:<aging factor> or edf",
                        quoted(s)
                    ),
                ));
            }
        };
        policy.validate()?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(priority: u16, cost_ms: u32, enqueued_at: Millis) -> KeyInput {
        KeyInput {
            priority,
            cost_ms,
            enqueued_at,
            deadline: Some(enqueued_at),
        }
    }

    #[test]
    fn keys_follow_the_table() {
        let i = input(3, 40, 1_000);
        assert_eq!(Policy::Fcfs.sort_key(&i), 0);
        assert_eq!(Policy::PRIORITY.sort_key(&i), -3);
        assert_eq!(
            Policy::Priority {
                aging_step_ms: Some(100)
            }
            .sort_key(&i),
            700
        );
        assert_eq!(Policy::SJF.sort_key(&i), 40);
        assert_eq!(
            Policy::ShortestJobFirst {
                aging_factor: Some(2)
            }
            .sort_key(&i),
            1_080
        );
    }

    #[test]
    fn extreme_keys_stay_exact_in_a_double() {
        let limit = 1i64 << 53;
        let extremes = [
            input(u16::MAX, u32::MAX, crate::task::MAX_RUN_AT_MS),
            input(u16::MAX, u32::MAX, 0),
            input(0, 0, 0),
        ];
        let policies = [
            Policy::Fcfs,
            Policy::PRIORITY,
            Policy::Priority {
                aging_step_ms: Some(MAX_AGING_STEP_MS),
            },
            Policy::SJF,
            Policy::ShortestJobFirst {
                aging_factor: Some(MAX_AGING_FACTOR),
            },
            Policy::EarliestDeadlineFirst,
        ];
        for policy in policies {
            for i in &extremes {
                let key = policy.sort_key(i);
                assert!(key.abs() < limit, "{policy:?} {i:?}");
                assert_eq!(key as f64 as i64, key);
            }
        }
    }

    #[test]
    fn earliest_deadline_first_and_no_deadline_last() {
        let edf = Policy::EarliestDeadlineFirst;
        let soon = edf.sort_key(&input(0, 0, 1_000));
        let later = edf.sort_key(&input(9, 0, 2_000));
        let none = edf.sort_key(&KeyInput {
            deadline: None,
            ..input(0, 0, 0)
        });
        assert!(soon < later && later < none);
        assert_eq!(none, crate::task::MAX_RUN_AT_MS as i64);
    }

    #[test]
    fn aging_lets_old_low_priority_tasks_overtake() {
        let policy = Policy::Priority {
            aging_step_ms: Some(10),
        };
        let old_low = policy.sort_key(&input(0, 0, 0));
        let new_high = policy.sort_key(&input(5, 0, 100));
        assert!(old_low < new_high, "waited 100 ms = 10 levels > 5 levels");
    }

    #[test]
    fn parse_and_validate() {
        assert_eq!("sjf".parse::<Policy>().unwrap(), Policy::SJF);
        assert_eq!(
            "priority:50".parse::<Policy>().unwrap(),
            Policy::Priority {
                aging_step_ms: Some(50)
            }
        );
        assert!("sjf:0".parse::<Policy>().is_err());
        assert!("sjf:2000".parse::<Policy>().is_err());
        assert!("lifo".parse::<Policy>().is_err());
        assert_eq!(
            "edf".parse::<Policy>().unwrap(),
            Policy::EarliestDeadlineFirst
        );
        assert!("edf:3".parse::<Policy>().is_err());
    }
}
