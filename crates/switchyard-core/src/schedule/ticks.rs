//! The tick arithmetic: when a recurring definition ticks, and which ticks a ticker that comes
//! late runs.
//!
//! A [`Recurrence`] is a cron expression evaluated in an IANA time zone, or a fixed interval,
//! optionally bounded by a start, an end and a count. Cron expressions are parsed and evaluated
//! by the [`croner`] crate (five fields, or six with seconds first; `L`, `#`, `W`, names,
//! `@daily`…), zones come from `chrono-tz` (the IANA database, built in): no parser or zone
//! table of our own. Its daylight-saving rule, which ours is:
//!
//! * a **fixed time** that a spring-forward gap skips (02:30 on the night 02:00 becomes 03:00)
//!   ticks at the first valid time after the gap, that day (03:00); a wildcard or stepped time
//!   in the gap does not tick (the hour is not there);
//! * a **fixed time** that a fall-back overlap repeats (02:30 when 03:00 becomes 02:00) ticks
//!   once, on its first pass; a wildcard or stepped time ticks on both passes (an hourly
//!   schedule ticks 23 times on the spring day and 25 times on the autumn one: once an hour of
//!   real time).
//!
//! Ticks are instants (ms since the epoch, UTC), strictly increasing.
//!
//! **Misfires.** A ticker that finds the next tick `next` due at `now` runs the ticks `t` with
//! `next <= t <= now` by the schedule's [`Misfire`] policy, and all of them count as passed: the
//! next tick is the first after `now` ([`plan`]).
//!
//! ```
//! use switchyard_core::schedule::{Every, Misfire, Recurrence, plan};
//! // 02:30 every day in Berlin. On 2026-03-29 clocks go from 02:00 to 03:00.
//! let nightly = Recurrence::new(Every::cron("0 30 2 * * *", "Europe/Berlin"));
//! let ticks = nightly.compile(0).unwrap();
//! let mar_28_noon = 1_774_695_600_000; // 2026-03-28T11:00:00Z
//! let first = ticks.next_after(mar_28_noon).unwrap();
//! // 02:30 does not exist that night: the first valid time after the gap, 03:00 CEST.
//! assert_eq!(first, 1_774_746_000_000); // 2026-03-29T01:00:00Z
//! // Down for three days, then the ticker runs: once (the default), for the latest tick.
//! let later = first + 3 * 86_400_000 + 60_000;
//! let p = plan(&ticks, first, later, Misfire::RunOnce, None);
//! assert_eq!(p.run.len(), 1);
//! assert!(p.next.unwrap() > later);
//! ```

use std::str::FromStr;

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::task::MAX_RUN_AT_MS;
use crate::{Error, TaskId};

/// How often a schedule ticks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Every {
    /// A cron expression (five fields, or six with seconds first) in an IANA time zone
    /// (`Europe/Berlin`, `UTC`).
    Cron {
        /// The expression.
        expr: String,
        /// The zone its wall-clock times are in.
        tz: String,
    },
    /// Every `ms` milliseconds from the start (or, without one, from when the schedule was
    /// created).
    Interval {
        /// The period, at least 1 ms.
        ms: u64,
    },
}

impl Every {
    /// A cron expression `expr` in zone `tz`.
    pub fn cron(expr: impl Into<String>, tz: impl Into<String>) -> Every {
        Every::Cron {
            expr: expr.into(),
            tz: tz.into(),
        }
    }

    /// Every `ms` milliseconds.
    pub fn interval_ms(ms: u64) -> Every {
        Every::Interval { ms }
    }
}

/// A recurring definition: how often, and between which bounds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recurrence {
    /// How often.
    pub every: Every,
    /// No tick before this time (ms since the epoch); an interval counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Millis>,
    /// No tick after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Millis>,
    /// At most this many ticks run in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl Recurrence {
    /// Ticks `every`, unbounded.
    pub fn new(every: Every) -> Recurrence {
        Recurrence {
            every,
            start: None,
            end: None,
            limit: None,
        }
    }

    /// Sets the first time a tick may have.
    pub fn starting(mut self, at: Millis) -> Recurrence {
        self.start = Some(at);
        self
    }

    /// Sets the last time a tick may have.
    pub fn ending(mut self, at: Millis) -> Recurrence {
        self.end = Some(at);
        self
    }

    /// Sets how many ticks run in all.
    pub fn limited_to(mut self, ticks: u64) -> Recurrence {
        self.limit = Some(ticks);
        self
    }

    /// Checks the definition and readies it for evaluation; `created_at` anchors an interval
    /// without a start. A bad expression or zone, an interval of 0, an end before the start or
    /// a limit of 0 is refused with [`Error::InvalidArgument`](crate::Error).
    pub fn compile(&self, created_at: Millis) -> Result<Ticks, Error> {
        let kind = match &self.every {
            Every::Cron { expr, tz } => {
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .build()
                    .parse(expr)
                    .map_err(|e| Error::invalid("cron expression", format!("`{expr}`: {e}")))?;
                let zone = Tz::from_str(tz).map_err(|_| {
                    Error::invalid(
                        "time zone",
                        format!("`{tz}` is not an IANA zone name (like Europe/Berlin or UTC)"),
                    )
                })?;
                Kind::Cron(Box::new(cron), zone)
            }
            Every::Interval { ms: 0 } => {
                return Err(Error::invalid("interval", "must be at least 1 ms"));
            }
            Every::Interval { ms } => Kind::Interval {
                ms: *ms,
                anchor: self.start.unwrap_or(created_at),
            },
        };
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end < start
        {
            return Err(Error::invalid("end", "is before the start"));
        }
        if self.limit == Some(0) {
            return Err(Error::invalid(
                "limit",
                "must be at least 1 (leave it unset for no limit)",
            ));
        }
        Ok(Ticks {
            kind,
            start: self.start.unwrap_or(0),
            end: self.end.unwrap_or(MAX_RUN_AT_MS).min(MAX_RUN_AT_MS),
        })
    }
}

/// A compiled [`Recurrence`]: its ticks, evaluated on demand.
#[derive(Debug, Clone)]
pub struct Ticks {
    kind: Kind,
    start: Millis,
    end: Millis,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(Box<Cron>, Tz),
    Interval { ms: u64, anchor: Millis },
}

impl Ticks {
    /// The first tick strictly after `t`, if there is one before the end.
    pub fn next_after(&self, t: Millis) -> Option<Millis> {
        let from = t.max(self.start.saturating_sub(1));
        let tick = match &self.kind {
            Kind::Interval { ms, anchor } => {
                if from < *anchor {
                    *anchor
                } else {
                    anchor.checked_add(((from - anchor) / ms + 1).checked_mul(*ms)?)?
                }
            }
            Kind::Cron(cron, zone) => {
                let at = instant(from, zone)?;
                millis_of(&cron.find_next_occurrence(&at, false).ok()?)?
            }
        };
        (tick <= self.end).then_some(tick)
    }

    /// The last tick at or before `t`, if there is one at or after the start.
    pub fn last_at_or_before(&self, t: Millis) -> Option<Millis> {
        let to = t.min(self.end);
        let tick = match &self.kind {
            Kind::Interval { ms, anchor } => {
                if to < *anchor {
                    return None;
                }
                anchor + (to - anchor) / ms * ms
            }
            Kind::Cron(cron, zone) => {
                let at = instant(to, zone)?;
                millis_of(&cron.find_previous_occurrence(&at, true).ok()?)?
            }
        };
        (tick >= self.start).then_some(tick)
    }
}

fn instant(ms: Millis, zone: &Tz) -> Option<DateTime<Tz>> {
    let ms = i64::try_from(ms).ok()?;
    Some(zone.from_utc_datetime(&DateTime::from_timestamp_millis(ms)?.naive_utc()))
}

fn millis_of(at: &DateTime<Tz>) -> Option<Millis> {
    Millis::try_from(at.timestamp_millis()).ok()
}

/// What a ticker that comes late does with the ticks it missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Misfire {
    /// Run the latest due tick only if it is at most `grace_ms` late; skip the rest.
    Skip {
        /// How late a tick may be and still run.
        grace_ms: u64,
    },
    /// Run the latest due tick, however late; skip the rest (the default).
    #[default]
    RunOnce,
    /// Run the latest `n` due ticks, oldest first; skip the rest.
    CatchUp(u32),
}

/// What a ticker does at `now` ([`plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The ticks to run, oldest first: one task each.
    pub run: Vec<Millis>,
    /// The schedule's next tick afterwards (`None`: it has ended, by its end or its limit).
    pub next: Option<Millis>,
}

/// The ticks to run at `now` of a schedule whose next tick is `next` (none if `next > now`),
/// by `misfire`, with `left` runs left of its limit (`None`: no limit), and the next tick
/// after them. Bounded work: at most as many evaluations as ticks it runs, plus two, however
/// many ticks were missed.
pub fn plan(ticks: &Ticks, next: Millis, now: Millis, misfire: Misfire, left: Option<u64>) -> Plan {
    if next > now {
        return Plan {
            run: Vec::new(),
            next: Some(next),
        };
    }
    let latest = ticks.last_at_or_before(now).filter(|t| *t >= next);
    let mut run = Vec::new();
    if let Some(latest) = latest {
        match misfire {
            Misfire::Skip { grace_ms } => {
                if now - latest <= grace_ms {
                    run.push(latest);
                }
            }
            Misfire::RunOnce => run.push(latest),
            Misfire::CatchUp(n) => {
                let mut t = latest;
                while run.len() < n as usize {
                    run.push(t);
                    match t.checked_sub(1).and_then(|b| ticks.last_at_or_before(b)) {
                        Some(earlier) if earlier >= next => t = earlier,
                        _ => break,
                    }
                }
                run.reverse();
            }
        }
    }
    if let Some(left) = left {
        run.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        if u64::try_from(run.len()).unwrap_or(u64::MAX) >= left {
            return Plan { run, next: None };
        }
    }
    Plan {
        run,
        next: ticks.next_after(now),
    }
}

/// The id of the task tick `tick` of schedule `name` creates: the same for every ticker, so a
/// tick submitted twice is a duplicate. Its time part is the tick (ids sort by tick), the rest
/// a hash of the name.
pub fn tick_task_id(name: &str, tick: Millis) -> TaskId {
    let digest = sha1_smol::Sha1::from(name.as_bytes()).digest().bytes();
    let mut random = [0u8; 16];
    random.copy_from_slice(&digest[..16]);
    TaskId::from_parts(tick, u128::from_be_bytes(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ms since the epoch of a UTC time `YYYY-MM-DDTHH:MM:SSZ`.
    fn utc(s: &str) -> Millis {
        let t = DateTime::parse_from_rfc3339(s).unwrap();
        Millis::try_from(t.timestamp_millis()).unwrap()
    }

    /// Every tick in [from, to), as UTC text.
    fn ticks_between(r: &Recurrence, from: &str, to: &str) -> Vec<String> {
        let ticks = r.compile(0).unwrap();
        let (mut t, end) = (utc(from) - 1, utc(to));
        let mut out = Vec::new();
        while let Some(next) = ticks.next_after(t) {
            if next >= end {
                break;
            }
            let at = DateTime::from_timestamp_millis(i64::try_from(next).unwrap()).unwrap();
            out.push(at.format("%m-%dT%H:%M").to_string());
            t = next;
        }
        out
    }

    fn berlin(expr: &str) -> Recurrence {
        Recurrence::new(Every::cron(expr, "Europe/Berlin"))
    }

    #[test]
    fn a_fixed_time_in_the_spring_gap_runs_after_it_and_once_in_the_autumn_overlap() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00Z). 02:30 does not exist that night.
        let nightly = berlin("0 30 2 * * *");
        assert_eq!(
            ticks_between(&nightly, "2026-03-27T12:00:00Z", "2026-03-31T12:00:00Z"),
            // 02:30 CET = 01:30Z; on the 29th the first valid time after the gap, 03:00 CEST
            // = 01:00Z; then 02:30 CEST = 00:30Z.
            ["03-28T01:30", "03-29T01:00", "03-30T00:30", "03-31T00:30"]
        );
        // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00Z). 02:30 happens twice; one tick.
        assert_eq!(
            ticks_between(&nightly, "2026-10-23T12:00:00Z", "2026-10-27T12:00:00Z"),
            ["10-24T00:30", "10-25T00:30", "10-26T01:30", "10-27T01:30"]
        );
    }

    #[test]
    fn an_hourly_schedule_ticks_once_an_hour_of_real_time_across_both_transitions() {
        let hourly = berlin("0 0 * * * *");
        // The spring day in Berlin (00:00 CET = 23:00Z the day before) has 23 hours.
        let spring = ticks_between(&hourly, "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z");
        assert_eq!(spring.len(), 23, "{spring:?}");
        // 00:00 CET = 23:00Z, 01:00 CET = 00:00Z, then no 02:00: 03:00 CEST = 01:00Z.
        assert_eq!(spring[..3], ["03-28T23:00", "03-29T00:00", "03-29T01:00"]);
        // The autumn day has 25 hours: 00:00 CEST = 22:00Z, 01:00 CEST, then 02:00 on both
        // passes (00:00Z in CEST, 01:00Z in CET).
        let autumn = ticks_between(&hourly, "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z");
        assert_eq!(autumn.len(), 25, "{autumn:?}");
        assert_eq!(
            autumn[..4],
            ["10-24T22:00", "10-24T23:00", "10-25T00:00", "10-25T01:00"]
        );
        // Every 30 minutes with a wildcard hour: the gap's two half hours are not there.
        let half = berlin("0 */30 * * * *");
        let spring = ticks_between(&half, "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z");
        assert_eq!(spring.len(), 46);
        let autumn = ticks_between(&half, "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z");
        assert_eq!(autumn.len(), 50);
    }

    #[test]
    fn seconds_intervals_and_bounds() {
        let every_second = Recurrence::new(Every::cron("* * * * * *", "UTC"));
        let t = every_second.compile(0).unwrap();
        assert_eq!(t.next_after(1_000), Some(2_000));
        assert_eq!(t.next_after(1_500), Some(2_000));
        assert_eq!(t.last_at_or_before(2_999), Some(2_000));
        // Five fields: minutes.
        let t = Recurrence::new(Every::cron("*/5 * * * *", "UTC"))
            .compile(0)
            .unwrap();
        assert_eq!(t.next_after(0), Some(300_000));
        // An interval counts from its start (or its creation), bounded by its end.
        let r = Recurrence::new(Every::interval_ms(1_000))
            .starting(10_500)
            .ending(12_500);
        let t = r.compile(0).unwrap();
        assert_eq!(t.next_after(0), Some(10_500));
        assert_eq!(t.next_after(10_500), Some(11_500));
        assert_eq!(t.next_after(11_500), Some(12_500));
        assert_eq!(t.next_after(12_500), None);
        assert_eq!(t.last_at_or_before(10_499), None);
        assert_eq!(t.last_at_or_before(12_000), Some(11_500));
        let t = Recurrence::new(Every::interval_ms(250)).compile(7).unwrap();
        assert_eq!(t.next_after(0), Some(7));
        assert_eq!(t.next_after(7), Some(257));
    }

    #[test]
    fn bad_definitions_are_refused_with_the_reason() {
        let refused = |r: Recurrence| r.compile(0).unwrap_err().to_string();
        assert!(refused(berlin("61 * * * * *")).contains("cron expression"));
        assert!(refused(berlin("not cron")).contains("cron expression"));
        let zone = refused(Recurrence::new(Every::cron("* * * * *", "Mars/Olympus")));
        assert!(zone.contains("Mars/Olympus"), "{zone}");
        assert!(refused(Recurrence::new(Every::interval_ms(0))).contains("interval"));
        let backwards = Recurrence::new(Every::interval_ms(1)).starting(5).ending(4);
        assert!(refused(backwards).contains("end"));
        assert!(refused(Recurrence::new(Every::interval_ms(1)).limited_to(0)).contains("limit"));
    }

    #[test]
    fn a_late_ticker_runs_what_its_misfire_policy_says() {
        let t = Recurrence::new(Every::interval_ms(1_000))
            .starting(0)
            .compile(0)
            .unwrap();
        // On time: the due tick runs, the next is the one after now.
        let p = plan(&t, 5_000, 5_003, Misfire::RunOnce, None);
        assert_eq!(
            p,
            Plan {
                run: vec![5_000],
                next: Some(6_000)
            }
        );
        // Not due yet: nothing.
        let p = plan(&t, 5_000, 4_999, Misfire::RunOnce, None);
        assert_eq!(
            p,
            Plan {
                run: vec![],
                next: Some(5_000)
            }
        );
        // Down from 5 s to 1 h later: 3,596 ticks missed.
        let now = 3_600_400;
        let p = plan(&t, 5_000, now, Misfire::RunOnce, None);
        assert_eq!(
            p,
            Plan {
                run: vec![3_600_000],
                next: Some(3_601_000)
            }
        );
        let p = plan(&t, 5_000, now, Misfire::Skip { grace_ms: 300 }, None);
        assert_eq!(
            p,
            Plan {
                run: vec![],
                next: Some(3_601_000)
            }
        );
        let p = plan(&t, 5_000, now, Misfire::Skip { grace_ms: 500 }, None);
        assert_eq!(p.run, [3_600_000]);
        let p = plan(&t, 5_000, now, Misfire::CatchUp(3), None);
        assert_eq!(p.run, [3_598_000, 3_599_000, 3_600_000]);
        // Catching up never reaches before the next tick it was given.
        let p = plan(&t, 5_000, 6_100, Misfire::CatchUp(10), None);
        assert_eq!(
            p,
            Plan {
                run: vec![5_000, 6_000],
                next: Some(7_000)
            }
        );
        // A limit: two runs left, three to catch up: two run and the schedule ends.
        let p = plan(&t, 5_000, 8_000, Misfire::CatchUp(3), Some(2));
        assert_eq!(
            p,
            Plan {
                run: vec![6_000, 7_000],
                next: None
            }
        );
    }

    #[test]
    fn a_ticks_task_id_is_the_same_for_every_ticker_and_differs_by_tick_and_name() {
        assert_eq!(tick_task_id("nightly", 5), tick_task_id("nightly", 5));
        assert_ne!(tick_task_id("nightly", 5), tick_task_id("nightly", 6));
        assert_ne!(tick_task_id("nightly", 5), tick_task_id("hourly", 5));
        assert_eq!(tick_task_id("nightly", 5).millis(), 5);
    }
}
