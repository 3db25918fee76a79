//! The task browser (`Inspect::browse`) on the memory reference and on a real Redis, the same
//! scenario on both (same task ids, same manual clock): every state of an FCFS queue (with
//! tombstones of cancelled tasks in its list), of a priority queue and of an
//! earliest-deadline-first queue that expires late tasks (the one with `expired` tasks), oldest and newest
//! first, unfiltered, by kind and by id prefix, paged 7 at a time. Each listing must hold
//! exactly the tasks `get_task` says are in that state, once each, in the same order on both
//! backends, newest first the reverse of oldest first; ready oldest first is the dispatch
//! order (`peek_ready`). A filter that matches 3 tasks among 2,000 comes back in pages that
//! each examine at most `BROWSE_SCAN` entries.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::prelude::*;
use switchyard_core::tree::{Flow, FlowNode};
use switchyard_core::{
    BROWSE_SCAN, Browse, BrowseOrder, Clock, ManualClock, Policy, QueueConfig, QueueName, Strategy,
    TaskId, TaskKind, TaskSpec, TaskState,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const START: u64 = 1_700_000_000_000;

/// The tasks of the scenario, built once so that both backends get the same ids.
struct Scenario {
    fifo: Vec<TaskSpec>,
    prio: Vec<TaskSpec>,
    quotes: Vec<TaskSpec>,
    /// Flows whose roots (in `fifo`) wait for their children (in `prio`).
    flows: Vec<(TaskSpec, TaskSpec)>,
}

fn scenario() -> Scenario {
    let kind = |i: usize| match i {
        _ if i % 700 == 3 => "rare",
        _ if i.is_multiple_of(3) => "a",
        _ => "b",
    };
    let fifo = (0..2_000)
        .map(|i| {
            let b = TaskSpec::builder("fifo", kind(i)).payload(format!("{i}"));
            // Every tenth runs later: scheduled.
            if i % 10 == 9 {
                b.delay(Duration::from_secs(60 + i as u64)).build().unwrap()
            } else {
                b.build().unwrap()
            }
        })
        .collect();
    let prio = (0..300)
        .map(|i| {
            TaskSpec::builder("prio", kind(i))
                .priority((i % 7) as u16)
                .build()
                .unwrap()
        })
        .collect();
    // A third late (expired by maintenance), a third due in ten minutes, a third without.
    let quotes = (0..120)
        .map(|i| {
            let b = TaskSpec::builder("quotes", kind(i));
            match i % 3 {
                0 => b.deadline(START + 1),
                1 => b.deadline(START + 600_000 - i as u64),
                _ => b,
            }
            .build()
            .unwrap()
        })
        .collect();
    let flows = (0..9)
        .map(|i| {
            let task = |queue| TaskSpec::builder(queue, kind(i)).build().unwrap();
            (task("fifo"), task("prio"))
        })
        .collect();
    Scenario {
        fifo,
        prio,
        quotes,
        flows,
    }
}

/// Runs the scenario on `b`: tasks in every state of both queues.
async fn play(b: &dyn Backend, clock: &ManualClock, s: &Scenario) {
    let mut config = QueueConfig::default();
    config.max_attempts = 2;
    let fifo = QueueName::new("fifo").unwrap();
    let prio = QueueName::new("prio").unwrap();
    b.declare_queue(&fifo, config).await.unwrap();
    let mut prio_config = config;
    prio_config.policy = Policy::Priority {
        aging_step_ms: None,
    };
    b.declare_queue(&prio, prio_config).await.unwrap();
    let quotes =
        QueueConfig::new(Policy::EarliestDeadlineFirst, Strategy::RoundRobin).with_expire_late();
    b.declare_queue(&QueueName::new("quotes").unwrap(), quotes)
        .await
        .unwrap();
    b.submit_batch(s.quotes.clone()).await.unwrap();
    b.submit_batch(s.fifo[..1_000].to_vec()).await.unwrap();
    b.submit_batch(s.fifo[1_000..].to_vec()).await.unwrap();
    b.submit_batch(s.prio.clone()).await.unwrap();
    // Cancel some ready FCFS tasks (their list entries stay as tombstones).
    for spec in s.fifo.iter().skip(40).step_by(50) {
        b.cancel(spec.id()).await.unwrap();
    }
    // Two workers take 12 tasks each; each receives 8 of them, then completes 3, fails 2
    // for good, fails 2 with a retry, keeps 1 running.
    for w in ["w1", "w2"] {
        b.register_worker(test_worker(w, ["fifo", "prio"]).capacity(12))
            .await
            .unwrap();
    }
    for w in ["w1", "w2"] {
        clock.advance(Duration::from_millis(5));
        let got = b.receive(&me(w), 8).await.unwrap();
        assert_eq!(got.len(), 8, "{w} received {}", got.len());
        for (i, d) in got.iter().enumerate() {
            clock.advance(Duration::from_millis(1));
            match i {
                0..=2 => drop(b.complete(&d.lease, b"ok".to_vec()).await.unwrap()),
                3 | 4 => drop(b.fail(&d.lease, "broken", false).await.unwrap()),
                5 | 6 => drop(b.fail(&d.lease, "flaky", true).await.unwrap()),
                _ => {}
            }
        }
    }
    // The late quotes expire (no worker serves that queue).
    let report = b.maintain(1_000).await.unwrap();
    assert_eq!(report.tasks_expired, 40);
    // Flow roots wait for their children (switchyard_core::tree).
    for (root, child) in &s.flows {
        let flow = Flow::new(root.clone()).child(FlowNode::new(child.clone()));
        b.submit_flow(flow).await.unwrap();
    }
}

/// Every page of `query` from the start: the ids in order, and the most entries a page
/// examined.
async fn list(b: &dyn Backend, query: &Browse) -> (Vec<TaskId>, usize, usize) {
    let mut ids = Vec::new();
    let mut q = query.clone();
    let (mut pages, mut most) = (0, 0);
    loop {
        let page = b.browse(&q).await.unwrap();
        pages += 1;
        assert!(pages < 10_000, "{query:?} does not end");
        assert!(page.tasks.len() <= q.limit);
        assert!(page.examined <= BROWSE_SCAN, "{} examined", page.examined);
        most = most.max(page.examined);
        for t in &page.tasks {
            assert_eq!(t.state, query.state, "{query:?} listed {t:?}");
            assert_eq!(t.queue, query.queue);
        }
        ids.extend(page.tasks.iter().map(|t| t.id));
        match page.next {
            Some(next) => q.cursor = Some(next),
            None => return (ids, pages, most),
        }
    }
}

/// Every listing of the scenario on `b`, checked against `get_task`, as
/// `(what, ids)` in a fixed order.
async fn listings(b: &dyn Backend, s: &Scenario) -> Vec<(String, Vec<TaskId>)> {
    let flows = s.flows.iter().flat_map(|(root, child)| [root, child]);
    let all: Vec<&TaskSpec> = s
        .fifo
        .iter()
        .chain(&s.prio)
        .chain(&s.quotes)
        .chain(flows)
        .collect();
    let mut infos = Vec::new();
    for spec in &all {
        infos.push(b.get_task(spec.id()).await.unwrap().unwrap());
    }
    let mut out = Vec::new();
    for queue in ["fifo", "prio", "quotes"] {
        let name = QueueName::new(queue).unwrap();
        for state in TaskState::ALL {
            let want: BTreeSet<TaskId> = infos
                .iter()
                .filter(|t| t.queue == name && t.state == state)
                .map(|t| t.id)
                .collect();
            let base = Browse::new(name.clone(), state).limit(7);
            let (oldest, ..) = list(b, &base).await;
            let (mut newest, ..) = list(b, &base.clone().order(BrowseOrder::Newest)).await;
            let seen: BTreeSet<TaskId> = oldest.iter().copied().collect();
            assert_eq!(seen.len(), oldest.len(), "{queue} {state}: a task twice");
            assert_eq!(seen, want, "{queue} {state}: not the tasks in that state");
            newest.reverse();
            assert_eq!(
                newest, oldest,
                "{queue} {state}: newest first is not the reverse"
            );
            if state == TaskState::Ready {
                let peeked = b.peek_ready(&name, 10_000).await.unwrap();
                assert_eq!(
                    oldest, peeked,
                    "{queue}: ready, oldest first, is the dispatch order"
                );
            }
            // By kind, and by the prefix of one task's id.
            for kind in ["a", "rare"] {
                let by_kind = base.clone().kind(Some(TaskKind::new(kind).unwrap()));
                let (ids, ..) = list(b, &by_kind).await;
                let want: Vec<TaskId> = oldest
                    .iter()
                    .copied()
                    .filter(|id| infos.iter().any(|t| t.id == *id && t.kind.as_str() == kind))
                    .collect();
                assert_eq!(ids, want, "{queue} {state} of kind {kind}");
                out.push((format!("{queue} {state} kind {kind}"), ids));
            }
            if let Some(one) = oldest.get(oldest.len() / 2) {
                let text = one.to_string();
                let (ids, ..) = list(b, &base.clone().id_prefix(Some(&text))).await;
                assert_eq!(ids, vec![*one], "{queue} {state}: by the whole id");
                let lower = text[..22].to_ascii_lowercase();
                let (ids, ..) = list(b, &base.clone().id_prefix(Some(&lower))).await;
                let want: Vec<TaskId> = oldest
                    .iter()
                    .copied()
                    .filter(|id| id.to_string().starts_with(&text[..22]))
                    .collect();
                assert!(want.contains(one));
                assert_eq!(ids, want, "{queue} {state}: by a lower-case prefix");
                out.push((format!("{queue} {state} prefix"), ids));
            }
            eprintln!("{queue} {state}: {} tasks", oldest.len());
            out.push((format!("{queue} {state}"), oldest));
        }
    }
    // A rare kind among 1,800 ready tasks: bounded pages, found all the same.
    let name = QueueName::new("fifo").unwrap();
    let rare = Browse::new(name, TaskState::Ready)
        .kind(Some(TaskKind::new("rare").unwrap()))
        .limit(50);
    let (ids, pages, most) = list(b, &rare).await;
    assert!(pages >= 2, "{pages} pages");
    assert_eq!(most, BROWSE_SCAN);
    out.push(("fifo ready rare, 50 a page".into(), ids));
    out
}

async fn bad_queries_are_refused(b: &dyn Backend) {
    let q = QueueName::new("fifo").unwrap();
    for (query, words) in [
        (
            Browse::new(q.clone(), TaskState::Ready).limit(0),
            "1 to 256",
        ),
        (
            Browse::new(q.clone(), TaskState::Ready).limit(257),
            "1 to 256",
        ),
        (
            Browse::new(q.clone(), TaskState::Ready).id_prefix(Some("01I")),
            "cannot start a task id",
        ),
    ] {
        let e = b.browse(&query).await.unwrap_err().to_string();
        assert!(e.contains(words), "{query:?}: {e}");
    }
    let unknown = Browse::new(QueueName::new("nope").unwrap(), TaskState::Dead);
    let e = b.browse(&unknown).await.unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_list_every_state_alike() {
    let s = scenario();
    let clock = ManualClock::new(START);
    let memory = MemoryBackend::with_clock(Arc::new(clock.clone()));
    play(&memory, &clock, &s).await;
    let reference = listings(&memory, &s).await;
    bad_queries_are_refused(&memory).await;

    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(START);
    let config = RedisConfig::new(server.url(), "browse")
        .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    let redis = RedisBackend::with_config(config).await.unwrap();
    play(&redis, &clock, &s).await;
    let got = listings(&redis, &s).await;
    bad_queries_are_refused(&redis).await;
    assert_eq!(got.len(), reference.len());
    for ((what, ids), (_, want)) in got.iter().zip(&reference) {
        assert_eq!(
            ids, want,
            "{what}: Redis lists differently from the reference"
        );
    }
    let states: BTreeSet<&str> = reference
        .iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(what, _)| what.as_str())
        .collect();
    // Every state in the FCFS queue (its tombstones among them), but expired: only an
    // earliest-deadline-first queue expires tasks.
    for state in TaskState::ALL {
        let queue = if state == TaskState::Expired {
            "quotes"
        } else {
            "fifo"
        };
        assert!(
            states.contains(format!("{queue} {state}").as_str()),
            "the scenario has no {state} task in {queue}"
        );
    }
    assert_eq!(redis.audit().await.unwrap(), Vec::<String>::new());
}

/// A cursor still leads to the right place after tasks left the head of the queue between
/// two pages (on Redis the FCFS list's indexes shift: the page is found again by sequence).
async fn a_cursor_survives_the_head_moving(b: &dyn Backend) {
    let q = QueueName::new("moving").unwrap();
    b.declare_queue(&q, QueueConfig::default()).await.unwrap();
    let specs: Vec<TaskSpec> = (0..50)
        .map(|_| TaskSpec::builder("moving", "k").build().unwrap())
        .collect();
    let ids: Vec<TaskId> = specs.iter().map(TaskSpec::id).collect();
    b.submit_batch(specs).await.unwrap();
    for order in [BrowseOrder::Oldest, BrowseOrder::Newest] {
        let query = Browse::new(q.clone(), TaskState::Ready)
            .order(order)
            .limit(10);
        let first = b.browse(&query).await.unwrap();
        // Five tasks leave the head (dispatched to a new worker) before the next page.
        let w = format!("mover-{order:?}");
        b.register_worker(test_worker(&w, ["moving"]).capacity(5))
            .await
            .unwrap();
        let next = b.browse(&query.clone().after(first.next)).await.unwrap();
        let got: Vec<TaskId> = next.tasks.iter().map(|t| t.id).collect();
        let want: Vec<TaskId> = match order {
            BrowseOrder::Oldest => ids[10..20].to_vec(),
            _ => ids[30..40].iter().rev().copied().collect(),
        };
        assert_eq!(got, want, "{order:?}");
        b.deregister_worker(&me(&w)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_survives_the_head_moving_on_both_backends() {
    a_cursor_survives_the_head_moving(&MemoryBackend::new()).await;
    let server = RedisServer::start().unwrap();
    let redis = RedisBackend::connect(&server.url(), "moving")
        .await
        .unwrap();
    a_cursor_survives_the_head_moving(&redis).await;
    assert_eq!(redis.audit().await.unwrap(), Vec::<String>::new());
}

/// Ties: 1,000 scheduled tasks with one run-at, paged 50 at a time; the task a cursor names is
/// cancelled before the next page, which must still start right after it (no repeat, no skip,
/// the same on both backends), oldest and newest first.
async fn a_removed_cursor_among_ties(b: &dyn Backend) {
    let q = QueueName::new("tied").unwrap();
    b.declare_queue(&q, QueueConfig::default()).await.unwrap();
    let at = switchyard_core::SystemClock.now_ms() + 3_600_000;
    let specs: Vec<TaskSpec> = (0..1_000)
        .map(|_| TaskSpec::builder("tied", "k").run_at(at).build().unwrap())
        .collect();
    let ids: Vec<TaskId> = specs.iter().map(TaskSpec::id).collect();
    b.submit_batch(specs).await.unwrap();
    let mut gone = Vec::new();
    for order in [BrowseOrder::Oldest, BrowseOrder::Newest] {
        let mut want: Vec<TaskId> = ids
            .iter()
            .copied()
            .filter(|id| !gone.contains(id))
            .collect();
        if order == BrowseOrder::Newest {
            want.reverse();
        }
        let mut query = Browse::new(q.clone(), TaskState::Scheduled)
            .order(order)
            .limit(50);
        let mut listed = Vec::new();
        for _ in 0..11 {
            let page = b.browse(&query).await.unwrap();
            listed.extend(page.tasks.iter().map(|t| t.id));
            query.cursor = page.next;
        }
        assert_eq!(listed[..], want[..550], "{order:?}");
        // The task the cursor names leaves the set before the next page.
        b.cancel(want[549]).await.unwrap();
        gone.push(want[549]);
        let page = b.browse(&query).await.unwrap();
        let got: Vec<TaskId> = page.tasks.iter().map(|t| t.id).collect();
        assert_eq!(got, want[550..600], "{order:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_cursor_among_ties_on_both_backends() {
    a_removed_cursor_among_ties(&MemoryBackend::new()).await;
    let server = RedisServer::start().unwrap();
    let redis = RedisBackend::connect(&server.url(), "tied").await.unwrap();
    a_removed_cursor_among_ties(&redis).await;
    assert_eq!(redis.audit().await.unwrap(), Vec::<String>::new());
}
