//! [`Produce`] on Redis: submits, one by one (combined) and in chunked batches.

use async_trait::async_trait;
use switchyard_core::flow::bounded::{BATCH_STEP, Remaining};
use switchyard_core::{Error, Produce, QueueName, Result, SubmitOutcome, TaskSpec};

use super::RedisBackend;
use crate::codec;
use crate::codec::array;

/// Tasks per submit script call; larger batches are split (the effect is the same, but for
/// a bounded queue's room check: `switchyard_core::flow::bounded`).
const SUBMIT_CHUNK: usize = BATCH_STEP;

#[async_trait]
impl Produce for RedisBackend {
    /// Concurrent single submits are sent together in one script call (see the `combine`
    /// module); a submit made alone is sent at once.
    async fn submit(&self, spec: TaskSpec) -> Result<SubmitOutcome> {
        match self.combined(spec, "submit").await {
            Err(e) => Err(self.explained(e).await),
            ok => ok,
        }
    }

    async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<SubmitOutcome>> {
        match self.submit_specs(&specs).await {
            Err(e) => Err(self.explained(e).await),
            ok => ok,
        }
    }

    async fn submit_flow(&self, flow: switchyard_core::tree::Flow) -> Result<Vec<SubmitOutcome>> {
        match self.store_flow(&flow).await {
            Err(e) => Err(self.explained(e).await),
            ok => ok,
        }
    }
}

impl RedisBackend {
    /// Submits `specs` in calls of up to `SUBMIT_CHUNK` tasks, each atomic. If a call fails
    /// after earlier ones stored their tasks, the error is `BatchIncomplete` with their
    /// outcomes.
    pub(super) async fn submit_specs(&self, specs: &[TaskSpec]) -> Result<Vec<SubmitOutcome>> {
        // Check every queue first, so that a batch with an unknown queue submits nothing.
        let mut seen: Vec<&QueueName> = Vec::new();
        for s in specs {
            if !seen.contains(&s.queue()) {
                seen.push(s.queue());
            }
        }
        if seen.len() > 1 || specs.len() > SUBMIT_CHUNK {
            let exists = self.declared(&seen).await?;
            if let Some((q, _)) = seen.iter().zip(&exists).find(|(_, e)| !**e) {
                return Err(Error::UnknownQueue((*q).clone()));
            }
        }
        // A batch of several calls: each call's room check also covers the batch's tasks to
        // each of its queues, and each of their groups, from that call on.
        let mut rest = Remaining::of(specs);
        let mut out = Vec::with_capacity(specs.len());
        for chunk in specs.chunks(SUBMIT_CHUNK) {
            let mut groups: Vec<&QueueName> = Vec::new();
            for s in chunk {
                if !groups.contains(&s.queue()) {
                    groups.push(s.queue());
                }
            }
            let now = self.now_arg();
            let mut inv = self.invocation(&self.functions().submit, &groups, &now);
            inv.names(&groups);
            for q in &groups {
                inv.arg(rest.queue(q));
            }
            // The groups the call's check covers beyond those its tasks name (lib/bounded.lua
            // names those itself): their counts.
            let in_groups: Vec<(usize, &str, u64)> = groups
                .iter()
                .enumerate()
                .flat_map(|(g, q)| {
                    rest.groups_to_check(q, chunk)
                        .into_iter()
                        .filter(|(_, n)| *n > 0)
                        .map(move |(key, n)| (g + 1, key, n))
                })
                .collect();
            inv.arg(in_groups.len());
            for (g, key, n) in in_groups {
                inv.arg(g).arg(key).arg(n);
            }
            inv.arg(chunk.len());
            for s in chunk {
                let g = groups.iter().position(|q| *q == s.queue()).unwrap_or(0) + 1;
                // At most SUBMIT_CHUNK groups, so the position fits.
                inv.arg(codec::encode_task_arg(
                    s,
                    u16::try_from(g).unwrap_or(u16::MAX),
                ));
            }
            let reply = match self.exec_durable(&inv).await {
                Ok(reply) => reply,
                Err(f) if out.is_empty() => return Err(f.into_error()),
                Err(f) => {
                    return Err(Error::BatchIncomplete {
                        total: specs.len(),
                        accepted: out.into_iter().enumerate().collect(),
                        source: Box::new(f.into_error()),
                    });
                }
            };
            let mut it = array(reply)?.into_iter();
            for _ in chunk {
                out.push(codec::submit_outcome(&mut it)?);
            }
            rest.stored(chunk);
        }
        Ok(out)
    }
}
