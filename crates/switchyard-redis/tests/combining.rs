//! The Redis backend against a real redis-server, under concurrent callers: single submits,
//! waits and completions made at the same time share connections and script calls, and each
//! caller still gets its own answer, with the ready order as separate calls would leave it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;
use switchyard_testkit::{me, test_worker};

use switchyard_core::prelude::*;
use switchyard_core::{
    Ack, Error, Policy, QueueConfig, QueueName, Rejection, Strategy, TaskId, TaskOutcome, TaskSpec,
};
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::{RedisServer, fcall_count};

/// Single submits made at the same time share script calls (see `RedisConfig::
/// submit_calls_in_flight`) but each gets its own outcome: one to an undeclared queue fails
/// alone, a duplicate id is reported as such, and nothing is lost or submitted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_submits_are_combined_with_their_own_outcomes() {
    let server = RedisServer::start().unwrap();
    let config = RedisConfig {
        submit_calls_in_flight: 1,
        ..RedisConfig::new(server.url(), "combine")
    };
    let b = RedisBackend::with_config(config).await.unwrap();
    let q = QueueName::new("jobs").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin))
        .await
        .unwrap();
    let probe = redis::Client::open(server.url()).unwrap();
    let mut conn = probe.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();

    let dup = TaskSpec::builder("jobs", "x").build().unwrap();
    let mut handles = Vec::new();
    for i in 0..400 {
        let b = b.clone();
        let spec = match i {
            7 => TaskSpec::builder("nowhere", "x").build().unwrap(),
            100 | 300 => dup.clone(),
            _ => TaskSpec::builder("jobs", "x")
                .payload(vec![i as u8])
                .build()
                .unwrap(),
        };
        handles.push(tokio::spawn(
            async move { (spec.id(), b.submit(spec).await) },
        ));
    }
    let mut accepted = std::collections::BTreeSet::new();
    let mut duplicates = 0;
    for (i, h) in handles.into_iter().enumerate() {
        let (id, out) = h.await.unwrap();
        match i {
            7 => assert!(matches!(out, Err(Error::UnknownQueue(_))), "{out:?}"),
            _ => {
                let out = out.unwrap();
                assert_eq!(out.id, id);
                if out.duplicate {
                    duplicates += 1;
                } else {
                    accepted.insert(id);
                }
            }
        }
    }
    assert_eq!(duplicates, 1, "the second submit of one id is a duplicate");
    assert_eq!(accepted.len(), 398);
    assert_eq!(b.stats().await.unwrap().queues[0].ready, 398);
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
    let calls = fcall_count(&mut conn).await;
    // 400 submits (the one to an undeclared queue sent nowhere) and `stats`.
    assert!(
        calls < 200,
        "400 concurrent submits took {calls} script calls: they were not combined"
    );
}

/// Many callers awaiting outcomes at once share one subscription: the server sees a handful of
/// connections, not one per caller, and each caller gets its own task's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_waits_share_one_connection() {
    let server = RedisServer::start().unwrap();
    let b = RedisBackend::connect(&server.url(), "waits").await.unwrap();
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::default()).await.unwrap();
    let n = 200;
    let specs: Vec<TaskSpec> = (0..n)
        .map(|_| TaskSpec::builder("q", "k").build().unwrap())
        .collect();
    let ids: Vec<_> = b
        .submit_batch(specs)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    let waits: Vec<_> = ids
        .iter()
        .map(|id| {
            let (b, id) = (b.clone(), *id);
            tokio::spawn(async move { b.wait_outcome(id, Duration::from_secs(30)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probe = redis::Client::open(server.url()).unwrap();
    let mut conn = probe.get_multiplexed_async_connection().await.unwrap();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let connections = clients.lines().count();
    assert!(
        connections < 16,
        "{n} waiting callers hold {connections} connections"
    );
    b.register_worker(test_worker("w", ["q"]).capacity(n as u32))
        .await
        .unwrap();
    let w = me("w");
    for d in b.receive(&w, n).await.unwrap() {
        let value = d.lease.task.to_string().into_bytes();
        b.complete(&d.lease, value).await.unwrap();
    }
    for (id, wait) in ids.iter().zip(waits) {
        assert_eq!(
            wait.await.unwrap().unwrap(),
            Some(TaskOutcome::Succeeded(id.to_string().into_bytes()))
        );
    }
}

/// A waiting caller whose subscription connection is killed listens again and still gets the
/// outcome announced afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_survives_a_lost_subscription() {
    let server = RedisServer::start().unwrap();
    let b = RedisBackend::connect(&server.url(), "lost").await.unwrap();
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::default()).await.unwrap();
    let id = b
        .submit(TaskSpec::builder("q", "k").build().unwrap())
        .await
        .unwrap()
        .id;
    let wait = {
        let b = b.clone();
        tokio::spawn(async move { b.wait_outcome(id, Duration::from_secs(30)).await })
    };
    // Kill the subscription as soon as the waiter has opened it.
    let started = std::time::Instant::now();
    let killed = loop {
        let killed = server.kill_pubsub_clients().unwrap();
        if killed > 0 || started.elapsed() > Duration::from_secs(10) {
            break killed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(killed, 1, "the one shared subscription");
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.register_worker(test_worker("w", ["q"])).await.unwrap();
    let d = b.receive(&me("w"), 1).await.unwrap().remove(0);
    b.complete(&d.lease, b"ok".to_vec()).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the wait ends when the task does, not at its 30 s timeout")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Some(TaskOutcome::Succeeded(b"ok".to_vec())));
}

/// A backend that combines every completion of a worker into as few calls as it can
/// (`complete_calls_in_flight: 1`), its queue `q` with `tasks` tasks (their ids in submission
/// order), and the first 200 of them running on worker `w` of capacity 200.
async fn busy_worker(
    server: &RedisServer,
    ns: &str,
    config: QueueConfig,
    tasks: usize,
) -> (
    RedisBackend,
    QueueName,
    Vec<TaskId>,
    Vec<switchyard_core::Delivery>,
) {
    let b = RedisBackend::with_config(RedisConfig {
        complete_calls_in_flight: 1,
        ..RedisConfig::new(server.url(), ns)
    })
    .await
    .unwrap();
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, config).await.unwrap();
    let specs: Vec<TaskSpec> = (0..tasks)
        .map(|_| TaskSpec::builder("q", "k").build().unwrap())
        .collect();
    let order: Vec<TaskId> = specs.iter().map(|s| s.id()).collect();
    b.submit_batch(specs).await.unwrap();
    b.register_worker(test_worker("w", ["q"]).capacity(200))
        .await
        .unwrap();
    let first = b.receive(&me("w"), 200).await.unwrap();
    assert_eq!(first.len(), 200);
    (b, q, order, first)
}

/// Completions made at the same time by one worker's slots share script calls (see
/// `RedisConfig::complete_calls_in_flight`); each gets its own acknowledgement and its own
/// share of the tasks received in the same call, and a stale lease among them is refused alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_completions_are_combined_with_their_own_answers() {
    let server = RedisServer::start().unwrap();
    let (b, _, _, first) = busy_worker(&server, "acks", QueueConfig::default(), 400).await;
    let mut stale = first[7].lease.clone();
    stale.token = switchyard_core::LeaseToken(stale.token.0 + 100_000);

    let probe = redis::Client::open(server.url()).unwrap();
    let mut conn = probe.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut calls = Vec::new();
    for (i, d) in first.iter().enumerate() {
        let b = b.clone();
        let lease = if i == 7 {
            stale.clone()
        } else {
            d.lease.clone()
        };
        calls.push(tokio::spawn(async move {
            b.complete_and_receive(&lease, Vec::new(), 1).await
        }));
    }
    let mut next = std::collections::BTreeSet::new();
    for (i, call) in calls.into_iter().enumerate() {
        let (ack, deliveries) = call.await.unwrap().unwrap();
        if i == 7 {
            assert_eq!(ack.ack, Ack::Rejected(Rejection::StaleToken));
        } else {
            assert_eq!(ack.ack, Ack::Completed, "completion {i}");
        }
        assert!(deliveries.len() <= 1, "each caller asked for one task");
        next.extend(deliveries.into_iter().map(|d| d.lease.task));
    }
    // 199 slots were freed and refilled from the backlog; every refill reached one caller.
    assert_eq!(next.len(), 199);
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
    let calls = fcall_count(&mut conn).await;
    assert!(
        calls < 100,
        "200 concurrent completions took {calls} script calls: they were not combined"
    );
}

/// A combined completion takes the tasks its leases receive in one pop (`POP_AHEAD` in
/// `lua/lib/queues.lua`) and puts what refused leases left back at the head of the ready set:
/// whatever the grouping, the callers get the oldest tasks, and the rest stay in their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_completions_leave_the_ready_order_as_it_was() {
    let server = RedisServer::start().unwrap();
    for (ns, policy) in [("fcfs", Policy::Fcfs), ("priority", Policy::PRIORITY)] {
        let config = QueueConfig::new(policy, Strategy::Pull);
        let (b, q, order, first) = busy_worker(&server, ns, config, 600).await;
        // Every tenth lease is stale: refused, it receives nothing, and what a combined call
        // popped for it goes back.
        let mut calls = Vec::new();
        for (i, d) in first.iter().enumerate() {
            let b = b.clone();
            let mut lease = d.lease.clone();
            if i % 10 == 3 {
                lease.token = switchyard_core::LeaseToken(lease.token.0 + 100_000);
            }
            calls.push(tokio::spawn(async move {
                b.complete_and_receive(&lease, Vec::new(), 2).await
            }));
        }
        let mut next = std::collections::BTreeSet::new();
        for (i, call) in calls.into_iter().enumerate() {
            let (ack, deliveries) = call.await.unwrap().unwrap();
            if i % 10 == 3 {
                assert_eq!(ack.ack, Ack::Rejected(Rejection::StaleToken), "{policy:?}");
                assert!(
                    deliveries.is_empty(),
                    "{policy:?}: a refused lease receives nothing"
                );
            } else {
                assert_eq!(ack.ack, Ack::Completed, "{policy:?}: completion {i}");
            }
            next.extend(deliveries.into_iter().map(|d| d.lease.task));
        }
        // 180 slots freed (20 still held under the refused leases): the 180 oldest waiting
        // tasks fill them, and the other 220 wait in their order.
        let expected: std::collections::BTreeSet<TaskId> =
            order[200..380].iter().copied().collect();
        assert_eq!(next, expected, "{policy:?}: the oldest tasks were received");
        assert_eq!(
            b.peek_ready(&q, 1_000).await.unwrap(),
            order[380..].to_vec(),
            "{policy:?}: the rest kept their order"
        );
        assert_eq!(b.audit().await.unwrap(), Vec::<String>::new(), "{policy:?}");
    }
}
