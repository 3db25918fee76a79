//! The one reader of the namespace: a `stats` call per refresh, turned into the snapshot that
//! every page gets (JSON, shared through a `watch` channel), with the last minutes of rates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use switchyard::{Client, EventCounts, EventKind, QueueName, Stats, TaskState};
use tokio::sync::watch;

/// How many refreshes of rates the charts show (five minutes at the default refresh).
const HISTORY: usize = 300;
/// Queue configurations (policy, strategy) are read again every this many refreshes.
const CONFIG_EVERY: u64 = 30;

/// What the page shows; the field names are the page's headings.
#[derive(Debug, Serialize)]
struct Snapshot<'a> {
    /// When it was read, ms since the epoch (this machine's clock).
    at: u64,
    namespace: &'a str,
    refresh_ms: u64,
    actions: bool,
    /// The last read's error (Redis unreachable, …); the figures are then the last good ones.
    error: Option<String>,
    queues: Vec<QueueView>,
    workers: Vec<WorkerView>,
    /// Oldest first: per refresh, per queue (in `queues` order) succeeded/s and failed/s.
    history: &'a VecDeque<Point>,
}

#[derive(Debug, Clone, Serialize)]
struct QueueView {
    name: String,
    policy: String,
    strategy: String,
    scheduled: u64,
    ready: u64,
    inbox: u64,
    running: u64,
    retrying: u64,
    succeeded: u64,
    dead: u64,
    cancelled: u64,
    totals: EventCounts,
    /// Rates over the last refresh.
    succeeded_per_s: f64,
    failed_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
struct WorkerView {
    id: String,
    queues: Vec<String>,
    capacity: u32,
    in_use: u32,
    weight: u32,
    state: &'static str,
    /// Until its heartbeat expires (it is reaped then).
    expires_in_ms: u64,
    dispatched: u64,
    completed: u64,
    /// Its weight over the weights of all live workers, and its dispatches over all theirs.
    weight_share: f64,
    dispatch_share: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Point {
    at: u64,
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
        client,
        namespace,
        refresh,
        actions,
        configs: BTreeMap::new(),
        previous: None,
        history: VecDeque::new(),
        last: None,
        reads: 0,
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
    client: Client,
    namespace: String,
    refresh: Duration,
    actions: bool,
    /// Per queue: (policy, strategy) names.
    configs: BTreeMap<String, (String, String)>,
    /// The previous good read and when it was made, for rates.
    previous: Option<(u64, BTreeMap<String, EventCounts>)>,
    history: VecDeque<Point>,
    /// The last good snapshot's views, shown again (with the error) when a read fails.
    last: Option<(Vec<QueueView>, Vec<WorkerView>)>,
    reads: u64,
}

impl Sampler {
    async fn read(&mut self) -> String {
        let at = now_ms();
        let (error, queues, workers) = match self.client.stats().await {
            Ok(stats) => {
                self.refresh_configs(&stats).await;
                export(&stats, &self.configs);
                let (queues, workers) = self.views(at, &stats);
                (None, queues, workers)
            }
            Err(e) => {
                metrics::counter!("switchyard_dashboard_read_errors_total").increment(1);
                tracing::warn!(error = %e, "reading the namespace failed");
                let (queues, workers) = self.last.take().unwrap_or_default();
                (Some(e.to_string()), queues, workers)
            }
        };
        self.reads += 1;
        let json = serde_json::to_string(&Snapshot {
            at,
            namespace: &self.namespace,
            refresh_ms: u64::try_from(self.refresh.as_millis()).unwrap_or(u64::MAX),
            actions: self.actions,
            error,
            queues: queues.clone(),
            workers: workers.clone(),
            history: &self.history,
        })
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode the snapshot: {e}\"}}"));
        self.last = Some((queues, workers));
        json
    }

    /// Reads the configuration of queues not seen yet, and of all every `CONFIG_EVERY` reads.
    async fn refresh_configs(&mut self, stats: &Stats) {
        let again = self.reads.is_multiple_of(CONFIG_EVERY);
        for q in stats.queues.iter().filter_map(|q| q.queue.as_ref()) {
            if !again && self.configs.contains_key(q.as_str()) {
                continue;
            }
            if let Ok(Some(c)) = self.client.backend().queue_config(q).await {
                self.configs.insert(
                    q.as_str().to_owned(),
                    (c.policy.name().to_owned(), c.strategy.name().to_owned()),
                );
            }
        }
    }

    fn views(&mut self, at: u64, stats: &Stats) -> (Vec<QueueView>, Vec<WorkerView>) {
        let totals: BTreeMap<String, EventCounts> = stats
            .queues
            .iter()
            .filter_map(|q| q.queue.as_ref().map(|n| (n.as_str().to_owned(), q.totals)))
            .collect();
        let rate = |name: &str, pick: fn(&EventCounts) -> u64| -> f64 {
            let Some((then, before)) = &self.previous else {
                return 0.0;
            };
            let (Some(now), Some(was)) = (totals.get(name), before.get(name)) else {
                return 0.0;
            };
            let seconds = at.saturating_sub(*then) as f64 / 1000.0;
            if seconds <= 0.0 {
                return 0.0;
            }
            // Two decimals are plenty for a chart and keep the snapshot short.
            (pick(now).saturating_sub(pick(was)) as f64 / seconds * 100.0).round() / 100.0
        };
        let queues: Vec<QueueView> = stats
            .queues
            .iter()
            .filter_map(|q| {
                let name = q.queue.as_ref().map(QueueName::as_str)?;
                let (policy, strategy) = self.configs.get(name).cloned().unwrap_or_default();
                Some(QueueView {
                    name: name.to_owned(),
                    policy,
                    strategy,
                    scheduled: q.scheduled,
                    ready: q.ready,
                    inbox: q.dispatched,
                    running: q.running,
                    retrying: q.retry_scheduled,
                    succeeded: q.succeeded,
                    dead: q.dead,
                    cancelled: q.cancelled,
                    totals: q.totals,
                    succeeded_per_s: rate(name, |c| c.succeeded),
                    failed_per_s: rate(name, |c| c.failed),
                })
            })
            .collect();
        let weights: u64 = stats.workers.iter().map(|w| u64::from(w.weight)).sum();
        let dispatches: u64 = stats.workers.iter().map(|w| w.dispatched).sum();
        let share = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 / whole as f64
            }
        };
        let workers = stats
            .workers
            .iter()
            .map(|w| WorkerView {
                id: w.id.as_str().to_owned(),
                queues: w.queues.iter().map(|q| q.as_str().to_owned()).collect(),
                capacity: w.capacity,
                in_use: w.inflight,
                weight: w.weight,
                state: if w.draining { "draining" } else { "active" },
                expires_in_ms: w.expires_at.saturating_sub(at),
                dispatched: w.dispatched,
                completed: w.completed,
                weight_share: share(u64::from(w.weight), weights),
                dispatch_share: share(w.dispatched, dispatches),
            })
            .collect();
        if self.previous.is_some() {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(Point {
                at,
                rates: queues
                    .iter()
                    .map(|q| (q.name.clone(), q.succeeded_per_s, q.failed_per_s))
                    .collect(),
            });
        }
        self.previous = Some((at, totals));
        (queues, workers)
    }
}

/// The namespace as Prometheus series (served at `/metrics`; listed in `docs/operations.md`).
/// The state names are the page's headings.
fn export(stats: &Stats, configs: &BTreeMap<String, (String, String)>) {
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
                "kind" => kind.as_str(),
            )
            .absolute(q.totals.get(kind));
        }
        if let Some((policy, strategy)) = configs.get(&name) {
            metrics::gauge!(
                "switchyard_queue_info",
                "queue" => name.clone(),
                "policy" => policy.clone(),
                "strategy" => strategy.clone(),
            )
            .set(1.0);
        }
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
