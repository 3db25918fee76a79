//! Flows on Redis: submitting a tree in one script call (`lua/submit_flow.lua`), reading a
//! task's children (`lua/children.lua`), and settling what children's ends decided
//! (`lua/settle.lua`, a phase of maintenance). The rules: `switchyard_core::tree`.

use switchyard_core::tree::{ChildResult, Flow, SETTLE_BATCH, parse_settle_entry};
use switchyard_core::{MaintenanceReport, QueueName, Result, SubmitOutcome, TaskId};

use super::RedisBackend;
use crate::codec::{self, array};
use crate::error::Failure;
use crate::keys;

impl RedisBackend {
    /// Stores `flow` whole in one atomic call (rule 1).
    pub(super) async fn store_flow(&self, flow: &Flow) -> Result<Vec<SubmitOutcome>> {
        let nodes = flow.flatten()?;
        let mut queues: Vec<&QueueName> = Vec::new();
        for n in &nodes {
            if !queues.contains(&n.spec.queue()) {
                queues.push(n.spec.queue());
            }
        }
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().submit_flow, &queues, &now);
        inv.names(&queues);
        inv.arg(nodes.len());
        for n in &nodes {
            let g = queues
                .iter()
                .position(|q| *q == n.spec.queue())
                .unwrap_or(0)
                + 1;
            // At most MAX_FLOW_TASKS queues, so the position fits.
            inv.arg(codec::encode_task_arg(
                &n.spec,
                u16::try_from(g).unwrap_or(u16::MAX),
            ));
        }
        for n in &nodes {
            inv.arg(n.parent.map_or(0, |p| p + 1))
                .arg(n.on_failure.code());
        }
        let reply = self.exec_durable(&inv).await.map_err(Failure::into_error)?;
        let mut it = array(reply)?.into_iter();
        let mut out = Vec::with_capacity(nodes.len());
        while it.len() > 0 {
            out.push(codec::submit_outcome(&mut it)?);
        }
        Ok(out)
    }

    /// The children of `id` (see `Tasks::children`).
    pub(super) async fn read_children(&self, id: TaskId) -> Result<Option<Vec<ChildResult>>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().children, &[], &now);
        inv.arg(id.to_string());
        let reply = self.exec(&inv).await.map_err(Failure::into_error)?;
        codec::children(reply)
    }

    /// Rule 4: carries out due settle entries, `SETTLE_BATCH` per round, at most `limit`,
    /// into `report`.
    pub(super) async fn settle_due(
        &self,
        limit: usize,
        now: u64,
        now_arg: &str,
        report: &mut MaintenanceReport,
    ) -> Result<()> {
        let key = self.inner.keys.fixed(keys::SETTLE);
        let mut done = 0;
        while done < limit {
            let entries: Vec<String> = self
                .query(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(key)
                        .arg("-inf")
                        .arg(now)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(SETTLE_BATCH.min(limit - done)),
                )
                .await?;
            if entries.is_empty() {
                return Ok(());
            }
            let mut queues: Vec<QueueName> = Vec::new();
            for e in &entries {
                let (queue, _, _) = parse_settle_entry(e).ok_or_else(|| {
                    crate::protocol::protocol(format!("unreadable settle entry `{e}`"))
                })?;
                let queue = QueueName::new(queue)?;
                if !queues.contains(&queue) {
                    queues.push(queue);
                }
            }
            let groups: Vec<&QueueName> = queues.iter().collect();
            let mut inv = self.invocation(&self.functions().settle, &groups, now_arg);
            inv.names(&groups);
            inv.arg(entries.len());
            for e in &entries {
                inv.arg(e.as_str());
            }
            let reply = self.exec(&inv).await.map_err(Failure::into_error)?;
            let (n, assignments) = codec::settled(reply)?;
            report.flows_settled += n;
            report.assignments.extend(assignments);
            done += n;
            if n == 0 {
                // Every entry read was taken by another maintainer: read again.
                continue;
            }
        }
        report.more |= self.any_at_or_below(keys::SETTLE, now).await?;
        Ok(())
    }

    /// Whether a sorted set has a member scored at or below `now`.
    async fn any_at_or_below(&self, role: usize, now: u64) -> Result<bool> {
        let found: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.inner.keys.fixed(role))
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1),
            )
            .await?;
        Ok(!found.is_empty())
    }
}
