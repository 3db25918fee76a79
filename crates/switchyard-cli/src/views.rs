//! What `status` and `dashboard` show of a namespace, built from one `stats` read (plus one
//! peek per queue for the age of the task next in line): rows whose field names are the
//! table headings and the JSON names alike, and rates between two reads.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::health;
use switchyard::flow::groups::GroupInfo;
use switchyard::schedule::{Every, ScheduleInfo};
use switchyard::{Client, Error, EventCounts, QueueConfig, QueueName, Stats};

/// One queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueueRow {
    pub queue: String,
    /// Nothing is dispatched from it (`switchyard pause`).
    pub paused: bool,
    pub policy: String,
    pub strategy: String,
    /// The bound on its waiting tasks (`declare --max-waiting`); none: unbounded.
    pub max_waiting: Option<u32>,
    /// The most tasks active at once (`declare --concurrency`); none: no limit.
    pub concurrency: Option<u32>,
    /// Its rate limit (`declare --rate`), as `100 per 1s`; none: no limit.
    pub rate: Option<String>,
    /// With a rate limit: the dispatches its window still allows now.
    pub rate_tokens: Option<u32>,
    /// Closed by its rate limit or a handler's hold: how long until it opens again.
    pub opens_in_ms: Option<u64>,
    /// About how many bytes the backend holds for it (its structures and its tasks' records),
    /// read at most every 10 s.
    pub memory_bytes: Option<u64>,
    pub scheduled: u64,
    pub ready: u64,
    pub inbox: u64,
    pub running: u64,
    pub retrying: u64,
    pub succeeded: u64,
    pub dead: u64,
    pub cancelled: u64,
    /// Still waiting at their deadline, ended without running (kept like cancelled ones).
    pub expired: u64,
    /// Flow tasks waiting for their children (`switchyard::tree`).
    pub waiting_children: u64,
    /// Late tasks expire (`--expire-late on`, earliest-deadline-first queues).
    pub expire_late: bool,
    /// Lifetime event counts (see `EventCounts`).
    pub totals: EventCounts,
    /// How long ago the task next in line was submitted (none while nothing is ready).
    pub head_age_ms: Option<u64>,
    /// Rates since the previous read (none on the first).
    pub succeeded_per_s: Option<f64>,
    pub failed_per_s: Option<f64>,
    /// Shared between groups (`declare --fair-share`): the most tasks of one group active at
    /// once (none: no limit per group), and its groups (`switchyard groups`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<GroupsRow>,
}

/// The groups of a queue shared between groups.
#[derive(Debug, Clone, Serialize)]
pub struct GroupsRow {
    /// The per-group concurrency limit; none: no limit.
    pub concurrency: Option<u32>,
    /// The per-group rate limit; none: no limit.
    pub rate: Option<switchyard::flow::rate::RateLimit>,
    /// The bound per group; none: unbounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_waiting: Option<u32>,
    /// Each group with waiting or active tasks or a set weight, by key.
    pub groups: Vec<GroupInfo>,
}

/// One live worker.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    pub worker: String,
    pub queues: Vec<String>,
    pub capacity: u32,
    pub in_use: u32,
    pub weight: u32,
    pub state: &'static str,
    /// Until its heartbeat expires (it is reaped then).
    pub expires_in_ms: u64,
    /// Its heartbeat TTL: it heartbeats every third of it.
    pub heartbeat_ttl_ms: u32,
    /// Since it registered.
    pub dispatched: u64,
    pub completed: u64,
    /// Its weight over all live workers' weights, its dispatches over all theirs.
    pub weight_share: f64,
    pub dispatch_share: f64,
}

/// A namespace as read at `at` (ms since the epoch, this machine's clock).
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub at: u64,
    pub queues: Vec<QueueRow>,
    pub workers: Vec<WorkerRow>,
    /// What an operator should know first (`health::warnings`), one sentence each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The namespace's schedules, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleRow>,
}

/// One schedule as pages show it (`switchyard::schedule`).
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRow {
    pub name: String,
    /// `cron `<expr>` <zone>` or `every <n> ms`.
    pub every: String,
    pub queue: String,
    pub kind: String,
    /// Its next tick, ms since the epoch (`None`: ended).
    pub next: Option<u64>,
    /// Until its next tick, on this machine's clock (negative: overdue).
    pub next_in_ms: Option<i64>,
    pub paused: bool,
    /// Ticks claimed (run or skipped by the overlap policy), and of them skipped.
    pub runs: u64,
    pub skipped: u64,
    pub last_tick: Option<u64>,
}

impl ScheduleRow {
    fn of(info: &ScheduleInfo, at: u64) -> ScheduleRow {
        let s = &info.state;
        ScheduleRow {
            name: info.spec.name.to_string(),
            every: every_text(info),
            queue: info.spec.task.queue.to_string(),
            kind: info.spec.task.kind.to_string(),
            next: s.next,
            next_in_ms: s
                .next
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX) - i64::try_from(at).unwrap_or(0)),
            paused: s.paused,
            runs: s.runs,
            skipped: s.skipped,
            last_tick: s.last_tick,
        }
    }
}

/// How often a schedule ticks, in words: `cron `0 2 * * *` Europe/Berlin`, `every 500 ms`.
pub fn every_text(info: &ScheduleInfo) -> String {
    match &info.spec.recurrence.every {
        Every::Cron { expr, tz } => format!("cron `{expr}` {tz}"),
        Every::Interval { ms } => format!("every {ms} ms"),
        other => format!("{other:?}"),
    }
}

/// Reads views of one namespace; keeps what rates and configurations need between reads.
pub struct Reader {
    client: Client,
    /// Per queue: its configuration, read again every `CONFIG_EVERY` reads.
    configs: BTreeMap<String, QueueConfig>,
    previous: Option<(u64, BTreeMap<String, EventCounts>)>,
    reads: u64,
    /// About how many bytes each queue holds (`Inspect::memory`), and when it was read: at
    /// most every `MEMORY_EVERY_MS` (it asks Redis for `MEMORY USAGE` of every key).
    memory: BTreeMap<String, u64>,
    memory_at: Option<u64>,
    /// The groups of each queue shared between groups, read with the stats.
    groups: BTreeMap<String, Vec<GroupInfo>>,
}

const CONFIG_EVERY: u64 = 30;

/// How often the memory per queue is read again, in ms.
const MEMORY_EVERY_MS: u64 = 10_000;

impl Reader {
    pub fn new(client: Client) -> Reader {
        Reader {
            client,
            configs: BTreeMap::new(),
            previous: None,
            reads: 0,
            memory: BTreeMap::new(),
            memory_at: None,
            groups: BTreeMap::new(),
        }
    }

    /// Reads the namespace now; also returns the raw `stats`.
    pub async fn read(&mut self) -> Result<(View, Stats), Error> {
        let stats = self.client.stats().await?;
        let at = now_ms();
        let again = self.reads.is_multiple_of(CONFIG_EVERY);
        self.reads += 1;
        let mut heads = BTreeMap::new();
        for q in stats.queues.iter().filter_map(|q| q.queue.as_ref()) {
            if (again || !self.configs.contains_key(q.as_str()))
                && let Some(c) = self.client.backend().queue_config(q).await?
            {
                self.configs.insert(q.as_str().to_owned(), c);
            }
            if let Some(head) = self.client.backend().peek_ready(q, 1).await?.first() {
                heads.insert(q.as_str().to_owned(), at.saturating_sub(head.millis()));
            }
            if self
                .configs
                .get(q.as_str())
                .is_some_and(|c| c.groups.is_some())
            {
                let groups = self.client.backend().groups(q).await?;
                self.groups.insert(q.as_str().to_owned(), groups);
            } else {
                self.groups.remove(q.as_str());
            }
        }
        self.read_memory(at).await;
        let mut view = self.rows(at, &stats, &heads);
        view.schedules = self
            .client
            .backend()
            .schedules()
            .await?
            .iter()
            .map(|s| ScheduleRow::of(s, at))
            .collect();
        Ok((view, stats))
    }

    /// Reads the memory per queue if `MEMORY_EVERY_MS` have passed since it was last read: a
    /// failure (a user whose ACL denies `MEMORY`, say) leaves the last figures and is logged at
    /// debug.
    async fn read_memory(&mut self, at: u64) {
        if self
            .memory_at
            .is_some_and(|then| at.saturating_sub(then) < MEMORY_EVERY_MS)
        {
            return;
        }
        self.memory_at = Some(at);
        match self.client.backend().memory().await {
            Ok(queues) => {
                self.memory = queues
                    .into_iter()
                    .map(|(q, bytes)| (q.as_str().to_owned(), bytes))
                    .collect();
            }
            Err(e) => tracing::debug!("no memory per queue this minute: {e}"),
        }
    }

    fn rows(&mut self, at: u64, stats: &Stats, heads: &BTreeMap<String, u64>) -> View {
        let totals: BTreeMap<String, EventCounts> = stats
            .queues
            .iter()
            .filter_map(|q| q.queue.as_ref().map(|n| (n.as_str().to_owned(), q.totals)))
            .collect();
        let previous = self.previous.take();
        let rate = |name: &str, pick: fn(&EventCounts) -> u64| -> Option<f64> {
            let (then, before) = previous.as_ref()?;
            let seconds = at.saturating_sub(*then) as f64 / 1000.0;
            if seconds <= 0.0 {
                return None;
            }
            let (now, was) = (
                totals.get(name)?,
                before.get(name).copied().unwrap_or_default(),
            );
            // Two decimals are plenty for a table or a chart.
            Some((pick(now).saturating_sub(pick(&was)) as f64 / seconds * 100.0).round() / 100.0)
        };
        let queues: Vec<QueueRow> = stats
            .queues
            .iter()
            .filter_map(|q| {
                let name = q.queue.as_ref().map(QueueName::as_str)?;
                let config = self.configs.get(name);
                Some(QueueRow {
                    queue: name.to_owned(),
                    paused: q.paused,
                    policy: config.map(|c| c.policy.name()).unwrap_or_default(),
                    strategy: config
                        .map(|c| c.strategy.name().to_owned())
                        .unwrap_or_default(),
                    max_waiting: config.and_then(|c| c.max_waiting),
                    concurrency: config.and_then(|c| c.concurrency),
                    rate: config.and_then(|c| c.rate).map(|r| r.to_string()),
                    rate_tokens: q.rate_tokens,
                    opens_in_ms: q.opens_at.map(|t| t.saturating_sub(at)),
                    memory_bytes: self.memory.get(name).copied(),
                    scheduled: q.scheduled,
                    ready: q.ready,
                    inbox: q.dispatched,
                    running: q.running,
                    retrying: q.retry_scheduled,
                    succeeded: q.succeeded,
                    dead: q.dead,
                    cancelled: q.cancelled,
                    expired: q.expired,
                    waiting_children: q.waiting_children,
                    expire_late: config.is_some_and(|c| c.expire_late),
                    totals: q.totals,
                    head_age_ms: heads.get(name).copied(),
                    succeeded_per_s: rate(name, |c| c.succeeded),
                    failed_per_s: rate(name, |c| c.failed),
                    groups: config.and_then(|c| c.groups).map(|g| GroupsRow {
                        concurrency: g.concurrency,
                        rate: g.rate,
                        max_waiting: g.max_waiting,
                        groups: self.groups.get(name).cloned().unwrap_or_default(),
                    }),
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
        let workers: Vec<WorkerRow> = stats
            .workers
            .iter()
            .map(|w| WorkerRow {
                worker: w.id.as_str().to_owned(),
                queues: w.queues.iter().map(|q| q.as_str().to_owned()).collect(),
                capacity: w.capacity,
                in_use: w.inflight,
                weight: w.weight,
                state: if w.draining { "draining" } else { "active" },
                expires_in_ms: w.expires_at.saturating_sub(at),
                heartbeat_ttl_ms: w.heartbeat_ttl_ms,
                dispatched: w.dispatched,
                completed: w.completed,
                weight_share: share(u64::from(w.weight), weights),
                dispatch_share: share(w.dispatched, dispatches),
            })
            .collect();
        let died: BTreeMap<String, u64> = previous
            .as_ref()
            .map(|(_, before)| {
                totals
                    .iter()
                    .map(|(name, now)| {
                        let was = before.get(name).copied().unwrap_or_default();
                        (name.clone(), now.dead.saturating_sub(was.dead))
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.previous = Some((at, totals));
        let warnings = health::warnings(stats, &queues, &workers, &died);
        View {
            at,
            queues,
            workers,
            warnings,
            schedules: Vec::new(),
        }
    }

    /// Per queue: its configuration, as last read.
    pub fn configs(&self) -> &BTreeMap<String, QueueConfig> {
        &self.configs
    }
}

impl QueueRow {
    /// Its waiting tasks: ready, scheduled and retrying (what its bound limits).
    pub fn waiting(&self) -> u64 {
        self.ready + self.scheduled + self.retrying
    }

    /// Its active tasks: in a worker's inbox or running (what its concurrency limit limits).
    pub fn active(&self) -> u64 {
        self.inbox + self.running
    }

    /// An empty FCFS queue named `name`, for tests to change what they look at.
    #[cfg(test)]
    pub fn example(name: &str) -> QueueRow {
        QueueRow {
            queue: name.into(),
            paused: false,
            policy: "fcfs".into(),
            strategy: "round-robin".into(),
            max_waiting: None,
            concurrency: None,
            rate: None,
            rate_tokens: None,
            opens_in_ms: None,
            memory_bytes: None,
            scheduled: 0,
            ready: 0,
            inbox: 0,
            running: 0,
            retrying: 0,
            succeeded: 0,
            dead: 0,
            cancelled: 0,
            waiting_children: 0,
            expired: 0,
            expire_late: false,
            totals: EventCounts::default(),
            head_age_ms: None,
            succeeded_per_s: None,
            failed_per_s: None,
            groups: None,
        }
    }
}

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `at` (ms since the epoch) as `2026-12-03 14:13:28.123` (UTC).
pub fn utc(at: u64) -> String {
    let (secs, ms) = (at / 1000, at % 1000);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{ms:03}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The first bytes of a payload or result, readable: text (escaped) or hex.
pub fn preview(bytes: &[u8]) -> String {
    const SHOWN: usize = 80;
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let mut shown = String::new();
            for c in text.chars().take(SHOWN) {
                if c.is_control() {
                    shown.extend(c.escape_default());
                } else {
                    shown.push(c);
                }
            }
            if text.chars().count() > SHOWN {
                shown.push('…');
            }
            shown
        }
        Err(_) => {
            let hex: String = bytes
                .iter()
                .take(SHOWN / 2)
                .map(|b| format!("{b:02x}"))
                .collect();
            if bytes.len() > SHOWN / 2 {
                format!("0x{hex}…")
            } else {
                format!("0x{hex}")
            }
        }
    }
}

/// One task as `task --json` and the dashboard's task page show it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub info: switchyard::TaskInfo,
    pub payload_bytes: usize,
    pub payload_preview: String,
    /// Set once it ended.
    pub outcome: Option<OutcomeView>,
    /// Its events still in the log (which kinds are kept is the queue's event level).
    pub events: Vec<switchyard::Event>,
    /// Whether the whole log was searched (false: it was longer than could be read).
    pub events_complete: bool,
    /// A flow task's children (`crate::tree`).
    pub children: Vec<crate::tree::ChildView>,
}

/// How a task ended.
#[derive(Debug, Serialize)]
pub struct OutcomeView {
    pub state: &'static str,
    pub result_bytes: Option<usize>,
    pub result_preview: Option<String>,
    pub error: Option<String>,
}

/// Reads one task, its outcome and its events; `None` if there is no such task.
pub async fn task_view(client: &Client, id: switchyard::TaskId) -> Result<Option<TaskView>, Error> {
    let backend = client.backend();
    let Some(info) = backend.get_task(id).await? else {
        return Ok(None);
    };
    let outcome = backend.get_outcome(id).await?.map(|o| match o {
        switchyard::TaskOutcome::Succeeded(v) => OutcomeView {
            state: "succeeded",
            result_bytes: Some(v.len()),
            result_preview: Some(preview(&v)),
            error: None,
        },
        switchyard::TaskOutcome::Dead(e) => OutcomeView {
            state: "dead",
            result_bytes: None,
            result_preview: None,
            error: Some(e),
        },
        switchyard::TaskOutcome::Cancelled => OutcomeView {
            state: "cancelled",
            result_bytes: None,
            result_preview: None,
            error: None,
        },
        switchyard::TaskOutcome::Expired => OutcomeView {
            state: "expired",
            result_bytes: None,
            result_preview: None,
            error: None,
        },
        other => OutcomeView {
            state: "other",
            result_bytes: None,
            result_preview: None,
            error: Some(format!("{other:?}")),
        },
    });
    let (events, events_complete) = events_of(client, id).await?;
    let children = crate::tree::children_of(client, id).await?;
    Ok(Some(TaskView {
        children,
        payload_bytes: info.payload.len(),
        payload_preview: preview(&info.payload),
        info,
        outcome,
        events,
        events_complete,
    }))
}

/// The event log is read in pages of this many.
pub const EVENT_PAGE: usize = 1000;

/// The task's events in the capped log: at most the whole log (`EVENT_LOG_CAP` entries).
async fn events_of(
    client: &Client,
    id: switchyard::TaskId,
) -> Result<(Vec<switchyard::Event>, bool), Error> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..=(switchyard::backend::EVENT_LOG_CAP / EVENT_PAGE) {
        let page = client.events(after.as_deref(), EVENT_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok((found, true));
        };
        after = Some(last.id.clone());
        let full = page.len() == EVENT_PAGE;
        found.extend(page.into_iter().filter(|e| e.task == id));
        if !full {
            return Ok((found, true));
        }
    }
    Ok((found, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(utc(1_796_305_582_150), "2026-12-03 13:46:22.150");
    }

    #[test]
    fn previews_escape_text_and_show_bytes_as_hex() {
        assert_eq!(preview(b"{\"ms\":200}"), "{\"ms\":200}");
        assert_eq!(preview(b"a\nb"), "a\\nb");
        assert_eq!(preview(&[0xff, 0x00]), "0xff00");
    }
}
