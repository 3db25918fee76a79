//! What flow control costs: Redis CPU per task lifecycle of a bounded queue, of a queue with a
//! concurrency limit, of a rate-limited one, of an earliest-deadline-first queue that expires
//! late tasks (its tasks carrying deadlines) and of a queue shared between 10 groups (with a
//! per-group limit its workers never reach, and then with a per-group rate limit never reached
//! too), next to a plain queue, measured the same way in the same run.

use std::time::Duration;

use switchyard::flow::groups::GroupShare;
use switchyard::flow::rate::{MAX_RATE, RateLimit};

use super::lifecycle::cpu_per_task;
use super::*;

/// The batch sizes measured: one task per call, and a batch.
const FLOW_BATCHES: [usize; 2] = [1, 64];

pub(super) async fn flow_control(probe: &mut Probe, args: &BenchArgs) -> Res<()> {
    println!("## Flow control: Redis CPU per task lifecycle\n");
    println!(
        "| batch | plain | bounded | × plain | concurrency limit | × plain | rate limit | × plain | edf, expiring | × plain | 10 groups | × plain | 10 groups, rate each | × plain |"
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for batch in FLOW_BATCHES {
        let rounds = (args.tasks / batch).max(1);
        let cap = u32::try_from(batch).map_err(err)?;
        let plain = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin);
        // A bound never reached, a limit the worker's capacity never exceeds, and a rate no
        // run here reaches (every dispatch still logged and counted): what the checks cost when
        // they let everything through.
        let configs = [
            plain,
            plain.with_max_waiting(u32::MAX),
            plain.with_concurrency(cap),
            plain.with_rate(MAX_RATE, Duration::from_secs(1)),
            QueueConfig::new(Policy::EarliestDeadlineFirst, Strategy::RoundRobin)
                .with_expire_late(),
            plain.with_groups(GroupShare::default().with_concurrency(cap)),
            plain.with_groups(
                GroupShare::default()
                    .with_concurrency(cap)
                    .with_rate(RateLimit::new(MAX_RATE, Duration::from_secs(1))),
            ),
        ];
        let mut costs = Vec::with_capacity(configs.len());
        for (i, config) in configs.into_iter().enumerate() {
            let s = space(args, 4).await?;
            let q = s.queue_with(&format!("flow{i}"), config).await?;
            let w = s.worker("w", q.as_str(), cap).await?;
            let mut tasks = Tasks::new(2, args.payload);
            if config.expire_late {
                // Deadlines a minute ahead: ordered by them, none reached.
                tasks = tasks.with_deadlines(60_000);
            }
            if config.groups.is_some() {
                tasks = tasks.with_groups(10);
            }
            costs.push(cpu_per_task(probe, &s, &q, &w, batch, rounds, tasks).await?);
            s.cleanup(probe).await?;
        }
        let mut row = format!("| {batch} | {:.2} µs |", costs[0]);
        for c in &costs[1..] {
            let times = if costs[0] > 0.0 {
                format!("{:.2}×", c / costs[0])
            } else {
                "–".to_owned()
            };
            row.push_str(&format!(" {c:.2} µs | {times} |"));
        }
        println!("{row}");
    }
    println!(
        "\n(Each queue alone in a fresh namespace; one worker with as many slots as the batch. \
         The bound is never reached and no limit holds the queue back, so the figures are the \
         cost of the checks themselves; the EDF queue's tasks carry deadlines a minute ahead, \
         none reached; the shared queue's tasks take 10 group keys in turn, each group limited to the \
         batch size, which it never reaches; the last also each limited to 100,000 dispatches a second, \
         every dispatch logged in its group's window.)\n"
    );
    Ok(())
}
