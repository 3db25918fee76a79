//! Mapping Redis failures and script error replies to [`switchyard_core::Error`].

use redis::RedisError;
use switchyard_core::admin::InUse;
use switchyard_core::{BackendErrorKind, Error, QueueName, TaskId, WorkerId};
use switchyard_topology::errors::detail;

use crate::protocol::{reply, state_from};
pub(crate) use switchyard_topology::errors::map_redis;

/// What a script call can fail with, before it becomes a public error.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The script saw state other than what the caller read first (`SY_STALE`): read again.
    Stale(String),
    /// `SY_CONFLICT <existing config JSON>` from declare.
    Conflict(String),
    /// `SY_WRONG_STATE <state code>` from redrive.
    WrongState(i64),
    /// `SY_BUSY ready <n> | served <worker,...> | tasks <n> | shared <n>` from reconfigure and
    /// delete_queue: the caller names the queue and the operation.
    Busy(InUse),
    /// Everything else.
    Error(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        classify(&e)
    }
}

fn backend(kind: BackendErrorKind, message: impl Into<String>) -> Error {
    Error::backend(kind, message)
}

/// The reason in an `SY_BUSY` reply.
fn busy(detail: &str) -> Option<InUse> {
    let (what, rest) = detail.split_once(' ')?;
    match what {
        "ready" => rest.parse().ok().map(InUse::Ready),
        "tasks" => rest.parse().ok().map(InUse::Tasks),
        "shared" => rest.parse().ok().map(InUse::Shared),
        "served" => rest
            .split(',')
            .map(|w| WorkerId::new(w).ok())
            .collect::<Option<Vec<_>>>()
            .map(InUse::Served),
        _ => None,
    }
}

/// The refusal in an `SY_FULL <waiting> <bound> <adding> <queue>` reply.
fn full(detail: &str) -> Option<Error> {
    let mut parts = detail.splitn(4, ' ');
    let mut number = || parts.next().and_then(|n| n.parse::<u64>().ok());
    let (waiting, bound, adding) = (number()?, number()?, number()?);
    Some(Error::QueueFull {
        queue: QueueName::new(parts.next()?).ok()?,
        waiting,
        bound: u32::try_from(bound).ok()?,
        adding,
    })
}

/// The refusal in an `SY_GROUP_FULL <waiting> <bound> <adding> <queue> <group key in hex>`
/// reply (the key of the group `""` is empty, and the reply's end trimmed).
fn group_full(detail: &str) -> Option<Error> {
    let mut parts = detail.splitn(5, ' ');
    let mut number = || parts.next().and_then(|n| n.parse::<u64>().ok());
    let (waiting, bound, adding) = (number()?, number()?, number()?);
    let queue = QueueName::new(parts.next()?).ok()?;
    let hex = parts.next().unwrap_or("");
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(Error::GroupFull {
        queue,
        group: String::from_utf8(bytes).ok()?,
        waiting,
        bound: u32::try_from(bound).ok()?,
        adding,
    })
}

pub(crate) fn classify(e: &RedisError) -> Failure {
    if let Some(code) = e.code() {
        let d = detail(e);
        let invalid_name =
            |what: &'static str| Error::invalid(what, format!("`{d}` from the server"));
        match code {
            reply::STALE => return Failure::Stale(d),
            reply::CONFLICT => return Failure::Conflict(d),
            reply::WRONG_STATE => return Failure::WrongState(d.parse().unwrap_or(-1)),
            reply::BUSY => {
                return busy(&d).map_or_else(
                    || Failure::Error(backend(BackendErrorKind::Protocol, format!("SY_BUSY {d}"))),
                    Failure::Busy,
                );
            }
            reply::UNKNOWN_QUEUE => {
                return Failure::Error(
                    QueueName::new(&d)
                        .map_or_else(|_| invalid_name("queue name"), Error::UnknownQueue),
                );
            }
            reply::UNKNOWN_WORKER => {
                return Failure::Error(
                    WorkerId::new(&d)
                        .map_or_else(|_| invalid_name("worker id"), Error::UnknownWorker),
                );
            }
            reply::REPLACED => {
                return Failure::Error(
                    WorkerId::new(&d)
                        .map_or_else(|_| invalid_name("worker id"), Error::WorkerReplaced),
                );
            }
            reply::ID_IN_USE => {
                let (w, ms) = d.split_once(' ').unwrap_or((&d, ""));
                return Failure::Error(match (WorkerId::new(w), ms.parse()) {
                    (Ok(worker), Ok(expires_in_ms)) => Error::WorkerIdInUse {
                        worker,
                        expires_in_ms,
                    },
                    _ => invalid_name("worker id"),
                });
            }
            reply::NOT_FOUND => {
                return Failure::Error(
                    d.parse::<TaskId>()
                        .map_or_else(|_| invalid_name("task id"), Error::TaskNotFound),
                );
            }
            reply::FULL => {
                return Failure::Error(full(&d).unwrap_or_else(|| invalid_name("queue")));
            }
            reply::GROUP_FULL => {
                return Failure::Error(group_full(&d).unwrap_or_else(|| invalid_name("group")));
            }
            reply::NOT_SHARED => {
                return Failure::Error(QueueName::new(&d).map_or_else(
                    |_| invalid_name("queue name"),
                    |q| switchyard_core::flow::groups::not_shared(&q),
                ));
            }
            reply::FLOW_TAKEN => {
                return Failure::Error(d.trim().parse().map_or_else(
                    |_| invalid_name("task id"),
                    switchyard_core::tree::flow_taken,
                ));
            }
            reply::INVALID => return Failure::Error(Error::invalid("script argument", d)),
            _ => {}
        }
        if d.contains("Unknown Redis command")
            || d.contains("unknown command")
            || d.contains("struct")
        {
            return Failure::Error(backend(
                BackendErrorKind::Unsupported,
                format!(
                    "the server lacks a feature Switchyard needs (Redis 7 or newer with Lua scripting): {code} {d}"
                ),
            ));
        }
    }
    let mut error = map_redis(e);
    // A runtime error of the Lua code: name the file and line instead of the library's.
    if let Error::Backend { message, .. } = &mut error {
        *message = crate::library::locate(message);
    }
    Failure::Error(error)
}

impl Failure {
    /// The public error for failures the caller did not handle.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::Error(e) => e,
            Failure::Stale(d) => backend(
                BackendErrorKind::Other,
                format!("state kept changing while the call was retried: {d}"),
            ),
            Failure::Conflict(d) => backend(
                BackendErrorKind::Protocol,
                format!("unexpected conflict: {d}"),
            ),
            Failure::Busy(reason) => backend(
                BackendErrorKind::Protocol,
                format!("unexpected refusal: {reason}"),
            ),
            Failure::WrongState(s) => {
                backend(BackendErrorKind::Protocol, format!("unexpected state {s}"))
            }
        }
    }
}

/// A `SY_WRONG_STATE` answer as the public error of `operation` on task `id`.
pub(crate) fn wrong_state(f: Failure, id: TaskId, operation: &'static str) -> Failure {
    match f {
        Failure::WrongState(s) => match state_from(s) {
            Ok(state) => Failure::Error(Error::WrongState {
                id,
                state,
                operation,
            }),
            Err(e) => Failure::Error(e),
        },
        other => other,
    }
}
