//! The steps where several callers make the same call at the same moment
//! ([`Op::SubmitTogether`], [`Op::CompleteTogether`]): the calls are started together and
//! awaited together, so that a backend that combines concurrent calls into one (Redis does,
//! for submits and completions) is exercised, while the reference serves them one after the
//! other. The traces then show that combining is invisible: each caller's answer is the one it
//! would have had alone.

use futures_util::future::join_all;
use switchyard_core::prelude::*;
use switchyard_core::{Ack, Lease, TaskId, WorkerId};

use super::runner::fatal;
use super::{Op, Runner, SubmitOp};

impl<B: Backend> Runner<B> {
    pub(super) async fn apply_together(&mut self, op: &Op) -> Result<String, String> {
        match op {
            Op::SubmitTogether(ops) => self.submit_together(ops).await,
            Op::CompleteTogether { picks } => self.complete_together(picks).await,
            other => Err(format!("not a combined step: {other:?}")),
        }
    }

    async fn submit_together(&mut self, ops: &[SubmitOp]) -> Result<String, String> {
        let mut specs = Vec::with_capacity(ops.len());
        for s in ops {
            let spec = self.spec(s)?;
            self.specs.insert(spec.id(), spec.clone());
            specs.push(spec);
        }
        let ids: Vec<TaskId> = specs.iter().map(|s| s.id()).collect();
        let backend = &self.backend;
        let answers = join_all(specs.into_iter().map(|spec| backend.submit(spec))).await;
        let mut lines = Vec::with_capacity(ids.len());
        for (id, answer) in ids.into_iter().zip(answers) {
            match answer {
                Ok(out) => {
                    self.answered(id, &out);
                    lines.push(format!("{id} -> {out:?}"));
                }
                Err(e) if fatal(&e) => return Err(format!("submit {id}: backend failed: {e}")),
                Err(e) => lines.push(format!("{id} -> error: {e}")),
            }
        }
        Ok(format!("submit together [{}]", lines.join("; ")))
    }

    async fn complete_together(&mut self, picks: &[(usize, usize)]) -> Result<String, String> {
        if self.deliveries.is_empty() {
            return Ok("complete together: nothing delivered".to_string());
        }
        let mut calls: Vec<(Lease, usize)> = Vec::with_capacity(picks.len());
        for (pick, max) in picks {
            calls.push((self.pick_delivery(*pick).await?, *max));
        }
        // Grouped by worker, in the order each worker first appears (a stable sort).
        let mut workers: Vec<WorkerId> = Vec::new();
        for (lease, _) in &calls {
            if !workers.contains(&lease.worker) {
                workers.push(lease.worker.clone());
            }
        }
        calls.sort_by_key(|(lease, _)| workers.iter().position(|w| *w == lease.worker));
        let backend = &self.backend;
        let answers = join_all(calls.iter().map(|(lease, max)| {
            let value = format!("done-{}", lease.task).into_bytes();
            backend.complete_and_receive(lease, value, *max)
        }))
        .await;
        let mut lines = Vec::with_capacity(calls.len());
        for ((lease, max), answer) in calls.into_iter().zip(answers) {
            let (out, ds) = answer.map_err(|e| format!("complete together: {e}"))?;
            if out.ack == Ack::Completed {
                self.completed.push(lease.clone());
            }
            self.deliveries.extend(ds.iter().map(|d| d.lease.clone()));
            lines.push(format!("{lease:?} {max} -> {out:?} {ds:?}"));
        }
        Ok(format!("complete together [{}]", lines.join("; ")))
    }
}
