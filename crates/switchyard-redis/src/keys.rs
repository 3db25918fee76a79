//! Key and channel names of a namespace. Every key of one namespace shares the hash tag
//! `{<namespace>}`, so every script touches a single slot and runs unchanged on Redis Cluster.
//! Which keys there are and in which order the scripts take them is the key contract in
//! [`protocol::key`](crate::protocol::key); see `docs/redis-layout.md` for what each key holds.

use switchyard_core::{Error, QueueName, TaskId, WorkerId};

pub(crate) use crate::protocol::key::{
    DEAD, EVENTS, FIXED, GROUP, HB, META, SETTLE, TASKS, WORKERS,
};
use crate::protocol::key::{DONE, DUE, SCHEDULES, WAKE};

/// The names of one namespace's keys.
#[derive(Debug, Clone)]
pub(crate) struct Keyspace {
    prefix: String,
    /// The fixed keys, in the order every script expects them (lua/lib/prelude.lua).
    pub(crate) fixed: Vec<String>,
}

impl Keyspace {
    /// Keys under `sy:{<namespace>}:`.
    pub(crate) fn new(namespace: &str) -> Result<Self, Error> {
        let valid = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace.bytes().all(switchyard_core::is_name_byte);
        if !valid {
            return Err(Error::invalid(
                "namespace",
                format!("`{namespace}` must be 1-64 letters, digits, `_`, `-`, `.` or `:`"),
            ));
        }
        Ok(Self::with_tag(namespace))
    }

    /// Keys of partition `index` of `namespace`: partition 0 is the namespace itself, partition
    /// `i > 0` has the hash tag `{<namespace>/<i>}` (`/` is not allowed in a namespace, so no
    /// namespace's tag can be a partition's).
    pub(crate) fn partition(namespace: &str, index: u16) -> Result<Self, Error> {
        Self::new(namespace)?;
        Ok(match index {
            0 => Self::with_tag(namespace),
            i => Self::with_tag(&format!("{namespace}/{i}")),
        })
    }

    fn with_tag(tag: &str) -> Self {
        let prefix = format!("sy:{{{tag}}}:");
        let fixed = FIXED.iter().map(|k| format!("{prefix}{k}")).collect();
        Keyspace { prefix, fixed }
    }

    pub(crate) fn fixed(&self, role: usize) -> &str {
        &self.fixed[role]
    }

    /// The keys of a queue's group, in [`GROUP`] order.
    pub(crate) fn queue_group(&self, queue: &QueueName) -> [String; GROUP.len()] {
        GROUP.map(|role| format!("{}q:{queue}:{role}", self.prefix))
    }

    /// The schedule keys, which only the schedule scripts take (after their other keys): the
    /// schedules hash and the due set (`lua/lib/schedules.lua`).
    pub(crate) fn schedules(&self) -> [String; 2] {
        SCHEDULES.map(|role| format!("{}{role}", self.prefix))
    }

    /// The channel a waiting worker is woken on.
    pub(crate) fn wake_channel(&self, worker: &WorkerId) -> String {
        format!("{}{WAKE}{worker}", self.prefix)
    }

    /// The channel a finished, awaited task is announced on.
    pub(crate) fn done_channel(&self, id: TaskId) -> String {
        format!("{}{DONE}{id}", self.prefix)
    }

    /// The channel on which a delayed task that became the first of its queue is announced
    /// (`place` in `lua/lib/place.lua`), waking maintenance loops. Namespaces hold no glob
    /// characters, so it is also the pattern that matches just itself.
    pub(crate) fn due_channel(&self) -> String {
        format!("{}{DUE}", self.prefix)
    }
}

/// The key of the task hash of partition `partition` of `namespace` (partition 0: the
/// namespace itself): which slot, so which Cluster node, holds that partition.
///
/// ```
/// assert_eq!(switchyard_redis::task_hash_key("shop", 2).unwrap(), "sy:{shop/2}:tasks");
/// ```
pub fn task_hash_key(namespace: &str, partition: u16) -> Result<String, Error> {
    Ok(Keyspace::partition(namespace, partition)?
        .fixed(TASKS)
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let k = Keyspace::new("prod").unwrap();
        for key in k
            .fixed
            .iter()
            .chain(k.queue_group(&QueueName::new("emails").unwrap()).iter())
        {
            assert!(key.starts_with("sy:{prod}:"), "{key}");
        }
        assert!(Keyspace::new("a{b}").is_err());
        assert!(
            Keyspace::new("a/1").is_err(),
            "a namespace cannot look like a partition"
        );
        let p = Keyspace::partition("prod", 2).unwrap();
        assert_eq!(p.fixed(TASKS), "sy:{prod/2}:tasks");
        assert_eq!(
            Keyspace::partition("prod", 0).unwrap().fixed(TASKS),
            "sy:{prod}:tasks"
        );
        assert!(Keyspace::new("").is_err());
    }
}
