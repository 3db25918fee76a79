//! Random operation sequences over any [`Backend`], with the invariants of `docs/architecture.md` ("The state machine") checked
//! after every step through the public API.
//!
//! A [`Scenario`] is a set of queue configurations and a list of [`Op`]s; a [`Runner`] applies
//! them to one backend on a [`ManualClock`], records every answer in a trace, and after each
//! step checks:
//!
//! 1. **conservation** — every accepted task is found, in exactly one state, and the backend's
//!    per-state counts equal the tally of the task records;
//! 2. **capacity** — no worker holds more tasks than its capacity, and its in-flight count is the
//!    number of tasks that name it;
//! 3. **work conservation** — no push queue has a ready task while a worker serving it has a
//!    free slot;
//! 4. **order** — the tasks that left a queue's ready set in the step were a prefix of it, and
//!    the ready set itself is in the order the policy prescribes, recomputed independently:
//!    each ready task's key from [`Policy::sort_key`] with its priority, cost and the enqueue
//!    time the runner expects from the steps it applied (checked by [`Runner::apply`]);
//! 5. **idempotence** — a repeated submit and a repeated completion change nothing.
//!
//! Backends add their own structural audit through [`Runner::with_audit`]. Two runners fed the
//! same scenario must produce the same trace if the backends decide the same way; that is how
//! the cross-backend tests compare Redis with the memory reference.

mod admin;
mod flows;
mod generators;
mod groups;
mod invariants;
mod leases;
mod ops;
mod runner;
mod schedules;
mod snapshot;
mod together;

pub use generators::{
    any_config, any_op, any_policy, any_scenario, any_strategy, dedup_scenario, flow_scenario,
    group_scenario, pull_scenario, running_scenario, schedule_scenario,
};
pub use ops::{
    FlowChildOp, Op, Scenario, SubmitOp, instance_token, queue_index, queue_name, worker_id,
};
pub use runner::{AuditFn, Runner, runtime};
pub use snapshot::{EventView, Snapshot};

/// Workers a scenario may use (`w0` …).
pub const WORKERS: usize = 4;
/// Queues a scenario declares (`q0` …).
pub const QUEUES: usize = 3;
/// Start of the manual clock.
pub const START_MS: u64 = 1_700_000_000_000;
/// Maintenance batch limit used by [`Op::Advance`].
pub const MAINTAIN_LIMIT: usize = 64;
