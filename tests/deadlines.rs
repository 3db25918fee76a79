//! Earliest-deadline-first and late tasks that expire (`switchyard_core::flow::deadline`), on
//! the memory reference and on a real Redis, each driven by the same manual clock.
//!
//! * A textbook non-preemptive EDF example (one worker, jobs arriving over time, two with the
//!   same deadline): the start order is exact, the tie first-come-first-served, the task
//!   without a deadline last.
//! * The same jobs on a queue that expires late tasks: the two whose deadline comes while they
//!   wait end `expired` at their deadline (maintenance runs each second), never start, use no
//!   attempt, are evented and counted; the others start in EDF order.
//! * Each place of the rule: a submit past its deadline expires at once (rule 1), a scheduled
//!   task that comes due after its deadline expires when promoted (rule 1), the head expires on
//!   time through maintenance's due timer (rule 3: `until_due` names the deadline), and a free
//!   slot never takes a late head (rule 2).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::prelude::*;
use switchyard_core::{
    Clock, EventKind, EventLevel, ManualClock, Millis, Policy, QueueConfig, QueueName, Strategy,
    TaskId, TaskOutcome, TaskSpec, TaskState,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const START: Millis = 1_700_000_000_000;
const SECOND: u64 = 1_000;

/// A job of the textbook example: name, arrival (s), run time (s), deadline (s, absolute).
type Job = (&'static str, u64, u64, Option<u64>);

/// Non-preemptive EDF on one processor: J1 alone at 0; at 3, J2 (deadline 4) before J3 and J4
/// (6, 6); at 5 the late arrival J5 (5) before them; then J3 and J4 in arrival order; J6,
/// without a deadline, last although it arrived first.
const JOBS: [Job; 6] = [
    ("J1", 0, 3, Some(10)),
    ("J6", 0, 1, None),
    ("J2", 1, 2, Some(4)),
    ("J3", 2, 1, Some(6)),
    ("J4", 2, 2, Some(6)),
    ("J5", 4, 1, Some(5)),
];

fn edf(expire: bool) -> QueueConfig {
    let config = QueueConfig::new(Policy::EarliestDeadlineFirst, Strategy::Pull)
        .with_events(EventLevel::All);
    if expire {
        config.with_expire_late()
    } else {
        config
    }
}

/// What happened to each job: its start time (s) or its end without starting.
struct Run {
    started: Vec<(&'static str, u64)>,
    ids: BTreeMap<&'static str, TaskId>,
}

/// Runs the jobs second by second on one worker of one slot: maintenance, the running job's
/// completion, the arrivals, then the worker takes the next task if it is free.
async fn run_jobs(b: &dyn Backend, clock: &ManualClock, config: QueueConfig) -> Run {
    let q = QueueName::new("jobs").unwrap();
    b.declare_queue(&q, config).await.unwrap();
    b.register_worker(test_worker("cpu", ["jobs"]).capacity(1))
        .await
        .unwrap();
    let cpu = me("cpu");
    let mut run = Run {
        started: Vec::new(),
        ids: BTreeMap::new(),
    };
    let mut busy: Option<(switchyard_core::Lease, u64)> = None;
    for t in 0..20 {
        clock.set(START + t * SECOND);
        b.maintain(1_000).await.unwrap();
        if let Some((lease, end)) = &busy
            && *end == t
        {
            b.complete(lease, Vec::new()).await.unwrap();
            busy = None;
        }
        for (name, arrival, _, deadline) in JOBS {
            if arrival == t {
                let mut spec = TaskSpec::builder("jobs", "job").payload(name.as_bytes());
                if let Some(d) = deadline {
                    spec = spec.deadline(START + d * SECOND);
                }
                let out = b.submit(spec.build().unwrap()).await.unwrap();
                run.ids.insert(name, out.id);
            }
        }
        if busy.is_none()
            && let Some(d) = b.receive(&cpu, 1).await.unwrap().into_iter().next()
        {
            let name = JOBS
                .iter()
                .find(|j| j.0.as_bytes() == d.payload.as_slice())
                .unwrap();
            run.started.push((name.0, t));
            busy = Some((d.lease, t + name.2));
        }
        b.heartbeat(&cpu).await.unwrap();
    }
    run
}

async fn textbook_order(b: &dyn Backend, clock: &ManualClock) {
    let run = run_jobs(b, clock, edf(false)).await;
    assert_eq!(
        run.started,
        [
            ("J1", 0),
            ("J2", 3),
            ("J5", 5),
            ("J3", 6),
            ("J4", 7),
            ("J6", 9)
        ],
        "non-preemptive EDF start order and times"
    );
}

async fn late_jobs_expire(b: &dyn Backend, clock: &ManualClock) {
    let run = run_jobs(b, clock, edf(true)).await;
    // At 5, J5's deadline (5) has come: it expires; J3 (deadline 6) starts at 5 and ends at 6,
    // when J4's deadline (6) has come: it expires; J6 starts.
    assert_eq!(
        run.started,
        [("J1", 0), ("J2", 3), ("J3", 5), ("J6", 6)],
        "EDF start order with late tasks expired"
    );
    for (name, deadline) in [("J5", 5), ("J4", 6)] {
        let id = run.ids[name];
        let info = b.get_task(id).await.unwrap().unwrap();
        assert_eq!(info.state, TaskState::Expired, "{name}");
        assert_eq!(info.attempts, 0, "{name} used no attempt");
        assert_eq!(
            info.finished_at,
            Some(START + deadline * SECOND),
            "{name} ended on time"
        );
        assert_eq!(info.start_by, Some(START + deadline * SECOND));
        assert_eq!(b.get_outcome(id).await.unwrap(), Some(TaskOutcome::Expired));
    }
    let events = b.events(None, 1_000).await.unwrap();
    let expired: Vec<TaskId> = events
        .iter()
        .filter(|e| e.kind == EventKind::Expired)
        .map(|e| e.task)
        .collect();
    assert_eq!(expired, [run.ids["J5"], run.ids["J4"]]);
    for name in ["J4", "J5"] {
        assert!(
            !events
                .iter()
                .any(|e| e.task == run.ids[name] && e.kind == EventKind::Dispatched),
            "{name} was never dispatched"
        );
    }
    let stats = b.stats().await.unwrap();
    let q = &stats.queues[0];
    assert_eq!((q.expired, q.totals.expired), (2, 2));
    assert_eq!(q.succeeded, 4);
}

/// Rule 1 at submit and at promotion, rule 3 on the due timer, rule 2 at a free slot.
async fn each_place_of_the_rule(b: &dyn Backend, clock: &ManualClock) {
    clock.set(START);
    let q = QueueName::new("quotes").unwrap();
    b.declare_queue(&q, edf(true)).await.unwrap();
    let spec = |d: i64| {
        TaskSpec::builder("quotes", "quote")
            .deadline(START.saturating_add_signed(d))
            .build()
            .unwrap()
    };
    // Rule 1 at submit: already late.
    let late = b.submit(spec(0)).await.unwrap();
    assert_eq!(late.state, Some(TaskState::Expired));
    // Rule 1 at promotion: due at 5 s, deadline at 2 s.
    let scheduled = TaskSpec::builder("quotes", "quote")
        .deadline(START + 2 * SECOND)
        .delay(Duration::from_secs(5))
        .build()
        .unwrap();
    let scheduled = b.submit(scheduled).await.unwrap().id;
    // Rule 3: no worker; the head's deadline is what maintenance sleeps until.
    let x = b.submit(spec(3_000)).await.unwrap().id;
    let y = b.submit(spec(1_000)).await.unwrap().id;
    let open = b
        .submit(TaskSpec::builder("quotes", "quote").build().unwrap())
        .await
        .unwrap()
        .id;
    assert_eq!(b.until_due().await.unwrap(), Some(Duration::from_secs(1)));
    clock.advance(Duration::from_secs(1));
    let report = b.maintain(1_000).await.unwrap();
    assert_eq!(report.tasks_expired, 1);
    assert_eq!(
        b.get_task(y).await.unwrap().unwrap().state,
        TaskState::Expired
    );
    assert_eq!(
        b.get_task(x).await.unwrap().unwrap().state,
        TaskState::Ready
    );
    assert_eq!(b.until_due().await.unwrap(), Some(Duration::from_secs(2)));
    // Rule 2: x is late at 3.5 s; a worker arriving then takes the task without a deadline.
    clock.advance(Duration::from_millis(2_500));
    b.register_worker(test_worker("w", ["quotes"]).capacity(2))
        .await
        .unwrap();
    let got: Vec<TaskId> = b
        .receive(&me("w"), 2)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.lease.task)
        .collect();
    assert_eq!(got, [open]);
    let x = b.get_task(x).await.unwrap().unwrap();
    assert_eq!(
        (x.state, x.finished_at),
        (TaskState::Expired, Some(START + 3_500))
    );
    // The scheduled task comes due at 5 s, after its deadline: it expires, never ready.
    clock.set(START + 5 * SECOND);
    b.heartbeat(&me("w")).await.unwrap();
    let report = b.maintain(1_000).await.unwrap();
    assert_eq!((report.promoted, report.tasks_expired), (1, 0));
    let s = b.get_task(scheduled).await.unwrap().unwrap();
    assert_eq!((s.state, s.attempts), (TaskState::Expired, 0));
    assert!(b.receive(&me("w"), 2).await.unwrap().is_empty());
    let stats = b.stats().await.unwrap();
    assert_eq!(stats.queues[0].expired, 4);
    // Nothing left to wait for but the worker's heartbeat.
    assert!(b.until_due().await.unwrap() > Some(Duration::from_secs(1)));
}

fn memory() -> (MemoryBackend, ManualClock) {
    let clock = ManualClock::new(START);
    (MemoryBackend::with_clock(Arc::new(clock.clone())), clock)
}

async fn redis(server: &RedisServer, ns: &str) -> (RedisBackend, ManualClock) {
    let clock = ManualClock::new(START);
    let config =
        RedisConfig::new(server.url(), ns).with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    (RedisBackend::with_config(config).await.unwrap(), clock)
}

#[tokio::test]
async fn memory_edf_textbook_order() {
    let (b, clock) = memory();
    textbook_order(&b, &clock).await;
    b.audit().unwrap();
}

#[tokio::test]
async fn redis_edf_textbook_order() {
    let server = RedisServer::start().unwrap();
    let (b, clock) = redis(&server, "edf").await;
    textbook_order(&b, &clock).await;
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn memory_late_tasks_expire_and_never_start() {
    let (b, clock) = memory();
    late_jobs_expire(&b, &clock).await;
    b.audit().unwrap();
}

#[tokio::test]
async fn redis_late_tasks_expire_and_never_start() {
    let server = RedisServer::start().unwrap();
    let (b, clock) = redis(&server, "late").await;
    late_jobs_expire(&b, &clock).await;
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn memory_expires_at_each_place_of_the_rule() {
    let (b, clock) = memory();
    each_place_of_the_rule(&b, &clock).await;
    b.audit().unwrap();
}

#[tokio::test]
async fn redis_expires_at_each_place_of_the_rule() {
    let server = RedisServer::start().unwrap();
    let (b, clock) = redis(&server, "places").await;
    each_place_of_the_rule(&b, &clock).await;
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}
