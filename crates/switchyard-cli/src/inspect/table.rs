//! The `status` table: a namespace in 80 columns.

use std::fmt::Write;
use std::time::Duration;

use crate::views::View;

/// The width everything fits in.
pub const WIDTH: usize = 80;

/// `view` as the `status` table. `every`: the refresh interval, in watch mode.
pub fn render(view: &View, namespace: &str, every: Option<Duration>) -> String {
    let mut out = String::new();
    let when = clock(view.at);
    let mode = match every {
        Some(d) => format!("every {}, Ctrl-C stops", age(d.as_millis() as u64)),
        None => String::new(),
    };
    line(
        &mut out,
        format!("namespace {namespace}  {when}  {mode}").trim_end(),
    );
    for warning in &view.warnings {
        wrapped(&mut out, "! ", warning);
    }
    out.push('\n');
    if view.queues.is_empty() {
        line(&mut out, "(no queues declared)");
    } else {
        line(
            &mut out,
            &format!(
                "{:<14} {:<17} {:>6} {:>6} {:>7} {:>8} {:>9} {:>6}",
                "queue",
                "policy/strategy",
                "ready",
                "inbox",
                "running",
                "retrying",
                "scheduled",
                "dead"
            ),
        );
    }
    for q in &view.queues {
        let kind = format!("{}/{}", q.policy, q.strategy);
        line(
            &mut out,
            &format!(
                "{:<14} {:<17} {:>6} {:>6} {:>7} {:>8} {:>9} {:>6}",
                fit(&q.queue, 14),
                fit(&kind, 17),
                count(q.ready),
                count(q.inbox),
                count(q.running),
                count(q.retrying),
                count(q.scheduled),
                count(q.dead)
            ),
        );
        let mut detail = format!(
            "{:14} {}{} succeeded",
            "",
            if q.paused { "PAUSED, " } else { "" },
            count(q.totals.succeeded)
        );
        if let (Some(ok), Some(bad)) = (q.succeeded_per_s, q.failed_per_s) {
            let _ = write!(detail, " ({ok:.1}/s), {bad:.1} failed/s");
        }
        if q.cancelled > 0 {
            let _ = write!(detail, ", {} cancelled", count(q.cancelled));
        }
        if q.waiting_children > 0 {
            let _ = write!(
                detail,
                ", {} waiting for their children",
                count(q.waiting_children)
            );
        }
        if q.expired > 0 || q.expire_late {
            let _ = write!(detail, ", {} expired", count(q.expired));
        }
        if let Some(limit) = q.concurrency {
            let at = if q.active() >= u64::from(limit) {
                " (at limit)"
            } else {
                ""
            };
            let _ = write!(
                detail,
                ", {} of {} active{at}",
                count(q.active()),
                count(u64::from(limit))
            );
        }
        if let Some(rate) = &q.rate {
            let _ = write!(
                detail,
                ", {} tokens of {rate}",
                count(u64::from(q.rate_tokens.unwrap_or(0)))
            );
        }
        if let Some(ms) = q.opens_in_ms {
            let _ = write!(detail, ", opens in {}", age(ms));
        }
        if let Some(g) = &q.groups {
            let held = g
                .groups
                .iter()
                .filter(|g| g.ready > 0 && !g.in_ring)
                .count();
            let limits: Vec<String> = g
                .concurrency
                .map(|k| format!("{k} per group"))
                .into_iter()
                .chain(g.rate.map(|r| format!("{r} per group")))
                .chain(
                    g.max_waiting
                        .map(|m| format!("at most {m} waiting per group")),
                )
                .collect();
            let per = if limits.is_empty() {
                String::new()
            } else {
                format!(" ({})", limits.join(", "))
            };
            let closed = g.groups.iter().filter(|g| g.closed_until.is_some()).count();
            let per = if closed > 0 {
                format!("{per}, {closed} closed by rate or hold")
            } else {
                per
            };
            let _ = write!(
                detail,
                ", groups: {} waiting, {held} held{per}",
                g.groups.iter().filter(|g| g.ready > 0).count()
            );
            if let Some(top) = g
                .groups
                .iter()
                .max_by_key(|g| g.ready)
                .filter(|g| g.ready > 0)
            {
                let _ = write!(
                    detail,
                    " (largest backlog {:?}: {})",
                    top.key,
                    count(top.ready)
                );
            }
        }
        if let Some(bound) = q.max_waiting {
            let full = if q.waiting() >= u64::from(bound) {
                " (FULL)"
            } else {
                ""
            };
            let _ = write!(
                detail,
                ", {} of {} waiting{full}",
                count(q.waiting()),
                count(u64::from(bound))
            );
        }
        if let Some(ms) = q.head_age_ms {
            let _ = write!(detail, ", next in line {}", age(ms));
        }
        line(&mut out, &detail);
    }
    out.push('\n');
    if view.workers.is_empty() {
        line(&mut out, "(no live workers)");
        return out;
    }
    line(
        &mut out,
        &format!(
            "{:<20} {:>7} {:>6} {:>9} {:<8} {:>10}  queues",
            "worker", "in_use", "weight", "completed", "state", "expires_in"
        ),
    );
    for w in &view.workers {
        let head = format!(
            "{:<20} {:>7} {:>6} {:>9} {:<8} {:>10}  ",
            fit(&w.worker, 20),
            format!("{}/{}", w.in_use, w.capacity),
            w.weight,
            count(w.completed),
            w.state,
            age(w.expires_in_ms)
        );
        let room = WIDTH.saturating_sub(head.chars().count());
        line(
            &mut out,
            &format!("{head}{}", fit(&w.queues.join(","), room)),
        );
    }
    out
}

/// Appends `text` cut to [`WIDTH`] columns, and a newline.
fn line(out: &mut String, text: &str) {
    out.push_str(&fit(text, WIDTH));
    out.push('\n');
}

/// `text` after `first`, wrapped at word boundaries to [`WIDTH`] columns (continuation lines
/// indented as far as `first`): for sentences that must be read whole.
fn wrapped(out: &mut String, first: &str, text: &str) {
    let indent = " ".repeat(first.chars().count());
    let mut current = first.to_owned();
    for word in text.split_whitespace() {
        let fresh = current.chars().count() == indent.chars().count();
        if !fresh && current.chars().count() + 1 + word.chars().count() > WIDTH {
            line(out, &current);
            current = indent.clone();
        }
        if current.chars().count() > indent.chars().count() {
            current.push(' ');
        }
        current.push_str(word);
    }
    line(out, &current);
}

/// `text` in at most `width` columns: cut with `…` when longer.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A count in at most 6 columns: 1234567 as `1.2M`.
fn count(n: u64) -> String {
    match n {
        0..=999_999 => n.to_string(),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// A duration given in ms, short: `340ms`, `1.2s`, `3m05s`, `2h10m`.
fn age(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// The time of day of `at` (ms since the epoch), UTC.
fn clock(at: u64) -> String {
    let s = at / 1000;
    format!("{:02}:{:02}:{:02} UTC", s / 3600 % 24, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{GroupsRow, QueueRow, View, WorkerRow};

    #[test]
    fn the_table_fits_in_80_columns_whatever_the_names_and_numbers() {
        let queue = QueueRow {
            queue: "a-very-long-queue-name-that-goes-on".into(),
            paused: true,
            policy: "priority-aging".into(),
            strategy: "least-loaded".into(),
            max_waiting: Some(u32::MAX),
            concurrency: Some(u32::MAX),
            rate: Some("100000 per 1d".into()),
            rate_tokens: Some(100_000),
            opens_in_ms: Some(86_400_000),
            memory_bytes: Some(u64::MAX),
            scheduled: 123_456_789,
            ready: 9_999_999_999,
            inbox: 1,
            running: 65_535,
            retrying: 12,
            succeeded: 1_000_000,
            dead: 3,
            cancelled: 0,
            expired: 0,
            waiting_children: 0,
            expire_late: false,
            totals: Default::default(),
            head_age_ms: Some(7_300_000),
            succeeded_per_s: Some(12_345.67),
            failed_per_s: Some(0.5),
            groups: Some(GroupsRow {
                concurrency: Some(u32::MAX),
                rate: Some(switchyard::flow::rate::RateLimit::new(
                    100_000,
                    std::time::Duration::from_millis(86_399_999),
                )),
                max_waiting: Some(u32::MAX),
                groups: vec![switchyard::flow::groups::GroupInfo {
                    key: "a-very-long-tenant-key-".repeat(8),
                    weight: 1000,
                    ready: u64::MAX,
                    scheduled: u64::MAX,
                    active: u32::MAX,
                    in_ring: false,
                    tokens: Some(100_000),
                    closed_until: Some(u64::MAX),
                    limits: switchyard::flow::groups::GroupLimits::default()
                        .with_concurrency(u32::MAX),
                }],
            }),
        };
        let worker = WorkerRow {
            worker: "host.example.com-123456-abcdef-and-more".into(),
            queues: vec!["emails".into(), "reports".into(), "thumbnails".into()],
            capacity: 65_535,
            in_use: 65_535,
            weight: 1000,
            state: "draining",
            expires_in_ms: 14_999,
            heartbeat_ttl_ms: 15_000,
            dispatched: 10,
            completed: 123_456_789_012,
            weight_share: 1.0,
            dispatch_share: 1.0,
        };
        let view = View {
            schedules: Vec::new(),
            at: 1_796_305_582_150,
            queues: vec![queue],
            workers: vec![worker],
            warnings: vec![format!(
                "unreachable, left out of the figures: partition 0: {}",
                "connection refused ".repeat(8)
            )],
        };
        let text = render(&view, "switchyard", Some(Duration::from_secs(1)));
        for l in text.lines() {
            assert!(
                l.chars().count() <= WIDTH,
                "{} columns: {l:?}",
                l.chars().count()
            );
        }
        assert!(text.contains("…"), "{text}");
        assert!(text.contains("! unreachable"), "{text}");
        assert!(
            text.contains("\n  connection refused"),
            "wrapped, not cut: {text}"
        );
        assert_eq!(age(340), "340ms");
        assert_eq!(age(185_000), "3m05s");
        assert_eq!(count(1_234_567), "1.2M");
    }
}
