//! # switchyard-testkit
//!
//! Dev-only support for Switchyard's tests:
//!
//! * [`scenario`] — random operation sequences over any backend, with the invariants of
//!   the invariants of `docs/architecture.md` ("The state machine") checked after every step, and a trace for comparing backends;
//! * [`fairness`] — the fairness property of each dispatch strategy, as reusable checks;
//! * [`redis_server`] — real `redis-server` processes on free loopback ports;
//! * [`sentinel`] — a primary with replicas watched by Sentinels, for failover tests.

pub mod cluster;
pub mod fairness;
pub mod redis_server;
pub mod scenario;
pub mod sentinel;

/// The instance token of every worker a test registers with [`test_worker`].
pub fn test_instance() -> switchyard_core::InstanceToken {
    scenario::instance_token(0)
}

/// The spec of worker `id` serving `queues`, with the fixed [`test_instance`] token, so that a
/// test can name it later with [`me`].
pub fn test_worker<I, Q>(id: &str, queues: I) -> switchyard_core::WorkerSpec
where
    I: IntoIterator<Item = Q>,
    Q: AsRef<str>,
{
    match switchyard_core::WorkerSpec::new(id, queues) {
        Ok(spec) => spec.instance(test_instance()),
        Err(e) => panic!("test worker {id}: {e}"),
    }
}

/// Worker `id`, registered with [`test_worker`], as it names itself.
pub fn me(id: &str) -> switchyard_core::WorkerRef {
    match switchyard_core::WorkerId::new(id) {
        Ok(id) => switchyard_core::WorkerRef {
            id,
            instance: test_instance(),
        },
        Err(e) => panic!("test worker {id}: {e}"),
    }
}

/// Waits (polling every 10 ms) until `check` holds; panics after `within`, naming `what`.
pub async fn wait_until(within: std::time::Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(
            start.elapsed() < within,
            "gave up after {within:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Declares `queue` (FCFS, round-robin), registers worker `w` ([`test_worker`]) on it, and
/// runs one awaited task through every kind of connection a backend keeps: a caller awaiting
/// its outcome (the shared subscription), the worker waiting for work (its wake-up
/// subscription), the script calls. Panics on any failure: for tests of how a backend
/// connects (TLS, ACL users).
pub async fn awaited_round_trip<B>(backend: &B, queue: &str)
where
    B: switchyard_core::Backend + Clone + 'static,
{
    use std::time::Duration;
    use switchyard_core::{Policy, QueueConfig, QueueName, Strategy, TaskOutcome, TaskSpec};

    let name = QueueName::new(queue).unwrap_or_else(|e| panic!("queue {queue}: {e}"));
    let config = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin);
    if let Err(e) = backend.declare_queue(&name, config).await {
        panic!("declare {queue}: {e}");
    }
    if let Err(e) = backend.register_worker(test_worker("w", [queue])).await {
        panic!("register w: {e}");
    }
    let spec = TaskSpec::builder(queue, "k")
        .build()
        .unwrap_or_else(|e| panic!("spec: {e}"));
    let id = spec.id();
    if let Err(e) = backend.submit(spec).await {
        panic!("submit: {e}");
    }
    // Awaited once the task exists (a wait for an unknown id is `TaskNotFound`) and before
    // it can finish (it is completed below).
    let waiter = {
        let b = backend.clone();
        tokio::spawn(async move { b.wait_outcome(id, Duration::from_secs(20)).await })
    };
    let got = match backend
        .receive_wait(&me("w"), 1, Duration::from_secs(10))
        .await
    {
        Ok(got) => got,
        Err(e) => panic!("receive_wait: {e}"),
    };
    assert_eq!(got.len(), 1, "the waiting worker receives the task");
    if let Err(e) = backend.complete(&got[0].lease, b"ok".to_vec()).await {
        panic!("complete: {e}");
    }
    match waiter.await {
        Ok(Ok(outcome)) => assert_eq!(outcome, Some(TaskOutcome::Succeeded(b"ok".to_vec()))),
        other => panic!("wait_outcome: {other:?}"),
    }
}
