//! What the runner sees of a backend at one moment, through its public API.

use switchyard_core::flow::groups::GroupInfo;
use switchyard_core::prelude::*;
use switchyard_core::{
    EVENT_LOG_CAP, EventKind, QueueName, Stats, TaskId, TaskInfo, TaskKind, WorkerId,
};

use super::{Runner, queue_name};

/// An event without its backend-specific id.
pub type EventView = (
    EventKind,
    TaskId,
    QueueName,
    Option<WorkerId>,
    u64,
    Option<String>,
);

/// What the runner can see of the backend at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The backend's counts.
    pub stats: Stats,
    /// Every accepted task, in acceptance order.
    pub tasks: Vec<Option<TaskInfo>>,
    /// The event log, oldest first.
    pub events: Vec<EventView>,
    /// Learned costs of the `job` kind, per queue.
    pub costs: Vec<Option<u32>>,
    /// How long until maintenance next has something to do.
    pub until_due: Option<std::time::Duration>,
    /// The groups of each queue shared between groups (`None`: a plain queue).
    pub groups: Vec<Option<Vec<GroupInfo>>>,
    /// The children of each flow task, with their ends as counted (`scenario/flows.rs`).
    pub children: Vec<Option<Vec<switchyard_core::tree::ChildResult>>>,
}

impl<B: Backend> Runner<B> {
    /// Everything the runner can see.
    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        let stats = self
            .backend
            .stats()
            .await
            .map_err(|e| format!("stats: {e}"))?;
        let mut tasks = Vec::with_capacity(self.accepted.len());
        for id in &self.accepted {
            tasks.push(
                self.backend
                    .get_task(*id)
                    .await
                    .map_err(|e| format!("get {id}: {e}"))?,
            );
        }
        let events = self
            .backend
            .events(None, EVENT_LOG_CAP)
            .await
            .map_err(|e| format!("events: {e}"))?
            .into_iter()
            .map(|e| (e.kind, e.task, e.queue, e.worker, e.at, e.detail))
            .collect();
        let kind = TaskKind::new("job").map_err(|e| e.to_string())?;
        let mut costs = Vec::new();
        for i in 0..self.configs.len() {
            costs.push(
                self.backend
                    .learned_cost(&queue_name(i), &kind)
                    .await
                    .map_err(|e| format!("learned cost: {e}"))?,
            );
        }
        let until_due = self
            .backend
            .until_due()
            .await
            .map_err(|e| format!("until due: {e}"))?;
        let mut groups = Vec::new();
        for (i, config) in self.configs.iter().enumerate() {
            groups.push(match config.groups {
                Some(_) => Some(
                    self.backend
                        .groups(&queue_name(i))
                        .await
                        .map_err(|e| format!("groups: {e}"))?,
                ),
                None => None,
            });
        }
        Ok(Snapshot {
            stats,
            tasks,
            events,
            costs,
            until_due,
            groups,
            children: self.flow_children().await?,
        })
    }

    pub(super) async fn ready_lists(&self) -> Result<Vec<Vec<TaskId>>, String> {
        let mut out = Vec::new();
        for i in 0..self.configs.len() {
            out.push(
                self.backend
                    .peek_ready(&queue_name(i), usize::MAX)
                    .await
                    .map_err(|e| format!("peek: {e}"))?,
            );
        }
        Ok(out)
    }
}
