//! [`Tasks`] on Redis: one task by id, awaiting it, cancel, the dead-letter set.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Value;
use switchyard_core::{
    CHANGE_OPERATION, CancelOutcome, Error, Progress, QueueName, Result, SubmitOutcome, TaskChange,
    TaskId, TaskInfo, TaskOutcome, TaskState, Tasks, WorkerId,
};

use super::{RedisBackend, verified};
use crate::codec::{array, int, protocol, text};
use crate::error::wrong_state;
use crate::protocol::state_from;
use crate::{codec, keys};

/// Where a task that re-entered its queue is (`redrive`, `change`: `{state, worker or ''}`).
fn placed(id: TaskId, v: Value) -> Result<SubmitOutcome> {
    let mut it = array(v)?.into_iter();
    let st = int(&it.next().ok_or_else(|| protocol("empty reply"))?)?;
    let worker = text(it.next().unwrap_or(Value::Nil))?;
    let assigned = if worker.is_empty() {
        None
    } else {
        Some(WorkerId::new(worker)?)
    };
    Ok(SubmitOutcome::new(
        id,
        Some(state_from(st)?),
        false,
        assigned,
    ))
}

impl RedisBackend {
    /// Listens on task `id`'s done channel (before its state is checked, so that an
    /// announcement right after the check is not missed); `None` at `deadline`. A connection
    /// that fails while subscribing is tried again within the deadline.
    async fn listening_for(
        &self,
        id: TaskId,
        deadline: tokio::time::Instant,
    ) -> Result<Option<crate::outcomes::Registration>> {
        let channel = self.inner.keys.done_channel(id);
        loop {
            match tokio::time::timeout_at(deadline, self.registration(&channel)).await {
                Ok(Ok(r)) => return Ok(Some(r)),
                Ok(Err(e)) if e.is_transient() => {
                    tokio::time::sleep_until(
                        deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
                    )
                    .await;
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(None),
            }
        }
    }

    /// Flags task `id` as awaited (`lua/await.lua`): its state if it has finished, else -1.
    async fn flag_awaited(&self, id: TaskId) -> Result<i64> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().await_outcome, &[], &now);
        inv.arg(id.to_string());
        match self.exec(&inv).await {
            Ok(v) => int(&v),
            Err(f) => Err(f.into_error()),
        }
    }
}

#[async_trait]
impl Tasks for RedisBackend {
    async fn get_task(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        Ok(self.record_with_progress(id).await?.map(|(r, progress)| {
            let mut info = r.info(id);
            info.progress = progress;
            info
        }))
    }

    async fn children(
        &self,
        id: TaskId,
    ) -> Result<Option<Vec<switchyard_core::tree::ChildResult>>> {
        self.read_children(id).await
    }

    async fn get_outcome(&self, id: TaskId) -> Result<Option<TaskOutcome>> {
        Ok(self.record(id).await?.and_then(|r| r.outcome()))
    }

    /// Waits on the backend's one shared subscription (see the `outcomes` module): no polling,
    /// and no connection per waiting caller.
    async fn wait_outcome(&self, id: TaskId, timeout: Duration) -> Result<Option<TaskOutcome>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(mut registration) = self.listening_for(id, deadline).await? else {
                break;
            };
            if self.flag_awaited(id).await? >= 0 {
                break;
            }
            match tokio::time::timeout_at(deadline, registration.announced()).await {
                // The task finished, or announced progress (`lua/progress.lua`), or the
                // connection was lost: listen again, and check again.
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        self.get_outcome(id).await
    }

    /// Like `wait_outcome`: announced reports publish on the task's done channel while someone
    /// awaits it (`lua/progress.lua`).
    async fn wait_progress(
        &self,
        id: TaskId,
        seen: Option<&Progress>,
        timeout: Duration,
    ) -> Result<Option<Progress>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let registration = self.listening_for(id, deadline).await?;
            let finished = self.flag_awaited(id).await? >= 0;
            let (_, now) = self
                .record_with_progress(id)
                .await?
                .ok_or(Error::TaskNotFound(id))?;
            let Some(mut registration) = registration else {
                return Ok(now);
            };
            if finished || switchyard_core::progress::news(now.as_ref(), seen) {
                return Ok(now);
            }
            match tokio::time::timeout_at(deadline, registration.announced()).await {
                Ok(_) => {}
                Err(_) => return Ok(now),
            }
        }
    }

    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        verified("cancel", |_| async move {
            let rec = self.record(id).await?.ok_or(Error::TaskNotFound(id))?;
            let worker_queues = match (&rec.state, &rec.worker) {
                (TaskState::Dispatched, Some(w)) => {
                    self.queues_of(w, true).await?.unwrap_or_default()
                }
                _ => Arc::new(Vec::new()),
            };
            let mut groups: Vec<&QueueName> = vec![&rec.queue];
            groups.extend(worker_queues.iter());
            let now = self.now_arg();
            let mut inv = self.invocation(&self.functions().cancel, &groups, &now);
            inv.arg(id.to_string())
                .arg(crate::protocol::state_code(rec.state));
            inv.arg(rec.worker.as_ref().map_or("", |w| w.as_str()))
                .names(&groups);
            Ok(codec::cancelled(self.exec_durable(&inv).await?)?)
        })
        .await
    }

    async fn list_dead(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskInfo>> {
        let members: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYLEX")
                    .arg(self.inner.keys.fixed(keys::DEAD))
                    .arg(format!("[{queue}|"))
                    .arg(format!("({queue}}}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit.min(1_000_000)),
            )
            .await?;
        let ids: Vec<TaskId> = members
            .iter()
            .filter_map(|m| m.rsplit('|').next())
            .map(str::parse)
            .collect::<Result<_>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.inner.keys.fixed(keys::TASKS));
        for id in &ids {
            cmd.arg(id.to_string());
        }
        let raws: Vec<Option<Vec<u8>>> = self.query(&cmd).await?;
        let mut out = Vec::new();
        for (id, raw) in ids.into_iter().zip(raws) {
            if let Some(raw) = raw {
                out.push(codec::decode_record(&raw)?.info(id));
            }
        }
        Ok(out)
    }

    async fn change_task(&self, id: TaskId, change: &TaskChange) -> Result<SubmitOutcome> {
        change.validate()?;
        verified("change", |_| async move {
            let rec = self.record(id).await?.ok_or(Error::TaskNotFound(id))?;
            let body = change
                .payload
                .as_ref()
                .map(|p| codec::body_with_payload(&rec, p))
                .unwrap_or_default();
            let now = self.now_arg();
            let mut inv = self.invocation(&self.functions().change, &[&rec.queue], &now);
            inv.arg(rec.queue.as_str())
                .arg(id.to_string())
                .arg(change.priority.map_or(-1, i64::from))
                .arg(
                    change
                        .run_at
                        .map_or(-1, |at| i64::try_from(at).unwrap_or(i64::MAX)),
                )
                .arg(body);
            let v = self
                .exec_durable(&inv)
                .await
                .map_err(|f| wrong_state(f, id, CHANGE_OPERATION))?;
            Ok(placed(id, v)?)
        })
        .await
    }

    async fn redrive(&self, id: TaskId) -> Result<SubmitOutcome> {
        verified("redrive", |_| async move {
            let rec = self.record(id).await?.ok_or(Error::TaskNotFound(id))?;
            let now = self.now_arg();
            let mut inv = self.invocation(&self.functions().redrive, &[&rec.queue], &now);
            inv.arg(id.to_string()).arg(rec.queue.as_str());
            let v = self
                .exec_durable(&inv)
                .await
                .map_err(|f| wrong_state(f, id, "redrive (only dead tasks can be re-driven)"))?;
            Ok(placed(id, v)?)
        })
        .await
    }

    async fn delete_task(&self, id: TaskId) -> Result<()> {
        self.delete_task_now(id).await
    }
}
