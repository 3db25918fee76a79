//! Flows (`switchyard_core::tree`): a task with children waits for them, then reads their
//! ends — on the memory reference and on a real Redis, each driven by the same manual clock.
//!
//! * Each failure policy: a failing child under `FailParent` ends the parent dead ("child X
//!   failed") and cancels its siblings that have not started; under `Ignore` the parent runs
//!   when all have ended and reads which failed; under `Continue` it runs at once.
//! * A child that ends twice (dead, re-driven, succeeded) is counted once: the parent still
//!   waits for its other child.
//! * A tree of three levels runs bottom-up; cancelling a waiting parent cancels its waiting
//!   children; a re-submitted flow is a duplicate; a flow reusing a task id is refused whole.
//! * Counts, the browser and the audits see the tasks waiting for their children.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;

use switchyard_core::prelude::*;
use switchyard_core::tree::{Flow, FlowNode, OnFailure};
use switchyard_core::{
    Browse, Clock, Delivery, ManualClock, Millis, Policy, QueueConfig, QueueName, Strategy, TaskId,
    TaskOutcome, TaskSpec, TaskState,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const START: Millis = 1_700_000_000_000;

fn spec(queue: &str, payload: &str) -> TaskSpec {
    TaskSpec::builder(queue, "job")
        .payload(payload.as_bytes().to_vec())
        .max_attempts(1)
        .build()
        .unwrap()
}

async fn state(b: &dyn Backend, id: TaskId) -> TaskState {
    b.get_task(id).await.unwrap().unwrap().state
}

async fn settle(b: &dyn Backend) -> usize {
    b.maintain(1_000).await.unwrap().flows_settled
}

/// Receives up to `n` tasks for worker `w`.
async fn take(b: &dyn Backend, w: &str, n: usize) -> Vec<Delivery> {
    b.receive(&me(w), n).await.unwrap()
}

async fn finish(b: &dyn Backend, d: &Delivery, ok: bool) {
    if ok {
        b.complete(&d.lease, d.payload.clone()).await.unwrap();
    } else {
        b.fail(&d.lease, "boom", false).await.unwrap();
    }
}

async fn declare(b: &dyn Backend, queue: &str) {
    b.declare_queue(
        &QueueName::new(queue).unwrap(),
        QueueConfig::new(Policy::Fcfs, Strategy::Pull),
    )
    .await
    .unwrap();
}

async fn flows(b: &dyn Backend, clock: &ManualClock) {
    declare(b, "images").await;
    declare(b, "zips").await;
    b.register_worker(test_worker("w", ["images", "zips"]).capacity(100))
        .await
        .unwrap();

    // FailParent (the default): one child fails; the siblings not started are cancelled.
    let root = spec("zips", "zip");
    let kids: Vec<TaskSpec> = (0..4).map(|i| spec("images", &format!("c{i}"))).collect();
    let flow = Flow::new(root.clone()).children(kids.iter().cloned().map(FlowNode::new));
    let out = b.submit_flow(flow).await.unwrap();
    assert_eq!(out.len(), 5);
    assert_eq!(out[0].state, Some(TaskState::WaitingChildren));
    assert!(out[1..].iter().all(|o| o.state == Some(TaskState::Ready)));
    let stats = b.stats().await.unwrap();
    let zips = stats
        .queues
        .iter()
        .find(|q| q.queue.as_ref().is_some_and(|q| q.as_str() == "zips"))
        .unwrap();
    assert_eq!(zips.waiting_children, 1);
    let page = b
        .browse(&Browse::new(
            QueueName::new("zips").unwrap(),
            TaskState::WaitingChildren,
        ))
        .await
        .unwrap();
    assert_eq!(page.tasks.len(), 1);
    assert_eq!(page.tasks[0].id, root.id());
    let got = take(b, "w", 2).await;
    assert_eq!(got.len(), 2);
    finish(b, &got[0], true).await;
    assert_eq!(
        settle(b).await,
        0,
        "one child of four ended: nothing to settle"
    );
    finish(b, &got[1], false).await;
    assert_eq!(state(b, root.id()).await, TaskState::WaitingChildren);
    // The settle entries: the parent fails, then its two waiting children are cancelled.
    assert_eq!(settle(b).await, 3);
    let info = b.get_task(root.id()).await.unwrap().unwrap();
    assert_eq!(info.state, TaskState::Dead);
    assert_eq!(
        info.last_error.as_deref(),
        Some(format!("child {} failed", got[1].lease.task).as_str())
    );
    assert_eq!(state(b, kids[2].id()).await, TaskState::Cancelled);
    assert_eq!(state(b, kids[3].id()).await, TaskState::Cancelled);
    let ends = b.children(root.id()).await.unwrap().unwrap();
    assert_eq!(ends.len(), 4);
    assert_eq!(
        ends[0].outcome,
        Some(TaskOutcome::Succeeded(b"c0".to_vec()))
    );
    assert_eq!(ends[1].outcome, Some(TaskOutcome::Dead("boom".into())));
    assert_eq!(ends[2].outcome, Some(TaskOutcome::Cancelled));

    // Ignore: the parent runs when every child has ended, and reads which failed.
    let root = spec("zips", "ignore");
    let flow = Flow::new(root.clone())
        .children((0..3).map(|i| {
            FlowNode::new(spec("images", &format!("i{i}"))).on_failure(OnFailure::Ignore)
        }));
    b.submit_flow(flow).await.unwrap();
    let got = take(b, "w", 3).await;
    finish(b, &got[0], false).await;
    finish(b, &got[1], true).await;
    assert_eq!(settle(b).await, 0);
    finish(b, &got[2], true).await;
    assert_eq!(state(b, root.id()).await, TaskState::WaitingChildren);
    assert_eq!(settle(b).await, 1);
    assert_eq!(state(b, root.id()).await, TaskState::Ready);
    let parent = take(b, "w", 1).await;
    assert_eq!(parent[0].lease.task, root.id());
    let ends = b.children(root.id()).await.unwrap().unwrap();
    let failed: Vec<TaskId> = ends
        .iter()
        .filter(|c| !c.succeeded())
        .map(|c| c.id)
        .collect();
    assert_eq!(failed, vec![got[0].lease.task]);
    finish(b, &parent[0], true).await;

    // Continue: the parent runs as soon as that child fails; the others go on.
    let root = spec("zips", "continue");
    let flow = Flow::new(root.clone())
        .child(FlowNode::new(spec("images", "k0")).on_failure(OnFailure::Continue))
        .child(FlowNode::new(spec("images", "k1")));
    b.submit_flow(flow).await.unwrap();
    let got = take(b, "w", 1).await;
    finish(b, &got[0], false).await;
    assert_eq!(settle(b).await, 1);
    assert_eq!(state(b, root.id()).await, TaskState::Ready);
    let next = take(b, "w", 2).await;
    assert_eq!(next.len(), 2, "the other child and the parent");
    for d in &next {
        finish(b, d, true).await;
    }
    assert_eq!(
        settle(b).await,
        0,
        "a released parent is not released again"
    );

    // A child that ends twice is counted once.
    let root = spec("zips", "twice");
    let a = spec("images", "a");
    let flow = Flow::new(root.clone())
        .child(FlowNode::new(a.clone()).on_failure(OnFailure::Ignore))
        .child(FlowNode::new(spec("images", "b")));
    b.submit_flow(flow).await.unwrap();
    let got = take(b, "w", 1).await;
    assert_eq!(got[0].lease.task, a.id());
    finish(b, &got[0], false).await;
    b.redrive(a.id()).await.unwrap();
    let again = take(b, "w", 1).await;
    // The queue is FCFS: the second child came first, then the re-driven one.
    let again = if again[0].lease.task == a.id() {
        again
    } else {
        let mut rest = take(b, "w", 1).await;
        let other = again;
        rest.extend(other);
        rest
    };
    let (rerun, others): (Vec<_>, Vec<_>) = again.into_iter().partition(|d| d.lease.task == a.id());
    finish(b, &rerun[0], true).await;
    assert_eq!(settle(b).await, 0, "the re-run child counted twice");
    assert_eq!(state(b, root.id()).await, TaskState::WaitingChildren);
    for d in others {
        finish(b, &d, true).await;
    }
    let ends = b.children(root.id()).await.unwrap().unwrap();
    assert_eq!(ends[0].outcome, Some(TaskOutcome::Dead("boom".into())));
    if ends[1].outcome.is_none() {
        let d = take(b, "w", 1).await;
        finish(b, &d[0], true).await;
    }
    assert_eq!(settle(b).await, 1);
    let p = take(b, "w", 1).await;
    assert_eq!(p[0].lease.task, root.id());
    finish(b, &p[0], true).await;

    // Three levels run bottom-up; cancelling a waiting parent cancels its waiting children.
    let root = spec("zips", "top");
    let mid = spec("zips", "mid");
    let leaf = spec("images", "leaf");
    let flow = Flow::new(root.clone())
        .child(FlowNode::new(mid.clone()).child(FlowNode::new(leaf.clone())));
    let out = b.submit_flow(flow).await.unwrap();
    assert_eq!(
        out.iter().map(|o| o.state).collect::<Vec<_>>(),
        [
            Some(TaskState::WaitingChildren),
            Some(TaskState::WaitingChildren),
            Some(TaskState::Ready)
        ]
    );
    let d = take(b, "w", 1).await;
    finish(b, &d[0], true).await;
    assert_eq!(settle(b).await, 1);
    let d = take(b, "w", 1).await;
    assert_eq!(d[0].lease.task, mid.id());
    finish(b, &d[0], true).await;
    assert_eq!(settle(b).await, 1);
    let d = take(b, "w", 1).await;
    assert_eq!(d[0].lease.task, root.id());
    finish(b, &d[0], true).await;

    let root = spec("zips", "cancelled");
    let mid = spec("zips", "cmid");
    let leaf = spec("images", "cleaf");
    let flow = Flow::new(root.clone())
        .child(FlowNode::new(mid.clone()).child(FlowNode::new(leaf.clone())));
    b.submit_flow(flow.clone()).await.unwrap();
    b.cancel(root.id()).await.unwrap();
    assert_eq!(state(b, root.id()).await, TaskState::Cancelled);
    assert_eq!(settle(b).await, 2, "the middle task, then its leaf");
    assert_eq!(state(b, mid.id()).await, TaskState::Cancelled);
    assert_eq!(state(b, leaf.id()).await, TaskState::Cancelled);

    // A flow submitted again is a duplicate of its root; one that reuses a task is refused.
    let again = b.submit_flow(flow).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].duplicate);
    let taken = Flow::new(spec("zips", "new")).child(FlowNode::new(leaf.clone()));
    let err = b.submit_flow(taken).await.unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err}");
    clock.advance(std::time::Duration::from_millis(1));
}

#[tokio::test]
async fn memory_flows_wait_for_their_children() {
    let clock = ManualClock::new(START);
    let b = MemoryBackend::with_clock(Arc::new(clock.clone()));
    flows(&b, &clock).await;
    b.audit().unwrap();
}

#[tokio::test]
async fn redis_flows_wait_for_their_children() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(START);
    let config = RedisConfig::new(server.url(), "flows")
        .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    let b = RedisBackend::with_config(config).await.unwrap();
    flows(&b, &clock).await;
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}

/// A wide flow (more than `FLOW_STEP` tasks) is staged in steps, committed by its first, and
/// made seen by maintenance a step a round; before that nothing of it is seen. One whose
/// commit is refused leaves nothing seen, and its staged steps go when their time is up.
async fn wide_flows(b: &dyn Backend, clock: &ManualClock) {
    use switchyard_core::tree::{FLOW_STEP, STAGE_TTL_MS};
    declare(b, "images").await;
    declare(b, "zips").await;
    b.register_worker(test_worker("w", ["images", "zips"]).capacity(1_000))
        .await
        .unwrap();
    let root = spec("zips", "wide");
    let kids: Vec<TaskSpec> = (0..2 * FLOW_STEP + 88)
        .map(|i| spec("images", &format!("w{i}")))
        .collect();
    let flow = Flow::new(root.clone()).children(kids.iter().cloned().map(FlowNode::new));
    let out = b.submit_flow(flow.clone()).await.unwrap();
    assert_eq!(out.len(), kids.len() + 1);
    assert!(out.iter().all(|o| o.state.is_none() && !o.duplicate));
    // Committed, not yet seen: no count, no task by id.
    let counts =
        |stats: switchyard_core::Stats| stats.queues.iter().map(|q| q.total()).sum::<u64>();
    assert_eq!(counts(b.stats().await.unwrap()), 0);
    assert!(b.get_task(root.id()).await.unwrap().is_none());
    assert!(b.get_task(kids[599].id()).await.unwrap().is_none());
    assert!(b.children(root.id()).await.unwrap().is_none());
    // Submitted again: the root's duplicate, nothing stored.
    let again = b.submit_flow(flow).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].duplicate);
    assert_eq!(again[0].state, None);
    // Maintenance makes it seen, a step a round: three steps.
    assert_eq!(settle(b).await, 3);
    assert_eq!(state(b, root.id()).await, TaskState::WaitingChildren);
    let stats = b.stats().await.unwrap();
    assert_eq!(counts(stats), kids.len() as u64 + 1);
    let mut done = 0;
    while done < kids.len() {
        let got = take(b, "w", 1_000).await;
        assert!(!got.is_empty(), "{done} children done, none to take");
        for d in &got {
            finish(b, d, true).await;
        }
        done += got.len();
    }
    assert_eq!(settle(b).await, 1);
    let p = take(b, "w", 1).await;
    assert_eq!(p[0].lease.task, root.id());
    finish(b, &p[0], true).await;
    let ends = b.children(root.id()).await.unwrap().unwrap();
    assert_eq!(ends.len(), kids.len());
    assert!(ends.iter().all(|c| c.succeeded()));

    // A commit refused (the leaves do not fit a bounded queue): nothing seen, and the staged
    // steps deleted when their time is up.
    let small = QueueName::new("small").unwrap();
    b.declare_queue(
        &small,
        QueueConfig::new(Policy::Fcfs, Strategy::Pull).with_max_waiting(100),
    )
    .await
    .unwrap();
    let refused: Vec<TaskSpec> = (0..FLOW_STEP + 10)
        .map(|i| spec("small", &format!("s{i}")))
        .collect();
    let flow =
        Flow::new(spec("zips", "too-wide")).children(refused.iter().cloned().map(FlowNode::new));
    let err = b.submit_flow(flow).await.unwrap_err();
    assert!(err.to_string().contains("is full"), "{err}");
    for s in [&refused[0], &refused[FLOW_STEP + 5]] {
        assert!(b.get_task(s.id()).await.unwrap().is_none());
    }
    let small_stats = b.stats().await.unwrap();
    let small_total = small_stats
        .queues
        .iter()
        .find(|q| q.queue.as_ref() == Some(&small))
        .map(|q| q.total());
    assert_eq!(small_total, Some(0), "nothing of the refused flow is seen");
    clock.advance(std::time::Duration::from_millis(STAGE_TTL_MS));
    // Both flows' expiry entries come due: the committed one's finds its root and does
    // nothing, the refused one's deletes its staged step.
    assert_eq!(settle(b).await, 2, "the staged steps' expiry");
    for s in [&refused[0], &refused[FLOW_STEP + 5]] {
        assert!(b.get_task(s.id()).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn memory_stages_wide_flows() {
    let clock = ManualClock::new(START);
    let b = MemoryBackend::with_clock(Arc::new(clock.clone()));
    wide_flows(&b, &clock).await;
    b.audit().unwrap();
}

#[tokio::test]
async fn redis_stages_wide_flows() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(START);
    let config = RedisConfig::new(server.url(), "wide")
        .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    let b = RedisBackend::with_config(config).await.unwrap();
    wide_flows(&b, &clock).await;
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
    // Nothing of the refused flow is left in the task hash but the tasks seen.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(b.key("tasks").unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();
    let staged = fields
        .iter()
        .filter(|f| f.starts_with("fs:") || f.starts_with("fk:"))
        .count();
    assert_eq!(staged, 0, "staging fields left");
    let records = fields.iter().filter(|f| f.len() == 26).count();
    assert_eq!(
        records as u64,
        b.stats()
            .await
            .unwrap()
            .queues
            .iter()
            .map(|q| q.total())
            .sum::<u64>()
    );
}
