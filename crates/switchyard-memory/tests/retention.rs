//! Retention on the memory backend: finished records (succeeded, cancelled) are purged once the
//! queue's result TTL has passed and dead ones once its dead TTL has, by maintenance, in
//! `(retain_until, id)` order and within its limit — gone from `get_task`, `get_outcome`, the
//! stats and the dead-letter set — while every other task is untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_testkit::{me, test_worker};

use switchyard_core::prelude::*;
use switchyard_core::{
    Ack, CancelOutcome, ManualClock, Policy, QueueConfig, QueueName, Strategy, TaskId,
    TaskIdGenerator, TaskOutcome, TaskSpec, TaskState,
};
use switchyard_memory::MemoryBackend;

const START_MS: u64 = 1_700_000_000_000;
const RESULT_TTL: Duration = Duration::from_secs(10);
const DEAD_TTL: Duration = Duration::from_secs(60);

struct Fixture {
    backend: MemoryBackend,
    clock: ManualClock,
    ids: TaskIdGenerator,
    queue: QueueName,
}

impl Fixture {
    async fn new() -> Self {
        let clock = ManualClock::new(START_MS);
        let backend = MemoryBackend::with_clock(Arc::new(clock.clone()));
        let queue = QueueName::new("keep").unwrap();
        backend
            .declare_queue(
                &queue,
                QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)
                    .with_max_attempts(1)
                    .with_result_ttl(RESULT_TTL)
                    .with_dead_ttl(DEAD_TTL),
            )
            .await
            .unwrap();
        // A queue nobody serves: its tasks stay ready.
        backend
            .declare_queue(
                &QueueName::new("idle").unwrap(),
                QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin),
            )
            .await
            .unwrap();
        backend
            .register_worker(
                test_worker("w", ["keep"])
                    .capacity(8)
                    .heartbeat_ttl(Duration::from_secs(86_400)),
            )
            .await
            .unwrap();
        Fixture {
            backend,
            clock,
            ids: TaskIdGenerator::new(5),
            queue,
        }
    }

    fn spec(&mut self, queue: &str, delay: Option<Duration>) -> TaskSpec {
        let mut b = TaskSpec::builder(queue, "job").id(self.ids.next_at(START_MS));
        if let Some(d) = delay {
            b = b.delay(d);
        }
        b.build().unwrap()
    }

    /// Submits a task to `keep` and starts it on the worker.
    async fn start(&mut self) -> switchyard_core::Lease {
        let spec = self.spec("keep", None);
        let id = spec.id();
        self.backend.submit(spec).await.unwrap();
        let got = self.backend.receive(&me("w"), 1).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lease.task, id);
        got[0].lease.clone()
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    async fn state(&self, id: TaskId) -> Option<TaskState> {
        self.backend.get_task(id).await.unwrap().map(|t| t.state)
    }

    /// Conservation over what is left: every id of `alive` has a record in the expected state,
    /// the per-queue counts equal the tally of those records, and the structural audit passes.
    async fn conserved(&self, alive: &BTreeMap<TaskId, TaskState>) {
        let mut tally: BTreeMap<(String, TaskState), u64> = BTreeMap::new();
        for (id, state) in alive {
            let info = self.backend.get_task(*id).await.unwrap().expect("kept");
            assert_eq!(info.state, *state, "{id}");
            *tally
                .entry((info.queue.to_string(), info.state))
                .or_default() += 1;
        }
        let stats = self.backend.stats().await.unwrap();
        for q in &stats.queues {
            let name = q.queue.as_ref().unwrap().to_string();
            for state in TaskState::ALL {
                let want = tally.get(&(name.clone(), state)).copied().unwrap_or(0);
                assert_eq!(q.get(state), want, "{name} {state}");
            }
        }
        let total: u64 = stats.queues.iter().map(|q| q.total()).sum();
        assert_eq!(
            total,
            alive.len() as u64,
            "no record beyond the expected ones"
        );
        self.backend.audit().unwrap();
    }
}

#[tokio::test]
async fn finished_records_are_purged_after_their_retention() {
    let mut f = Fixture::new().await;
    let w = me("w");

    // t = 0: one task succeeds, one dies, one is cancelled in the inbox.
    let ok = f.start().await;
    assert_eq!(
        f.backend.complete(&ok, b"done".to_vec()).await.unwrap().ack,
        Ack::Completed
    );
    let dead = f.start().await;
    assert_eq!(
        f.backend.fail(&dead, "boom", true).await.unwrap().ack,
        Ack::Dead,
        "one attempt allowed"
    );
    let cancelled = f.spec("keep", None);
    let cancelled_id = cancelled.id();
    let out = f.backend.submit(cancelled).await.unwrap();
    assert_eq!(out.state, Some(TaskState::Dispatched));
    assert!(matches!(
        f.backend.cancel(cancelled_id).await.unwrap(),
        CancelOutcome::Cancelled { .. }
    ));

    // Tasks that are not finished, and must survive every purge.
    let running = f.start().await.task;
    let scheduled = f.spec("keep", Some(Duration::from_secs(3_600)));
    let scheduled_id = scheduled.id();
    f.backend.submit(scheduled).await.unwrap();
    let ready = f.spec("idle", None);
    let ready_id = ready.id();
    f.backend.submit(ready).await.unwrap();

    // t = 5 s: a later success, retained until 15 s.
    f.advance(Duration::from_secs(5));
    let late = f.start().await;
    f.backend.complete(&late, b"late".to_vec()).await.unwrap();

    let mut alive: BTreeMap<TaskId, TaskState> = [
        (ok.task, TaskState::Succeeded),
        (dead.task, TaskState::Dead),
        (cancelled_id, TaskState::Cancelled),
        (running, TaskState::Running),
        (scheduled_id, TaskState::Scheduled),
        (ready_id, TaskState::Ready),
        (late.task, TaskState::Succeeded),
    ]
    .into();
    f.conserved(&alive).await;

    // Just before the result TTL ends, nothing goes.
    f.advance(Duration::from_millis(4_999));
    let report = f.backend.maintain(64).await.unwrap();
    assert_eq!(report.records_purged, 0);
    f.conserved(&alive).await;

    // t = 10 s: the first success and the cancelled task are due (retain_until ≤ now). With a
    // limit of one, maintenance purges one and says there is more.
    f.advance(Duration::from_millis(1));
    let report = f.backend.maintain(1).await.unwrap();
    assert_eq!(report.records_purged, 1);
    assert!(report.more, "the limit left one due record");
    // Both are due at the same instant, so the smaller id goes first.
    let (first, second) = (ok.task.min(cancelled_id), ok.task.max(cancelled_id));
    assert_eq!(f.state(first).await, None);
    assert!(f.state(second).await.is_some());
    let report = f.backend.maintain(64).await.unwrap();
    assert_eq!(report.records_purged, 1);
    assert!(!report.more);
    for id in [ok.task, cancelled_id] {
        assert_eq!(f.state(id).await, None, "{id} purged");
        assert_eq!(f.backend.get_outcome(id).await.unwrap(), None);
        alive.remove(&id);
    }
    // The dead task is kept for the dead TTL, and still listed.
    let listed: Vec<TaskId> = f
        .backend
        .list_dead(&f.queue, 10)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, vec![dead.task]);
    assert_eq!(
        f.backend.get_outcome(dead.task).await.unwrap(),
        Some(TaskOutcome::Dead("boom".into()))
    );
    f.conserved(&alive).await;

    // t = 15 s: the late success goes.
    f.advance(Duration::from_secs(5));
    assert_eq!(f.backend.maintain(64).await.unwrap().records_purged, 1);
    assert_eq!(f.state(late.task).await, None);
    alive.remove(&late.task);
    f.conserved(&alive).await;

    // t = 60 s: the dead task goes, from the records and from the dead-letter set.
    f.advance(Duration::from_secs(45));
    assert_eq!(f.backend.maintain(64).await.unwrap().records_purged, 1);
    assert_eq!(f.state(dead.task).await, None);
    assert_eq!(f.backend.get_outcome(dead.task).await.unwrap(), None);
    assert!(f.backend.list_dead(&f.queue, 10).await.unwrap().is_empty());
    assert!(matches!(
        f.backend.redrive(dead.task).await,
        Err(switchyard_core::Error::TaskNotFound(_))
    ));
    alive.remove(&dead.task);
    f.conserved(&alive).await;
    let stats = f.backend.stats().await.unwrap();
    let keep = stats
        .queues
        .iter()
        .find(|q| q.queue.as_ref() == Some(&f.queue))
        .unwrap();
    assert_eq!(
        (keep.succeeded, keep.dead, keep.cancelled),
        (0, 0, 0),
        "no finished record left"
    );
    assert_eq!(
        stats
            .workers
            .iter()
            .find(|s| s.id == w.id)
            .unwrap()
            .inflight,
        1,
        "the running task still holds its slot"
    );

    // Idempotence of a task id lasts until its record is purged: the same id is new again.
    let again = TaskSpec::builder("keep", "job")
        .id(ok.task)
        .build()
        .unwrap();
    let out = f.backend.submit(again).await.unwrap();
    assert!(!out.duplicate, "a purged id is accepted as a new task");
    assert_eq!(f.state(ok.task).await, Some(TaskState::Dispatched));
}
