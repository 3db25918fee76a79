//! `switchyard groups`: the groups of a queue shared between groups (declared with
//! `--fair-share`) — each group's weight, ready and active tasks, whether it is in the ring —
//! and setting their weights (the rule: `switchyard_core::flow::groups`).

use clap::Args;
use switchyard::QueueName;
use switchyard::flow::groups::GroupInfo;

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

/// Sets the weights given, then shows the groups.
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

/// The groups as a table: key, weight, ready, active, tokens of its rate limit, whether it
/// waits for its turn (or why not).
fn table(groups: &[GroupInfo]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if groups.is_empty() {
        return "no groups yet (none has ready or active tasks or a weight)\n".to_owned();
    }
    let width = groups
        .iter()
        .map(|g| shown(&g.key).len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!(
        "{:<width$}  {:>6}  {:>8}  {:>6}  {:>6}  TURN\n",
        "GROUP", "WEIGHT", "READY", "ACTIVE", "TOKENS"
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
            "{:<width$}  {:>6}  {:>8}  {:>6}  {tokens:>6}  {turn}\n",
            shown(&g.key),
            g.weight,
            g.ready,
            g.active
        ));
    }
    out
}

/// A group key as shown: `(none)` for the tasks submitted without one.
fn shown(key: &str) -> String {
    if key.is_empty() {
        "(none)".to_owned()
    } else {
        key.to_owned()
    }
}
