//! Changing a task that has not started: its priority, payload or run time (the rule:
//! `switchyard_core::TaskChange`'s module).
//!
//! Lua twin: lua/change.lua.

use switchyard_core::{
    CHANGE_OPERATION, Error, Millis, Result, SubmitOutcome, TaskChange, TaskId, TaskState,
};

use super::State;

impl State {
    pub(crate) fn change_task(
        &mut self,
        id: TaskId,
        change: &TaskChange,
        now: Millis,
    ) -> Result<SubmitOutcome> {
        change.validate()?;
        let t = self.seen(id).ok_or(Error::TaskNotFound(id))?;
        let state = t.state;
        if !matches!(
            state,
            TaskState::Scheduled | TaskState::Ready | TaskState::RetryScheduled
        ) {
            return Err(Error::WrongState {
                id,
                state,
                operation: CHANGE_OPERATION,
            });
        }
        let queue = t.queue.clone();
        let position = t.position;
        if let Some(payload) = &change.payload {
            self.task_mut(id)?.payload.clone_from(payload);
        }
        if let Some(to) = change.priority {
            let from = self.task_mut(id)?.priority;
            self.task_mut(id)?.priority = to;
            if state == TaskState::Ready
                && let Some((key, order)) = position
            {
                let q = self.queue_mut(&queue)?;
                let moved = (q.config.policy.rekeyed(key, from, to), order);
                self.ready_rekey(&queue, (key, order), moved, id)?;
                self.task_mut(id)?.position = Some(moved);
            }
        }
        let mut dispatched = None;
        if let Some(at) = change.run_at {
            let pos = self.task_mut(id)?.position;
            match state {
                TaskState::Scheduled | TaskState::RetryScheduled => {
                    if let Some(pos) = pos {
                        self.delayed_remove(&queue, pos, id)?;
                    }
                    dispatched = if at > now {
                        self.enter_queue(id, Some(at), now, state == TaskState::RetryScheduled)?
                    } else {
                        self.make_ready(id, now, now)?
                    };
                }
                TaskState::Ready if at > now => {
                    if let Some(pos) = pos {
                        self.ready_remove(&queue, pos, id)?;
                    }
                    dispatched = self.enter_queue(id, Some(at), now, false)?;
                }
                _ => {}
            }
        }
        let assigned = self.assigned_at_once(id, dispatched);
        let state = self.tasks.get(&id).map(|t| t.state);
        Ok(SubmitOutcome::new(id, state, false, assigned))
    }
}
