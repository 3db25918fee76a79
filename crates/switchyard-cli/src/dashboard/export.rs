//! What the dashboard exports at `/metrics`: its metric families (beside the library's) and
//! the series it records from each read of the namespace (the sampler's, `sampler.rs`).

use std::collections::BTreeMap;

use switchyard::metrics::{Kind, MetricFamily};
use switchyard::{EventKind, QueueConfig, Stats, TaskState};

use crate::health;
use crate::views::View;

/// The families the dashboard records at `/metrics`, beside the library's
/// (`switchyard::metrics::FAMILIES`); `docs/operations.md` lists them.
pub const FAMILIES: &[MetricFamily] = &[
    MetricFamily {
        name: "switchyard_queue_tasks",
        kind: Kind::Gauge,
        labels: &["queue", "state"],
        help: "Tasks of a queue by state (succeeded, cancelled and expired: those still kept).",
    },
    MetricFamily {
        name: "switchyard_queue_events_total",
        kind: Kind::Counter,
        labels: &["queue", "event"],
        help: "Lifetime counts of a queue's events, whatever its event level.",
    },
    MetricFamily {
        name: "switchyard_queue_info",
        kind: Kind::Gauge,
        labels: &["queue", "policy", "strategy"],
        help: "1 for each queue, with its policy and strategy.",
    },
    MetricFamily {
        name: "switchyard_queue_max_waiting",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "The bound on a bounded queue's waiting tasks (ready, scheduled, retrying); \
               absent for an unbounded queue.",
    },
    MetricFamily {
        name: "switchyard_queue_concurrency_limit",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "The most tasks of a queue active (inbox or running) at once; absent without a \
               limit.",
    },
    MetricFamily {
        name: "switchyard_queue_memory_bytes",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "About how many bytes the backend holds for a queue (its keys and its tasks' \
               records), read every 10 s.",
    },
    MetricFamily {
        name: "switchyard_queue_rate_tokens",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "The dispatches a rate-limited queue's window still allows now; absent without a \
               limit.",
    },
    MetricFamily {
        name: "switchyard_queue_groups_waiting",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "A queue shared between groups: its groups with ready tasks (one series per \
               queue, not per group: tenants are unbounded; `switchyard groups` lists them).",
    },
    MetricFamily {
        name: "switchyard_queue_groups_held",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "A queue shared between groups: its groups with ready tasks held at the per-group \
               concurrency limit or closed by their rate limit or a hold.",
    },
    MetricFamily {
        name: "switchyard_queue_groups_closed",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "A queue shared between groups: its groups closed by their rate limit or a \
               handler's hold (taken up by maintenance when it ends).",
    },
    MetricFamily {
        name: "switchyard_queue_group_max_waiting",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "A queue bounded per group: the bound on each group's waiting tasks; absent \
               without one.",
    },
    MetricFamily {
        name: "switchyard_queue_groups_full",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "A queue bounded per group: its groups at their bound, whose submits are \
               refused.",
    },
    MetricFamily {
        name: "switchyard_queue_closed_seconds",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "How long until a queue closed by its rate limit or a handler's hold opens again; \
               0 while it is open.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_in_flight",
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "Tasks dispatched to or running on a live registration.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_capacity",
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "Slots of a live registration.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_weight",
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "Weight of a live registration.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_dispatched_total",
        kind: Kind::Counter,
        labels: &["worker"],
        help: "Tasks dispatched to a registration since it registered.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_completed_total",
        kind: Kind::Counter,
        labels: &["worker"],
        help: "Tasks a registration completed since it registered.",
    },
    MetricFamily {
        name: "switchyard_queue_unserved",
        kind: Kind::Gauge,
        labels: &["queue"],
        help: "1 while a queue has ready tasks, is not paused, and no live worker serves it.",
    },
    MetricFamily {
        name: "switchyard_registered_worker_heartbeat_late",
        kind: Kind::Gauge,
        labels: &["worker"],
        help: "1 while a live registration's last heartbeat is more than two heartbeat \
               intervals old (it is reaped when its TTL runs out).",
    },
    MetricFamily {
        name: "switchyard_schedule_runs_total",
        kind: Kind::Counter,
        labels: &["schedule"],
        help: "Ticks a schedule claimed (each created its task, or was skipped by the overlap \
               policy).",
    },
    MetricFamily {
        name: "switchyard_schedule_skipped_total",
        kind: Kind::Counter,
        labels: &["schedule"],
        help: "Ticks a schedule's overlap policy skipped (the last tick's task had not finished).",
    },
    MetricFamily {
        name: "switchyard_schedule_next_tick_seconds",
        kind: Kind::Gauge,
        labels: &["schedule"],
        help: "Until a schedule's next tick; negative while it is overdue (no ticker claims it: \
               no worker or `schedule run` is up, or its queue is missing or full). Absent once \
               it has ended.",
    },
    MetricFamily {
        name: "switchyard_schedule_paused",
        kind: Kind::Gauge,
        labels: &["schedule"],
        help: "1 while a schedule is paused.",
    },
    MetricFamily {
        name: "switchyard_dashboard_read_errors_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Failed reads of the namespace by the dashboard.",
    },
];

/// The namespace as Prometheus series (served at `/metrics`; listed in `docs/operations.md`).
/// The state names are the page's headings.
pub(super) fn export(stats: &Stats, view: &View, configs: &BTreeMap<String, QueueConfig>) {
    let unserved = health::unserved(stats);
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
                "event" => kind.as_str(),
            )
            .absolute(q.totals.get(kind));
        }
        metrics::gauge!("switchyard_queue_unserved", "queue" => name.clone()).set(
            if unserved.iter().any(|(q, _)| *q == name) {
                1.0
            } else {
                0.0
            },
        );
        if let Some(bytes) = view
            .queues
            .iter()
            .find(|r| r.queue == name)
            .and_then(|r| r.memory_bytes)
        {
            metrics::gauge!("switchyard_queue_memory_bytes", "queue" => name.clone())
                .set(bytes as f64);
        }
        if let Some(tokens) = q.rate_tokens {
            metrics::gauge!("switchyard_queue_rate_tokens", "queue" => name.clone())
                .set(f64::from(tokens));
        }
        if let Some(g) = view
            .queues
            .iter()
            .find(|r| r.queue == name)
            .and_then(|r| r.groups.as_ref())
        {
            let waiting = g.groups.iter().filter(|g| g.ready > 0);
            let held = waiting.clone().filter(|g| !g.in_ring).count();
            metrics::gauge!("switchyard_queue_groups_waiting", "queue" => name.clone())
                .set(waiting.count() as f64);
            metrics::gauge!("switchyard_queue_groups_held", "queue" => name.clone())
                .set(held as f64);
            let closed = g.groups.iter().filter(|g| g.closed_until.is_some()).count();
            metrics::gauge!("switchyard_queue_groups_closed", "queue" => name.clone())
                .set(closed as f64);
            if let Some(bound) = g.max_waiting {
                let full = g
                    .groups
                    .iter()
                    .filter(|g| g.ready + g.scheduled >= u64::from(bound))
                    .count();
                metrics::gauge!("switchyard_queue_group_max_waiting", "queue" => name.clone())
                    .set(f64::from(bound));
                metrics::gauge!("switchyard_queue_groups_full", "queue" => name.clone())
                    .set(full as f64);
            }
        }
        let closed = q
            .opens_at
            .map_or(0.0, |t| t.saturating_sub(view.at) as f64 / 1_000.0);
        metrics::gauge!("switchyard_queue_closed_seconds", "queue" => name.clone()).set(closed);
        if let Some(c) = configs.get(&name) {
            metrics::gauge!(
                "switchyard_queue_info",
                "queue" => name.clone(),
                "policy" => c.policy.name(),
                "strategy" => c.strategy.name(),
            )
            .set(1.0);
            if let Some(bound) = c.max_waiting {
                metrics::gauge!("switchyard_queue_max_waiting", "queue" => name.clone())
                    .set(f64::from(bound));
            }
            if let Some(limit) = c.concurrency {
                metrics::gauge!("switchyard_queue_concurrency_limit", "queue" => name.clone())
                    .set(f64::from(limit));
            }
        }
    }
    for s in &view.schedules {
        let name = s.name.clone();
        metrics::counter!("switchyard_schedule_runs_total", "schedule" => name.clone())
            .absolute(s.runs);
        metrics::counter!("switchyard_schedule_skipped_total", "schedule" => name.clone())
            .absolute(s.skipped);
        metrics::gauge!("switchyard_schedule_paused", "schedule" => name.clone())
            .set(if s.paused { 1.0 } else { 0.0 });
        if let Some(ms) = s.next_in_ms {
            metrics::gauge!("switchyard_schedule_next_tick_seconds", "schedule" => name)
                .set(ms as f64 / 1_000.0);
        }
    }
    for w in &view.workers {
        metrics::gauge!("switchyard_registered_worker_heartbeat_late", "worker" => w.worker.clone())
            .set(if health::late(w).is_some() { 1.0 } else { 0.0 });
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

#[cfg(test)]
mod tests {
    /// The operations guide lists every family by its full name.
    #[test]
    fn every_family_is_in_the_operations_guide() {
        let guide = include_str!("../../../../docs/operations.md");
        for f in super::FAMILIES {
            assert!(
                guide.contains(&format!("`{}`", f.name)),
                "{} is not in docs/operations.md",
                f.name
            );
        }
    }
}
