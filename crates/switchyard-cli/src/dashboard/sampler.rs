//! The one reader of the namespace: a `stats` call per refresh, turned into the snapshot that
//! every page gets (JSON, shared through a `watch` channel), with the last minutes of rates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard::{Client, EventCounts};
use tokio::sync::watch;

use crate::views::{QueueRow, Reader, ScheduleRow, View, WorkerRow};

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
                super::export::export(&stats, &view, self.reader.configs());
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
}
