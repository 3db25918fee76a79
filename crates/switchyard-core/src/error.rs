//! Typed errors shared by every layer.

use crate::{QueueName, TaskId, WorkerId};

/// Result alias used throughout Switchyard.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a Switchyard call.
///
/// Input errors ([`Error::Invalid`]) are raised before anything is sent to a backend, so a
/// rejected call never changes state. Backend errors carry enough context for an operator to
/// act on (see [`BackendErrorKind`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value given by the caller is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field or argument that was rejected, e.g. `"queue name"`.
        field: &'static str,
        /// What is wrong with it, and what would be accepted.
        reason: String,
    },

    /// The queue has not been declared on this backend.
    #[error(
        "queue `{0}` is not declared: declare it (with its policy and strategy) before submitting to it or serving it"
    )]
    UnknownQueue(QueueName),

    /// The queue is not declared, and the backend shows that it lost data: the namespace was
    /// emptied since this process saw it, or it holds nothing on a server that was promoted
    /// from a replica. Redis restarted without persistence, was flushed, or failed over to a
    /// replica that lacked the data (asynchronous replication; see durable mode). Declaring the
    /// queue again is the way on (a client or worker that keeps its queues declared does so by
    /// itself); tasks and results stored before are gone.
    #[error(
        "queue `{queue}` is not declared: {detail}; declare the queue again (tasks stored before the loss are gone)"
    )]
    DataLost {
        /// The queue the call was about.
        queue: QueueName,
        /// What shows the loss.
        detail: String,
    },

    /// The queue exists with another configuration. Declaring is idempotent only with the same
    /// configuration; a declared queue changes with `reconfigure`.
    #[error(
        "queue `{queue}` is already declared with another configuration ({detail}); declare it with \
         the same configuration, or change it with reconfigure (`Queue::reconfigure`, \
         `switchyard reconfigure`)"
    )]
    QueueConflict {
        /// The queue that was re-declared.
        queue: QueueName,
        /// Each differing field with its declared and requested values
        /// ([`QueueConfig::diff`](crate::QueueConfig::diff)).
        detail: String,
    },

    /// The queue cannot be reconfigured or deleted now (see [`crate::admin`]).
    #[error("queue `{queue}` cannot be {operation} now: {reason}")]
    QueueInUse {
        /// The queue.
        queue: QueueName,
        /// `"reconfigured"` or `"deleted"`.
        operation: &'static str,
        /// What stands in the way.
        reason: crate::admin::InUse,
    },

    /// The queue is bounded ([`QueueConfig::max_waiting`](crate::QueueConfig::max_waiting))
    /// and the submit would take it past its bound: nothing of the call was stored (the rule:
    /// [`crate::flow::bounded`]). Submit again once workers have taken some of the waiting
    /// tasks, or raise the bound with `reconfigure`.
    #[error(
        "queue `{queue}` is full: {waiting} tasks wait and its bound is {bound}, so {adding} more do not fit; nothing of this submit was stored (submit again when workers have taken some, or raise the bound: `switchyard reconfigure {queue} --max-waiting N`)"
    )]
    QueueFull {
        /// The bounded queue.
        queue: QueueName,
        /// Tasks waiting in it (ready, scheduled, retry-scheduled) when the submit was refused.
        waiting: u64,
        /// Its bound.
        bound: u32,
        /// The new tasks the submit carried to it.
        adding: u64,
    },

    /// The queue bounds each group's waiting tasks
    /// ([`GroupShare::max_waiting`](crate::flow::groups::GroupShare::max_waiting)) and the
    /// submit would take `group` past that bound: nothing of the call was stored (the rule:
    /// [`crate::flow::bounded`]).
    #[error(
        "group `{group}` of queue `{queue}` is full: {waiting} of its tasks wait and the bound per group is {bound}, so {adding} more do not fit; nothing of this submit was stored (submit again when workers have taken some, or raise the bound: `switchyard reconfigure {queue} --group-max-waiting N`)"
    )]
    GroupFull {
        /// The queue.
        queue: QueueName,
        /// The group key (`""`: tasks submitted without one).
        group: String,
        /// The group's waiting tasks (ready, scheduled, retry-scheduled) when the submit was
        /// refused.
        waiting: u64,
        /// The bound per group.
        bound: u32,
        /// The new tasks the submit carried to the group.
        adding: u64,
    },

    /// The worker is not (or no longer) registered.
    #[error(
        "worker `{0}` is not registered (it was reaped after its heartbeat expired, and its tasks were handed back, or the backend lost its data): register it again"
    )]
    UnknownWorker(WorkerId),

    /// Another instance holds a live registration of this worker id: two processes were given
    /// the same id, or the id's previous process died less than its heartbeat TTL ago.
    #[error(
        "worker id `{worker}` is in use by another live instance (its registration expires in {expires_in_ms} ms unless it heartbeats): give every worker process its own id, or wait until the old process is gone"
    )]
    WorkerIdInUse {
        /// The id.
        worker: WorkerId,
        /// How long the holder's registration lasts without another heartbeat.
        expires_in_ms: u64,
    },

    /// This instance's registration was taken over by another instance with the same id: this
    /// one was presumed dead (no heartbeat reached the backend within its TTL), its tasks were
    /// handed back, and it must stop working under that id.
    #[error(
        "worker `{0}` was taken over by another instance with the same id: this instance was presumed dead (no heartbeat within its TTL) and its tasks were handed back"
    )]
    WorkerReplaced(WorkerId),

    /// No task with this id exists (it may never have existed or its record has expired).
    #[error("task {0} not found")]
    TaskNotFound(TaskId),

    /// The task is not in a state that allows the requested operation.
    #[error("task {id} is {state}, which does not allow {operation}")]
    WrongState {
        /// The task.
        id: TaskId,
        /// Its current state.
        state: crate::TaskState,
        /// The operation that was refused.
        operation: &'static str,
    },

    /// Waiting for something took longer than allowed.
    #[error("{operation} did not finish within {after_ms} ms")]
    Timeout {
        /// What was awaited.
        operation: &'static str,
        /// The limit, in ms.
        after_ms: u64,
    },

    /// The awaited task failed for the last time (it is in the dead-letter set).
    #[error("task {id} failed: {error}")]
    TaskFailed {
        /// The task.
        id: TaskId,
        /// Its last error.
        error: String,
    },

    /// The awaited task was cancelled.
    #[error("task {0} was cancelled")]
    TaskCancelled(TaskId),

    /// The awaited task was still waiting at its deadline and expired without running
    /// ([`crate::flow::deadline`]).
    #[error("task {0} expired: it was still waiting at its deadline")]
    TaskExpired(TaskId),

    /// A payload or result could not be encoded or decoded.
    #[error("cannot encode or decode {what}: {reason}")]
    Codec {
        /// Which value.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },

    /// A batch submit stopped part-way: the tasks in `accepted` are stored, the rest are not
    /// (on one backend the stored ones are the first of the batch; on a partitioned namespace
    /// each partition's part stops on its own, so they need not be). Submitting the same specs
    /// again is safe and completes the batch: the stored ones come back as duplicates (their
    /// ids are taken).
    ///
    /// When the cause is a lost connection, the call in flight may have been applied without
    /// its answer arriving: its tasks are then stored but not listed. Submitting again settles
    /// it either way.
    #[error(
        "{} of {total} tasks were stored before the batch failed: {source}; submitting the same specs again is safe: stored ids come back as duplicates",
        accepted.len()
    )]
    BatchIncomplete {
        /// Tasks in the batch.
        total: usize,
        /// The tasks stored: each one's position in the batch and its outcome, in batch
        /// order.
        accepted: Vec<(usize, crate::SubmitOutcome)>,
        /// Why the rest were not.
        source: Box<Error>,
    },

    /// Durable mode: the call took effect on the primary, but fewer replicas than asked for
    /// confirmed it in time, so a failover now could lose it. The change is **not** undone:
    /// repeating the call is how to learn its outcome (a submit with the same id answers
    /// "duplicate", a completion under a lease already used answers "stale").
    #[error(
        "the change was applied on the primary, but only {confirmed} of {wanted} replicas confirmed it within {timeout_ms} ms: a failover now could lose it (check the replicas; repeating the call is safe)"
    )]
    NotReplicated {
        /// Replicas that confirmed.
        confirmed: u64,
        /// Replicas asked for.
        wanted: u32,
        /// How long the call waited for them.
        timeout_ms: u64,
    },

    /// The backend (e.g. Redis) failed. Built with [`Error::backend`] or
    /// [`Error::backend_caused`]; [`source`](std::error::Error::source) reaches the error of
    /// the layer below (a `redis::RedisError`, say) when there was one.
    #[error("{kind} backend error: {message}")]
    #[non_exhaustive]
    Backend {
        /// A classification a caller can act on.
        kind: BackendErrorKind,
        /// What happened, for a person (it includes the cause's own message).
        message: String,
        /// The error of the layer below, if any.
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

/// Classification of backend failures, so that callers can decide to retry, reconfigure or give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The server could not be reached or the connection broke; retrying later may help.
    Connection,
    /// Authentication or authorisation failed; fix the credentials.
    Auth,
    /// The server is out of memory (`maxmemory` reached); free memory or raise the limit.
    OutOfMemory,
    /// The server is read-only (a replica, e.g. during a failover); retrying may help.
    ReadOnly,
    /// The server is too old or lacks a feature Switchyard needs.
    Unsupported,
    /// The server refused a request as malformed; this is a bug in Switchyard.
    Protocol,
    /// The server does not speak the Redis protocol (a wrong host or port, e.g. an HTTP
    /// server); fix the URL.
    NotRedis,
    /// Anything else.
    Other,
}

impl std::fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendErrorKind::Connection => "connection",
            BackendErrorKind::Auth => "authentication",
            BackendErrorKind::OutOfMemory => "out-of-memory",
            BackendErrorKind::ReadOnly => "read-only",
            BackendErrorKind::Unsupported => "unsupported-server",
            BackendErrorKind::Protocol => "protocol",
            BackendErrorKind::NotRedis => "not-redis",
            BackendErrorKind::Other => "unexpected",
        })
    }
}

impl Error {
    /// An [`Error::Backend`] without an underlying error (the backend found the problem
    /// itself).
    pub fn backend(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        Error::Backend {
            kind,
            message: message.into(),
            cause: None,
        }
    }

    /// An [`Error::Backend`] caused by `cause`, the error of the layer below, which
    /// [`source`](std::error::Error::source) then returns.
    ///
    /// ```
    /// use std::error::Error as _;
    /// use switchyard_core::{BackendErrorKind, Error};
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    /// let e = Error::backend_caused(BackendErrorKind::Connection, "cannot connect: refused", io);
    /// let cause = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).unwrap();
    /// assert_eq!(cause.kind(), std::io::ErrorKind::ConnectionRefused);
    /// ```
    pub fn backend_caused(
        kind: BackendErrorKind,
        message: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Backend {
            kind,
            message: message.into(),
            cause: Some(Box::new(cause)),
        }
    }

    /// Whether this is the task's own failure (it ran and was dead-lettered:
    /// [`Error::TaskFailed`], was cancelled: [`Error::TaskCancelled`], or expired:
    /// [`Error::TaskExpired`]), as opposed to a
    /// call that failed (a timeout, a backend error, bad input): the call itself worked.
    ///
    /// ```
    /// use switchyard_core::{BackendErrorKind, Error, TaskId};
    /// let id: TaskId = "01HF7YAT00QQBK49HFXDQ9BW83".parse().unwrap();
    /// let failed = Error::TaskFailed { id, error: "bad input".into() };
    /// assert!(failed.is_task_failure());
    /// assert_eq!(failed.failed_task(), Some(id));
    /// assert!(!Error::backend(BackendErrorKind::Connection, "refused").is_task_failure());
    /// ```
    pub fn is_task_failure(&self) -> bool {
        self.failed_task().is_some()
    }

    /// The task whose own failure this is (see [`is_task_failure`](Error::is_task_failure)).
    pub fn failed_task(&self) -> Option<TaskId> {
        match self {
            Error::TaskFailed { id, .. } | Error::TaskCancelled(id) | Error::TaskExpired(id) => {
                Some(*id)
            }
            _ => None,
        }
    }

    /// Shorthand for an [`Error::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// The queue a call found undeclared ([`Error::UnknownQueue`], or [`Error::DataLost`]
    /// when the backend lost it with the rest of its data).
    pub fn missing_queue(&self) -> Option<&QueueName> {
        match self {
            Error::UnknownQueue(q) | Error::DataLost { queue: q, .. } => Some(q),
            _ => None,
        }
    }

    /// Whether retrying the same call later might succeed (connection loss, failover).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Backend { kind, .. } => {
                matches!(
                    kind,
                    BackendErrorKind::Connection | BackendErrorKind::ReadOnly
                )
            }
            Error::BatchIncomplete { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}
