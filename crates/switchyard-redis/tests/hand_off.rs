//! Hand-offs: a task arriving for a worker that waits with nothing to receive (parked on a
//! pull queue, or picked by a push strategy) is started on it and travels whole on its wake
//! channel, so the worker's waiting receive costs no second script call; a
//! hand-off missed while the subscription was down comes back through `Leases::running`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::prelude::*;
use switchyard_core::{ManualClock, Policy, QueueConfig, QueueName, Strategy, TaskSpec, TaskState};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::{RedisServer, fcall_count};
use switchyard_testkit::{me, test_worker};

const START: u64 = 1_700_000_000_000;

async fn redis(server: &RedisServer, ns: &str) -> RedisBackend {
    let clock = ManualClock::new(START);
    let config = RedisConfig::new(server.url(), ns).with_clock(Arc::new(clock));
    RedisBackend::with_config(config).await.unwrap()
}

/// A queue `q` with worker `w` (two slots) on it, waiting: it asked and got nothing.
async fn parked_worker(b: &impl Backend, strategy: Strategy) {
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, strategy))
        .await
        .unwrap();
    b.register_worker(test_worker("w", ["q"]).capacity(2))
        .await
        .unwrap();
    let asked = b.receive_wait(&me("w"), 2, Duration::ZERO).await.unwrap();
    assert!(asked.is_empty());
}

/// What both backends must do: the submit starts the task on the parked worker (attempt
/// counted, lease deadline set) and the waiting receive returns it with that same lease.
async fn the_submit_starts_it_and_the_wait_returns_it(b: &impl Backend, strategy: Strategy) {
    parked_worker(b, strategy).await;
    let out = b
        .submit(
            TaskSpec::builder("q", "k")
                .payload(b"p".to_vec())
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(out.state, Some(TaskState::Running), "started by the submit");
    assert_eq!(out.assigned.as_ref().map(|w| w.as_str()), Some("w"));
    let info = b.get_task(out.id).await.unwrap().unwrap();
    assert_eq!(info.attempts, 1);
    let got = b
        .receive_wait(&me("w"), 2, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let d = &got[0];
    assert_eq!(d.lease.task, out.id);
    assert_eq!(Some(d.lease.token), info.token, "the lease the submit made");
    assert_eq!((d.attempt, d.payload.as_slice()), (1, &b"p"[..]));
    assert_eq!(Some(d.deadline), info.deadline);
    assert_eq!(d.ready_since, Some(START), "ready since the submit");
    // Completing it is an ordinary completion.
    let ack = b.complete(&d.lease, b"ok".to_vec()).await.unwrap();
    assert_eq!(ack.ack, switchyard_core::Ack::Completed);
}

/// What both backends must do: a worker that hand-offs filled is off the parked list (it is
/// no longer waiting), so a slot it frees later is not handed a task until it asks again; the
/// task stays ready. (Dropping `unpark(wr)` from `hand_to` in lua/lib/dispatch.lua fails this on Redis.)
async fn a_worker_filled_by_hand_offs_is_no_longer_parked(b: &impl Backend) {
    parked_worker(b, Strategy::Pull).await;
    let submit = || async {
        b.submit(TaskSpec::builder("q", "k").build().unwrap())
            .await
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(submit().await.state, Some(TaskState::Running), "handed off");
    }
    // Each hand-off arrives as its own message: a wait returns once one has.
    let mut got = Vec::new();
    for _ in 0..2 {
        if got.len() < 2 {
            let more = b
                .receive_wait(&me("w"), 2 - got.len(), Duration::from_secs(10))
                .await
                .unwrap();
            got.extend(more);
        }
    }
    assert_eq!(got.len(), 2, "{got:?}");
    let ack = b.complete(&got[0].lease, b"ok".to_vec()).await.unwrap();
    assert_eq!(ack.ack, switchyard_core::Ack::Completed);
    let third = submit().await;
    assert_eq!(third.state, Some(TaskState::Ready), "nobody is parked");
    assert_eq!(third.assigned, None);
}

#[tokio::test]
async fn a_filled_worker_is_unparked_on_both_backends() {
    let m = MemoryBackend::with_clock(Arc::new(ManualClock::new(START)));
    a_worker_filled_by_hand_offs_is_no_longer_parked(&m).await;
    let server = RedisServer::start().unwrap();
    a_worker_filled_by_hand_offs_is_no_longer_parked(&redis(&server, "filled").await).await;
}

#[tokio::test]
async fn the_memory_reference_hands_off() {
    for strategy in [Strategy::Pull, Strategy::LeastLoaded, Strategy::RoundRobin] {
        let b = MemoryBackend::with_clock(Arc::new(ManualClock::new(START)));
        the_submit_starts_it_and_the_wait_returns_it(&b, strategy).await;
    }
}

#[tokio::test]
async fn redis_hands_off_in_the_submit_call_alone() {
    let server = RedisServer::start().unwrap();
    let probe = redis::Client::open(server.url()).unwrap();
    let mut conn = probe.get_multiplexed_async_connection().await.unwrap();
    for (ns, strategy) in [
        ("pull", Strategy::Pull),
        ("least-loaded", Strategy::LeastLoaded),
        ("round-robin", Strategy::RoundRobin),
    ] {
        let b = redis(&server, ns).await;
        let before = fcall_count(&mut conn).await;
        the_submit_starts_it_and_the_wait_returns_it(&b, strategy).await;
        // declare, register, the parking ask, submit, complete: the waiting receive made none.
        assert_eq!(fcall_count(&mut conn).await - before, 5, "{ns}");
    }
}

/// A worker parked in Redis but with nobody listening on its wake channel (its process died,
/// or its subscription dropped) is handed nothing: a hand-off would start the task and count
/// an attempt that never runs. The task waits, ready, with no attempt counted; the worker is
/// unparked; once it listens again, its wait takes the task as attempt 1. (Dropping
/// `listening(wr)` from `sleeper` in lua/lib/place.lua fails this.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_nobody_listens_for_is_handed_nothing() {
    let server = RedisServer::start().unwrap();
    let b = redis(&server, "deaf").await;
    parked_worker(&b, Strategy::Pull).await;
    assert_eq!(
        server.kill_pubsub_clients().unwrap(),
        1,
        "the wake-up subscription"
    );
    let out = b
        .submit(TaskSpec::builder("q", "k").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.state, Some(TaskState::Ready), "not handed off");
    assert_eq!(out.assigned, None);
    let info = b.get_task(out.id).await.unwrap().unwrap();
    assert_eq!(info.attempts, 0, "no attempt counted");
    let got = b
        .receive_wait(&me("w"), 2, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].lease.task, out.id);
    assert_eq!(got[0].attempt, 1, "its first attempt");
}
