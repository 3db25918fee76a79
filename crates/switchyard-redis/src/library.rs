//! The Lua code as one Redis Function library, loaded once per server and called with FCALL.
//!
//! The shared helpers (`lua/lib/`, one file per section, in the order of `LIB`) and every
//! transition file are joined, at start-up, into one library: each transition becomes a
//! function whose body is its file, preceded by a call to `begin` (which sets the call's keys,
//! arguments and time and empties the per-call state).
//! The helpers are created once, when the server loads the library, instead of on every call
//! as a script's would be.
//!
//! The library's name carries a version (a hash of the Lua sources), and so do its function
//! names: two releases can serve one Redis during an upgrade, each calling its own code. A
//! process that connects loads it only if the server lacks this version (checked first with
//! `FUNCTION LIST`, a read that a server at `maxmemory` still answers: loading is a write it
//! refuses). A call that meets a server without this version (a restart without persistence, a
//! new Cluster node, `FUNCTION FLUSH`) loads it (`FUNCTION LOAD REPLACE`, on every primary of a
//! Cluster) and is sent again. Errors raised by the Lua code name the file and line they come from
//! ([`locate`]).
//!
//! Every key a function touches is passed in KEYS, which is what makes a call safe during a
//! Cluster slot migration: Redis answers TRYAGAIN instead of running it on half of its keys.

use std::fmt::Write as _;
use std::sync::OnceLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, RedisResult, ToRedisArgs, Value};
use switchyard_core::QueueName;
use switchyard_topology::Connection;

/// `("lib/<file>", its text)`.
macro_rules! lib_file {
    ($file:literal) => {
        (
            concat!("lib/", $file),
            include_str!(concat!("../../../lua/lib/", $file)),
        )
    };
}

/// The files of the shared helpers, in the order they are joined: a helper is a `local` of the
/// library, so it must come before every file that uses it.
const LIB: &[(&str, &str)] = &[
    lib_file!("prelude.lua"),
    lib_file!("protocol.lua"),
    lib_file!("deferred.lua"),
    lib_file!("records.lua"),
    lib_file!("rate.lua"),
    lib_file!("queues.lua"),
    lib_file!("groups.lua"),
    lib_file!("group_limits.lua"),
    lib_file!("delayed.lua"),
    lib_file!("workers.lua"),
    lib_file!("flush.lua"),
    lib_file!("dispatch.lua"),
    lib_file!("pick.lua"),
    lib_file!("deadline.lua"),
    lib_file!("place.lua"),
    lib_file!("change.lua"),
    lib_file!("concurrency.lua"),
    lib_file!("leases.lua"),
    lib_file!("steps.lua"),
    lib_file!("admin.lua"),
    lib_file!("flows.lua"),
    lib_file!("bounded.lua"),
    lib_file!("submit.lua"),
    lib_file!("schedules.lua"),
    lib_file!("begin.lua"),
];

/// The transitions that only read.
const READ_ONLY: [&str; 6] = [
    "children.lua",
    "stats.lua",
    "peek.lua",
    "browse.lua",
    "running.lua",
    "group_info.lua",
];

/// The transitions a server at `maxmemory` refuses: the ones that bring new work. Every other
/// write is flagged `allow-oom`, so that a full server can still be drained and emptied —
/// workers register, receive, complete and fail; queues are paused, purged or deleted; dead
/// tasks are deleted or re-driven — each of which frees memory or takes a bounded amount.
const REFUSED_WHEN_FULL: [&str; 3] = ["submit.lua", "submit_flow.lua", "schedule_claim.lua"];

/// One transition: the name of its function in the library (`sy_<version>_<file stem>`).
#[derive(Debug)]
pub(crate) struct Function {
    name: String,
}

/// The assembled library.
#[derive(Debug)]
pub(crate) struct Library {
    /// `switchyard_<version>`.
    name: String,
    source: String,
    /// Where each file starts in the library: (first library line, file, lines).
    spans: Vec<(usize, &'static str, usize)>,
    functions: Functions,
}

/// A 64-bit FNV-1a hash (stable across builds and platforms, unlike `DefaultHasher`).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Library {
    fn assemble() -> Self {
        let inputs: Vec<&str> = LIB
            .iter()
            .chain(FILES)
            .flat_map(|(file, body)| [*file, *body])
            .collect();
        let version = format!("{:012x}", fnv1a(&inputs) >> 16);
        let name = format!("switchyard_{version}");
        let mut source = format!("#!lua name={name}\n");
        let mut spans = Vec::with_capacity(LIB.len() + FILES.len());
        let mut line = 2;
        for (file, body) in LIB {
            spans.push((line, *file, body.lines().count()));
            source.push_str(body);
            if !body.ends_with('\n') {
                source.push('\n');
            }
            line += body.lines().count();
        }
        for (file, body) in FILES {
            let stem = file.trim_end_matches(".lua");
            // One line before the body, so that the body's lines are counted from `line + 1`.
            // Reads are flagged `no-writes`: Redis runs them when it is out of memory (and
            // refuses any write they attempted), as it ran read-only scripts before. Writes
            // other than submits may run past `maxmemory` (see `REFUSED_WHEN_FULL`).
            let flags = if READ_ONLY.contains(file) {
                "{'no-writes'}"
            } else if REFUSED_WHEN_FULL.contains(file) {
                "{}"
            } else {
                "{'allow-oom'}"
            };
            let _ = writeln!(
                source,
                "redis.register_function{{function_name = 'sy_{version}_{stem}', flags = {flags}, callback = function(keys, args) begin(keys, args)"
            );
            spans.push((line + 1, *file, body.lines().count()));
            source.push_str(body);
            if !body.ends_with('\n') {
                source.push('\n');
            }
            source.push_str("end}\n");
            line += body.lines().count() + 2;
        }
        let functions = Functions::named(&version);
        Library {
            name,
            source,
            spans,
            functions,
        }
    }

    /// The library's name (`switchyard_<version>`).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The transitions.
    pub(crate) fn functions(&self) -> &Functions {
        &self.functions
    }

    /// Loads the library (replacing one of the same name); on a Cluster, on every primary.
    pub(crate) async fn load<C: ConnectionLike>(&self, conn: &mut C) -> RedisResult<()> {
        let _: Value = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&self.source)
            .query_async(conn)
            .await?;
        tracing::info!(library = %self.name, "loaded the Switchyard function library");
        Ok(())
    }

    /// Whether the server behind `conn` has this library (`FUNCTION LIST LIBRARYNAME`, a
    /// read: it runs on a server at `maxmemory` too). `key` picks the node on a Cluster.
    pub(crate) async fn is_loaded(&self, conn: &mut Connection, key: &str) -> RedisResult<bool> {
        let listed: Value = conn
            .query_at(
                key,
                redis::cmd("FUNCTION")
                    .arg("LIST")
                    .arg("LIBRARYNAME")
                    .arg(&self.name),
            )
            .await?;
        // The name is a pattern that only this library's name matches (letters, digits, `_`).
        Ok(matches!(listed, Value::Array(ref libs) if !libs.is_empty()))
    }

    /// `file:line` of a line of the library.
    fn place(&self, line: usize) -> Option<String> {
        self.spans
            .iter()
            .find(|(first, _, n)| (*first..first + n).contains(&line))
            .map(|(first, file, _)| format!("lua/{file}:{}", line - first + 1))
    }
}

/// The library of this build (assembled on first use).
pub(crate) fn library() -> &'static Library {
    static LIBRARY: OnceLock<Library> = OnceLock::new();
    LIBRARY.get_or_init(Library::assemble)
}

/// A server error's text with every `user_function:<line>` (a line of the library) replaced
/// by the file and line it comes from, e.g. `lua/lib/queues.lua:120`.
pub(crate) fn locate(message: &str) -> String {
    const MARK: &str = "user_function:";
    let lib = library();
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse().ok().and_then(|l| lib.place(l)) {
            Some(place) => out.push_str(&place),
            None => out.push_str(&rest[at..at + MARK.len() + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Whether a server error says that the function called is not loaded.
fn missing(e: &redis::RedisError) -> bool {
    e.code() == Some("ERR")
        && e.detail()
            .is_some_and(|d| d.starts_with("Function not found"))
}

impl Function {
    /// A call of this function with `keys`; arguments follow with [`Call::arg`].
    pub(crate) fn call<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> Call {
        let keys: Vec<&str> = keys.into_iter().collect();
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(&self.name).arg(keys.len()).arg(keys);
        Call { cmd }
    }
}

/// One FCALL: a function, its keys and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    cmd: Cmd,
}

impl Call {
    /// Appends an argument.
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Appends the count of `queues` and their names (the groups a script binds them to are
    /// in its keys, in the same order).
    pub(crate) fn names(&mut self, queues: &[&QueueName]) -> &mut Self {
        self.cmd.arg(queues.len());
        for q in queues {
            self.cmd.arg(q.as_str());
        }
        self
    }

    /// Runs the call; when the server lacks this library, loads it and runs the call again.
    pub(crate) async fn invoke<C: ConnectionLike>(&self, conn: &mut C) -> RedisResult<Value> {
        match self.cmd.query_async(conn).await {
            Err(e) if missing(&e) => {
                tracing::debug!("the server lacks the function library: {e}");
                library().load(conn).await?;
                self.cmd.query_async(conn).await
            }
            other => other,
        }
    }
}

macro_rules! transitions {
    ($($field:ident => $file:literal),* $(,)?) => {
        /// One function per transition.
        #[derive(Debug)]
        pub(crate) struct Functions {
            $(pub(crate) $field: Function,)*
        }

        /// Every transition file with its text.
        const FILES: &[(&str, &str)] = &[
            $(($file, include_str!(concat!("../../../lua/", $file))),)*
        ];

        impl Functions {
            fn named(version: &str) -> Self {
                Functions {
                    $($field: Function {
                        name: format!("sy_{version}_{}", $file.trim_end_matches(".lua")),
                    },)*
                }
            }
        }
    };
}

transitions! {
    declare => "declare.lua",
    submit => "submit.lua",
    register => "register.lua",
    heartbeat => "heartbeat.lua",
    deregister => "deregister.lua",
    drain => "drain.lua",
    reap_worker => "reap_worker.lua",
    dispatch => "dispatch.lua",
    receive => "receive.lua",
    running => "running.lua",
    complete => "complete.lua",
    fail => "fail.lua",
    throttle => "throttle.lua",
    progress => "progress.lua",
    cancel => "cancel.lua",
    promote => "promote.lua",
    purge => "purge.lua",
    redrive => "redrive.lua",
    change => "change.lua",
    pause => "pause.lua",
    delete_task => "delete_task.lua",
    purge_queue => "purge_queue.lua",
    reconfigure => "reconfigure.lua",
    delete_queue => "delete_queue.lua",
    group_weight => "group_weight.lua",
    group_limits => "group_limits.lua",
    group_info => "group_info.lua",
    peek => "peek.lua",
    browse => "browse.lua",
    await_outcome => "await.lua",
    stats => "stats.lua",
    schedule_upsert => "schedule_upsert.lua",
    schedule_pause => "schedule_pause.lua",
    schedule_remove => "schedule_remove.lua",
    schedule_claim => "schedule_claim.lua",
    submit_flow => "submit_flow.lua",
    settle => "settle.lua",
    children => "children.lua",
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library line holding `needle`, counted from 1.
    fn line_of(needle: &str) -> usize {
        library()
            .source
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle} not in the library"))
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let begin = LIB
            .iter()
            .find(|(file, _)| *file == "lib/begin.lua")
            .map_or("", |(_, body)| body);
        let in_lib = begin
            .lines()
            .position(|l| l.starts_with("local function begin("))
            .map(|i| i + 1);
        let at = line_of("local function begin(");
        assert_eq!(
            locate(&format!("user_function:{at}: attempt to index a nil value")),
            format!(
                "lua/lib/begin.lua:{}: attempt to index a nil value",
                in_lib.unwrap_or(0)
            )
        );
        let submit = include_str!("../../../lua/submit.lua");
        let lines: Vec<&str> = submit.lines().collect();
        let i = lines
            .iter()
            .rposition(|l| !l.trim().is_empty())
            .unwrap_or(0);
        let text = lines[i];
        let at = library()
            .source
            .lines()
            .enumerate()
            .skip(line_of("_submit', flags"))
            .find(|(_, l)| *l == text)
            .map(|(n, _)| n + 1)
            .unwrap_or(0);
        assert_eq!(
            locate(&format!("x user_function:{at}: y, on @user_function:{at}.")),
            format!(
                "x lua/submit.lua:{}: y, on @lua/submit.lua:{}.",
                i + 1,
                i + 1
            )
        );
        assert_eq!(locate("user_function:999999: z"), "user_function:999999: z");
        assert_eq!(locate("no place"), "no place");
    }

    #[test]
    fn every_file_of_lua_lib_is_joined() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../lua/lib");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| format!("lib/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut joined: Vec<String> = LIB.iter().map(|(file, _)| file.to_string()).collect();
        joined.sort();
        assert_eq!(on_disk, joined);
    }

    #[test]
    fn every_transition_is_a_function_of_this_version() {
        let lib = library();
        let version = lib.name().trim_start_matches("switchyard_");
        assert_eq!(version.len(), 12);
        for (file, _) in FILES {
            let name = format!("sy_{version}_{}", file.trim_end_matches(".lua"));
            assert!(
                lib.source.contains(&format!("function_name = '{name}', ")),
                "{file}"
            );
        }
        assert_eq!(lib.functions().submit.name, format!("sy_{version}_submit"));
    }
}
