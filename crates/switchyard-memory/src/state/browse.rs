//! The task browser (`Inspect::browse`): the tasks of a queue in one state, a page at a time.
//!
//! Lua twin: lua/browse.lua. Each state is walked in the order of the index Redis keeps it in
//! (`switchyard_core::backend::Browse`), written here as one sortable text key per task, which
//! is also the page's cursor: the next page starts after it.

use switchyard_core::{BROWSE_SCAN, Browse, BrowseOrder, TaskPage};
use switchyard_core::{Error, Result, TASK_ID_TEXT_LEN, TaskId, TaskState};

use super::State;

/// A key of the ready or delayed order `(key, seq)` as text that sorts the same way (the
/// signed key offset into unsigned, both fixed-width hex).
fn ordered(key: i64, seq: u64) -> String {
    format!("{:016x}{seq:012x}", (key as u64) ^ (1 << 63))
}

/// A key of the dead or finished order `(time, id)`.
fn timed(at: u64, id: TaskId) -> String {
    format!("{at:016x}{id}")
}

/// Whether `cursor` is a key of the index `query` walks (what `ordered`, `timed` or the
/// active tasks' key make; Redis checks its own the same way).
fn well_formed(query: &Browse, cursor: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    match query.state {
        TaskState::Ready | TaskState::Scheduled | TaskState::RetryScheduled => {
            cursor.len() == 28 && hex(cursor)
        }
        TaskState::Dead | TaskState::Succeeded | TaskState::Cancelled => {
            cursor.len() == 16 + TASK_ID_TEXT_LEN
                && cursor.is_char_boundary(16)
                && hex(&cursor[..16])
        }
        _ => cursor.contains('|'),
    }
}

impl State {
    /// One page of `query` (see `Inspect::browse`).
    pub(crate) fn browse(&self, query: &Browse) -> Result<TaskPage> {
        query.validate()?;
        let q = self.queue(&query.queue)?;
        let shown = |t: &super::Task| {
            t.queue == query.queue && t.state == query.state && query.matches(t.id, &t.kind)
        };
        // A whole id: the task itself, read by its id, not found by walking the index.
        if let Some(id) = query.id_prefix.as_deref()
            && id.len() == TASK_ID_TEXT_LEN
        {
            let task = id.parse::<TaskId>().ok().and_then(|id| self.tasks.get(&id));
            return Ok(TaskPage {
                tasks: task
                    .filter(|t| shown(t))
                    .map(|t| t.info())
                    .into_iter()
                    .collect(),
                next: None,
                examined: 1,
            });
        }
        let mut index: Vec<(String, TaskId)> = match query.state {
            TaskState::Ready => q
                .ready
                .iter()
                .map(|(&(k, s), &id)| (ordered(k, s), id))
                .collect(),
            TaskState::Scheduled | TaskState::RetryScheduled => q
                .delayed
                .iter()
                .map(|(&(k, s), &id)| (ordered(k, s), id))
                .collect(),
            TaskState::Dead => q.dead.iter().map(|&(at, id)| (timed(at, id), id)).collect(),
            TaskState::Succeeded | TaskState::Cancelled => {
                q.done.iter().map(|&(at, id)| (timed(at, id), id)).collect()
            }
            // Dispatched and running, as Redis's `wtasks`: `<worker>|<lease token>|<id>`,
            // every queue's tasks.
            _ => self
                .workers
                .iter()
                .flat_map(|(w, worker)| {
                    worker
                        .inbox
                        .values()
                        .chain(worker.running.iter())
                        .filter_map(|id| self.tasks.get(id))
                        .map(move |t| (format!("{w}|{:012x}|{}", t.token, t.id), t.id))
                })
                .collect(),
        };
        index.sort_unstable();
        if let Some(c) = &query.cursor
            && !well_formed(query, c)
        {
            return Err(Error::invalid(
                "cursor",
                format!("`{c}` is not a cursor of this state"),
            ));
        }
        let start = match (&query.cursor, query.order) {
            (None, _) => 0,
            (Some(c), BrowseOrder::Oldest) => index.partition_point(|(k, _)| k <= c),
            (Some(c), BrowseOrder::Newest) => index.len() - index.partition_point(|(k, _)| k < c),
        };
        let walk: Box<dyn Iterator<Item = &(String, TaskId)>> = match query.order {
            BrowseOrder::Oldest => Box::new(index.iter().skip(start)),
            BrowseOrder::Newest => Box::new(index.iter().rev().skip(start)),
        };
        let left = index.len() - start;
        let mut page = TaskPage {
            tasks: Vec::new(),
            next: None,
            examined: 0,
        };
        for (key, id) in walk {
            page.examined += 1;
            if let Some(t) = self.tasks.get(id)
                && shown(t)
            {
                page.tasks.push(t.info());
            }
            if page.tasks.len() == query.limit || page.examined == BROWSE_SCAN {
                if page.examined < left {
                    page.next = Some(key.clone());
                }
                break;
            }
        }
        Ok(page)
    }
}
