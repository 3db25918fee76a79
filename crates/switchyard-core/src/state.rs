//! What a backend reports about a task: where it is in its life ([`TaskState`]), a snapshot
//! of it ([`TaskInfo`], with which fields show in which state decided once, in
//! [`TaskInfo::shown`]), and how it ended ([`TaskOutcome`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::{QueueName, TaskId, TaskKind, WorkerId};

/// Where a task is in its life. See the state machine in `docs/architecture.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TaskState {
    /// A flow's task waiting for its children to end ([`crate::tree`]): in no ready or
    /// delayed set.
    WaitingChildren,
    /// Waiting for its run-at time.
    Scheduled,
    /// In its queue, waiting for a worker.
    Ready,
    /// Assigned to a worker's inbox, under a lease, not yet received.
    Dispatched,
    /// Received by a worker and running, under a lease with a deadline.
    Running,
    /// Failed; waiting for its backoff to end before it is ready again.
    RetryScheduled,
    /// Finished successfully.
    Succeeded,
    /// Failed its last attempt (or failed without retry); in the dead-letter set.
    Dead,
    /// Cancelled before it finished.
    Cancelled,
    /// Still waiting at its deadline in a queue that expires late tasks: it never started
    /// (or never started again), and no attempt was used.
    Expired,
}

impl TaskState {
    /// All states, in life order.
    pub const ALL: [TaskState; 10] = [
        TaskState::WaitingChildren,
        TaskState::Scheduled,
        TaskState::Ready,
        TaskState::Dispatched,
        TaskState::Running,
        TaskState::RetryScheduled,
        TaskState::Succeeded,
        TaskState::Dead,
        TaskState::Cancelled,
        TaskState::Expired,
    ];

    /// The state's name, as used in docs, Redis records and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::WaitingChildren => "waiting-children",
            TaskState::Scheduled => "scheduled",
            TaskState::Ready => "ready",
            TaskState::Dispatched => "dispatched",
            TaskState::Running => "running",
            TaskState::RetryScheduled => "retry-scheduled",
            TaskState::Succeeded => "succeeded",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
            TaskState::Expired => "expired",
        }
    }

    /// Parses [`TaskState::as_str`] output.
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Succeeded, dead, cancelled or expired: nothing will happen to the task any more
    /// (unless a dead task is re-driven).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled | TaskState::Expired
        )
    }

    /// Dispatched or running: held by a worker under a lease.
    pub fn is_leased(self) -> bool {
        matches!(self, TaskState::Dispatched | TaskState::Running)
    }

    /// Ready, scheduled or retry-scheduled: in its queue, not yet started (what a bound
    /// counts: [`crate::flow::bounded`]).
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            TaskState::Ready | TaskState::Scheduled | TaskState::RetryScheduled
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of one task, as a backend reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The id.
    pub id: TaskId,
    /// Its queue.
    pub queue: QueueName,
    /// Its handler name.
    pub kind: TaskKind,
    /// Current state.
    pub state: TaskState,
    /// Priority.
    pub priority: u16,
    /// Cost hint used for ordering, in ms (after defaults were applied).
    pub cost_ms: u32,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Per-attempt timeout in ms.
    pub timeout_ms: u32,
    /// When the backend accepted it.
    pub created_at: Millis,
    /// When it becomes ready, while it is scheduled or waiting for a retry.
    pub run_at: Option<Millis>,
    /// The worker holding it, while dispatched or running.
    pub worker: Option<WorkerId>,
    /// The fencing token of its lease, while dispatched or running.
    pub token: Option<crate::LeaseToken>,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// Whether a cancel was requested while it was running.
    pub cancel_requested: bool,
    /// Affinity key.
    pub affinity_key: Option<String>,
    /// Dedup key.
    pub dedup_key: Option<String>,
    /// Group key, in a queue shared between groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_key: Option<String>,
    /// When its lease runs out, while it is running (backend clock).
    pub deadline: Option<Millis>,
    /// When it ended, once it is succeeded, dead, cancelled or expired.
    pub finished_at: Option<Millis>,
    /// The time it should start by ([`TaskSpecBuilder::deadline`](crate::TaskSpecBuilder::deadline)),
    /// if it was given one (shown in every state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_by: Option<Millis>,
    /// When it last became ready, while it is ready or dispatched (the time the browser shows
    /// for those states; a retry or a return to the queue sets it again).
    #[serde(default)]
    pub ready_since: Option<Millis>,
    /// The progress its latest attempt reported ([`crate::progress`]), if any. Filled by
    /// [`Tasks::get_task`](crate::Tasks::get_task); pages of tasks (browse, dead sets) leave
    /// it out.
    #[serde(default)]
    pub progress: Option<crate::Progress>,
    /// The submitter's trace context, if it had one.
    pub trace_parent: Option<crate::TraceParent>,
    /// The vendor state of that trace context, if it had one.
    pub trace_state: Option<crate::TraceState>,
    /// Its payload (not in the JSON form: tools show its size and first bytes instead).
    #[serde(skip_serializing, default)]
    pub payload: Vec<u8>,
}

impl TaskInfo {
    /// A snapshot of task `id` in `state`, every other field empty or zero (a backend fills in
    /// what it knows; the struct may grow, so it is built this way rather than literally).
    pub fn new(id: TaskId, queue: QueueName, kind: TaskKind, state: TaskState) -> Self {
        TaskInfo {
            id,
            queue,
            kind,
            state,
            priority: 0,
            cost_ms: 0,
            attempts: 0,
            max_attempts: 0,
            timeout_ms: 0,
            created_at: 0,
            run_at: None,
            worker: None,
            token: None,
            last_error: None,
            cancel_requested: false,
            affinity_key: None,
            dedup_key: None,
            group_key: None,
            deadline: None,
            finished_at: None,
            start_by: None,
            ready_since: None,
            progress: None,
            trace_parent: None,
            trace_state: None,
            payload: Vec::new(),
        }
    }

    /// The same task as every backend shows it: the fields that belong to one state only are
    /// dropped in the others — `run_at` unless scheduled or waiting for a retry, `worker` and
    /// `token` unless dispatched or running, `deadline` unless running, `finished_at` unless
    /// succeeded, dead or cancelled, `ready_since` unless ready or dispatched. A backend fills them from what it keeps, then calls this:
    /// the rules live here once.
    ///
    /// ```
    /// use switchyard_core::{TaskInfo, TaskState};
    /// # fn shown(mut info: TaskInfo) {
    /// info.state = TaskState::Ready;
    /// info.deadline = Some(42);
    /// assert_eq!(info.shown().deadline, None);
    /// # }
    /// ```
    pub fn shown(mut self) -> Self {
        use TaskState::{
            Cancelled, Dead, Dispatched, Expired, Ready, RetryScheduled, Running, Scheduled,
            Succeeded,
        };
        let state = self.state;
        if !matches!(state, Scheduled | RetryScheduled) {
            self.run_at = None;
        }
        if !matches!(state, Dispatched | Running) {
            self.worker = None;
            self.token = None;
        }
        if state != Running {
            self.deadline = None;
        }
        if !matches!(state, Succeeded | Dead | Cancelled | Expired) {
            self.finished_at = None;
        }
        if !matches!(state, Ready | Dispatched) {
            self.ready_since = None;
        }
        self
    }

    /// The lease the task is held under while it is dispatched or running (the one a
    /// completion must present), for tools that act on a worker's behalf and for tests of
    /// fencing. `None` while it is not leased.
    ///
    /// ```
    /// use switchyard_core::{TaskInfo, TaskState};
    ///
    /// /// Whether `worker` is running the task right now.
    /// fn running_on(info: &TaskInfo, worker: &str) -> bool {
    ///     info.state == TaskState::Running
    ///         && info.lease().is_some_and(|lease| lease.worker.as_str() == worker)
    /// }
    /// ```
    pub fn lease(&self) -> Option<crate::Lease> {
        Some(crate::Lease {
            task: self.id,
            queue: self.queue.clone(),
            worker: self.worker.clone()?,
            token: self.token?,
        })
    }
}

/// How a task ended, as stored for [awaiting](crate::Tasks::get_outcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// The handler's return value.
    Succeeded(Vec<u8>),
    /// The last attempt's error; the task is in the dead-letter set.
    Dead(String),
    /// The task was cancelled.
    Cancelled,
    /// The task was still waiting at its deadline and never ran to an end.
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for state in TaskState::ALL {
            assert_eq!(TaskState::parse(state.as_str()), Some(state));
        }
    }
}
