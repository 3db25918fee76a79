//! Answers of several partitions made into one: batches split and put back in order, stats
//! summed, event logs interleaved under one position.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join_all;
use switchyard_core::{
    Error, Event, HandBack, QueueStats, Result, Stats, SubmitOutcome, TaskSpec, WorkerStats,
};

use super::Partitioned;
use super::route::route;

/// Splits a batch by partition, submits the parts at once, and answers in the batch's order.
/// Queues are checked first (on partition 0; every partition holds the same declarations),
/// so an unknown queue submits nothing. If a part fails, the error is `BatchIncomplete` with
/// every task the parts stored, each at its position in the batch (submitting the same specs
/// again is the recovery, as for any batch).
pub(super) async fn submit_batch(
    n: &Partitioned,
    specs: Vec<TaskSpec>,
) -> Result<Vec<SubmitOutcome>> {
    let queues: BTreeSet<_> = specs.iter().map(|s| s.queue().clone()).collect();
    for q in queues {
        if n.parts[0].queue_config(&q).await?.is_none() {
            return Err(Error::UnknownQueue(q));
        }
    }
    let total = specs.len();
    let mut groups: Vec<(Vec<usize>, Vec<TaskSpec>)> =
        vec![(Vec::new(), Vec::new()); n.parts.len()];
    for (i, spec) in specs.into_iter().enumerate() {
        let (p, spec) = route(spec, n.count());
        let group = &mut groups[usize::from(p)];
        group.0.push(i);
        group.1.push(spec);
    }
    let calls = groups
        .into_iter()
        .enumerate()
        .filter(|(_, (idx, _))| !idx.is_empty())
        .map(|(p, (idx, specs))| async move { (idx, n.parts[p].submit_batch(specs).await) });
    let mut slots: Vec<Option<SubmitOutcome>> = vec![None; total];
    let mut failure = None;
    for (idx, result) in join_all(calls).await {
        // The stored tasks of the part, by position in the part.
        let accepted: Vec<(usize, SubmitOutcome)> = match result {
            Ok(outcomes) => outcomes.into_iter().enumerate().collect(),
            Err(Error::BatchIncomplete {
                accepted, source, ..
            }) => {
                failure.get_or_insert(*source);
                accepted
            }
            Err(e) => {
                failure.get_or_insert(e);
                Vec::new()
            }
        };
        for (in_part, outcome) in accepted {
            if let Some(&i) = idx.get(in_part) {
                slots[i] = Some(outcome);
            }
        }
    }
    match failure {
        None => Ok(slots.into_iter().flatten().collect()),
        Some(source) => Err(Error::BatchIncomplete {
            total,
            accepted: slots
                .into_iter()
                .enumerate()
                .filter_map(|(i, o)| Some((i, o?)))
                .collect(),
            source: Box::new(source),
        }),
    }
}

/// The tasks every partition handed back. A partition that is down, or that no longer knows
/// the worker (reaped there), is left out (its registration expires there); another error, or
/// none answering, is the answer.
pub(super) fn hand_backs(all: Vec<(u16, Result<HandBack>)>) -> Result<HandBack> {
    let mut out = HandBack::default();
    let mut answered = false;
    let mut failure = None;
    for (p, h) in all {
        match h {
            Ok(h) => {
                answered = true;
                out.returned.extend(h.returned);
                out.assignments.extend(h.assignments);
            }
            Err(e @ Error::UnknownWorker(_)) => {
                failure.get_or_insert(e);
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    partition = p,
                    "cannot reach a partition to leave it ({e}): the registration there expires by itself"
                );
                failure.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match failure {
        Some(e) if !answered => Err(e),
        _ => Ok(out),
    }
}

/// Counts summed per queue; a worker registered in several partitions shown once, with its
/// capacity and load summed.
pub(super) fn stats(all: Vec<Stats>) -> Stats {
    let mut queues: BTreeMap<String, QueueStats> = BTreeMap::new();
    let mut workers: BTreeMap<String, WorkerStats> = BTreeMap::new();
    for s in all {
        for q in s.queues {
            let name = q.queue.as_ref().map(|n| n.to_string()).unwrap_or_default();
            let sum = queues.entry(name).or_insert_with(|| {
                let mut sum = QueueStats::default();
                sum.queue = q.queue.clone();
                sum
            });
            sum.merge(&q);
        }
        for w in s.workers {
            match workers.get_mut(w.id.as_str()) {
                Some(seen) => {
                    seen.capacity += w.capacity;
                    seen.inflight += w.inflight;
                    seen.dispatched += w.dispatched;
                    seen.completed += w.completed;
                    seen.draining &= w.draining;
                    seen.expires_at = seen.expires_at.min(w.expires_at);
                }
                None => {
                    workers.insert(w.id.to_string(), w);
                }
            }
        }
    }
    Stats::new(
        queues.into_values().collect(),
        workers.into_values().collect(),
    )
}

/// Events of every partition after `after`, interleaved by time (each partition's own order
/// kept). A position is every partition's position, comma-separated (empty for "from the
/// start"): each event returned carries the position just after it.
pub(super) async fn events(
    n: &Partitioned,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Event>> {
    let mut cursors: Vec<String> = match after {
        None => vec![String::new(); n.parts.len()],
        Some(a) => a.split(',').map(str::to_owned).collect(),
    };
    if cursors.len() != n.parts.len() {
        return Err(Error::invalid(
            "event position",
            format!(
                "`{}` names {} partitions; this namespace has {}",
                after.unwrap_or(""),
                cursors.len(),
                n.parts.len()
            ),
        ));
    }
    let reads = n.parts.iter().zip(&cursors).map(|(b, c)| {
        let c = (!c.is_empty()).then_some(c.as_str());
        b.events(c, limit)
    });
    let mut logs: Vec<std::collections::VecDeque<Event>> = Vec::new();
    for r in join_all(reads).await {
        logs.push(r?.into());
    }
    let mut out = Vec::new();
    while out.len() < limit {
        let next = logs
            .iter()
            .enumerate()
            .filter_map(|(p, log)| log.front().map(|e| (e.at, p)))
            .min();
        let Some((_, p)) = next else { break };
        let Some(mut event) = logs[p].pop_front() else {
            break;
        };
        cursors[p] = std::mem::take(&mut event.id);
        event.id = cursors.join(",");
        out.push(event);
    }
    Ok(out)
}
