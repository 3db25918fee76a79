//! Flows in a scenario (`switchyard_core::tree`): submitting one, and what the snapshot reads
//! of each flow task's children (their ends as counted and their states), so that the two
//! backends are held equal on the counting rule too.

use switchyard_core::prelude::*;
use switchyard_core::tree::{ChildResult, Flow, FlowNode, OnFailure};
use switchyard_core::{TaskId, TaskSpec};

use super::ops::FlowChildOp;
use super::runner::fatal;
use super::{Runner, SubmitOp};

impl<B: Backend> Runner<B> {
    /// A flow task's spec: as any submit's, without a dedup key, and without a delay for a
    /// task with children (the flow would be refused before reaching the backend).
    fn flow_spec(&mut self, op: &SubmitOp, has_children: bool) -> Result<TaskSpec, String> {
        let mut op = op.clone();
        op.dedup = None;
        if has_children {
            op.delay_ms = None;
        }
        let spec = self.spec(&op)?;
        self.specs.insert(spec.id(), spec.clone());
        Ok(spec)
    }

    pub(super) async fn apply_flow(
        &mut self,
        root: &SubmitOp,
        children: &[FlowChildOp],
    ) -> Result<String, String> {
        let mut flow = Flow::new(self.flow_spec(root, !children.is_empty())?);
        for c in children {
            let mut node = FlowNode::new(self.flow_spec(&c.task, !c.children.is_empty())?)
                .on_failure(OnFailure::from_code(c.policy % 3).unwrap_or_default());
            for leaf in &c.children {
                node = node.child(FlowNode::new(self.flow_spec(leaf, false)?));
            }
            flow = flow.child(node);
        }
        let label = format!("flow {}", flow.root_id());
        match self.backend.submit_flow(flow).await {
            Ok(outs) => {
                for out in &outs {
                    self.answered(out.id, out);
                    if !out.duplicate
                        && out.state == Some(switchyard_core::TaskState::WaitingChildren)
                    {
                        self.parents.push(out.id);
                    }
                }
                Ok(format!("{label} -> {outs:?}"))
            }
            Err(e) if fatal(&e) => Err(format!("{label}: backend failed: {e}")),
            Err(e) => Ok(format!("{label} -> error: {e}")),
        }
    }

    /// The children of every flow task submitted, in submission order.
    pub(super) async fn flow_children(&self) -> Result<Vec<Option<Vec<ChildResult>>>, String> {
        let mut out = Vec::with_capacity(self.parents.len());
        for id in &self.parents {
            out.push(self.children_of(*id).await?);
        }
        Ok(out)
    }

    async fn children_of(&self, id: TaskId) -> Result<Option<Vec<ChildResult>>, String> {
        self.backend
            .children(id)
            .await
            .map_err(|e| format!("children of {id}: {e}"))
    }
}
