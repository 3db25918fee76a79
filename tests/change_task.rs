//! Changing a task that has not started (`switchyard_core::TaskChange`), on the memory
//! reference and on a real Redis, each driven by the same manual clock.
//!
//! * A ready task given a higher priority overtakes the tasks it now outranks and keeps its
//!   arrival among equals (plain priority and priority with aging).
//! * A scheduled task brought forward to now becomes ready (and is dispatched at once to a free
//!   worker of a push queue); one pushed back moves later; a ready task given a future time is
//!   scheduled and comes back at that time, behind the tasks already there (FCFS: its old
//!   entry is a tombstone the counts skip).
//! * A new payload is what the worker receives.
//! * Dispatched, running and finished tasks are refused with `WrongState`, nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;

use switchyard_core::prelude::*;
use switchyard_core::{
    Clock, Error, ManualClock, Millis, Policy, QueueConfig, QueueName, Strategy, TaskChange,
    TaskId, TaskSpec, TaskState,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const START: Millis = 1_700_000_000_000;

async fn submit(b: &dyn Backend, queue: &str, priority: u16, payload: &[u8]) -> TaskId {
    b.submit(
        TaskSpec::builder(queue, "job")
            .priority(priority)
            .payload(payload.to_vec())
            .build()
            .unwrap(),
    )
    .await
    .unwrap()
    .id
}

/// A task of `queue` scheduled a minute after the start.
async fn submit_in_a_minute(b: &dyn Backend, queue: &str) -> TaskId {
    let spec = TaskSpec::builder(queue, "job").run_at(START + 60_000);
    b.submit(spec.build().unwrap()).await.unwrap().id
}

async fn ready_order(b: &dyn Backend, queue: &str) -> Vec<TaskId> {
    b.peek_ready(&QueueName::new(queue).unwrap(), 100)
        .await
        .unwrap()
}

async fn state(b: &dyn Backend, id: TaskId) -> TaskState {
    b.get_task(id).await.unwrap().unwrap().state
}

async fn changes(b: &dyn Backend, clock: &ManualClock) {
    // Priority, plain and with aging: a raised task passes those it now outranks, and stays
    // behind its equals that came first.
    for (queue, policy) in [
        (
            "plain",
            Policy::Priority {
                aging_step_ms: None,
            },
        ),
        (
            "aging",
            Policy::Priority {
                aging_step_ms: Some(1_000),
            },
        ),
    ] {
        let q = QueueName::new(queue).unwrap();
        b.declare_queue(&q, QueueConfig::new(policy, Strategy::Pull))
            .await
            .unwrap();
        let a = submit(b, queue, 5, b"a").await;
        let x = submit(b, queue, 1, b"x").await;
        let c = submit(b, queue, 5, b"c").await;
        assert_eq!(ready_order(b, queue).await, [a, c, x]);
        let out = b
            .change_task(x, &TaskChange::new().priority(5))
            .await
            .unwrap();
        assert_eq!(out.state, Some(TaskState::Ready));
        assert_eq!(ready_order(b, queue).await, [a, x, c], "{queue}");
        b.change_task(c, &TaskChange::new().priority(9))
            .await
            .unwrap();
        assert_eq!(ready_order(b, queue).await, [c, a, x], "{queue}");
        assert_eq!(b.get_task(c).await.unwrap().unwrap().priority, 9);
    }

    // Run times in an FCFS pull queue.
    let fifo = QueueName::new("fifo").unwrap();
    b.declare_queue(&fifo, QueueConfig::new(Policy::Fcfs, Strategy::Pull))
        .await
        .unwrap();
    let later = submit_in_a_minute(b, "fifo").await;
    let one = submit(b, "fifo", 0, b"1").await;
    let two = submit(b, "fifo", 0, b"2").await;
    // Pushed back, then brought forward to now: ready behind those there.
    b.change_task(later, &TaskChange::new().run_at(START + 120_000))
        .await
        .unwrap();
    assert_eq!(
        b.get_task(later).await.unwrap().unwrap().run_at,
        Some(START + 120_000)
    );
    let out = b
        .change_task(later, &TaskChange::new().run_at(START))
        .await
        .unwrap();
    assert_eq!(out.state, Some(TaskState::Ready));
    assert_eq!(ready_order(b, "fifo").await, [one, two, later]);
    // A ready task postponed: scheduled, its old entry skipped, back at its time behind the rest.
    let out = b
        .change_task(one, &TaskChange::new().run_at(START + 5_000))
        .await
        .unwrap();
    assert_eq!(out.state, Some(TaskState::Scheduled));
    assert_eq!(ready_order(b, "fifo").await, [two, later]);
    let stats = b.stats().await.unwrap();
    let row = stats
        .queues
        .iter()
        .find(|r| r.queue.as_ref() == Some(&fifo))
        .unwrap();
    assert_eq!((row.ready, row.scheduled), (2, 1));
    clock.set(START + 5_000);
    b.maintain(100).await.unwrap();
    assert_eq!(ready_order(b, "fifo").await, [two, later, one]);
    // A new payload is what the worker receives; a ready time that has come changes nothing.
    b.change_task(
        two,
        &TaskChange::new()
            .payload(b"two, changed".to_vec())
            .run_at(START),
    )
    .await
    .unwrap();
    b.register_worker(test_worker("w1", ["fifo"]).capacity(1))
        .await
        .unwrap();
    let got = b.receive(&me("w1"), 1).await.unwrap();
    assert_eq!(got[0].lease.task, two);
    assert_eq!(got[0].payload, b"two, changed");
    // Running, then finished: refused, nothing changed.
    let refused = b
        .change_task(two, &TaskChange::new().priority(3))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            Error::WrongState {
                state: TaskState::Running,
                ..
            }
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("has not started"), "{refused}");
    b.complete(&got[0].lease, Vec::new()).await.unwrap();
    let refused = b
        .change_task(two, &TaskChange::new().priority(3))
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        Error::WrongState {
            state: TaskState::Succeeded,
            ..
        }
    ));
    assert_eq!(b.get_task(two).await.unwrap().unwrap().priority, 0);
    assert!(matches!(
        b.change_task(TaskId::from_parts(1, 1), &TaskChange::new().priority(1))
            .await,
        Err(Error::TaskNotFound(_))
    ));
    assert!(b.change_task(one, &TaskChange::new()).await.is_err());

    // A push queue: a scheduled task brought forward goes straight to the free worker.
    let push = QueueName::new("push").unwrap();
    b.declare_queue(&push, QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin))
        .await
        .unwrap();
    b.register_worker(test_worker("w2", ["push"]).capacity(1))
        .await
        .unwrap();
    let waiting = submit_in_a_minute(b, "push").await;
    let out = b
        .change_task(waiting, &TaskChange::new().run_at(0))
        .await
        .unwrap();
    assert_eq!(out.state, Some(TaskState::Dispatched));
    assert_eq!(out.assigned.as_ref().map(|w| w.as_str()), Some("w2"));
    assert_eq!(state(b, waiting).await, TaskState::Dispatched);
    let refused = b
        .change_task(waiting, &TaskChange::new().priority(1))
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        Error::WrongState {
            state: TaskState::Dispatched,
            ..
        }
    ));
}

#[tokio::test]
async fn memory_changes_waiting_tasks() {
    let clock = ManualClock::new(START);
    let b = MemoryBackend::with_clock(Arc::new(clock.clone()));
    changes(&b, &clock).await;
    b.audit().unwrap();
}

#[tokio::test]
async fn redis_changes_waiting_tasks() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(START);
    let config = RedisConfig::new(server.url(), "change")
        .with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    let b = RedisBackend::with_config(config).await.unwrap();
    changes(&b, &clock).await;
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}
