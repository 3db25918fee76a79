//! Redis failures as public [`switchyard_core::Error`]s: one mapping for every crate that talks
//! to Redis, so that a refused connection, a wrong password or a read-only replica reads the
//! same wherever it is met.

use redis::{ErrorKind, RedisError, ServerErrorKind};
use switchyard_core::{BackendErrorKind, Error};

/// An error of `kind` caused by `e`.
fn backend(kind: BackendErrorKind, message: impl Into<String>, e: &RedisError) -> Error {
    Error::backend_caused(kind, message, e.clone())
}

/// The detail of a server error, without a script's ` script: <sha>, on @user_script:<line>.`
/// suffix.
pub fn detail(e: &RedisError) -> String {
    let d = e.detail().unwrap_or("");
    d.split(" script: ").next().unwrap_or(d).trim().to_owned()
}

/// Any Redis error as a public error.
pub fn map_redis(e: &RedisError) -> Error {
    let d = detail(e);
    match e.code() {
        Some("OOM") => {
            return backend(
                BackendErrorKind::OutOfMemory,
                format!("Redis is out of memory (maxmemory reached): {d}"),
                e,
            );
        }
        Some(code @ ("NOAUTH" | "WRONGPASS" | "NOPERM")) => {
            return backend(
                BackendErrorKind::Auth,
                format!("{code} {d} (check the password or ACL user in the URL)"),
                e,
            );
        }
        Some("READONLY") => {
            return backend(
                BackendErrorKind::ReadOnly,
                format!("the server is a read-only replica (failover in progress?): {d}"),
                e,
            );
        }
        Some(code @ ("LOADING" | "BUSY" | "MASTERDOWN")) => {
            return backend(BackendErrorKind::Connection, format!("{code} {d}"), e);
        }
        Some("NOREPLICAS") => {
            return backend(
                BackendErrorKind::Connection,
                format!(
                    "the server refuses writes while too few replicas follow it \
                     (min-replicas-to-write; a failover may have moved them to a new primary): {d}"
                ),
                e,
            );
        }
        _ => {}
    }
    // What redis-rs gives back when a Cluster's redirections or retries did not settle in
    // time: the slot is being moved, or a node is gone and the slot map not yet updated.
    let unsettled = matches!(
        e.kind(),
        ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(
                ServerErrorKind::Ask
                    | ServerErrorKind::Moved
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            )
    );
    if unsettled {
        return backend(
            BackendErrorKind::Connection,
            format!(
                "the Redis Cluster did not settle within the retries (a slot is moving or a node is down): {e}"
            ),
            e,
        );
    }
    let kind = match e.kind() {
        ErrorKind::AuthenticationFailed => BackendErrorKind::Auth,
        ErrorKind::Io => BackendErrorKind::Connection,
        ErrorKind::Server(ServerErrorKind::ReadOnly) => BackendErrorKind::ReadOnly,
        ErrorKind::Server(ServerErrorKind::NoPerm) => BackendErrorKind::Auth,
        ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown) => {
            BackendErrorKind::Connection
        }
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
    backend(kind, message, e)
}

/// An error met while connecting, as a public error: a reply that does not parse means the
/// server at the address does not speak the Redis protocol (an HTTP server, say), which the
/// parser's own message does not make clear.
pub fn map_connect(e: &RedisError) -> Error {
    if e.kind() == ErrorKind::Parse {
        return backend(
            BackendErrorKind::NotRedis,
            "the server answered, but not in the Redis protocol: this is not a Redis server \
             (check the host and port of the URL)",
            e,
        );
    }
    map_redis(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsettled_cluster_replies_are_transient() {
        let cases: [RedisError; 4] = [
            (
                ErrorKind::Server(ServerErrorKind::Ask),
                "ask",
                "9749 127.0.0.1:7001".into(),
            )
                .into(),
            (
                ErrorKind::Server(ServerErrorKind::Moved),
                "moved",
                "1 h:1".into(),
            )
                .into(),
            (
                ErrorKind::Server(ServerErrorKind::TryAgain),
                "tryagain",
                String::new(),
            )
                .into(),
            (ErrorKind::ClusterConnectionNotFound, "no connections found").into(),
        ];
        for e in &cases {
            let mapped = map_redis(e);
            assert!(mapped.is_transient(), "{e}: {mapped}");
            assert!(mapped.to_string().contains("did not settle"), "{mapped}");
        }
    }
}
