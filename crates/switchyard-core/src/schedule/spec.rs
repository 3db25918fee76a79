//! A schedule's definition and state, and the claim of its due ticks.

use serde::{Deserialize, Serialize};

use super::ticks::{Misfire, Plan, Recurrence, Ticks, plan, tick_task_id};
use crate::clock::Millis;
use crate::{
    Claimed, Error, MaintenanceReport, QueueName, ScheduleName, TaskId, TaskKind, TaskSpec,
    TaskState,
};

/// What a tick does while the task of the schedule's previous tick has not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Overlap {
    /// Creates its task anyway (the default).
    #[default]
    Allow,
    /// Creates nothing; the tick counts as passed ([`ScheduleState::skipped`]).
    Skip,
}

/// The task each tick creates: its id is the tick's ([`tick_task_id`]), the rest is this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskTemplate {
    /// Its queue.
    pub queue: QueueName,
    /// Its handler.
    pub kind: TaskKind,
    /// Its payload.
    #[serde(default)]
    pub payload: Vec<u8>,
    /// Its priority.
    #[serde(default)]
    pub priority: u16,
}

impl TaskTemplate {
    /// Tasks of `kind` in `queue`, with an empty payload and priority 0.
    pub fn new(queue: QueueName, kind: TaskKind) -> TaskTemplate {
        TaskTemplate {
            queue,
            kind,
            payload: Vec::new(),
            priority: 0,
        }
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> TaskTemplate {
        self.payload = payload.into();
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: u16) -> TaskTemplate {
        self.priority = priority;
        self
    }

    /// The task tick `tick` of schedule `name` creates.
    pub fn task(&self, name: &ScheduleName, tick: Millis) -> Result<TaskSpec, Error> {
        TaskSpec::builder(self.queue.as_str(), self.kind.as_str())
            .id(tick_task_id(name.as_str(), tick))
            .payload(self.payload.clone())
            .priority(self.priority)
            .build()
    }
}

/// A named schedule: when it ticks, what a late ticker does, what a tick does while the last
/// tick's task runs, and the task each tick creates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduleSpec {
    /// Its name, unique in the namespace.
    pub name: ScheduleName,
    /// When it ticks.
    pub recurrence: Recurrence,
    /// What a ticker that comes late runs.
    #[serde(default)]
    pub misfire: Misfire,
    /// What a tick does while the previous tick's task has not finished.
    #[serde(default)]
    pub overlap: Overlap,
    /// The task each tick creates.
    pub task: TaskTemplate,
}

impl ScheduleSpec {
    /// Schedule `name`: `recurrence`, creating `task`; misfires run once, overlaps allowed.
    pub fn new(name: ScheduleName, recurrence: Recurrence, task: TaskTemplate) -> ScheduleSpec {
        ScheduleSpec {
            name,
            recurrence,
            misfire: Misfire::default(),
            overlap: Overlap::default(),
            task,
        }
    }

    /// Sets the misfire policy.
    pub fn with_misfire(mut self, misfire: Misfire) -> ScheduleSpec {
        self.misfire = misfire;
        self
    }

    /// Sets the overlap policy.
    pub fn with_overlap(mut self, overlap: Overlap) -> ScheduleSpec {
        self.overlap = overlap;
        self
    }

    /// Checks the definition (its recurrence compiles, its task builds) and returns its ticks;
    /// `created_at` anchors an interval without a start.
    pub fn validate(&self, created_at: Millis) -> Result<Ticks, Error> {
        let ticks = self.recurrence.compile(created_at)?;
        self.task.task(&self.name, created_at)?;
        Ok(ticks)
    }
}

/// Where a schedule stands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduleState {
    /// Its next tick (`None`: ended, by its end or its limit).
    pub next: Option<Millis>,
    /// Ticks claimed so far: each ran (created its task) or was skipped by the overlap
    /// policy. The limit counts these.
    pub runs: u64,
    /// Of those, the ticks the overlap policy skipped.
    pub skipped: u64,
    /// The last tick claimed.
    pub last_tick: Option<Millis>,
    /// The task of the last tick that ran.
    pub last_task: Option<TaskId>,
    /// Paused: no tick is claimed; resuming ticks from the first tick after the resume.
    pub paused: bool,
    /// Bumped by every upsert that changes the definition: a claim computed from an older one
    /// is refused.
    pub version: u64,
    /// When its current definition was set: an interval without a start counts from it.
    pub defined_at: Millis,
}

/// A schedule's definition and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// The definition.
    pub spec: ScheduleSpec,
    /// The state.
    pub state: ScheduleState,
}

impl ScheduleInfo {
    /// A schedule and its state.
    pub fn new(spec: ScheduleSpec, state: ScheduleState) -> ScheduleInfo {
        ScheduleInfo { spec, state }
    }
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Upserted {
    /// A new schedule; its first tick is the first after now.
    Created,
    /// The same definition was there: nothing changed.
    Unchanged,
    /// Another definition was there: replaced; it takes effect from the first tick after now
    /// (the counts are kept).
    Changed,
}

/// A claim of a schedule's due ticks at one time, computed from its state ([`Claim::at`]) and
/// applied atomically by a backend only if the state still says what it was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The next tick the state must still have.
    pub expected_next: Millis,
    /// The definition version the state must still have.
    pub version: u64,
    /// The ticks to run, oldest first.
    pub run: Vec<Millis>,
    /// The next tick afterwards (`None`: the schedule ends).
    pub next: Option<Millis>,
}

impl Claim {
    /// The claim a ticker makes at `now` of `info` (compiled to `ticks`), or `None` if nothing
    /// is due (paused, ended, or its next tick is later).
    pub fn at(info: &ScheduleInfo, ticks: &Ticks, now: Millis) -> Option<Claim> {
        let state = &info.state;
        let next = state.next.filter(|n| *n <= now && !state.paused)?;
        let left = info
            .spec
            .recurrence
            .limit
            .map(|limit| limit.saturating_sub(state.runs));
        let Plan { run, next: after } = plan(ticks, next, now, info.spec.misfire, left);
        Some(Claim {
            expected_next: next,
            version: state.version,
            run,
            next: after,
        })
    }

    /// Whether `state` still says what the claim was computed from.
    pub fn holds(&self, state: &ScheduleState) -> bool {
        !state.paused && state.next == Some(self.expected_next) && state.version == self.version
    }
}

/// Folds what applying a claim during maintenance gave into the pass's `report`: an applied
/// claim's tasks and assignments. A claim refused because the schedule's queue is missing or
/// full leaves the tick waiting for a later pass: that error is returned in `Ok(Some(_))`, for
/// the caller to log, and the pass goes on; any other error ends the pass.
pub fn fold_claim(
    report: &mut MaintenanceReport,
    applied: Result<Option<Claimed>, Error>,
) -> Result<Option<Error>, Error> {
    match applied {
        Ok(Some(claimed)) => {
            report.ticked.extend(claimed.created);
            report.assignments.extend(claimed.assignments);
            Ok(None)
        }
        Ok(None) => Ok(None),
        Err(e @ (Error::UnknownQueue(_) | Error::QueueFull { .. } | Error::GroupFull { .. })) => {
            Ok(Some(e))
        }
        Err(e) => Err(e),
    }
}

/// Whether a tick under `overlap` runs, the previous tick's task being in `previous`
/// (`None`: no previous task, or its record is gone).
pub fn overlap_allows(overlap: Overlap, previous: Option<TaskState>) -> bool {
    match overlap {
        Overlap::Allow => true,
        Overlap::Skip => previous.is_none_or(TaskState::is_terminal),
    }
}
