//! What a producer submits: [`TaskSpec`], built with [`TaskSpecBuilder`], and the limits it
//! is checked against. What a backend reports about a task is in `state`
//! ([`TaskState`](crate::TaskState), [`TaskInfo`](crate::TaskInfo),
//! [`TaskOutcome`](crate::TaskOutcome)).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Millis, duration_ms};
use crate::id::MAX_ID_MILLIS;
use crate::{Error, QueueName, TaskId, TaskKind};

/// Largest accepted payload, in bytes (1 MiB). Larger inputs belong in object storage, with a
/// reference in the payload.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Longest accepted affinity or dedup key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest accepted `max_attempts`.
pub const MAX_ATTEMPTS: u32 = 1000;
/// Largest accepted timeout or cost hint, in milliseconds (2³² − 1 ms, about 49.7 days).
pub const MAX_DURATION_MS: u64 = u32::MAX as u64;
/// Latest accepted run-at time, in milliseconds since the epoch (2⁴⁸ − 1).
pub const MAX_RUN_AT_MS: Millis = MAX_ID_MILLIS;

/// When a task becomes ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Schedule {
    /// As soon as it is submitted.
    #[default]
    Now,
    /// At an absolute time, in milliseconds since the Unix epoch (by the backend's clock).
    At(Millis),
    /// This many milliseconds after the backend accepts it.
    After(u64),
}

impl Schedule {
    /// The run-at time for a submit at `now`, or `None` if the task is ready at once.
    pub fn run_at(self, now: Millis) -> Option<Millis> {
        match self {
            Schedule::Now => None,
            Schedule::At(at) if at > now => Some(at),
            Schedule::At(_) => None,
            Schedule::After(0) => None,
            Schedule::After(delay) => Some(now.saturating_add(delay).min(MAX_RUN_AT_MS)),
        }
    }
}

/// A validated task, ready to submit. Build one with [`TaskSpec::builder`].
///
/// ```
/// use switchyard_core::TaskSpec;
/// use std::time::Duration;
/// let spec = TaskSpec::builder("emails", "send_welcome")
///     .payload(br#"{"to":"ada@example.com"}"#.to_vec())
///     .priority(5)
///     .cost_hint(Duration::from_millis(120))
///     .delay(Duration::from_secs(30))
///     .max_attempts(5)
///     .build()
///     .unwrap();
/// assert_eq!(spec.queue().as_str(), "emails");
///
/// let err = TaskSpec::builder("emails", "send welcome").build().unwrap_err();
/// assert!(err.to_string().contains("task kind"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    id: TaskId,
    queue: QueueName,
    kind: TaskKind,
    payload: Vec<u8>,
    priority: u16,
    cost_hint_ms: Option<u32>,
    schedule: Schedule,
    max_attempts: Option<u32>,
    timeout_ms: Option<u32>,
    affinity_key: Option<String>,
    dedup_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group_key: Option<String>,
    #[serde(default)]
    deadline: Option<Millis>,
    trace_parent: Option<crate::TraceParent>,
    trace_state: Option<crate::TraceState>,
}

impl TaskSpec {
    /// Starts a builder for a task of `kind` on `queue`. Names are validated by
    /// [`TaskSpecBuilder::build`].
    pub fn builder(queue: impl AsRef<str>, kind: impl AsRef<str>) -> TaskSpecBuilder {
        TaskSpecBuilder {
            id: None,
            queue: queue.as_ref().to_owned(),
            kind: kind.as_ref().to_owned(),
            payload: Vec::new(),
            priority: 0,
            cost_hint: None,
            schedule: Schedule::Now,
            max_attempts: None,
            timeout: None,
            affinity_key: None,
            dedup_key: None,
            group_key: None,
            deadline: None,
            trace_parent: None,
            trace_state: None,
        }
    }

    /// The task's id (client-generated).
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The same task under another id (a partitioned namespace gives a task routed by its
    /// affinity or dedup key an id that names its partition).
    pub fn with_id(mut self, id: TaskId) -> Self {
        self.id = id;
        self
    }
    /// The queue it is submitted to.
    pub fn queue(&self) -> &QueueName {
        &self.queue
    }
    /// The handler name.
    pub fn kind(&self) -> &TaskKind {
        &self.kind
    }
    /// The opaque payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// Priority, `0..=65535`; higher runs first under the priority policy.
    pub fn priority(&self) -> u16 {
        self.priority
    }
    /// Expected run time in milliseconds, used by shortest-job-first.
    pub fn cost_hint_ms(&self) -> Option<u32> {
        self.cost_hint_ms
    }
    /// When the task becomes ready.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }
    /// Attempts before the task is dead; `None` takes the queue's default.
    pub fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }
    /// Per-attempt timeout in milliseconds; `None` takes the queue's default.
    pub fn timeout_ms(&self) -> Option<u32> {
        self.timeout_ms
    }
    /// Key for the affinity strategy: equal keys go to the same worker while it is eligible.
    pub fn affinity_key(&self) -> Option<&str> {
        self.affinity_key.as_deref()
    }
    /// Key for unique tasks: a second submit with the same key inside the queue's dedup window
    /// is answered with the first task's id.
    pub fn dedup_key(&self) -> Option<&str> {
        self.dedup_key.as_deref()
    }
    /// The group (tenant) it belongs to in a queue that shares between groups
    /// ([`QueueConfig::groups`](crate::QueueConfig::groups)).
    pub fn group_key(&self) -> Option<&str> {
        self.group_key.as_deref()
    }
    /// The time it should have started by, in ms since the epoch (backend clock): orders it
    /// under earliest-deadline-first and, on a queue that expires late tasks, ends it
    /// [`Expired`](crate::TaskState::Expired) if it still waits then.
    pub fn deadline(&self) -> Option<Millis> {
        self.deadline
    }
    /// The trace context of the code that submitted it (see [`TraceParent`](crate::TraceParent)).
    pub fn trace_parent(&self) -> Option<&crate::TraceParent> {
        self.trace_parent.as_ref()
    }
    /// The vendor state that travels with its trace parent (see [`TraceState`](crate::TraceState)).
    pub fn trace_state(&self) -> Option<&crate::TraceState> {
        self.trace_state.as_ref()
    }
    /// The same task carrying the trace context `parent` and `state` (the client attaches the
    /// caller's trace context to a spec that has none). A state without a parent is dropped:
    /// it means nothing alone.
    pub fn with_trace_context(
        mut self,
        parent: Option<crate::TraceParent>,
        state: Option<crate::TraceState>,
    ) -> Self {
        self.trace_state = state.filter(|_| parent.is_some());
        self.trace_parent = parent;
        self
    }
}

/// Builder for [`TaskSpec`]; every check happens in [`TaskSpecBuilder::build`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct TaskSpecBuilder {
    id: Option<TaskId>,
    queue: String,
    kind: String,
    payload: Vec<u8>,
    priority: u16,
    cost_hint: Option<Duration>,
    schedule: Schedule,
    max_attempts: Option<u32>,
    timeout: Option<Duration>,
    affinity_key: Option<String>,
    dedup_key: Option<String>,
    group_key: Option<String>,
    deadline: Option<Millis>,
    trace_parent: Option<crate::TraceParent>,
    trace_state: Option<crate::TraceState>,
}

impl TaskSpecBuilder {
    /// Uses a given id instead of a fresh one (for idempotent re-submits).
    pub fn id(mut self, id: TaskId) -> Self {
        self.id = Some(id);
        self
    }
    /// The payload bytes (at most [`MAX_PAYLOAD_BYTES`]).
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }
    /// Priority (higher first under the priority policy). Default 0.
    pub fn priority(mut self, priority: u16) -> Self {
        self.priority = priority;
        self
    }
    /// Expected run time, for shortest-job-first (at most [`MAX_DURATION_MS`] ms).
    pub fn cost_hint(mut self, cost: Duration) -> Self {
        self.cost_hint = Some(cost);
        self
    }
    /// Runs no earlier than `at` milliseconds since the epoch (backend clock).
    pub fn run_at(mut self, at: Millis) -> Self {
        self.schedule = Schedule::At(at);
        self
    }
    /// Runs no earlier than `delay` after the backend accepts it.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.schedule = Schedule::After(duration_ms(delay));
        self
    }
    /// Attempts before the task goes to the dead-letter set (`1..=1000`).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }
    /// Per-attempt timeout (1 ms to [`MAX_DURATION_MS`] ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Affinity key (at most [`MAX_KEY_BYTES`] bytes).
    pub fn affinity_key(mut self, key: impl Into<String>) -> Self {
        self.affinity_key = Some(key.into());
        self
    }
    /// Dedup key (at most [`MAX_KEY_BYTES`] bytes).
    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    /// Group key (at most [`MAX_KEY_BYTES`] bytes): the tenant the task belongs to, in a queue
    /// that shares its dispatches fairly between groups
    /// ([`QueueConfig::groups`](crate::QueueConfig::groups); a plain queue refuses it).
    ///
    /// ```
    /// use switchyard_core::TaskSpec;
    /// let spec = TaskSpec::builder("imports", "row").group_key("customer-42").build()?;
    /// assert_eq!(spec.group_key(), Some("customer-42"));
    /// # Ok::<(), switchyard_core::Error>(())
    /// ```
    pub fn group_key(mut self, key: impl Into<String>) -> Self {
        self.group_key = Some(key.into());
        self
    }

    /// Should start by `at` milliseconds since the epoch (backend clock; at most
    /// [`MAX_RUN_AT_MS`]). A queue under [`Policy::EarliestDeadlineFirst`](crate::Policy)
    /// runs the earliest deadline first; one that expires late tasks
    /// ([`QueueConfig::expire_late`](crate::QueueConfig::expire_late)) ends a task still
    /// waiting at its deadline in [`Expired`](crate::TaskState::Expired) instead of running it.
    ///
    /// ```
    /// use switchyard_core::TaskSpec;
    /// let spec = TaskSpec::builder("reports", "render").deadline(1_700_000_060_000).build()?;
    /// assert_eq!(spec.deadline(), Some(1_700_000_060_000));
    /// # Ok::<(), switchyard_core::Error>(())
    /// ```
    pub fn deadline(mut self, at: Millis) -> Self {
        self.deadline = Some(at);
        self
    }

    /// The W3C trace context the worker's span for each attempt continues.
    pub fn trace_parent(mut self, trace: crate::TraceParent) -> Self {
        self.trace_parent = Some(trace);
        self
    }

    /// The W3C `tracestate` that goes with [`trace_parent`](TaskSpecBuilder::trace_parent)
    /// (refused by `build` without one).
    ///
    /// ```
    /// use switchyard_core::{TaskSpec, TraceParent, TraceState};
    /// let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?;
    /// let state = TraceState::parse("congo=t61rcWkgMzE")?;
    /// assert!(TaskSpec::builder("q", "k").trace_state(state.clone()).build().is_err());
    /// let spec = TaskSpec::builder("q", "k").trace_parent(parent).trace_state(state).build()?;
    /// assert_eq!(spec.trace_state().map(TraceState::as_str), Some("congo=t61rcWkgMzE"));
    /// # Ok::<(), switchyard_core::Error>(())
    /// ```
    pub fn trace_state(mut self, state: crate::TraceState) -> Self {
        self.trace_state = Some(state);
        self
    }

    /// Validates everything and returns the spec, or the first problem found.
    pub fn build(self) -> Result<TaskSpec, Error> {
        let queue = QueueName::new(&self.queue)?;
        let kind = TaskKind::new(&self.kind)?;
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::invalid(
                "payload",
                format!(
                    "{} bytes is more than the {MAX_PAYLOAD_BYTES}-byte limit; store large data elsewhere and pass a reference",
                    self.payload.len()
                ),
            ));
        }
        let cost_hint_ms = self
            .cost_hint
            .map(|c| bounded_ms("cost hint", c, 0))
            .transpose()?;
        let timeout_ms = self
            .timeout
            .map(|t| bounded_ms("timeout", t, 1))
            .transpose()?;
        if let Some(attempts) = self.max_attempts
            && !(1..=MAX_ATTEMPTS).contains(&attempts)
        {
            return Err(Error::invalid(
                "max attempts",
                format!("{attempts} is outside 1..={MAX_ATTEMPTS}"),
            ));
        }
        match self.schedule {
            Schedule::At(at) if at > MAX_RUN_AT_MS => {
                return Err(Error::invalid(
                    "run-at",
                    format!("{at} ms is after the latest supported time {MAX_RUN_AT_MS} ms"),
                ));
            }
            Schedule::After(delay) if delay > MAX_RUN_AT_MS => {
                return Err(Error::invalid(
                    "delay",
                    format!("{delay} ms is longer than the supported {MAX_RUN_AT_MS} ms"),
                ));
            }
            _ => {}
        }
        if let Some(at) = self.deadline
            && at > MAX_RUN_AT_MS
        {
            return Err(Error::invalid(
                "deadline",
                format!("{at} ms is after the latest supported time {MAX_RUN_AT_MS} ms"),
            ));
        }
        for (field, key) in [
            ("affinity key", &self.affinity_key),
            ("dedup key", &self.dedup_key),
            ("group key", &self.group_key),
        ] {
            if let Some(key) = key
                && (key.is_empty() || key.len() > MAX_KEY_BYTES)
            {
                return Err(Error::invalid(
                    field,
                    format!("must be 1..={MAX_KEY_BYTES} bytes, got {}", key.len()),
                ));
            }
        }
        if let Some(key) = &self.group_key {
            crate::flow::groups::validate_key(key)?;
        }
        if self.trace_state.is_some() && self.trace_parent.is_none() {
            return Err(Error::invalid(
                "trace state",
                "needs a trace parent: a tracestate belongs to the traceparent it came with",
            ));
        }
        Ok(TaskSpec {
            id: self.id.unwrap_or_default(),
            queue,
            kind,
            payload: self.payload,
            priority: self.priority,
            cost_hint_ms,
            schedule: self.schedule,
            max_attempts: self.max_attempts,
            timeout_ms,
            affinity_key: self.affinity_key,
            dedup_key: self.dedup_key,
            group_key: self.group_key,
            deadline: self.deadline,
            trace_parent: self.trace_parent,
            trace_state: self.trace_state,
        })
    }
}

/// `d` in whole ms if it lies in `min..=MAX_DURATION_MS` ms.
pub(crate) fn bounded_ms(field: &'static str, d: Duration, min: u64) -> Result<u32, Error> {
    let ms = duration_ms(d);
    if ms < min || ms > MAX_DURATION_MS {
        return Err(Error::invalid(
            field,
            format!(
                "{} is outside {min}..={MAX_DURATION_MS} ms",
                crate::display::duration(d)
            ),
        ));
    }
    u32::try_from(ms).map_err(|_| Error::invalid(field, "out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates_each_field() {
        let ok = TaskSpec::builder("q", "k").build().unwrap();
        assert_eq!(ok.priority(), 0);
        let cases = [
            (TaskSpec::builder("q q", "k"), "queue name"),
            (TaskSpec::builder("q", ""), "task kind"),
            (
                TaskSpec::builder("q", "k").payload(vec![0; MAX_PAYLOAD_BYTES + 1]),
                "payload",
            ),
            (TaskSpec::builder("q", "k").max_attempts(0), "max attempts"),
            (
                TaskSpec::builder("q", "k").max_attempts(1001),
                "max attempts",
            ),
            (
                TaskSpec::builder("q", "k").timeout(Duration::ZERO),
                "timeout",
            ),
            (
                TaskSpec::builder("q", "k").cost_hint(Duration::from_secs(1 << 33)),
                "cost hint",
            ),
            (
                TaskSpec::builder("q", "k").run_at(MAX_RUN_AT_MS + 1),
                "run-at",
            ),
            (TaskSpec::builder("q", "k").affinity_key(""), "affinity key"),
            (
                TaskSpec::builder("q", "k").deadline(MAX_RUN_AT_MS + 1),
                "deadline",
            ),
            (
                TaskSpec::builder("q", "k").dedup_key("x".repeat(257)),
                "dedup key",
            ),
        ];
        for (builder, field) in cases {
            let err = builder.build().unwrap_err();
            assert!(
                matches!(&err, Error::Invalid { field: f, .. } if *f == field),
                "{err}"
            );
        }
    }

    #[test]
    fn schedule_resolution() {
        assert_eq!(Schedule::Now.run_at(10), None);
        assert_eq!(Schedule::At(5).run_at(10), None);
        assert_eq!(Schedule::At(15).run_at(10), Some(15));
        assert_eq!(Schedule::After(0).run_at(10), None);
        assert_eq!(Schedule::After(7).run_at(10), Some(17));
    }
}
