//! # switchyard-core
//!
//! The shared vocabulary of Switchyard: the task model, the scheduling [policies](policy), the
//! dispatch [strategies](strategy), and the [`Backend`] trait that the in-memory and Redis
//! backends implement. Everything here is pure and synchronous except the trait itself.
//!
//! * [`TaskSpec`] — what a producer submits, validated by its builder.
//! * [`Policy`] — the order tasks leave a queue: FCFS, priority, shortest-job-first, with aging.
//! * [`Strategy`] / [`strategy::Balancer`] — which worker gets a task: round-robin, random,
//!   weighted, least-loaded, affinity or pull.
//! * [`Backend`] — every transition of the state machine, as the sum of seven capability
//!   traits ([`Queues`], [`Produce`], [`Membership`], [`Leases`], [`Tasks`], [`Inspect`],
//!   [`Maintain`]); [`prelude`] brings them into scope
//!   `submitted → (scheduled →) ready → dispatched → running → succeeded | retry-scheduled → … | dead | cancelled`.
//! * [`Clock`] — time, injectable ([`ManualClock`]) for deterministic tests.
//!
//! ```
//! use switchyard_core::{Policy, QueueConfig, Strategy, TaskSpec};
//! let config = QueueConfig::new(Policy::SJF, Strategy::LeastLoaded);
//! let task = TaskSpec::builder("thumbnails", "resize").payload(b"img-42".to_vec()).build()?;
//! # Ok::<(), switchyard_core::Error>(())
//! ```

pub mod admin;
pub mod backend;
mod change;
pub mod clock;
pub mod display;
mod error;
mod event;
pub mod flow;
mod id;
mod names;
pub mod policy;
pub mod prelude;
pub mod progress;
mod queue;
pub mod retry;
pub mod rng;
pub mod schedule;
mod state;
pub mod strategy;
mod task;
mod trace;
pub mod tree;
mod worker;

pub use backend::{
    Ack, AckOutcome, Assignment, BROWSE_PAGE_MAX, BROWSE_SCAN, Backend, Browse, BrowseOrder,
    CancelOutcome, Claimed, Delivery, HandBack, HeartbeatReply, Inspect, Lease, LeaseToken, Leases,
    Maintain, MaintenanceReport, Membership, Produce, QueueStats, Queues, RegisterOutcome,
    Rejection, Schedules, Stats, SubmitOutcome, TaskPage, Tasks, WorkerStats,
};
pub use change::{CHANGE_OPERATION, TaskChange};
pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use error::{BackendErrorKind, Error, Result};
pub use event::{EVENT_LOG_CAP, Event, EventCounts, EventKind, EventLevel};
pub use id::{TASK_ID_TEXT_LEN, TaskId, TaskIdGenerator};
pub use names::{QueueName, ScheduleName, TaskKind, WorkerId, is_name_byte};
pub use policy::Policy;
pub use progress::{Progress, ProgressAck};
pub use queue::{Backoff, QueueConfig};
pub use state::{TaskInfo, TaskOutcome, TaskState};
pub use strategy::Strategy;
pub use task::{
    MAX_ATTEMPTS, MAX_DURATION_MS, MAX_KEY_BYTES, MAX_PAYLOAD_BYTES, MAX_RUN_AT_MS, Schedule,
    TaskSpec, TaskSpecBuilder,
};
pub use trace::{TRACE_PARENT_LEN, TRACE_STATE_MAX_LEN, TraceParent, TraceState};
pub use worker::{
    DEFAULT_HEARTBEAT_TTL_MS, InstanceToken, MAX_INSTANCE_TOKEN, MAX_WORKER_QUEUES, WorkerRef,
    WorkerSpec,
};
