//! The task browser's query and page: the tasks of one queue in one state, listed in pages
//! by cursor, each page one bounded read however many tasks the queue holds.
//!
//! The order of each state is the order of the index that holds it, the same in both
//! backends (`docs/architecture.md`, "Browsing tasks"):
//!
//! | state | oldest first means |
//! | --- | --- |
//! | ready | the order tasks will leave the queue (the policy's order, ties in arrival order) |
//! | scheduled, retry-scheduled | run-at, soonest first |
//! | dispatched, running | by worker id, then in dispatch order |
//! | succeeded, cancelled | end of retention (finish time plus the queue's retention), then id |
//! | dead | time of death, then id |
//!
//! Newest first is the reverse.

use serde::{Deserialize, Serialize};

use crate::{Error, QueueName, Result, TaskId, TaskInfo, TaskKind, TaskState};

/// Most index entries one browse call examines: a page with a filter that matches rarely
/// comes back short (or empty) with a cursor to go on from, instead of reading the whole state.
pub const BROWSE_SCAN: usize = 256;

/// Most tasks one page may hold.
pub const BROWSE_PAGE_MAX: usize = 256;

/// Which way a browse walks its state's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrowseOrder {
    /// The first in the state's order first (see the module's table).
    #[default]
    Oldest,
    /// The last first.
    Newest,
}

impl std::str::FromStr for BrowseOrder {
    type Err = Error;

    fn from_str(s: &str) -> Result<BrowseOrder> {
        match s {
            "oldest" => Ok(BrowseOrder::Oldest),
            "newest" => Ok(BrowseOrder::Newest),
            other => Err(Error::invalid(
                "order",
                format!("`{other}` is not an order: oldest or newest"),
            )),
        }
    }
}

/// One page of a browse: which tasks of a queue to list.
///
/// ```
/// use switchyard_core::{Browse, BrowseOrder};
/// use switchyard_core::{QueueName, TaskState};
///
/// let q = QueueName::new("emails").unwrap();
/// let first = Browse::new(q, TaskState::Dead).order(BrowseOrder::Newest).limit(20);
/// assert!(first.validate().is_ok());
/// // The next page goes on from the cursor the first one answered.
/// let next = first.clone().after(Some("opaque cursor".into()));
/// assert_eq!(next.cursor.as_deref(), Some("opaque cursor"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Browse {
    /// The queue.
    pub queue: QueueName,
    /// The state listed.
    pub state: TaskState,
    /// Oldest or newest first.
    pub order: BrowseOrder,
    /// Only tasks of this kind.
    pub kind: Option<TaskKind>,
    /// Only tasks whose id starts with this (upper case, 1 to 26 characters of an id).
    pub id_prefix: Option<String>,
    /// Where the previous page stopped ([`TaskPage::next`]); `None` for the first page.
    pub cursor: Option<String>,
    /// Most tasks on the page (1 to [`BROWSE_PAGE_MAX`]).
    pub limit: usize,
}

impl Browse {
    /// The first page of `state` in `queue`, oldest first, 50 tasks, no filter.
    pub fn new(queue: QueueName, state: TaskState) -> Browse {
        Browse {
            queue,
            state,
            order: BrowseOrder::Oldest,
            kind: None,
            id_prefix: None,
            cursor: None,
            limit: 50,
        }
    }

    /// Walks the other way.
    pub fn order(mut self, order: BrowseOrder) -> Browse {
        self.order = order;
        self
    }

    /// At most `limit` tasks per page.
    pub fn limit(mut self, limit: usize) -> Browse {
        self.limit = limit;
        self
    }

    /// Only tasks of `kind`.
    pub fn kind(mut self, kind: Option<TaskKind>) -> Browse {
        self.kind = kind;
        self
    }

    /// Only tasks whose id starts with `prefix` (any case; kept upper case).
    pub fn id_prefix(mut self, prefix: Option<&str>) -> Browse {
        self.id_prefix = prefix.map(str::to_ascii_uppercase);
        self
    }

    /// The page after the one that answered `cursor`.
    pub fn after(mut self, cursor: Option<String>) -> Browse {
        self.cursor = cursor;
        self
    }

    /// Refuses a page size out of range or an id prefix that no id can start with.
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > BROWSE_PAGE_MAX {
            return Err(Error::invalid(
                "limit",
                format!(
                    "a page holds 1 to {BROWSE_PAGE_MAX} tasks, not {}",
                    self.limit
                ),
            ));
        }
        if let Some(p) = &self.id_prefix {
            let ok = !p.is_empty()
                && p.len() <= crate::TASK_ID_TEXT_LEN
                && p.bytes().all(|b| crate::id::ALPHABET.contains(&b));
            if !ok {
                return Err(Error::invalid(
                    "id prefix",
                    format!(
                        "`{p}` cannot start a task id: 1 to 26 of the characters \
                         0-9 and A-Z without I, L, O and U"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether task `id` of kind `kind` passes the filters.
    pub fn matches(&self, id: TaskId, kind: &TaskKind) -> bool {
        self.kind.as_ref().is_none_or(|k| k == kind)
            && self
                .id_prefix
                .as_ref()
                .is_none_or(|p| id.to_string().starts_with(p.as_str()))
    }
}

/// One page of tasks, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPage {
    /// The tasks, in the order asked for.
    pub tasks: Vec<TaskInfo>,
    /// The cursor of the next page (`None`: the state's order ended here). A page may hold
    /// fewer than its limit, even none, and still have a next one: each call examines at most
    /// [`BROWSE_SCAN`] entries of the index.
    pub next: Option<String>,
    /// How many index entries this call examined (what its cost follows).
    pub examined: usize,
}
