//! `switchyard declare`: creates a queue with its policy, strategy and limits; and the queue
//! flags it shares with `worker --declare` and `reconfigure`.

use clap::Args;
use switchyard::flow::dedup::DedupMode;
use switchyard::flow::rate::RateLimit;
use switchyard::{EventLevel, Policy, QueueConfig, Strategy};

use crate::remote::{Remote, millis, runtime};

/// Flags of `switchyard declare`.
#[derive(Debug, Args)]
pub struct DeclareArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// The queue: 1-64 characters of letters, digits, `-`, `_`, `.` and `:`.
    pub queue: String,

    #[command(flatten)]
    pub flags: QueueFlags,
}

/// `text`, followed by the value a new queue gets when the flag is left out.
fn fresh(text: &str, default: impl std::fmt::Display) -> String {
    format!("{text} [new queues: {default}]")
}

/// A queue's configuration on the command line (`declare`, `worker --declare`, `reconfigure`).
/// A flag left out takes the value of a new queue on `declare` (shown in brackets in the help),
/// and keeps the queue's current value on `reconfigure`.
#[derive(Debug, Clone, Default, Args)]
pub struct QueueFlags {
    #[arg(long, short = 'p', help = fresh(
        "Order inside the queue: fcfs, priority, priority:STEP_MS (with aging), sjf, sjf:FACTOR (with aging), edf (earliest deadline first)",
        QueueConfig::default().policy.name(),
    ))]
    pub policy: Option<Policy>,

    #[arg(long, short = 's', help = fresh(
        "Choice of worker: round-robin, random, weighted, least-loaded, affinity, affinity:VNODES, pull",
        QueueConfig::default().strategy.name(),
    ))]
    pub strategy: Option<Strategy>,

    #[arg(long, help = fresh(
        "Attempts for tasks that do not set their own (then the task goes to the dead-letter set)",
        QueueConfig::default().max_attempts,
    ))]
    pub max_attempts: Option<u32>,

    #[arg(long, help = fresh(
        "Per-attempt timeout for tasks that do not set their own, in ms (1 to 4294967295)",
        QueueConfig::default().timeout_ms,
    ))]
    pub timeout_ms: Option<u64>,

    #[arg(long, help = fresh(
        "Delay after the first failure, in ms; it doubles with each attempt",
        QueueConfig::default().backoff.base_ms,
    ))]
    pub backoff_ms: Option<u32>,

    #[arg(long, help = fresh("Upper bound of the retry delay, in ms", QueueConfig::default().backoff.max_ms))]
    pub backoff_max_ms: Option<u32>,

    #[arg(long, help = fresh(
        "Up to this percentage of each retry delay is taken off at random (spreads retries)",
        QueueConfig::default().backoff.jitter_pct,
    ))]
    pub jitter_pct: Option<u8>,

    #[arg(long, help = fresh(
        "How long results and finished tasks are kept, in ms",
        QueueConfig::default().result_ttl_ms,
    ))]
    pub result_ttl_ms: Option<u64>,

    #[arg(long, help = fresh(
        "How long a dedup key is held after its task was submitted, in ms",
        QueueConfig::default().dedup_window_ms,
    ))]
    pub dedup_window_ms: Option<u64>,

    #[arg(long, value_name = "throttle|debounce", help = fresh(
        "What a submit whose dedup key is held does: throttle (answered by the task holding it, \
         which is not changed) or debounce (that task, if it has not started, takes the new \
         payload and run time, and the window starts again)",
        QueueConfig::default().dedup_mode.name(),
    ))]
    pub dedup_mode: Option<DedupMode>,

    #[arg(long, help = fresh("Events recorded: off, failures or all", QueueConfig::default().events.name()))]
    pub events: Option<EventLevel>,

    #[arg(long, value_name = "N|none", help = fresh(
        "Most tasks that may wait (ready, scheduled, retrying) for a submit to be accepted; a \
         submit past it is refused whole (queue full). `none`: unbounded",
        "none",
    ))]
    pub max_waiting: Option<Bound>,

    #[arg(long, value_name = "N|none", help = fresh(
        "Most tasks of the queue active (dispatched or running) at once, across all workers; at \
         the limit the queue waits until one ends. `none`: no limit",
        "none",
    ))]
    pub concurrency: Option<Bound>,

    #[arg(long, value_name = "N|all", help = fresh(
        "Most tasks that ended succeeded, cancelled or expired kept (records and results), the \
         oldest removed first by maintenance, beside --result-ttl-ms. `all`: kept until then",
        "all",
    ))]
    pub keep_finished: Option<Kept>,

    #[arg(long, value_name = "N|all", help = fresh(
        "Most dead tasks kept, the earliest deaths removed first by maintenance, beside the \
         dead-letter TTL. `all`: kept until then",
        "all",
    ))]
    pub keep_dead: Option<Kept>,

    #[arg(long, value_name = "N/PER|none", help = fresh(
        "At most N dispatches of the queue in any window of PER (ms, s, m or h: 100/1s, \
         5/200ms), across all workers; without a token the queue waits, its tasks keep their \
         places. `none`: no limit",
        "none",
    ))]
    pub rate: Option<Rate>,

    #[arg(long, value_name = "on|off", help = fresh(
        "With --policy edf: a task still waiting at its deadline ends expired instead of \
         running late (no attempt used)",
        "off",
    ))]
    pub expire_late: Option<Switch>,

    #[arg(long, value_name = "on|off", help = fresh(
        "Share the queue's dispatches fairly between the group keys of its tasks (`submit \
         --group`): groups take turns, each for its weight in dispatches (`switchyard groups \
         --weight`), each in the queue's order; a plain queue refuses group keys",
        "off",
    ))]
    pub fair_share: Option<Switch>,

    #[arg(long, value_name = "N|none", help = fresh(
        "Most tasks of one group active (dispatched or running) at once, across all workers \
         (turns --fair-share on). `none`: no limit per group",
        "none",
    ))]
    pub group_concurrency: Option<Bound>,

    #[arg(long, value_name = "N/PER|none", help = fresh(
        "At most N dispatches of one group in any window of PER (each group its own window; \
         turns --fair-share on); a group without a token waits, the others go on. `none`: no \
         limit per group",
        "none",
    ))]
    pub group_rate: Option<Rate>,

    #[arg(long, value_name = "N|none", help = fresh(
        "Most waiting tasks (ready, scheduled, retry-scheduled) of one group: a submit that \
         would take a group past it is refused whole with \"group ... is full\" (turns \
         --fair-share on). `none`: no bound per group",
        "none",
    ))]
    pub group_max_waiting: Option<Bound>,

    #[arg(long, help = fresh(
        "Seed of the queue's random choices (random strategy, retry jitter)",
        QueueConfig::default().seed,
    ))]
    pub seed: Option<u64>,
}

/// `--expire-late`: `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch(pub bool);

impl std::str::FromStr for Switch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on" => Ok(Switch(true)),
            "off" => Ok(Switch(false)),
            _ => Err(format!("`{s}`: expected on or off")),
        }
    }
}

/// `--max-waiting`, `--concurrency`: a bound of at least 1, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound(pub Option<u32>);

impl std::str::FromStr for Bound {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Bound(None));
        }
        match s.parse::<u32>() {
            Ok(0) => Err("0 would stop the queue: give at least 1, or none".into()),
            Ok(n) => Ok(Bound(Some(n))),
            Err(_) => Err(format!(
                "`{s}` is neither a count (1 to {}) nor none",
                u32::MAX
            )),
        }
    }
}

/// `--keep-finished` / `--keep-dead`: a count (0 keeps none), or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept(pub Option<u32>);

impl std::str::FromStr for Kept {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(Kept(None));
        }
        s.parse::<u32>()
            .map(|n| Kept(Some(n)))
            .map_err(|_| format!("`{s}` is neither a count (0 to {}) nor all", u32::MAX))
    }
}

/// `--rate`: `N/PER` (`100/1s`, `5/200ms`, `1000/1h`), or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub Option<RateLimit>);

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Rate(None));
        }
        let shape = || format!("`{s}` is not N/PER (like 100/1s or 5/200ms) nor none");
        let (n, per) = s.split_once('/').ok_or_else(shape)?;
        let max: u32 = n.trim().parse().map_err(|_| shape())?;
        let per = per.trim();
        let digits = per.find(|c: char| !c.is_ascii_digit()).unwrap_or(per.len());
        let (value, unit) = per.split_at(digits);
        let value: u64 = if value.is_empty() {
            1
        } else {
            value.parse().map_err(|_| shape())?
        };
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(shape()),
        };
        let limit = RateLimit {
            max,
            per_ms: value.saturating_mul(scale),
        };
        limit.validate().map_err(|e| e.to_string())?;
        Ok(Rate(Some(limit)))
    }
}

/// Replaces `slot` with the value given, if one was.
fn given<T: Copy>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

impl QueueFlags {
    /// The configuration of a new queue with these flags, checked.
    pub fn config(&self) -> Result<QueueConfig, String> {
        self.over(QueueConfig::default())
    }

    /// `base` with the flags given replacing its values, checked.
    pub fn over(&self, base: QueueConfig) -> Result<QueueConfig, String> {
        let mut c = base;
        given(&mut c.policy, self.policy);
        given(&mut c.strategy, self.strategy);
        given(&mut c.max_attempts, self.max_attempts);
        if let Some(ms) = self.timeout_ms {
            c = c.with_timeout(millis(ms));
        }
        given(&mut c.backoff.base_ms, self.backoff_ms);
        given(&mut c.backoff.max_ms, self.backoff_max_ms);
        given(&mut c.backoff.jitter_pct, self.jitter_pct);
        given(&mut c.result_ttl_ms, self.result_ttl_ms);
        given(&mut c.dedup_window_ms, self.dedup_window_ms);
        given(&mut c.dedup_mode, self.dedup_mode);
        given(&mut c.events, self.events);
        given(&mut c.seed, self.seed);
        if let Some(Bound(bound)) = self.max_waiting {
            c.max_waiting = bound;
        }
        if let Some(Bound(limit)) = self.concurrency {
            c.concurrency = limit;
        }
        if let Some(Rate(rate)) = self.rate {
            c.rate = rate;
        }
        if let Some(Switch(on)) = self.expire_late {
            c.expire_late = on;
        }
        if let Some(Kept(n)) = self.keep_finished {
            c.keep_finished = n;
        }
        if let Some(Kept(n)) = self.keep_dead {
            c.keep_dead = n;
        }
        let per_group = self.group_concurrency.is_some()
            || self.group_rate.is_some()
            || self.group_max_waiting.is_some();
        match self.fair_share {
            Some(Switch(false)) if per_group => {
                return Err(
                    "--group-concurrency, --group-rate and --group-max-waiting limit the groups \
                     of a shared queue: they cannot go with --fair-share off"
                        .into(),
                );
            }
            Some(Switch(false)) => c.groups = None,
            on if on.is_some() || per_group => {
                let mut share = c.groups.unwrap_or_default();
                if let Some(Bound(k)) = self.group_concurrency {
                    share.concurrency = k;
                }
                if let Some(Rate(rate)) = self.group_rate {
                    share.rate = rate;
                }
                if let Some(Bound(m)) = self.group_max_waiting {
                    share.max_waiting = m;
                }
                c.groups = Some(share);
            }
            _ => {}
        }
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// Whether no flag was given.
    pub fn is_empty(&self) -> bool {
        self.policy.is_none()
            && self.strategy.is_none()
            && self.max_attempts.is_none()
            && self.timeout_ms.is_none()
            && self.backoff_ms.is_none()
            && self.backoff_max_ms.is_none()
            && self.jitter_pct.is_none()
            && self.result_ttl_ms.is_none()
            && self.dedup_window_ms.is_none()
            && self.dedup_mode.is_none()
            && self.events.is_none()
            && self.seed.is_none()
            && self.max_waiting.is_none()
            && self.concurrency.is_none()
            && self.rate.is_none()
            && self.expire_late.is_none()
            && self.keep_finished.is_none()
            && self.keep_dead.is_none()
            && self.fair_share.is_none()
            && self.group_concurrency.is_none()
            && self.group_rate.is_none()
            && self.group_max_waiting.is_none()
    }
}

/// What the flags can set, by flag name, as shown (the lines of a configuration's diff).
pub fn settings(c: &QueueConfig) -> [(&'static str, String); 22] {
    let bound = |b: Option<u32>| b.map_or_else(|| "none".to_owned(), |n| n.to_string());
    let kept = |k: Option<u32>| k.map_or_else(|| "all".to_owned(), |n| n.to_string());
    [
        ("policy", c.policy.name()),
        ("strategy", c.strategy.name().to_owned()),
        ("max-attempts", c.max_attempts.to_string()),
        ("timeout-ms", c.timeout_ms.to_string()),
        ("backoff-ms", c.backoff.base_ms.to_string()),
        ("backoff-max-ms", c.backoff.max_ms.to_string()),
        ("jitter-pct", c.backoff.jitter_pct.to_string()),
        ("result-ttl-ms", c.result_ttl_ms.to_string()),
        ("dedup-window-ms", c.dedup_window_ms.to_string()),
        ("dedup-mode", c.dedup_mode.name().to_owned()),
        ("events", c.events.name().to_owned()),
        ("seed", c.seed.to_string()),
        ("max-waiting", bound(c.max_waiting)),
        ("concurrency", bound(c.concurrency)),
        (
            "rate",
            c.rate.map_or_else(|| "none".to_owned(), |r| r.to_string()),
        ),
        (
            "expire-late",
            if c.expire_late { "on" } else { "off" }.to_owned(),
        ),
        ("keep-finished", kept(c.keep_finished)),
        ("keep-dead", kept(c.keep_dead)),
        (
            "fair-share",
            if c.groups.is_some() { "on" } else { "off" }.to_owned(),
        ),
        (
            "group-concurrency",
            bound(c.groups.and_then(|g| g.concurrency)),
        ),
        (
            "group-rate",
            c.groups
                .and_then(|g| g.rate)
                .map_or_else(|| "none".to_owned(), |r| r.to_string()),
        ),
        (
            "group-max-waiting",
            bound(c.groups.and_then(|g| g.max_waiting)),
        ),
    ]
}

/// Declares the queue; declaring it again with the same settings is a no-op.
pub fn run(args: &DeclareArgs) -> Result<(), String> {
    let config = args.flags.config()?;
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        client
            .declare(&args.queue, config)
            .await
            .map_err(|e| e.to_string())?;
        let mut bound = config
            .max_waiting
            .map_or_else(String::new, |n| format!(", at most {n} waiting"));
        if let Some(n) = config.concurrency {
            bound.push_str(&format!(", at most {n} active"));
        }
        if let Some(r) = config.rate {
            bound.push_str(&format!(", at most {r}"));
        }
        if config.expire_late {
            bound.push_str(", late tasks expire");
        }
        if let Some(g) = config.groups {
            bound.push_str(", fair share between groups");
            if let Some(k) = g.concurrency {
                bound.push_str(&format!(", at most {k} active per group"));
            }
            if let Some(r) = g.rate {
                bound.push_str(&format!(", at most {r} per group"));
            }
            if let Some(m) = g.max_waiting {
                bound.push_str(&format!(", at most {m} waiting per group"));
            }
        }
        println!(
            "queue {}: policy {}, strategy {}, {} attempts{bound}",
            args.queue,
            config.policy.name(),
            config.strategy.name(),
            config.max_attempts
        );
        Ok(())
    })
}
