//! [`QueueConfig::diff`]: how a declared configuration differs from a requested one, field
//! by field (conflict errors carry it).

use super::QueueConfig;
use crate::Strategy;
use crate::flow::groups::GroupShare;
use crate::flow::rate::RateLimit;

impl QueueConfig {
    /// How `self` (a declared configuration) differs from `requested`, each differing field
    /// named with both values: `max_attempts 3 → 9, timeout_ms 300000 → 30000` (empty when
    /// they are equal). Conflict errors carry it.
    ///
    /// ```
    /// use switchyard_core::{Policy, QueueConfig};
    /// let declared = QueueConfig::default();
    /// let mut requested = declared.with_max_attempts(9);
    /// requested.policy = Policy::PRIORITY;
    /// assert_eq!(declared.diff(&requested), "policy fcfs → priority, max_attempts 3 → 9");
    /// assert_eq!(declared.diff(&declared), "");
    /// ```
    pub fn diff(&self, requested: &QueueConfig) -> String {
        fn strategy(s: Strategy) -> String {
            match s {
                Strategy::Affinity { vnodes } => format!("affinity({vnodes} vnodes)"),
                other => other.name().to_owned(),
            }
        }
        fn bound(b: Option<u32>) -> String {
            b.map_or_else(|| "unbounded".to_owned(), |n| n.to_string())
        }
        fn kept(k: Option<u32>) -> String {
            k.map_or_else(|| "all".to_owned(), |n| n.to_string())
        }
        let (a, b) = (self, requested);
        fn rate(r: Option<RateLimit>) -> String {
            r.map_or_else(|| "unlimited".to_owned(), |r| r.to_string())
        }
        fn groups(g: Option<GroupShare>) -> String {
            let Some(g) = g else {
                return "off".to_owned();
            };
            let mut out = "fair share".to_owned();
            if let Some(k) = g.concurrency {
                out.push_str(&format!(", {k} per group"));
            }
            if let Some(r) = g.rate {
                out.push_str(&format!(", {r} per group"));
            }
            if let Some(m) = g.max_waiting {
                out.push_str(&format!(", at most {m} waiting per group"));
            }
            out
        }
        let fields: [(&str, String, String); 21] = [
            ("policy", a.policy.name(), b.policy.name()),
            ("strategy", strategy(a.strategy), strategy(b.strategy)),
            ("seed", a.seed.to_string(), b.seed.to_string()),
            (
                "max_attempts",
                a.max_attempts.to_string(),
                b.max_attempts.to_string(),
            ),
            (
                "timeout_ms",
                a.timeout_ms.to_string(),
                b.timeout_ms.to_string(),
            ),
            (
                "default_cost_ms",
                a.default_cost_ms.to_string(),
                b.default_cost_ms.to_string(),
            ),
            (
                "backoff.base_ms",
                a.backoff.base_ms.to_string(),
                b.backoff.base_ms.to_string(),
            ),
            (
                "backoff.max_ms",
                a.backoff.max_ms.to_string(),
                b.backoff.max_ms.to_string(),
            ),
            (
                "backoff.jitter_pct",
                a.backoff.jitter_pct.to_string(),
                b.backoff.jitter_pct.to_string(),
            ),
            (
                "result_ttl_ms",
                a.result_ttl_ms.to_string(),
                b.result_ttl_ms.to_string(),
            ),
            (
                "dedup_window_ms",
                a.dedup_window_ms.to_string(),
                b.dedup_window_ms.to_string(),
            ),
            (
                "dedup_mode",
                a.dedup_mode.name().to_owned(),
                b.dedup_mode.name().to_owned(),
            ),
            (
                "dead_ttl_ms",
                a.dead_ttl_ms.to_string(),
                b.dead_ttl_ms.to_string(),
            ),
            (
                "events",
                a.events.name().to_owned(),
                b.events.name().to_owned(),
            ),
            ("max_waiting", bound(a.max_waiting), bound(b.max_waiting)),
            ("concurrency", bound(a.concurrency), bound(b.concurrency)),
            ("rate", rate(a.rate), rate(b.rate)),
            (
                "expire_late",
                a.expire_late.to_string(),
                b.expire_late.to_string(),
            ),
            (
                "keep_finished",
                kept(a.keep_finished),
                kept(b.keep_finished),
            ),
            ("keep_dead", kept(a.keep_dead), kept(b.keep_dead)),
            ("groups", groups(a.groups), groups(b.groups)),
        ];
        fields
            .into_iter()
            .filter(|(_, was, wanted)| was != wanted)
            .map(|(field, was, wanted)| format!("{field} {was} → {wanted}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
