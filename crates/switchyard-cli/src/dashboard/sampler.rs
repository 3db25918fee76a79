//! The one reader of the namespace: a `stats` call per refresh, turned into the snapshot that
//! every page gets (JSON, shared through a `watch` channel), with the last minutes of rates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard::metrics::{Kind, MetricFamily};
use switchyard::{Client, EventCounts, EventKind, QueueConfig, Stats, TaskState};
use tokio::sync::watch;

use crate::health;
use crate::views::{QueueRow, Reader, ScheduleRow, View, WorkerRow};

/// The families the dashboard records at `/metrics`, beside the library's
/// (`switchyard::metrics::FAMILIES`); `docs/operations.md` lists them.
pub const FAMILIES: &[MetricFamily] = &[
    MetricFamily {
        name: "switchyard_queue_tasks",
        kind: Kind::Gauge,
        labels: &["queue", "state"],
        help: "Tasks of a queue by state (succeeded, cancelled and expired: those still kept).",
    },
    MetricFamily {
        name: "switchyard_queue_events_total",
        kind: Kind::Counter,
        labels: &["queue", "event"],
        help: "Lifetime counts of a queue's events, whatever its event level.",
    },
    MetricFamily {
        name: "switchyard_queue_info",
        kind: Kind::Gauge,
        labels: &["queue", "policy", "strategy"],
        help: "1 for each queue, with its policy and strategy.",
    },
    MetricFamily {
        name: "switchyard_queue_max_waiting",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "The bound on a bounded queue's waiting tasks (ready, scheduled, retrying); \
               absent for an unbounded queue.",
    },
    MetricFamily {
        name: "switchyard_queue_concurrency_limit",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "The most tasks of a queue active (inbox or running) at once; absent without a \
               limit.",
    },
    MetricFamily {
        name: "switchyard_queue_memory_bytes",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "About how many bytes the backend holds for a queue (its keys and its tasks' \
               records), read every 10 s.",
    },
    MetricFamily {
        name: "switchyard_queue_rate_tokens",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "The dispatches a rate-limited queue's window still allows now; absent without a \
               limit.",
    },
    MetricFamily {
        name: "switchyard_queue_groups_waiting",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "A queue shared between groups: its groups with ready tasks (one series per \
               queue, not per group: tenants are unbounded; `switchyard groups` lists them).",
    },
    MetricFamily {
        name: "switchyard_queue_groups_held",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "A queue shared between groups: its groups with ready tasks held at the per-group \
               concurrency limit or closed by their rate limit or a hold.",
    },
    MetricFamily {
        name: "switchyard_queue_groups_closed",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "A queue shared between groups: its groups closed by their rate limit or a \
               handler's hold (taken up by maintenance when it ends).",
    },
    MetricFamily {
        name: "switchyard_queue_group_max_waiting",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "A queue bounded per group: the bound on each group's waiting tasks; absent \
               without one.",
    },
    MetricFamily {
        name: "switchyard_queue_groups_full",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "A queue bounded per group: its groups at their bound, whose submits are \
               refused.",
    },
    MetricFamily {
        name: "switchyard_queue_closed_seconds",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "How long until a queue closed by its rate limit or a handler's hold opens again; \
               0 while it is open.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_in_flight",
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "Tasks dispatched to or running on a live registration.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_capacity",
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "Slots of a live registration.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_weight",
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "Weight of a live registration.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_dispatched_total",
        kind: Kind::Counter,
        labels: &["worker"],
        help: "Tasks dispatched to a registration since it registered.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_completed_total",
        kind: Kind::Counter,
        labels: &["worker"],
        help: "Tasks a registration completed since it registered.",
    },
    MetricFamily {
        name: "switchyard_queue_unserved",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "1 while a queue has ready tasks, is not paused, and no live worker serves it.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_heartbeat_late",
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "1 while a live registration's last heartbeat is more than two heartbeat \
               intervals old (it is reaped when its TTL runs out).",
    },
    MetricFamily {
        name: "switchyard_schedule_runs_total",
        kind: Kind::Counter,
        labels: &["schedule"],
        help: "Ticks a schedule claimed (each created its task, or was skipped by the overlap \
               policy).",
    },
    MetricFamily {
        name: "switchyard_schedule_skipped_total",
        kind: Kind::Counter,
        labels: &["schedule"],
        help: "Ticks a schedule's overlap policy skipped (the last tick's task had not finished).",
    },
    MetricFamily {
        name: "switchyard_schedule_next_tick_seconds",
        kind: Kind::Gauge,
        labels: &["schedule"],
        help: "Until a schedule's next tick; negative while it is overdue (no ticker claims it: \
               no worker or `schedule run` is up, or its queue is missing or full). Absent once \
               it has ended.",
    },
    MetricFamily {
        name: "switchyard_schedule_paused",
        kind: Kind::Gauge,
        labels: &["schedule"],
        help: "1 while a schedule is paused.",
    },
    MetricFamily {
        name: "switchyard_dashboard_read_errors_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Failed reads of the namespace by the dashboard.",
    },
];

/// How many refreshes of rates the charts show (five minutes at the default refresh).
const HISTORY: usize = 300;

/// How many whole minutes of rates the hour charts show.
const MINUTES: usize = 60;

/// What the page shows: the rows of [`views`](crate::views), and the last minutes of rates.
#[derive(Debug, Serialize)]
struct Snapshot<'a> {
    /// When the figures shown were read, ms since the epoch (this machine's clock); 0 before
    /// the first good read.
    at: u64,
    namespace: &'a str,
    refresh_ms: u64,
    actions: bool,
    /// The last read's error (Redis unreachable, …); the figures are then the last good ones.
    error: Option<String>,
    queues: &'a [QueueRow],
    workers: &'a [WorkerRow],
    /// What an operator should know first (see `View::warnings`).
    warnings: &'a [String],
    schedules: &'a [ScheduleRow],
    /// Oldest first: per refresh, per queue (in `queues` order) succeeded/s and failed/s.
    history: &'a VecDeque<Point>,
    /// Oldest first: per whole minute of the last hour (its start), per queue succeeded/s and
    /// failed/s over that minute, and the bytes it held. Kept by the dashboard process, so a
    /// page reload shows it.
    minutes: &'a VecDeque<Point>,
}

/// The per-minute rates of the last hour, built from the lifetime totals of each read: a point
/// each time a read falls in a new minute, over the totals since the previous minute's first
/// read.
#[derive(Debug, Default)]
struct Minutes {
    points: VecDeque<Point>,
    /// The current minute (ms since the epoch / 60,000), the time of its first read, and the
    /// totals then, per queue.
    start: Option<(u64, u64, BTreeMap<String, EventCounts>)>,
}

impl Minutes {
    fn add(&mut self, at: u64, queues: &[QueueRow]) {
        let minute = at / 60_000;
        let totals: BTreeMap<String, EventCounts> =
            queues.iter().map(|q| (q.queue.clone(), q.totals)).collect();
        match &self.start {
            Some((m, _, _)) if *m == minute => return,
            Some((m, then, before)) => {
                let seconds = at.saturating_sub(*then) as f64 / 1000.0;
                if seconds > 0.0 {
                    let per_s = |now: u64, was: u64| {
                        (now.saturating_sub(was) as f64 / seconds * 100.0).round() / 100.0
                    };
                    let rates = queues
                        .iter()
                        .map(|q| {
                            let was = before.get(&q.queue).copied().unwrap_or_default();
                            (
                                q.queue.clone(),
                                per_s(q.totals.succeeded, was.succeeded),
                                per_s(q.totals.failed, was.failed),
                            )
                        })
                        .collect();
                    if self.points.len() == MINUTES {
                        self.points.pop_front();
                    }
                    // The memory each queue held as this minute ended (read every 10 s).
                    let memory = queues.iter().map(|q| q.memory_bytes).collect();
                    self.points.push_back(Point {
                        at: m * 60_000,
                        rates,
                        memory,
                    });
                }
            }
            None => {}
        }
        self.start = Some((minute, at, totals));
    }
}

#[derive(Debug, Clone, Serialize)]
struct Point {
    at: u64,
    /// Per-minute points only: each queue's bytes (in `rates` order; null when not read).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    memory: Vec<Option<u64>>,
    rates: Vec<(String, f64, f64)>,
}

/// Reads once, then every `refresh`; the receiver always holds the newest snapshot's JSON
/// (never an empty one: the first read is made before this returns). The reader stops when
/// the returned handle is aborted (dropping the sender ends every stream).
pub(super) async fn start(
    client: Client,
    namespace: String,
    refresh: Duration,
    actions: bool,
) -> (watch::Receiver<Arc<String>>, tokio::task::JoinHandle<()>) {
    let mut sampler = Sampler {
        reader: Reader::new(client),
        namespace,
        refresh,
        actions,
        history: VecDeque::new(),
        minutes: Minutes::default(),
        last: View {
            at: 0,
            queues: Vec::new(),
            workers: Vec::new(),
            warnings: Vec::new(),
            schedules: Vec::new(),
        },
        failures: Failures::default(),
    };
    let (tx, rx) = watch::channel(Arc::new(sampler.read().await));
    let reader = tokio::spawn(async move {
        let mut tick = tokio::time::interval(refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now: the first read was just made
        loop {
            tick.tick().await;
            let json = sampler.read().await;
            if tx.send(Arc::new(json)).is_err() {
                return;
            }
        }
    });
    (rx, reader)
}

struct Sampler {
    reader: Reader,
    namespace: String,
    refresh: Duration,
    actions: bool,
    history: VecDeque<Point>,
    minutes: Minutes,
    /// The last good read, shown again (with the error, and its own time) when a read fails.
    last: View,
    failures: Failures,
}

/// How often a run of failed reads is logged while it lasts.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Failed reads in a row: an outage logs its first failure, then a line a minute (not one per
/// refresh), and its end.
#[derive(Debug, Default)]
struct Failures {
    in_a_row: u64,
    logged: Option<Instant>,
}

impl Failures {
    /// A read failed at `now`: `Some(reads failed in a row)` if it should be logged.
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.in_a_row += 1;
        match self.logged {
            Some(at) if now.duration_since(at) < FAILURE_LOG_EVERY => None,
            _ => {
                self.logged = Some(now);
                Some(self.in_a_row)
            }
        }
    }

    /// A read worked: `Some(reads that had failed in a row)` if a run of failures ended.
    fn worked(&mut self) -> Option<u64> {
        self.logged = None;
        Some(std::mem::take(&mut self.in_a_row)).filter(|n| *n > 0)
    }
}

impl Sampler {
    async fn read(&mut self) -> String {
        let error = match self.reader.read().await {
            Ok((view, stats)) => {
                if let Some(n) = self.failures.worked() {
                    tracing::info!("reading the namespace works again, after {n} failed reads");
                }
                export(&stats, &view, self.reader.configs());
                self.minutes.add(view.at, &view.queues);
                if view.queues.iter().any(|q| q.succeeded_per_s.is_some()) {
                    if self.history.len() == HISTORY {
                        self.history.pop_front();
                    }
                    self.history.push_back(Point {
                        at: view.at,
                        memory: Vec::new(),
                        rates: view
                            .queues
                            .iter()
                            .map(|q| {
                                (
                                    q.queue.clone(),
                                    q.succeeded_per_s.unwrap_or(0.0),
                                    q.failed_per_s.unwrap_or(0.0),
                                )
                            })
                            .collect(),
                    });
                }
                self.last = view;
                None
            }
            Err(e) => {
                metrics::counter!("switchyard_dashboard_read_errors_total").increment(1);
                if let Some(n) = self.failures.failed(Instant::now()) {
                    tracing::warn!(
                        error = %e,
                        "reading the namespace failed ({n} reads in a row; the page shows the \
                         last good figures; logged again in a minute if it goes on)"
                    );
                }
                Some(e.to_string())
            }
        };
        serde_json::to_string(&Snapshot {
            // The time of the figures shown: after a failed read, the last good one's (0: none).
            at: self.last.at,
            namespace: &self.namespace,
            refresh_ms: u64::try_from(self.refresh.as_millis()).unwrap_or(u64::MAX),
            actions: self.actions,
            error,
            queues: &self.last.queues,
            workers: &self.last.workers,
            warnings: &self.last.warnings,
            schedules: &self.last.schedules,
            history: &self.history,
            minutes: &self.minutes.points,
        })
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode the snapshot: {e}\"}}"))
    }
}

/// The namespace as Prometheus series (served at `/metrics`; listed in `docs/operations.md`).
/// The state names are the page's headings.
fn export(stats: &Stats, view: &View, configs: &BTreeMap<String, QueueConfig>) {
    let unserved = health::unserved(stats);
    for q in &stats.queues {
        let Some(name) = q.queue.as_ref().map(|n| n.as_str().to_owned()) else {
            continue;
        };
        for state in TaskState::ALL {
            let heading = match state {
                TaskState::Dispatched => "inbox",
                TaskState::RetryScheduled => "retrying",
                other => other.as_str(),
            };
            metrics::gauge!("switchyard_queue_tasks", "queue" => name.clone(), "state" => heading)
                .set(q.get(state) as f64);
        }
        for kind in EventKind::ALL {
            metrics::counter!(
                "switchyard_queue_events_total",
                "queue" => name.clone(),
                "event" => kind.as_str(),
            )
            .absolute(q.totals.get(kind));
        }
        metrics::gauge!("switchyard_queue_unserved", "queue" => name.clone()).set(
            if unserved.iter().any(|(q, _)| *q == name) {
                1.0
            } else {
                0.0
            },
        );
        if let Some(bytes) = view
            .queues
            .iter()
            .find(|r| r.queue == name)
            .and_then(|r| r.memory_bytes)
        {
            metrics::gauge!("switchyard_queue_memory_bytes", "queue" => name.clone())
                .set(bytes as f64);
        }
        if let Some(tokens) = q.rate_tokens {
            metrics::gauge!("switchyard_queue_rate_tokens", "queue" => name.clone())
                .set(f64::from(tokens));
        }
        if let Some(g) = view
            .queues
            .iter()
            .find(|r| r.queue == name)
            .and_then(|r| r.groups.as_ref())
        {
            let waiting = g.groups.iter().filter(|g| g.ready > 0);
            let held = waiting.clone().filter(|g| !g.in_ring).count();
            metrics::gauge!("switchyard_queue_groups_waiting", "queue" => name.clone())
                .set(waiting.count() as f64);
            metrics::gauge!("switchyard_queue_groups_held", "queue" => name.clone())
                .set(held as f64);
            let closed = g.groups.iter().filter(|g| g.closed_until.is_some()).count();
            metrics::gauge!("switchyard_queue_groups_closed", "queue" => name.clone())
                .set(closed as f64);
            if let Some(bound) = g.max_waiting {
                let full = g
                    .groups
                    .iter()
                    .filter(|g| g.ready + g.scheduled >= u64::from(bound))
                    .count();
                metrics::gauge!("switchyard_queue_group_max_waiting", "queue" => name.clone())
                    .set(f64::from(bound));
                metrics::gauge!("switchyard_queue_groups_full", "queue" => name.clone())
                    .set(full as f64);
            }
        }
        let closed = q
            .opens_at
            .map_or(0.0, |t| t.saturating_sub(view.at) as f64 / 1_000.0);
        metrics::gauge!("switchyard_queue_closed_seconds", "queue" => name.clone()).set(closed);
        if let Some(c) = configs.get(&name) {
            metrics::gauge!(
                "switchyard_queue_info",
                "queue" => name.clone(),
                "policy" => c.policy.name(),
                "strategy" => c.strategy.name(),
            )
            .set(1.0);
            if let Some(bound) = c.max_waiting {
                metrics::gauge!("switchyard_queue_max_waiting", "queue" => name.clone())
                    .set(f64::from(bound));
            }
            if let Some(limit) = c.concurrency {
                metrics::gauge!("switchyard_queue_concurrency_limit", "queue" => name.clone())
                    .set(f64::from(limit));
            }
        }
    }
    for s in &view.schedules {
        let name = s.name.clone();
        metrics::counter!("switchyard_schedule_runs_total", "schedule" => name.clone())
            .absolute(s.runs);
        metrics::counter!("switchyard_schedule_skipped_total", "schedule" => name.clone())
            .absolute(s.skipped);
        metrics::gauge!("switchyard_schedule_paused", "schedule" => name.clone())
            .set(if s.paused { 1.0 } else { 0.0 });
        if let Some(ms) = s.next_in_ms {
            metrics::gauge!("switchyard_schedule_next_tick_seconds", "schedule" => name)
                .set(ms as f64 / 1_000.0);
        }
    }
    for w in &view.workers {
        metrics::gauge!("switchyard_registered_worker_heartbeat_late", "worker" => w.worker.clone())
            .set(if health::late(w).is_some() { 1.0 } else { 0.0 });
    }
    for w in &stats.workers {
        let id = w.id.as_str().to_owned();
        metrics::gauge!("switchyard_registered_worker_in_flight", "worker" => id.clone())
            .set(f64::from(w.inflight));
        metrics::gauge!("switchyard_registered_worker_capacity", "worker" => id.clone())
            .set(f64::from(w.capacity));
        metrics::gauge!("switchyard_registered_worker_weight", "worker" => id.clone())
            .set(f64::from(w.weight));
        metrics::counter!("switchyard_registered_worker_dispatched_total", "worker" => id.clone())
            .absolute(w.dispatched);
        metrics::counter!("switchyard_registered_worker_completed_total", "worker" => id)
            .absolute(w.completed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outage logs its first failed read, then one line a minute, and its end once.
    #[test]
    fn failed_reads_are_logged_once_a_minute() {
        let mut f = Failures::default();
        let start = Instant::now();
        assert_eq!(f.failed(start), Some(1));
        for i in 1..60 {
            assert_eq!(f.failed(start + Duration::from_secs(i)), None, "second {i}");
        }
        assert_eq!(f.failed(start + Duration::from_secs(60)), Some(61));
        assert_eq!(f.worked(), Some(61));
        assert_eq!(f.worked(), None);
        assert_eq!(f.failed(start + Duration::from_secs(61)), Some(1));
    }

    /// A queue row whose lifetime totals are `succeeded` and `failed`.
    fn row(succeeded: u64, failed: u64) -> QueueRow {
        let mut totals = EventCounts::default();
        totals.succeeded = succeeded;
        totals.failed = failed;
        QueueRow {
            totals,
            ..QueueRow::example("q")
        }
    }

    /// A point per whole minute, over the totals between the first reads of two minutes, at
    /// most an hour of them.
    #[test]
    fn minutes_are_rolled_up_from_the_totals() {
        let mut m = Minutes::default();
        let t0 = 1_800_000_000_000; // a whole minute
        m.add(t0 + 1_000, &[row(0, 0)]);
        m.add(t0 + 30_000, &[row(50, 1)]);
        assert!(m.points.is_empty(), "the first minute is not over");
        m.add(t0 + 61_000, &[row(120, 6)]);
        assert_eq!(m.points.len(), 1);
        assert_eq!(m.points[0].at, t0);
        assert_eq!(m.points[0].rates, [("q".to_owned(), 2.0, 0.1)]);
        // A gap of several minutes (an outage) is one point over the whole gap.
        m.add(t0 + 241_000, &[row(120, 6)]);
        assert_eq!(m.points.len(), 2);
        assert_eq!(m.points[1].at, t0 + 60_000);
        assert_eq!(m.points[1].rates, [("q".to_owned(), 0.0, 0.0)]);
        for i in 5..100 {
            m.add(t0 + i * 60_000, &[row(120, 6)]);
        }
        assert_eq!(m.points.len(), MINUTES);
    }
    /// The operations guide lists every family by its full name.
    #[test]
    fn every_family_is_in_the_operations_guide() {
        let guide = include_str!("../../../../docs/operations.md");
        for f in super::FAMILIES {
            assert!(
                guide.contains(&format!("`{}`", f.name)),
                "{} is not in docs/operations.md",
                f.name
            );
        }
    }
}
