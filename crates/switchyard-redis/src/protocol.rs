//! The protocol between this crate and its Lua scripts, defined once: the codes of task
//! states, policies, strategies, flags and acknowledgements, the error replies, the packed
//! record formats and their lengths, and the key contract (which keys a script gets, in which
//! order, and the channel names). The scripts name the same in `lua/lib/protocol.lua` (and
//! take their keys in `lua/lib/begin.lua`); the tests at the end of this file read those files
//! and fail on any difference, so the two sides cannot drift apart.
//!
//! This module is the leaf of the wire layer: it depends on nothing else of the crate. The
//! bytes are built in [`codec`](crate::codec) and the replies decoded in `codec::reply`; the
//! key names of a namespace in [`keys`](crate::keys).

use switchyard_core::{BackendErrorKind, Error, Policy, Result, Strategy, TaskState};

/// The error of a reply that breaks this protocol (a truncated reply, an unknown code).
pub(crate) fn protocol(what: impl Into<String>) -> Error {
    Error::backend(BackendErrorKind::Protocol, what)
}

/// The code of a task state in records and replies (`S_*` in `lua/lib/protocol.lua`).
pub(crate) fn state_code(state: TaskState) -> u8 {
    match state {
        TaskState::Scheduled => 0,
        TaskState::Ready => 1,
        TaskState::Dispatched => 2,
        TaskState::Running => 3,
        TaskState::RetryScheduled => 4,
        TaskState::Succeeded => 5,
        TaskState::Dead => 6,
        TaskState::Cancelled => 7,
        TaskState::Expired => 8,
        TaskState::WaitingChildren => 9,
        // A state this build does not know: no script accepts the code, and the protocol test
        // (which encodes every state) fails first.
        _ => u8::MAX,
    }
}

/// The task state of a code read from a record or a reply.
pub(crate) fn state_from(code: i64) -> Result<TaskState> {
    u8::try_from(code)
        .ok()
        .and_then(|c| TaskState::ALL.into_iter().find(|s| state_code(*s) == c))
        .ok_or_else(|| protocol(format!("unknown task state code {code}")))
}

/// `(policy code, aging parameter)` as the scripts take a queue's policy (`P_*`).
pub(crate) fn policy_args(policy: Policy) -> (u8, u32) {
    match policy {
        Policy::Fcfs => (0, 0),
        Policy::Priority {
            aging_step_ms: None,
        } => (1, 0),
        Policy::Priority {
            aging_step_ms: Some(s),
        } => (2, s),
        Policy::ShortestJobFirst { aging_factor: None } => (3, 0),
        Policy::ShortestJobFirst {
            aging_factor: Some(f),
        } => (4, f),
        // Its parameter is the queue's `expire_late` (`push_config` sets it).
        Policy::EarliestDeadlineFirst => (5, 0),
        // A policy this build does not know: the scripts refuse the code as invalid.
        _ => (u8::MAX, 0),
    }
}

/// `(strategy code, vnodes)` as the scripts take a queue's strategy (`T_*`).
pub(crate) fn strategy_args(strategy: Strategy) -> (u8, u16) {
    match strategy {
        Strategy::RoundRobin => (0, 0),
        Strategy::Random => (1, 0),
        Strategy::Weighted => (2, 0),
        Strategy::LeastLoaded => (3, 0),
        Strategy::Affinity { vnodes } => (4, vnodes),
        Strategy::Pull => (5, 0),
        // A strategy this build does not know: the scripts refuse the code as invalid.
        _ => (u8::MAX, 0),
    }
}

/// Flag bits of a task record (`F_*`): a cancel was requested while it ran.
pub(crate) const TASK_CANCEL_REQUESTED: u64 = 1;
/// Someone awaits the task (set by `await.lua`, read only by the scripts; named here so that the
/// test below keeps the bit from being reused).
#[cfg(test)]
pub(crate) const TASK_AWAITED: u64 = 2;
/// The record holds a deadline (6 bytes after the header); records written before deadlines
/// existed never have this bit, so they decode as before.
pub(crate) const TASK_DEADLINE: u64 = 4;
/// A wide flow's task stored but not yet seen (`FLOWS.STAGED` in `lua/lib/prelude.lua`; the
/// flags 8 and 16 above it mark a flow's child and a task with children, read by the scripts
/// only): such a record is seen by no read.
pub(crate) const TASK_STAGED: u64 = 32;
/// Flag values of a worker record (`W_*`): it waits on its channel for work (read only by the
/// scripts); it is draining.
#[cfg(test)]
pub(crate) const WORKER_WAITING: u64 = 1;
/// See [`WORKER_WAITING`]; a draining worker's flags are at least this value.
pub(crate) const WORKER_DRAINING: u64 = 2;

/// The first field of each task's answer of `submit.lua` (`SUBMIT_*` there): 0 created, else
/// the sum of these bits: a duplicate (always), its payload differs, it was replaced
/// (debounce; `switchyard_core::flow::dedup`).
pub(crate) const SUBMIT_DUPLICATE: i64 = 1;
/// See [`SUBMIT_DUPLICATE`].
pub(crate) const SUBMIT_DIFFERS: i64 = 2;
/// See [`SUBMIT_DUPLICATE`].
pub(crate) const SUBMIT_REPLACED: i64 = 4;

/// The `tasks` field holding a task's progress (`p:<id>`; `progress_field` in
/// `lua/lib/records.lua`).
pub(crate) fn progress_field(id: switchyard_core::TaskId) -> String {
    format!("p:{id}")
}

/// The fixed part of a stored progress value (`PROGRESS` in `lua/lib/protocol.lua`, `>HI4I6I6I6`:
/// attempt, parts per million, reported at, last announced at, reports); the message follows.
pub(crate) const PROGRESS_LEN: usize = 24;

/// What `complete` and `fail` answer for each lease, one table for both (`A_*`).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckCode {
    /// Completed: the task succeeded.
    Succeeded = 0,
    /// No such task.
    NotFound = 1,
    /// The task is not running (the second value is its state).
    NotRunning = 2,
    /// The lease is not the current one.
    Stale = 3,
    /// Failed, retried at the run-at given as the second value.
    Retrying = 4,
    /// Failed for the last time: dead.
    Dead = 5,
    /// Failed with a cancel pending: cancelled.
    Cancelled = 6,
    /// Throttled: back in its place, its queue held until the time given as the second value.
    Throttled = 7,
}

impl AckCode {
    /// Every code, in code order.
    pub(crate) const ALL: [AckCode; 8] = [
        AckCode::Succeeded,
        AckCode::NotFound,
        AckCode::NotRunning,
        AckCode::Stale,
        AckCode::Retrying,
        AckCode::Dead,
        AckCode::Cancelled,
        AckCode::Throttled,
    ];
}

/// The error replies of the scripts (`fail('SY_…', detail)` in Lua), read by
/// [`classify`](crate::error::classify).
pub(crate) mod reply {
    /// An argument did not validate.
    pub(crate) const INVALID: &str = "SY_INVALID";
    /// What the caller read moved before the script ran: read again.
    pub(crate) const STALE: &str = "SY_STALE";
    /// The queue exists with another configuration (the detail is it, as JSON).
    pub(crate) const CONFLICT: &str = "SY_CONFLICT";
    /// The task is in a state the operation does not accept (the detail is its code).
    pub(crate) const WRONG_STATE: &str = "SY_WRONG_STATE";
    /// The queue is in use (the detail says how).
    pub(crate) const BUSY: &str = "SY_BUSY";
    /// No such task.
    pub(crate) const NOT_FOUND: &str = "SY_NOT_FOUND";
    /// No such queue.
    pub(crate) const UNKNOWN_QUEUE: &str = "SY_UNKNOWN_QUEUE";
    /// No such worker (it was reaped or deregistered).
    pub(crate) const UNKNOWN_WORKER: &str = "SY_UNKNOWN_WORKER";
    /// Another instance took the worker id over.
    pub(crate) const REPLACED: &str = "SY_REPLACED";
    /// A live instance holds the worker id.
    pub(crate) const ID_IN_USE: &str = "SY_ID_IN_USE";
    /// A bounded queue lacks room (`<waiting> <bound> <adding> <queue>`).
    pub(crate) const FULL: &str = "SY_FULL";
    /// A group key, or a group operation, for a queue not shared between groups (`<queue>`).
    pub(crate) const NOT_SHARED: &str = "SY_NOT_SHARED";
    /// A group of a queue bounded per group lacks room (`<waiting> <bound> <adding> <queue>
    /// <group key in hex>`).
    pub(crate) const GROUP_FULL: &str = "SY_GROUP_FULL";
    /// A flow's task other than its root exists already (`<id>`).
    pub(crate) const FLOW_TAKEN: &str = "SY_FLOW_TAKEN";

    /// Every error reply (checked against the scripts by the test below).
    #[cfg(test)]
    pub(crate) const ALL: [&str; 14] = [
        INVALID,
        STALE,
        CONFLICT,
        WRONG_STATE,
        BUSY,
        NOT_FOUND,
        UNKNOWN_QUEUE,
        UNKNOWN_WORKER,
        REPLACED,
        ID_IN_USE,
        FULL,
        NOT_SHARED,
        GROUP_FULL,
        FLOW_TAKEN,
    ];
}

/// Packed record formats (`string.pack` formats in `lua/lib/protocol.lua`) and their lengths, which are
/// computed from the formats so that the two cannot disagree.
pub(crate) mod record {
    /// A task record's fixed header.
    pub(crate) const HEADER: &str = ">BBHHHI4I4I6I6I6I6BHI4";
    /// Its length in bytes.
    pub(crate) const HEADER_LEN: usize = packed_len(HEADER);
    /// A worker record.
    pub(crate) const WORKER: &str = ">HHHI6I4I6BHI6I6I6";
    /// Its length in bytes.
    pub(crate) const WORKER_LEN: usize = packed_len(WORKER);
    /// The fixed part of a submitted task's arguments.
    pub(crate) const TASK_ARG: &str = ">HBHI4I6I6HI4I6";
    /// Its length in bytes, with the 26-byte task id text before it.
    pub(crate) const TASK_ARG_LEN: usize = 26 + packed_len(TASK_ARG);

    /// A hand-off as published on the worker's wake channel, after its tag byte
    /// [`HAND_OFF_TAG`]: still parked 0|1, the registration's instance token, lease token,
    /// attempt, max attempts, deadline, timeout, ready since, queue name length; then the
    /// 26-byte id, the queue name and the task body. (A plain wake-up is the message `1`.)
    pub(crate) const HAND_OFF: &str = ">BI6I6I6I6I6I6I6H";
    /// Its fixed length in bytes, with the tag.
    pub(crate) const HAND_OFF_LEN: usize = 1 + packed_len(HAND_OFF);
    /// The first byte of a hand-off message.
    pub(crate) const HAND_OFF_TAG: u8 = b'h';

    /// The byte length of a big-endian format made of `B`, `H` and `I<n>` items (the only ones
    /// the records use); anything else fails the build.
    const fn packed_len(format: &str) -> usize {
        let f = format.as_bytes();
        assert!(!f.is_empty() && f[0] == b'>', "formats are big-endian");
        let mut i = 1;
        let mut len = 0;
        while i < f.len() {
            match f[i] {
                b'B' => len += 1,
                b'H' => len += 2,
                b'I' => {
                    assert!(
                        i + 1 < f.len() && f[i + 1].is_ascii_digit(),
                        "I needs a width"
                    );
                    i += 1;
                    len += (f[i] - b'0') as usize;
                }
                _ => panic!("unsupported format item"),
            }
            i += 1;
        }
        len
    }
}

/// The key contract. Every script gets, in `KEYS`, the namespace's fixed keys in the order of
/// [`FIXED`](key::FIXED), then one group of [`GROUP`](key::GROUP) keys per queue it names
/// (`NFIXED` and `GROUP_KEYS` in `lua/lib/protocol.lua`). Channels are not keys: the scripts
/// build their names from the namespace's prefix and the names below (`channel` in
/// `lua/lib/prelude.lua`).
pub(crate) mod key {
    /// The fixed keys' roles, in `KEYS` order (`K_*` in `lua/lib/begin.lua`).
    pub(crate) const FIXED: [&str; 11] = [
        "tasks", "meta", "workers", "hb", "free", "wtasks", "dead", "dedupx", "events", "settle",
        "parents",
    ];
    /// Index in [`FIXED`] of the task hash.
    pub(crate) const TASKS: usize = 0;
    /// Of the hash of counters and queue configurations.
    pub(crate) const META: usize = 1;
    /// Of the worker hash.
    pub(crate) const WORKERS: usize = 2;
    /// Of the heartbeat expiries.
    pub(crate) const HB: usize = 3;
    /// Of the dead-letter set.
    pub(crate) const DEAD: usize = 6;
    /// Of the event stream.
    pub(crate) const EVENTS: usize = 8;
    /// Of the flows' settle entries (`lua/lib/flows.lua`).
    pub(crate) const SETTLE: usize = 9;
    /// The schedule keys, which only the schedule scripts take, after their others: the
    /// schedules hash and the due set (`lua/lib/schedules.lua`).
    pub(crate) const SCHEDULES: [&str; 2] = ["sched", "schedx"];
    /// The keys of one queue's group, in `KEYS` order (`q:<queue>:<role>`); the last five
    /// serve a queue shared between groups (`lua/lib/groups.lua`).
    pub(crate) const GROUP: [&str; 11] = [
        "state", "ready", "delayed", "ring", "done", "rate", "groups", "gready", "gring", "glog",
        "gwake",
    ];
    /// The channel a waiting worker is woken on: this, then the worker id (`CH_WAKE`).
    pub(crate) const WAKE: &str = "wake:";
    /// The channel an awaited task's end is announced on: this, then the id (`CH_DONE`).
    pub(crate) const DONE: &str = "done:";
    /// The channel a delayed task that became first of its queue is announced on (`CH_DUE`).
    pub(crate) const DUE: &str = "due";
}

impl From<AckCode> for u8 {
    fn from(code: AckCode) -> u8 {
        code as u8
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use redis::Value;

    use super::*;
    use crate::codec::ack;

    const LIB: &str = include_str!("../../../lua/lib/protocol.lua");
    const PROGRESS_LUA: &str = include_str!("../../../lua/progress.lua");
    const THROTTLE_LUA: &str = include_str!("../../../lua/throttle.lua");
    const SUBMIT_LUA: &str = include_str!("../../../lua/lib/submit.lua");
    const BEGIN: &str = include_str!("../../../lua/lib/begin.lua");

    /// `local A, B = 1, 2` and `local F = '>B'` lines of lib/protocol.lua, by name.
    fn lua_constants() -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        // The progress rule's numbers, the throttled run's code and submit's answer bits live
        // in the one script that uses them.
        for line in LIB
            .lines()
            .chain(PROGRESS_LUA.lines())
            .chain(THROTTLE_LUA.lines())
            .chain(SUBMIT_LUA.lines())
        {
            let Some(rest) = line.trim_start().strip_prefix("local ") else {
                continue;
            };
            let Some((names, values)) = rest.split_once(" = ") else {
                continue;
            };
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            let values: Vec<&str> = values.split(',').map(str::trim).collect();
            if names.len() != values.len()
                || !names
                    .iter()
                    .all(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            {
                continue;
            }
            for (n, v) in names.into_iter().zip(values) {
                out.insert(n.to_owned(), v.trim_matches('\'').to_owned());
            }
        }
        out
    }

    fn expect(lua: &BTreeMap<String, String>, name: &str, want: impl ToString) {
        let got = lua
            .get(name)
            .unwrap_or_else(|| panic!("lib/protocol.lua does not name {name}"));
        assert_eq!(got, &want.to_string(), "{name} in lib/protocol.lua");
    }

    #[test]
    fn the_lua_side_names_the_same_codes() {
        let lua = lua_constants();
        let states = [
            ("S_SCHEDULED", TaskState::Scheduled),
            ("S_READY", TaskState::Ready),
            ("S_DISPATCHED", TaskState::Dispatched),
            ("S_RUNNING", TaskState::Running),
            ("S_RETRY", TaskState::RetryScheduled),
            ("S_SUCCEEDED", TaskState::Succeeded),
            ("S_DEAD", TaskState::Dead),
            ("S_CANCELLED", TaskState::Cancelled),
            ("S_EXPIRED", TaskState::Expired),
            ("S_WAITING", TaskState::WaitingChildren),
        ];
        assert_eq!(states.len(), TaskState::ALL.len());
        for (name, state) in states {
            expect(&lua, name, state_code(state));
            assert_eq!(state_from(i64::from(state_code(state))).ok(), Some(state));
        }
        let policies = [
            ("P_FCFS", Policy::Fcfs),
            (
                "P_PRIO",
                Policy::Priority {
                    aging_step_ms: None,
                },
            ),
            (
                "P_PRIO_AGING",
                Policy::Priority {
                    aging_step_ms: Some(1),
                },
            ),
            ("P_SJF", Policy::ShortestJobFirst { aging_factor: None }),
            (
                "P_SJF_AGING",
                Policy::ShortestJobFirst {
                    aging_factor: Some(1),
                },
            ),
            ("P_EDF", Policy::EarliestDeadlineFirst),
        ];
        for (name, policy) in policies {
            expect(&lua, name, policy_args(policy).0);
        }
        let strategies = [
            ("T_RR", Strategy::RoundRobin),
            ("T_RANDOM", Strategy::Random),
            ("T_WEIGHTED", Strategy::Weighted),
            ("T_LL", Strategy::LeastLoaded),
            ("T_AFFINITY", Strategy::Affinity { vnodes: 1 }),
            ("T_PULL", Strategy::Pull),
        ];
        for (name, strategy) in strategies {
            expect(&lua, name, strategy_args(strategy).0);
        }
        expect(&lua, "SAMPLE_CAP", switchyard_core::backend::SAMPLE_CAP);
        expect(&lua, "F_CANCEL", TASK_CANCEL_REQUESTED);
        expect(&lua, "F_AWAITED", TASK_AWAITED);
        expect(&lua, "F_DEADLINE", TASK_DEADLINE);
        // The flows' flags and staging time live in their table (lib/prelude.lua).
        let prelude = include_str!("../../../lua/lib/prelude.lua");
        let flows = format!(
            "local FLOWS = {{CHILD = 8, PARENT = 16, STAGED = {TASK_STAGED}, STAGE_TTL = {}}}",
            switchyard_core::tree::STAGE_TTL_MS
        );
        assert!(prelude.contains(&flows), "lib/prelude.lua holds `{flows}`");
        expect(&lua, "SUBMIT_DUPLICATE", SUBMIT_DUPLICATE);
        expect(&lua, "SUBMIT_DIFFERS", SUBMIT_DIFFERS);
        expect(&lua, "SUBMIT_REPLACED", SUBMIT_REPLACED);
        expect(
            &lua,
            "PROGRESS_GAP",
            switchyard_core::progress::PROGRESS_ANNOUNCE_GAP_MS,
        );
        expect(&lua, "PPM_WHOLE", switchyard_core::progress::PPM_WHOLE);
        expect(
            &lua,
            "PROGRESS_MESSAGE_MAX",
            switchyard_core::progress::PROGRESS_MESSAGE_MAX,
        );
        expect(&lua, "PROGRESS", ">HI4I6I6I6");
        assert_eq!(PROGRESS_LEN, 2 + 4 + 6 + 6 + 6, "the size of PROGRESS");
        expect(&lua, "W_WAITING", WORKER_WAITING);
        expect(&lua, "W_DRAINING", WORKER_DRAINING);
        let acks = [
            ("A_SUCCEEDED", AckCode::Succeeded),
            ("A_NOT_FOUND", AckCode::NotFound),
            ("A_NOT_RUNNING", AckCode::NotRunning),
            ("A_STALE", AckCode::Stale),
            ("A_RETRYING", AckCode::Retrying),
            ("A_DEAD", AckCode::Dead),
            ("A_CANCELLED", AckCode::Cancelled),
            ("A_THROTTLED", AckCode::Throttled),
        ];
        assert_eq!(acks.len(), AckCode::ALL.len());
        for (name, code) in acks {
            expect(&lua, name, u8::from(code));
        }
        expect(&lua, "HDR", record::HEADER);
        expect(&lua, "HDR_LEN", record::HEADER_LEN);
        expect(&lua, "WREC", record::WORKER);
        expect(&lua, "WREC_LEN", record::WORKER_LEN);
        expect(&lua, "TASK_ARG", record::TASK_ARG);
        expect(&lua, "TASK_ARG_LEN", record::TASK_ARG_LEN);
        expect(&lua, "HAND", record::HAND_OFF);
        expect(&lua, "HAND_TAG", char::from(record::HAND_OFF_TAG));
    }

    #[test]
    fn the_lua_side_takes_the_keys_in_the_same_order() {
        let lua = lua_constants();
        expect(&lua, "NFIXED", key::FIXED.len());
        expect(&lua, "GROUP_KEYS", key::GROUP.len());
        expect(&lua, "CH_WAKE", key::WAKE);
        expect(&lua, "CH_DONE", key::DONE);
        expect(&lua, "CH_DUE", key::DUE);
        // `K_TASKS, K_META = keys[1], keys[2]` lines of begin.lua.
        let mut taken = BTreeMap::new();
        for line in BEGIN.lines() {
            let Some((names, values)) = line.trim().split_once(" = ") else {
                continue;
            };
            // `K_*` locals, and the flows' keys held in their table (`FLOWS.k_*`).
            let names: Vec<&str> = names
                .split(',')
                .map(|n| {
                    n.trim()
                        .trim_start_matches("FLOWS.k_")
                        .trim_start_matches("K_")
                })
                .collect();
            if !line.trim_start().starts_with("K_") && !line.trim_start().starts_with("FLOWS.k_") {
                continue;
            }
            for (name, value) in names.into_iter().zip(values.split(',')) {
                let index: usize = value
                    .trim()
                    .strip_prefix("keys[")
                    .and_then(|v| v.strip_suffix(']'))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("begin.lua: {name} = {value}"));
                taken.insert(index, name.to_ascii_lowercase());
            }
        }
        let want: BTreeMap<usize, String> = key::FIXED
            .iter()
            .enumerate()
            .map(|(i, k)| (i + 1, (*k).to_owned()))
            .collect();
        assert_eq!(taken, want, "the fixed keys in lua/lib/begin.lua");
    }

    #[test]
    fn every_error_reply_of_the_scripts_is_known_here() {
        let lua = concat!(env!("CARGO_MANIFEST_DIR"), "/../../lua");
        let mut used = BTreeSet::new();
        let mut files = Vec::new();
        for dir in [lua.to_owned(), format!("{lua}/lib")] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "lua") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 20, "{files:?}");
        for path in files {
            let text = std::fs::read_to_string(path).unwrap();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("SY_") {
                let code: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                used.insert(code);
                rest = &rest[at + 3..];
            }
        }
        let known: BTreeSet<String> = reply::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            used, known,
            "error replies in lua/ against protocol::reply::ALL"
        );
    }

    #[test]
    fn every_acknowledgement_code_decodes() {
        for code in AckCode::ALL {
            let value = Value::Int(i64::from(state_code(TaskState::Running)));
            assert!(ack(i64::from(u8::from(code)), &value).is_ok(), "{code:?}");
        }
        assert!(ack(8, &Value::Int(0)).is_err());
    }
}
