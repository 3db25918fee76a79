//! A flow's tree as the task view shows it (`switchyard task`, the dashboard's task page): a
//! task's children, each with its state now and its end as counted for the parent, and what
//! the parent still waits on.

use serde::Serialize;
use switchyard::{Client, Error, TaskId, TaskOutcome};

/// A child of the task shown.
#[derive(Debug, Serialize)]
pub struct ChildView {
    pub id: TaskId,
    /// What its failure does to the parent: `fail-parent`, `ignore` or `continue`.
    pub on_failure: &'static str,
    /// Its state now (`None`: its record is gone, after its retention).
    pub state: Option<&'static str>,
    /// Its end as counted for the parent (`None`: the parent still waits on it).
    pub ended: Option<&'static str>,
}

/// The children of `id` (empty for a task without children).
pub async fn children_of(client: &Client, id: TaskId) -> Result<Vec<ChildView>, Error> {
    let children = client.backend().children(id).await?.unwrap_or_default();
    Ok(children
        .into_iter()
        .map(|c| ChildView {
            id: c.id,
            on_failure: c.on_failure.as_str(),
            state: c.state.map(|s| s.as_str()),
            ended: c.outcome.as_ref().map(|o| match o {
                TaskOutcome::Succeeded(_) => "succeeded",
                TaskOutcome::Dead(_) => "dead",
                TaskOutcome::Cancelled => "cancelled",
                TaskOutcome::Expired => "expired",
                _ => "ended",
            }),
        })
        .collect())
}

/// The task view's lines for `children`: a summary, then a line per child (at most `shown`).
pub fn lines(children: &[ChildView], shown: usize) -> Vec<String> {
    if children.is_empty() {
        return Vec::new();
    }
    let waiting = children.iter().filter(|c| c.ended.is_none()).count();
    let failed = children
        .iter()
        .filter(|c| c.ended.is_some_and(|e| e != "succeeded"))
        .count();
    let mut out = vec![format!(
        "{} children: waits on {waiting}, {failed} failed",
        children.len()
    )];
    for c in children.iter().take(shown) {
        out.push(format!(
            "  {}  {:<16} ended {:<10} on failure {}",
            c.id,
            c.state.unwrap_or("(purged)"),
            c.ended.unwrap_or("-"),
            c.on_failure
        ));
    }
    if children.len() > shown {
        out.push(format!(
            "  … {} more (`--json` lists them all)",
            children.len() - shown
        ));
    }
    out
}
