//! Flows on Redis: submitting a tree in one script call (`lua/submit_flow.lua`), reading a
//! task's children (`lua/children.lua`), and settling what children's ends decided
//! (`lua/settle.lua`, a phase of maintenance). The rules: `switchyard_core::tree`.

use std::collections::BTreeMap;

use switchyard_core::flow::bounded::group_of;
use switchyard_core::tree::{
    ChildResult, FlatNode, Flow, SETTLE_BATCH, Settle, children_of, first_named,
    parse_settle_entry, steps,
};
use switchyard_core::{MaintenanceReport, QueueName, Result, SubmitOutcome, TaskId, TaskSpec};

use super::RedisBackend;
use crate::codec::{self, array};
use crate::error::Failure;
use crate::keys;

impl RedisBackend {
    /// Stores `flow` (rule 1): in one atomic call, or, wider than `FLOW_STEP`, its later steps
    /// staged and then its first step committing it (rule 6).
    pub(super) async fn store_flow(&self, flow: &Flow) -> Result<Vec<SubmitOutcome>> {
        let nodes = flow.flatten()?;
        let plan = steps(nodes.len());
        let kids = children_of(&nodes);
        let Some((first, later)) = plan.split_first().filter(|(_, later)| !later.is_empty()) else {
            let queues = first_named(nodes.iter().map(|n| n.spec.queue()));
            return self
                .flow_call(&nodes, &kids, 0..nodes.len(), 0, 1, &queues, &[], 0)
                .await;
        };
        let root = nodes[0].spec.queue();
        for (i, step) in later.iter().enumerate() {
            let named =
                std::iter::once(root).chain(nodes[step.clone()].iter().map(|n| n.spec.queue()));
            let queues = first_named(named);
            let out = self
                .flow_call(&nodes, &kids, step.clone(), 1, i + 2, &queues, &[], 0)
                .await?;
            if out.first().is_some_and(|o| o.duplicate) {
                return Ok(out);
            }
        }
        // The commit: the queues the leaves enter first, in the order they first name them,
        // with every leaf's count per queue and per group; then the flow's other queues.
        let leaves: Vec<&TaskSpec> = nodes
            .iter()
            .filter(|n| n.children == 0)
            .map(|n| &n.spec)
            .collect();
        let leaf_queues = first_named(leaves.iter().map(|s| s.queue()));
        let mut queues = leaf_queues.clone();
        for q in first_named(nodes.iter().map(|n| n.spec.queue())) {
            if !queues.contains(&q) {
                queues.push(q);
            }
        }
        let mut counts: BTreeMap<(usize, &str), u64> = BTreeMap::new();
        for s in &leaves {
            let g = queues.iter().position(|q| *q == s.queue()).unwrap_or(0);
            *counts.entry((g, group_of(s))).or_default() += 1;
        }
        let out = self
            .flow_call(
                &nodes,
                &kids,
                first.clone(),
                2,
                1,
                &queues,
                &counts.into_iter().collect::<Vec<_>>(),
                leaf_queues.len(),
            )
            .await?;
        if out.first().is_some_and(|o| o.duplicate) {
            return Ok(out);
        }
        Ok(nodes
            .iter()
            .map(|n| SubmitOutcome::new(n.spec.id(), None, false, None))
            .collect())
    }

    /// One call of `lua/submit_flow.lua` for the tasks `step` of `nodes` (see its header).
    #[allow(clippy::too_many_arguments)]
    async fn flow_call(
        &self,
        nodes: &[FlatNode],
        kids: &[Vec<usize>],
        step: std::ops::Range<usize>,
        mode: u8,
        number: usize,
        queues: &[&QueueName],
        counts: &[((usize, &str), u64)],
        leaf_queues: usize,
    ) -> Result<Vec<SubmitOutcome>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().submit_flow, queues, &now);
        inv.arg(mode)
            .arg(nodes[0].spec.id().to_string())
            .arg(number)
            .arg(steps(nodes.len()).len());
        inv.names(queues);
        for g in 0..queues.len() {
            let leaves: u64 = counts
                .iter()
                .filter(|((q, _), _)| *q == g)
                .map(|(_, n)| n)
                .sum();
            inv.arg(leaves);
        }
        inv.arg(leaf_queues).arg(counts.len());
        for ((g, key), n) in counts {
            inv.arg(g + 1).arg(*key).arg(*n);
        }
        inv.arg(step.len());
        for n in &nodes[step.clone()] {
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
        for i in step {
            let n = &nodes[i];
            let parent = n.parent.map(|p| nodes[p].spec.id().to_string());
            let children: String = kids[i]
                .iter()
                .map(|&c| format!("{}{}", nodes[c].spec.id(), nodes[c].on_failure.code()))
                .collect();
            inv.arg(parent.unwrap_or_default())
                .arg(n.on_failure.code())
                .arg(children);
        }
        let reply = self.exec_durable(&inv).await.map_err(Failure::into_error)?;
        let mut it = array(reply)?.into_iter();
        let mut out = Vec::new();
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
                let (queue, id, what) = parse_settle_entry(e).ok_or_else(|| {
                    crate::protocol::protocol(format!("unreadable settle entry `{e}`"))
                })?;
                let mut named = vec![QueueName::new(queue)?];
                if what == Settle::Materialize {
                    // Every queue of the wide flow its step may hold tasks of.
                    let all: Option<String> = self
                        .query(
                            redis::cmd("HGET")
                                .arg(self.inner.keys.fixed(keys::TASKS))
                                .arg(format!("fq:{id}")),
                        )
                        .await?;
                    for q in all.iter().flat_map(|a| a.split(',')) {
                        named.push(QueueName::new(q)?);
                    }
                }
                for queue in named {
                    if !queues.contains(&queue) {
                        queues.push(queue);
                    }
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
