//! `switchyard declare`: creates a queue with its policy, strategy and limits.

use clap::Args;
use switchyard::{Backoff, EventLevel, Policy, QueueConfig, Strategy};

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

/// A queue's configuration on the command line (`declare`, and `worker --declare`).
#[derive(Debug, Clone, Args)]
pub struct QueueFlags {
    /// Order inside the queue: fcfs, priority, priority:STEP_MS (with aging), sjf, sjf:FACTOR (with aging).
    #[arg(long, short = 'p', default_value = "fcfs")]
    pub policy: Policy,

    /// Choice of worker: round-robin, random, weighted, least-loaded, affinity, affinity:VNODES, pull.
    #[arg(long, short = 's', default_value = "round-robin")]
    pub strategy: Strategy,

    /// Attempts for tasks that do not set their own (then the task goes to the dead-letter set).
    #[arg(long, default_value_t = QueueConfig::default().max_attempts)]
    pub max_attempts: u32,

    /// Per-attempt timeout for tasks that do not set their own, in ms (1 to 4294967295).
    #[arg(long, default_value_t = u64::from(QueueConfig::default().timeout_ms))]
    pub timeout_ms: u64,

    /// Delay after the first failure, in ms; it doubles with each attempt.
    #[arg(long, default_value_t = Backoff::default().base_ms)]
    pub backoff_ms: u32,

    /// Upper bound of the retry delay, in ms.
    #[arg(long, default_value_t = Backoff::default().max_ms)]
    pub backoff_max_ms: u32,

    /// Up to this percentage of each retry delay is taken off at random (spreads retries).
    #[arg(long, default_value_t = Backoff::default().jitter_pct)]
    pub jitter_pct: u8,

    /// How long results and finished tasks are kept, in ms.
    #[arg(long, default_value_t = QueueConfig::default().result_ttl_ms)]
    pub result_ttl_ms: u64,

    /// How long a dedup key blocks duplicates after its task was submitted, in ms.
    #[arg(long, default_value_t = QueueConfig::default().dedup_window_ms)]
    pub dedup_window_ms: u64,

    /// Events recorded: off, failures or all.
    #[arg(long, default_value = "failures")]
    pub events: EventLevel,

    /// Seed of the queue's random choices (random strategy, retry jitter).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl QueueFlags {
    /// The configuration the flags describe, checked.
    pub fn config(&self) -> Result<QueueConfig, String> {
        let config = QueueConfig::new(self.policy, self.strategy)
            .with_max_attempts(self.max_attempts)
            .with_timeout(millis(self.timeout_ms))
            .with_backoff(Backoff {
                base_ms: self.backoff_ms,
                max_ms: self.backoff_max_ms,
                jitter_pct: self.jitter_pct,
            })
            .with_result_ttl(millis(self.result_ttl_ms))
            .with_dedup_window(millis(self.dedup_window_ms))
            .with_events(self.events)
            .with_seed(self.seed);
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
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
        println!(
            "queue {}: policy {}, strategy {}, {} attempts",
            args.queue,
            config.policy.name(),
            config.strategy.name(),
            config.max_attempts
        );
        Ok(())
    })
}
