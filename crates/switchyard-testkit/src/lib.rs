//! # switchyard-testkit
//!
//! Dev-only support for Switchyard's tests:
//!
//! * [`scenario`] — random operation sequences over any backend, with the invariants of
//!   DESIGN §3 checked after every step, and a trace for comparing backends;
//! * [`fairness`] — the fairness property of each dispatch strategy, as reusable checks;
//! * [`redis_server`] — real `redis-server` processes on free loopback ports;
//! * [`sentinel`] — a primary with replicas watched by Sentinels, for failover tests.

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
