//! Mapping Redis failures and script error replies to [`switchyard_core::Error`].

use redis::{ErrorKind, RedisError, ServerErrorKind};
use switchyard_core::{BackendErrorKind, Error, QueueName, TaskId, WorkerId};

/// What a script call can fail with, before it becomes a public error.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The script saw state other than what the caller read first (`SY_STALE`): read again.
    Stale(String),
    /// `SY_CONFLICT <existing config JSON>` from declare.
    Conflict(String),
    /// `SY_WRONG_STATE <state code>` from redrive.
    WrongState(i64),
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
    Error::Backend {
        kind,
        message: message.into(),
    }
}

/// The detail of a script error, without the ` script: <sha>, on @user_script:<line>.` suffix.
fn detail(e: &RedisError) -> String {
    let d = e.detail().unwrap_or("");
    d.split(" script: ").next().unwrap_or(d).trim().to_owned()
}

pub(crate) fn classify(e: &RedisError) -> Failure {
    if let Some(code) = e.code() {
        let d = detail(e);
        let invalid_name =
            |what: &'static str| Error::invalid(what, format!("`{d}` from the server"));
        match code {
            "SY_STALE" => return Failure::Stale(d),
            "SY_CONFLICT" => return Failure::Conflict(d),
            "SY_WRONG_STATE" => return Failure::WrongState(d.parse().unwrap_or(-1)),
            "SY_UNKNOWN_QUEUE" => {
                return Failure::Error(
                    QueueName::new(&d)
                        .map_or_else(|_| invalid_name("queue name"), Error::UnknownQueue),
                );
            }
            "SY_UNKNOWN_WORKER" => {
                return Failure::Error(
                    WorkerId::new(&d)
                        .map_or_else(|_| invalid_name("worker id"), Error::UnknownWorker),
                );
            }
            "SY_REPLACED" => {
                return Failure::Error(
                    WorkerId::new(&d)
                        .map_or_else(|_| invalid_name("worker id"), Error::WorkerReplaced),
                );
            }
            "SY_ID_IN_USE" => {
                let (w, ms) = d.split_once(' ').unwrap_or((&d, ""));
                return Failure::Error(match (WorkerId::new(w), ms.parse()) {
                    (Ok(worker), Ok(expires_in_ms)) => Error::WorkerIdInUse {
                        worker,
                        expires_in_ms,
                    },
                    _ => invalid_name("worker id"),
                });
            }
            "SY_NOT_FOUND" => {
                return Failure::Error(
                    d.parse::<TaskId>()
                        .map_or_else(|_| invalid_name("task id"), Error::TaskNotFound),
                );
            }
            "SY_INVALID" => return Failure::Error(Error::invalid("script argument", d)),
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
    Failure::Error(map_redis(e))
}

/// Any Redis error as a public error.
pub(crate) fn map_redis(e: &RedisError) -> Error {
    let d = detail(e);
    match e.code() {
        Some("OOM") => {
            return backend(
                BackendErrorKind::OutOfMemory,
                format!("Redis is out of memory (maxmemory reached): {d}"),
            );
        }
        Some(code @ ("NOAUTH" | "WRONGPASS" | "NOPERM")) => {
            return backend(
                BackendErrorKind::Auth,
                format!("{code} {d} (check the password or ACL user in the URL)"),
            );
        }
        Some("READONLY") => {
            return backend(
                BackendErrorKind::ReadOnly,
                format!("the server is a read-only replica (failover in progress?): {d}"),
            );
        }
        Some(code @ ("LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN")) => {
            return backend(BackendErrorKind::Connection, format!("{code} {d}"));
        }
        _ => {}
    }
    let kind = match e.kind() {
        ErrorKind::AuthenticationFailed => BackendErrorKind::Auth,
        ErrorKind::Io => BackendErrorKind::Connection,
        ErrorKind::Server(ServerErrorKind::ReadOnly) => BackendErrorKind::ReadOnly,
        ErrorKind::Server(ServerErrorKind::NoPerm) => BackendErrorKind::Auth,
        ErrorKind::Server(
            ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown | ServerErrorKind::TryAgain,
        ) => BackendErrorKind::Connection,
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => BackendErrorKind::Protocol,
        _ if e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_io_error() =>
        {
            BackendErrorKind::Connection
        }
        _ => BackendErrorKind::Other,
    };
    let message = if e.is_connection_refusal() {
        format!("connection refused (is redis-server running and reachable?): {e}")
    } else {
        e.to_string()
    };
    backend(kind, message)
}

/// An error met while connecting, as a public error: a reply that does not parse means the
/// server at the address does not speak the Redis protocol (an HTTP server, say), which the
/// parser's own message does not make clear.
pub(crate) fn map_connect(e: &RedisError) -> Error {
    if e.kind() == ErrorKind::Parse {
        return backend(
            BackendErrorKind::NotRedis,
            "the server answered, but not in the Redis protocol: this is not a Redis server \
             (check the host and port of the URL)",
        );
    }
    map_redis(e)
}

/// A pool error met while connecting, as a public error (see [`map_connect`]).
pub(crate) fn map_pool_connect(e: deadpool_redis::PoolError) -> Error {
    match e {
        deadpool_redis::PoolError::Backend(e) => map_connect(&e),
        other => map_pool(other),
    }
}

/// A pool error as a public error.
pub(crate) fn map_pool(e: deadpool_redis::PoolError) -> Error {
    match e {
        deadpool_redis::PoolError::Backend(e) => map_redis(&e),
        other => backend(
            BackendErrorKind::Connection,
            format!("connection pool: {other}"),
        ),
    }
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
            Failure::WrongState(s) => {
                backend(BackendErrorKind::Protocol, format!("unexpected state {s}"))
            }
        }
    }
}
