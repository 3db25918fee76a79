//! Flows: a task with children (a tree, children possibly in other queues) that becomes ready
//! only when its children have ended, and whose handler reads their results.
//!
//! The rules, stated once for both backends (the memory reference and its Lua twin implement
//! them; the lockstep tests hold them equal):
//!
//! 1. **Submit.** A [`Flow`] is stored in one atomic step, whole or not at all, in pre-order
//!    ([`Flow::flatten`]): a task with children is stored in state
//!    [`TaskState::WaitingChildren`] (in no ready or delayed set: no worker can take it), a
//!    leaf enters its queue as any submitted task. Re-submitting a flow whose root id exists
//!    answers the root as a duplicate and stores nothing; any other node id that exists
//!    already refuses the whole flow.
//! 2. **A child's end is counted by its id.** When a child reaches a terminal state, its end
//!    (its [`TaskOutcome`]) is recorded in its parent under the child's id, *if the parent has
//!    no end recorded for that id yet*: a child that ends again later (dead, re-driven, ended
//!    again) is not counted twice. Each parent keeps how many of its children have no end
//!    recorded.
//! 3. **When the parent moves.** If the parent is still waiting for its children: a child
//!    that did not succeed under [`OnFailure::FailParent`] fails the parent; under
//!    [`OnFailure::Continue`] it releases the parent at once; otherwise (succeeded, or
//!    [`OnFailure::Ignore`]) the parent is released when no child is left without an end.
//! 4. **Settling.** A release or a failure is written as a *settle entry* (in the same step
//!    as the child's end) and carried out by maintenance ([`crate::Maintain::maintain`]), in
//!    the order (due time, entry text), [`SETTLE_BATCH`] entries per round: a released parent
//!    enters its queue (ready, dispatched at once if a worker is free); a failed one ends
//!    `dead` with [`child_failed_error`], and each of its children without an end gets a
//!    cancel entry; a cancel entry cancels a child that has not started (a waiting one as
//!    [`crate::Tasks::cancel`] would; one waiting for its own children ends `cancelled` and
//!    cancels its children in turn). Started children run out. A child's end and its
//!    parent's release touch different queues: settling in a second step keeps every step on
//!    the keys it names (the Redis rule), and an entry outlives any crash of the process
//!    that wrote it.
//! 5. **Cancel.** Cancelling a task that waits for its children ends it `cancelled` at once
//!    and writes a cancel entry for each of its children without an end.
//! 6. **Wide flows.** A flow of more than [`FLOW_STEP`] tasks is submitted in steps of at most
//!    [`FLOW_STEP`] ([`steps`]): its later steps first, each *staged* — its tasks stored
//!    but seen by nothing (no index, no count, not by id; a stage entry due [`STAGE_TTL_MS`]
//!    later deletes them unless the flow is committed by then) — then the first step, with the
//!    root, which *commits* it: its room check counts every leaf of the flow, and it writes a
//!    materialize entry. Maintenance then makes the flow's tasks seen, one step a round, in
//!    pre-order: a task with children waits for them, a leaf enters its queue (or ends
//!    cancelled if its parent ended meanwhile). So no call stores more than [`FLOW_STEP`]
//!    tasks, and a producer that dies part-way leaves no task anyone sees: before the commit
//!    nothing is seen, after it maintenance finishes the work. A step that finds a task id
//!    staged by an earlier attempt stores it again; a root that exists answers the flow as a
//!    duplicate.
//!
//! A flow on a partitioned namespace lives in one partition: its root's (by the root's key,
//! else its id); every other node gets an id in that partition, and a node whose affinity or
//! group key names another partition is refused.
//!
//! ```
//! use switchyard_core::tree::{Flow, FlowNode, OnFailure};
//! use switchyard_core::TaskSpec;
//!
//! let zip = TaskSpec::builder("archive", "zip").build()?;
//! let mut flow = Flow::new(zip);
//! for i in 0..3 {
//!     let resize = TaskSpec::builder("images", "resize").payload(vec![i]).build()?;
//!     flow = flow.child(FlowNode::new(resize).on_failure(OnFailure::Ignore));
//! }
//! let nodes = flow.flatten()?;
//! assert_eq!(nodes.len(), 4);
//! assert_eq!(nodes[1].parent, Some(0));
//! # Ok::<(), switchyard_core::Error>(())
//! ```

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::{Error, TaskId, TaskOutcome, TaskSpec, TaskState};

/// Most tasks one flow may hold (root included).
pub const MAX_FLOW_TASKS: usize = 10_000;

/// Most levels below the root.
pub const MAX_FLOW_DEPTH: usize = 32;

/// How many settle entries one round of maintenance takes (rule 4).
pub const SETTLE_BATCH: usize = 64;

/// Most tasks one step of a flow's submit stores (rule 6): a wider flow is staged in steps.
pub const FLOW_STEP: usize = 256;

/// How long the staged steps of a wide flow wait for their commit before maintenance deletes
/// them (rule 6), in ms.
pub const STAGE_TTL_MS: u64 = 3_600_000;

/// What a child's failure (dead, cancelled or expired) does to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// The parent ends dead; its children that have not started are cancelled.
    #[default]
    FailParent,
    /// The child counts as ended; the parent reads which ones failed.
    Ignore,
    /// The parent is released at once; its other children go on.
    Continue,
}

impl OnFailure {
    /// Every policy.
    pub const ALL: [OnFailure; 3] = [
        OnFailure::FailParent,
        OnFailure::Ignore,
        OnFailure::Continue,
    ];

    /// The policy's code in Redis records and arguments.
    pub fn code(self) -> u8 {
        match self {
            OnFailure::FailParent => 0,
            OnFailure::Ignore => 1,
            OnFailure::Continue => 2,
        }
    }

    /// The policy of a code.
    pub fn from_code(code: u8) -> Option<OnFailure> {
        OnFailure::ALL.into_iter().find(|p| p.code() == code)
    }

    /// Its name, as the CLI shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::FailParent => "fail-parent",
            OnFailure::Ignore => "ignore",
            OnFailure::Continue => "continue",
        }
    }
}

/// A node of a flow: a task, what its failure does to its parent, and its own children.
#[derive(Debug, Clone)]
pub struct FlowNode {
    spec: TaskSpec,
    on_failure: OnFailure,
    children: Vec<FlowNode>,
}

impl FlowNode {
    /// A node for `spec`, failing its parent if it fails.
    pub fn new(spec: TaskSpec) -> Self {
        FlowNode {
            spec,
            on_failure: OnFailure::FailParent,
            children: Vec::new(),
        }
    }

    /// What its failure does to its parent.
    pub fn on_failure(mut self, policy: OnFailure) -> Self {
        self.on_failure = policy;
        self
    }

    /// Adds a child: this node starts only when its children have ended.
    pub fn child(mut self, child: FlowNode) -> Self {
        self.children.push(child);
        self
    }

    /// Adds children.
    pub fn children(mut self, children: impl IntoIterator<Item = FlowNode>) -> Self {
        self.children.extend(children);
        self
    }
}

/// A tree of tasks submitted together ([`crate::Produce::submit_flow`]): its root runs last.
#[derive(Debug, Clone)]
pub struct Flow {
    root: FlowNode,
}

/// One task of a flattened flow.
#[derive(Debug, Clone)]
pub struct FlatNode {
    /// The task.
    pub spec: TaskSpec,
    /// Its parent's place in the flattened list (`None`: the root).
    pub parent: Option<usize>,
    /// What its failure does to its parent.
    pub on_failure: OnFailure,
    /// How many children it has.
    pub children: usize,
}

impl Flow {
    /// A flow whose root is `root`.
    pub fn new(root: TaskSpec) -> Self {
        Flow {
            root: FlowNode::new(root),
        }
    }

    /// A flow whose root is `node` (and its children).
    pub fn from_node(node: FlowNode) -> Self {
        Flow { root: node }
    }

    /// Adds a child to the root.
    pub fn child(mut self, child: FlowNode) -> Self {
        self.root.children.push(child);
        self
    }

    /// Adds children to the root.
    pub fn children(mut self, children: impl IntoIterator<Item = FlowNode>) -> Self {
        self.root.children.extend(children);
        self
    }

    /// The root's id.
    pub fn root_id(&self) -> TaskId {
        self.root.spec.id()
    }

    /// The root task.
    pub fn root(&self) -> &TaskSpec {
        &self.root.spec
    }

    /// The same tree with each task replaced by `f` of it (in pre-order); the first error
    /// stops it. A partitioned namespace moves a flow's ids into one partition this way.
    pub fn map_specs(
        self,
        mut f: impl FnMut(TaskSpec) -> Result<TaskSpec, Error>,
    ) -> Result<Flow, Error> {
        fn walk(
            node: FlowNode,
            f: &mut dyn FnMut(TaskSpec) -> Result<TaskSpec, Error>,
        ) -> Result<FlowNode, Error> {
            let spec = f(node.spec)?;
            let children = node
                .children
                .into_iter()
                .map(|c| walk(c, f))
                .collect::<Result<_, _>>()?;
            Ok(FlowNode {
                spec,
                on_failure: node.on_failure,
                children,
            })
        }
        Ok(Flow {
            root: walk(self.root, &mut f)?,
        })
    }

    /// The tasks in pre-order (a parent before its children, children in the order given),
    /// each with its parent's place: the order both backends store them in. Refuses a flow
    /// without children, one past [`MAX_FLOW_TASKS`] or [`MAX_FLOW_DEPTH`], one whose ids
    /// repeat, a node with a dedup key (a flow's tasks are not deduplicated), and a node with
    /// children that has a run time (it starts when its children end).
    pub fn flatten(&self) -> Result<Vec<FlatNode>, Error> {
        if self.root.children.is_empty() {
            return Err(Error::invalid(
                "flow",
                "the root has no children (submit it as a task)",
            ));
        }
        let mut out = Vec::new();
        let mut stack: Vec<(&FlowNode, Option<usize>, usize)> = vec![(&self.root, None, 0)];
        let mut ids = HashSet::new();
        while let Some((node, parent, depth)) = stack.pop() {
            if out.len() == MAX_FLOW_TASKS {
                return Err(Error::invalid(
                    "flow",
                    format!("more than {MAX_FLOW_TASKS} tasks"),
                ));
            }
            if depth > MAX_FLOW_DEPTH {
                return Err(Error::invalid(
                    "flow",
                    format!("deeper than {MAX_FLOW_DEPTH} levels"),
                ));
            }
            let id = node.spec.id();
            if !ids.insert(id) {
                return Err(Error::invalid(
                    "flow",
                    format!("task id {id} appears twice"),
                ));
            }
            if node.spec.dedup_key().is_some() {
                return Err(Error::invalid(
                    "flow",
                    format!("task {id} has a dedup key: a flow's tasks are not deduplicated"),
                ));
            }
            if !node.children.is_empty() && node.spec.schedule() != crate::Schedule::Now {
                return Err(Error::invalid(
                    "flow",
                    format!("task {id} has children and a run time: it starts when they end"),
                ));
            }
            let at = out.len();
            out.push(FlatNode {
                spec: node.spec.clone(),
                parent,
                on_failure: node.on_failure,
                children: node.children.len(),
            });
            for child in node.children.iter().rev() {
                stack.push((child, Some(at), depth + 1));
            }
        }
        Ok(out)
    }
}

/// The steps a flattened flow is submitted in (rule 6): ranges of at most [`FLOW_STEP`]
/// tasks, in order; the first holds the root and is the commit.
///
/// ```
/// use switchyard_core::tree::{FLOW_STEP, steps};
/// assert_eq!(steps(10), vec![0..10]);
/// assert_eq!(steps(FLOW_STEP + 1), vec![0..FLOW_STEP, FLOW_STEP..FLOW_STEP + 1]);
/// ```
pub fn steps(tasks: usize) -> Vec<std::ops::Range<usize>> {
    (0..tasks)
        .step_by(FLOW_STEP)
        .map(|from| from..(from + FLOW_STEP).min(tasks))
        .collect()
}

/// Each task's children, by its place in the flattened list: their places, in order.
pub fn children_of(nodes: &[FlatNode]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if let Some(kids) = n.parent.and_then(|p| out.get_mut(p)) {
            kids.push(i);
        }
    }
    out
}

/// The queues `named`, each once, in the order they are first named: the order a flow's
/// submit checks them in, on both backends.
pub fn first_named<'a>(
    named: impl IntoIterator<Item = &'a crate::QueueName>,
) -> Vec<&'a crate::QueueName> {
    let mut out: Vec<&crate::QueueName> = Vec::new();
    for q in named {
        if !out.contains(&q) {
            out.push(q);
        }
    }
    out
}

/// A child of a flow's task, as its parent sees it ([`crate::Tasks::children`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChildResult {
    /// The child's id.
    pub id: TaskId,
    /// What its failure does to the parent.
    pub on_failure: OnFailure,
    /// Its end as counted for the parent (rule 2); `None` while it has none.
    pub outcome: Option<TaskOutcome>,
    /// Its state now (`None` if its record is gone).
    pub state: Option<TaskState>,
}

impl ChildResult {
    /// A child's line.
    pub fn new(
        id: TaskId,
        on_failure: OnFailure,
        outcome: Option<TaskOutcome>,
        state: Option<TaskState>,
    ) -> Self {
        ChildResult {
            id,
            on_failure,
            outcome,
            state,
        }
    }

    /// Whether it ended in success (as counted for the parent).
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, Some(TaskOutcome::Succeeded(_)))
    }
}

/// The error a parent failed by its child (rule 4) ends with. Both backends record exactly
/// this text.
///
/// ```
/// use switchyard_core::tree::child_failed_error;
/// use switchyard_core::{TaskId, TaskState};
/// let id: TaskId = "01J0000000000000000000000A".parse().unwrap();
/// assert_eq!(child_failed_error(id), "child 01J0000000000000000000000A failed");
/// ```
pub fn child_failed_error(child: TaskId) -> String {
    format!("child {child} failed")
}

/// The error of a flow one of whose tasks (other than its root) exists already (rule 1).
/// Both backends answer exactly this.
pub fn flow_taken(id: TaskId) -> Error {
    Error::invalid(
        "flow",
        format!("task {id} exists already: a flow's tasks must be new"),
    )
}

/// What a settle entry does (rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// The parent's children have ended (or one under `Continue` failed): it enters its queue.
    Release,
    /// A child under `FailParent` failed: the parent ends dead.
    Fail(TaskId),
    /// The task's parent failed or was cancelled: cancel it if it has not started.
    Cancel,
    /// A committed wide flow (the task is its root): make its next staged step seen (rule 6).
    Materialize,
    /// A wide flow's staged steps (the task is its root): delete them unless it was committed.
    Expire,
}

/// The text of a settle entry for task `id` of `queue`: both backends order entries of one
/// due time by this text (a Redis sorted set's order), and the Redis one stores it.
///
/// ```
/// use switchyard_core::tree::{Settle, settle_entry, parse_settle_entry};
/// let id: switchyard_core::TaskId = "01J0000000000000000000000A".parse().unwrap();
/// let e = settle_entry("zips", id, Settle::Release);
/// assert_eq!(e, "r|zips|01J0000000000000000000000A");
/// assert_eq!(parse_settle_entry(&e), Some(("zips", id, Settle::Release)));
/// ```
pub fn settle_entry(queue: &str, id: TaskId, what: Settle) -> String {
    match what {
        Settle::Release => format!("r|{queue}|{id}"),
        Settle::Cancel => format!("c|{queue}|{id}"),
        Settle::Fail(child) => format!("f|{queue}|{id}|{child}"),
        Settle::Materialize => format!("s|{queue}|{id}"),
        Settle::Expire => format!("x|{queue}|{id}"),
    }
}

/// Reads [`settle_entry`] text: the queue, the task, what to do.
pub fn parse_settle_entry(entry: &str) -> Option<(&str, TaskId, Settle)> {
    let mut parts = entry.split('|');
    let kind = parts.next()?;
    let queue = parts.next()?;
    let id = parts.next()?.parse().ok()?;
    let what = match kind {
        "r" => Settle::Release,
        "c" => Settle::Cancel,
        "s" => Settle::Materialize,
        "x" => Settle::Expire,
        "f" => Settle::Fail(parts.next()?.parse().ok()?),
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((queue, id, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(queue: &str) -> TaskSpec {
        TaskSpec::builder(queue, "k").build().unwrap()
    }

    #[test]
    fn flatten_is_pre_order_with_parents() {
        let flow = Flow::new(spec("a"))
            .child(FlowNode::new(spec("b")).child(FlowNode::new(spec("c"))))
            .child(FlowNode::new(spec("d")).on_failure(OnFailure::Continue));
        let nodes = flow.flatten().unwrap();
        let queues: Vec<_> = nodes.iter().map(|n| n.spec.queue().to_string()).collect();
        assert_eq!(queues, ["a", "b", "c", "d"]);
        let parents: Vec<_> = nodes.iter().map(|n| n.parent).collect();
        assert_eq!(parents, [None, Some(0), Some(1), Some(0)]);
        assert_eq!(nodes[0].children, 2);
        assert_eq!(nodes[3].on_failure, OnFailure::Continue);
    }

    #[test]
    fn flatten_refuses_what_a_flow_cannot_hold() {
        let lone = Flow::new(spec("a")).flatten().unwrap_err();
        assert!(lone.to_string().contains("no children"), "{lone}");
        let s = spec("a");
        let twice = Flow::new(s.clone())
            .child(FlowNode::new(s))
            .flatten()
            .unwrap_err();
        assert!(twice.to_string().contains("appears twice"), "{twice}");
        let dedup = TaskSpec::builder("a", "k").dedup_key("x").build().unwrap();
        let err = Flow::new(spec("a"))
            .child(FlowNode::new(dedup))
            .flatten()
            .unwrap_err();
        assert!(err.to_string().contains("dedup key"), "{err}");
        let later = TaskSpec::builder("a", "k").run_at(5).build().unwrap();
        let err = Flow::new(later)
            .child(FlowNode::new(spec("b")))
            .flatten()
            .unwrap_err();
        assert!(err.to_string().contains("run time"), "{err}");
        let wide = Flow::new(spec("a"))
            .children((0..MAX_FLOW_TASKS).map(|_| FlowNode::new(spec("b"))))
            .flatten()
            .unwrap_err();
        assert!(wide.to_string().contains("more than"), "{wide}");
    }

    #[test]
    fn settle_entries_round_trip() {
        let a = TaskId::new();
        let b = TaskId::new();
        for what in [
            Settle::Release,
            Settle::Cancel,
            Settle::Fail(b),
            Settle::Materialize,
            Settle::Expire,
        ] {
            let text = settle_entry("q", a, what);
            assert_eq!(parse_settle_entry(&text), Some(("q", a, what)));
        }
        assert_eq!(parse_settle_entry("x|q|bad"), None);
    }
}
