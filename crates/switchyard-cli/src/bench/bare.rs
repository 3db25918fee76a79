//! The bare floor, defined once: a script that does only the Redis commands any queue needs per
//! task (`bare_lifecycle.lua`, beside this file), its keys, and one call of it. `switchyard
//! bench` measures it next to Switchyard's own calls (the floors, and the awaited single shape
//! of `--compare`), and `examples/anchor_bare_floor.rs` runs it in the side-by-side harness;
//! the example includes this file by path, so it must stay free of the bench's other modules.

/// The script.
pub const SCRIPT: &str = include_str!("bare_lifecycle.lua");

/// The roles of its keys, in its `KEYS` order.
const KEY_ROLES: [&str; 5] = ["tasks", "ready", "seq", "running", "results"];

/// The bare lifecycle on the keys under one prefix.
pub struct Bare {
    script: redis::Script,
    keys: Vec<String>,
    channel: String,
}

impl Bare {
    /// The script on the keys `<tag><role>`, publishing `hand`s on `<tag>wake`. `tag` should
    /// hold a hash tag (`sy:{bench-bare}:`), so that every key is in one slot.
    pub fn new(tag: &str) -> Self {
        Bare {
            script: redis::Script::new(SCRIPT),
            keys: KEY_ROLES.iter().map(|k| format!("{tag}{k}")).collect(),
            channel: format!("{tag}wake"),
        }
    }

    /// Its keys (to delete them afterwards).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The channel `hand` publishes each task on, for the waiting worker.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// One call: `phase` (`submit`, `receive`, `complete`, `hand` or `ack`) for `batch` tasks
    /// (1 for `hand` and `ack`), then the phase's `extra` arguments (see the script's header).
    /// It answers the number of tasks it handled.
    pub fn call(&self, phase: &str, batch: usize, extra: &[&[u8]]) -> redis::ScriptInvocation<'_> {
        let mut call = self.script.prepare_invoke();
        for k in &self.keys {
            call.key(k);
        }
        call.arg(phase).arg(batch);
        for a in extra {
            call.arg(*a);
        }
        call
    }

    /// A task id as `hand` publishes it: the message up to its first `|`.
    pub fn handed_id(message: &[u8]) -> &[u8] {
        message.split(|b| *b == b'|').next().unwrap_or_default()
    }
}
