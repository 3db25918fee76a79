//! `switchyard groups`: the groups of a queue shared between groups (declared with
//! `--fair-share`) — each group's weight, ready and active tasks, tokens, own limits, whether
//! it is in the ring or closed — and setting their weights and own limits (the rule:
//! `switchyard_core::flow::groups`).

use std::collections::BTreeMap;

use clap::Args;
use switchyard::QueueName;
use switchyard::flow::groups::{GroupInfo, GroupLimits};

use crate::declare::{Bound, Rate};
use crate::remote::{Remote, runtime};

/// Flags of `switchyard groups`.
#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// The queue (declared with --fair-share).
    pub queue: String,

    /// Set a group's weight first: KEY=N, N dispatches per turn (1..=1000; 1 is the default).
    /// May be given several times.
    #[arg(long, value_name = "KEY=N")]
    pub weight: Vec<Weight>,

    /// Give a group its own concurrency limit first, in place of the queue's per-group one:
    /// KEY=N, or KEY=none for the queue's again. May be given several times.
    #[arg(long, value_name = "KEY=N|none")]
    pub concurrency: Vec<Own<Bound>>,

    /// Give a group its own rate limit first, in place of the queue's per-group one:
    /// KEY=N/PER (acme=20/1s), or KEY=none for the queue's again. May be given several times.
    #[arg(long, value_name = "KEY=N/PER|none")]
    pub rate: Vec<Own<Rate>>,

    /// Print the groups as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--weight KEY=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weight(pub String, pub u32);

impl std::str::FromStr for Weight {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, n) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("`{s}`: expected KEY=N, e.g. acme=3"))?;
        let n = n
            .parse::<u32>()
            .map_err(|_| format!("`{s}`: the weight `{n}` is not a whole number"))?;
        Ok(Weight(key.to_owned(), n))
    }
}

/// `--concurrency KEY=N|none`, `--rate KEY=N/PER|none`: a group's own limit.
#[derive(Debug, Clone)]
pub struct Own<T>(pub String, pub T);

impl<T: std::str::FromStr<Err = String>> std::str::FromStr for Own<T> {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected KEY=VALUE, e.g. acme=4"))?;
        Ok(Own(key.to_owned(), value.parse()?))
    }
}

/// Sets the weights and own limits given, then shows the groups.
pub fn run(args: &GroupsArgs) -> Result<(), String> {
    let queue = QueueName::new(&args.queue).map_err(|e| e.to_string())?;
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let backend = client.backend();
        for Weight(key, n) in &args.weight {
            backend
                .set_group_weight(&queue, key, *n)
                .await
                .map_err(|e| e.to_string())?;
            if !args.json {
                println!("group {key:?} of {queue}: weight {n}");
            }
        }
        // Own limits: each group's as they are, changed by the flags given for it.
        let mut own: BTreeMap<&str, GroupLimits> = BTreeMap::new();
        if !args.concurrency.is_empty() || !args.rate.is_empty() {
            let now = backend.groups(&queue).await.map_err(|e| e.to_string())?;
            let current = |key: &str| {
                now.iter()
                    .find(|g| g.key == key)
                    .map_or_else(GroupLimits::default, |g| g.limits)
            };
            for Own(key, Bound(k)) in &args.concurrency {
                own.entry(key).or_insert_with(|| current(key)).concurrency = *k;
            }
            for Own(key, Rate(r)) in &args.rate {
                own.entry(key).or_insert_with(|| current(key)).rate = *r;
            }
        }
        for (key, limits) in own {
            backend
                .set_group_limits(&queue, key, limits)
                .await
                .map_err(|e| e.to_string())?;
            if !args.json {
                println!("group {key:?} of {queue}: {}", shown_limits(&limits));
            }
        }
        let groups = backend.groups(&queue).await.map_err(|e| e.to_string())?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&groups).map_err(|e| e.to_string())?
            );
        } else {
            print!("{}", table(&groups));
        }
        Ok(())
    })
}

/// The groups as a table: key, weight, ready, scheduled, active, tokens of its rate limit,
/// whether it waits for its turn (or why not).
fn table(groups: &[GroupInfo]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if groups.is_empty() {
        return "no groups yet (none has waiting or active tasks or a weight)\n".to_owned();
    }
    let width = groups
        .iter()
        .map(|g| shown(&g.key).len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>8}  {:>9}  {:>6}  {:>6}  {:<24}  TURN\n",
        "GROUP", "WEIGHT", "READY", "SCHEDULED", "ACTIVE", "TOKENS", "OWN LIMITS"
    );
    for g in groups {
        let turn = match g.closed_until {
            Some(at) => format!(
                "closed for {} ms (rate limit or hold)",
                at.saturating_sub(now)
            ),
            None if g.in_ring => "waiting".to_owned(),
            None if g.ready > 0 => "held (at its limit)".to_owned(),
            None => "-".to_owned(),
        };
        let tokens = g.tokens.map_or_else(|| "-".to_owned(), |t| t.to_string());
        out.push_str(&format!(
            "{:<width$}  {:>6}  {:>8}  {:>9}  {:>6}  {tokens:>6}  {:<24}  {turn}\n",
            shown(&g.key),
            g.weight,
            g.ready,
            g.scheduled,
            g.active,
            shown_limits(&g.limits)
        ));
    }
    out
}

/// A group's own limits as shown: `4 active, 20 per 1s`, or `the queue's`.
fn shown_limits(limits: &GroupLimits) -> String {
    let parts: Vec<String> = limits
        .concurrency
        .map(|k| format!("{k} active"))
        .into_iter()
        .chain(limits.rate.map(|r| r.to_string()))
        .collect();
    if parts.is_empty() {
        "the queue's".to_owned()
    } else {
        parts.join(", ")
    }
}

/// A group key as shown: `(none)` for the tasks submitted without one.
fn shown(key: &str) -> String {
    if key.is_empty() {
        "(none)".to_owned()
    } else {
        key.to_owned()
    }
}
