//! What an operator should know first: the warnings `status` and the dashboard show above the
//! figures, one sentence each, read from one `stats` read (and, for what changed, the read
//! before it). The dashboard's gauges `switchyard_queue_unserved` and
//! `switchyard_registered_worker_heartbeat_late` use [`unserved`] and [`late`].

use std::collections::BTreeMap;

use switchyard::Stats;

use crate::views::{QueueRow, WorkerRow};

/// Every warning, in this order: the backend's own (an unreachable partition, say), queues
/// that nobody serves, full queues, full groups, tasks that died since the last read, late
/// heartbeats.
/// `died`: per queue, tasks dead-lettered since the previous read (empty on the first).
pub fn warnings(
    stats: &Stats,
    queues: &[QueueRow],
    workers: &[WorkerRow],
    died: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut out = stats.warnings.clone();
    out.extend(unserved(stats).into_iter().map(|(queue, ready)| {
        format!(
            "queue `{queue}` has {ready} ready {} and no live worker serves it \
             (start one: switchyard worker --queue {queue})",
            tasks(ready)
        )
    }));
    out.extend(queues.iter().filter_map(full));
    out.extend(queues.iter().filter_map(full_groups));
    out.extend(queues.iter().filter_map(|q| {
        let n = died.get(&q.queue).copied().filter(|n| *n > 0)?;
        Some(format!(
            "queue `{}`: {n} {} died since the last read ({} in its dead-letter set; see \
             switchyard dead {})",
            q.queue,
            tasks(n),
            q.dead,
            q.queue
        ))
    }));
    out.extend(workers.iter().filter_map(late));
    out
}

fn tasks(n: u64) -> &'static str {
    if n == 1 { "task" } else { "tasks" }
}

/// The queues that have ready tasks, are not paused, and that no live worker (not draining)
/// serves: each with its ready count. Nothing will run there until a worker comes.
pub fn unserved(stats: &Stats) -> Vec<(String, u64)> {
    stats
        .queues
        .iter()
        .filter(|q| q.ready > 0 && !q.paused)
        .filter_map(|q| {
            let name = q.queue.as_ref()?;
            let served = stats
                .workers
                .iter()
                .any(|w| !w.draining && w.queues.contains(name));
            (!served).then(|| (name.as_str().to_owned(), q.ready))
        })
        .collect()
}

/// A bounded queue at its bound: submits to it are refused.
fn full(q: &QueueRow) -> Option<String> {
    let bound = q.max_waiting?;
    (q.waiting() >= u64::from(bound)).then(|| {
        format!(
            "queue `{}` is full ({} of {bound} waiting): submits to it are refused until \
             workers take some (or raise the bound: switchyard reconfigure {} --max-waiting N)",
            q.queue,
            q.waiting(),
            q.queue
        )
    })
}

/// A queue bounded per group with groups at their bound: those groups' submits are refused.
fn full_groups(q: &QueueRow) -> Option<String> {
    let g = q.groups.as_ref()?;
    let bound = u64::from(g.max_waiting?);
    let full: Vec<&str> = g
        .groups
        .iter()
        .filter(|g| g.ready + g.scheduled >= bound)
        .map(|g| g.key.as_str())
        .collect();
    if full.is_empty() {
        return None;
    }
    let mut named: Vec<String> = full.iter().take(3).map(|k| format!("{k:?}")).collect();
    if full.len() > 3 {
        named.push(format!("{} more", full.len() - 3));
    }
    Some(format!(
        "queue `{}`: {} {} at the bound of {bound} waiting per group ({}): their submits are \
         refused until workers take some (or raise the bound: switchyard reconfigure {} \
         --group-max-waiting N)",
        q.queue,
        full.len(),
        if full.len() == 1 {
            "group is"
        } else {
            "groups are"
        },
        named.join(", "),
        q.queue
    ))
}

/// A worker whose last heartbeat is more than two of its intervals old (a worker heartbeats
/// every third of its TTL): it is stalled, cut off, or gone, and is declared dead when its TTL
/// runs out.
pub fn late(w: &WorkerRow) -> Option<String> {
    let ttl = u64::from(w.heartbeat_ttl_ms);
    let silent = ttl.saturating_sub(w.expires_in_ms);
    (ttl > 0 && w.expires_in_ms < ttl / 3).then(|| {
        format!(
            "worker `{}` is late with its heartbeat: none for {:.1} s (one is due every {:.1} s); \
             it is declared dead and its tasks handed back in {:.1} s unless one arrives",
            w.worker,
            silent as f64 / 1000.0,
            ttl as f64 / 3000.0,
            w.expires_in_ms as f64 / 1000.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str, dead: u64) -> QueueRow {
        QueueRow {
            dead,
            ..QueueRow::example(name)
        }
    }

    fn worker(expires_in_ms: u64) -> WorkerRow {
        WorkerRow {
            worker: "w1".into(),
            queues: vec!["q".into()],
            capacity: 4,
            in_use: 0,
            weight: 1,
            state: "active",
            expires_in_ms,
            heartbeat_ttl_ms: 15_000,
            dispatched: 0,
            completed: 0,
            weight_share: 1.0,
            dispatch_share: 1.0,
        }
    }

    #[test]
    fn deaths_since_the_last_read_are_named_with_the_dead_letter_set() {
        let queues = [queue("q", 12), queue("calm", 3)];
        let died = BTreeMap::from([("q".to_owned(), 3), ("calm".to_owned(), 0)]);
        let said = warnings(&Stats::default(), &queues, &[], &died);
        assert_eq!(
            said,
            [
                "queue `q`: 3 tasks died since the last read (12 in its dead-letter set; see \
              switchyard dead q)"
            ]
        );
        // The first read has nothing to compare with.
        assert!(warnings(&Stats::default(), &queues, &[], &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_heartbeat_two_intervals_old_is_late() {
        // Heartbeats every 5 s under a 15 s TTL: 9 s of silence is fine, 11 s is late.
        assert!(late(&worker(6_000)).is_none());
        let said = late(&worker(4_000)).unwrap();
        assert_eq!(
            said,
            "worker `w1` is late with its heartbeat: none for 11.0 s (one is due every 5.0 s); \
             it is declared dead and its tasks handed back in 4.0 s unless one arrives"
        );
    }
}
