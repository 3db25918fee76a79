//! What flow control costs: Redis CPU per task lifecycle of a bounded queue, of a queue with a
//! concurrency limit, of a rate-limited one, of an earliest-deadline-first queue that expires
//! late tasks (its tasks carrying deadlines) and of a queue shared between 10 groups (with a
//! per-group limit its workers never reach, then with a per-group rate limit never reached too,
//! and with a bound per group never reached), next to a plain queue, measured the same way in
//! the same run.

use std::time::Duration;

use switchyard::flow::groups::GroupShare;
use switchyard::flow::rate::{MAX_RATE, RateLimit};

use super::lifecycle::cpu_per_task;
use super::*;

/// The queues measured, by name (`--flow-queues`); the first is the plain queue the others are
/// compared with.
fn queues(cap: u32) -> [(&'static str, &'static str, QueueConfig); 8] {
    let plain = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin);
    // A bound never reached, a limit the worker's capacity never exceeds, and a rate no run
    // here reaches (every dispatch still logged and counted): what the checks cost when they
    // let everything through.
    let groups = GroupShare::default().with_concurrency(cap);
    [
        ("plain", "plain", plain),
        ("bounded", "bounded", plain.with_max_waiting(u32::MAX)),
        (
            "concurrency",
            "concurrency limit",
            plain.with_concurrency(cap),
        ),
        (
            "rate",
            "rate limit",
            plain.with_rate(MAX_RATE, Duration::from_secs(1)),
        ),
        (
            "edf",
            "edf, expiring",
            QueueConfig::new(Policy::EarliestDeadlineFirst, Strategy::RoundRobin)
                .with_expire_late(),
        ),
        ("groups", "10 groups", plain.with_groups(groups)),
        (
            "groups-rate",
            "10 groups, rate each",
            plain.with_groups(groups.with_rate(RateLimit::new(MAX_RATE, Duration::from_secs(1)))),
        ),
        (
            "groups-bounded",
            "10 groups, bound each",
            plain.with_groups(groups.with_max_waiting(u32::MAX)),
        ),
    ]
}

pub(super) async fn flow_control(probe: &mut Probe, args: &BenchArgs) -> Res<()> {
    let chosen = |name: &str| args.flow_queues.iter().any(|q| q == name);
    if let Some(unknown) = args
        .flow_queues
        .iter()
        .find(|q| !queues(1).iter().any(|(name, ..)| name == q))
    {
        return Err(format!(
            "--flow-queues: no queue `{unknown}` (plain, bounded, concurrency, rate, edf, groups, groups-rate, groups-bounded)"
        ));
    }
    println!("## Flow control: Redis CPU per task lifecycle\n");
    let mut head = "| batch |".to_owned();
    let mut rule = "| --- |".to_owned();
    for (i, (name, title, _)) in queues(1).iter().enumerate() {
        if chosen(name) {
            head.push_str(&format!(" {title} |"));
            rule.push_str(" --- |");
            if i > 0 && chosen("plain") {
                head.push_str(" × plain |");
                rule.push_str(" --- |");
            }
        }
    }
    println!("{head}\n{rule}");
    for &batch in &args.flow_batches {
        let batch = batch.max(1);
        let rounds = (args.tasks / batch).max(1);
        let cap = u32::try_from(batch).map_err(err)?;
        let configs: Vec<QueueConfig> = queues(cap)
            .into_iter()
            .filter(|(name, ..)| chosen(name))
            .map(|(.., config)| config)
            .collect();
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
        let plain = chosen("plain").then(|| costs[0]);
        let mut row = format!("| {batch} |");
        for (i, c) in costs.iter().enumerate() {
            row.push_str(&format!(" {c:.2} µs |"));
            match plain {
                Some(p) if i > 0 && p > 0.0 => row.push_str(&format!(" {:.2}× |", c / p)),
                Some(_) if i > 0 => row.push_str(" – |"),
                _ => {}
            }
        }
        println!("{row}");
    }
    println!(
        "\n(Each queue alone in a fresh namespace; one worker with as many slots as the batch. \
         The bound is never reached and no limit holds the queue back, so the figures are the \
         cost of the checks themselves; the EDF queue's tasks carry deadlines a minute ahead, \
         none reached; the shared queue's tasks take 10 group keys in turn, each group limited to the \
         batch size, which it never reaches; \"rate each\" also each limited to 100,000 dispatches a second, \
         every dispatch logged in its group's window; \"bound each\" also each bounded, never reached.)\n"
    );
    Ok(())
}
