//! A queue's scheduled and retry-scheduled tasks enter and leave its delayed set by the helpers
//! here (`delayed_insert`, `delayed_remove`); in a queue shared between groups they are counted
//! by group beside the groups' ready tasks, which is what a per-group bound counts
//! (`switchyard_core::flow::bounded`; the room check is state/bounded.rs).
//!
//! Lua twin: lua/lib/delayed.lua (the `DELAYED` table).

use std::collections::BTreeMap;

use switchyard_core::{QueueName, Result, TaskId};

use super::{Groups, Pos};
use crate::state::State;

impl Groups {
    /// Counts a delayed task of `group` in (`up`) or out.
    fn count_delayed(&mut self, group: &str, up: bool) {
        let n = self.delayed.get(group).copied().unwrap_or(0);
        let n = if up { n + 1 } else { n.saturating_sub(1) };
        if n == 0 {
            self.delayed.remove(group);
        } else {
            self.delayed.insert(group.to_owned(), n);
        }
    }

    /// The scheduled and retry-scheduled tasks of `group`.
    pub(super) fn scheduled(&self, group: &str) -> u64 {
        self.delayed.get(group).copied().unwrap_or(0)
    }

    /// The waiting tasks of `group`: ready, scheduled and retry-scheduled.
    pub(crate) fn waiting(&self, group: &str) -> u64 {
        self.ready.get(group).map_or(0, |r| r.len() as u64) + self.scheduled(group)
    }
}

impl State {
    /// Puts task `id` into `queue`'s delayed set at `pos` (run-at, sequence number), counted in
    /// its group.
    pub(in crate::state) fn delayed_insert(
        &mut self,
        queue: &QueueName,
        pos: Pos,
        id: TaskId,
    ) -> Result<()> {
        self.count_delayed(queue, id, true)?;
        self.queue_mut(queue)?.delayed.insert(pos, id);
        Ok(())
    }

    /// Takes task `id` (at `pos`) out of `queue`'s delayed set, and its group's count.
    pub(in crate::state) fn delayed_remove(
        &mut self,
        queue: &QueueName,
        pos: Pos,
        id: TaskId,
    ) -> Result<()> {
        if self.queue_mut(queue)?.delayed.remove(&pos).is_some() {
            self.count_delayed(queue, id, false)?;
        }
        Ok(())
    }

    fn count_delayed(&mut self, queue: &QueueName, id: TaskId, up: bool) -> Result<()> {
        if self.queue(queue)?.groups.is_none() {
            return Ok(());
        }
        let group = self.group_of(id)?;
        if let Some(groups) = self.queue_mut(queue)?.groups.as_mut() {
            groups.count_delayed(&group, up);
        }
        Ok(())
    }

    /// The audit of the groups' delayed counts: each is its group's tasks in the delayed set.
    pub(super) fn audit_delayed(
        &self,
        queue: &QueueName,
        groups: &Groups,
    ) -> std::result::Result<(), String> {
        let q = self.queue(queue).map_err(|e| e.to_string())?;
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        for id in q.delayed.values() {
            let group = self.group_of(*id).map_err(|e| e.to_string())?;
            *counted.entry(group).or_default() += 1;
        }
        if counted != groups.delayed {
            return Err(format!(
                "{queue}: groups count {:?} scheduled, the delayed set holds {counted:?}",
                groups.delayed
            ));
        }
        Ok(())
    }
}
