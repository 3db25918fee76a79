//! The task browser (`Inspect::browse`): the tasks of a queue in one state, a page at a time.
//!
//! Lua twin: lua/browse.lua. Each state is walked in the order of the index Redis keeps it in
//! (`switchyard_core::backend::Browse`): the queue's ready and delayed maps by `(key, seq)`,
//! its dead, finished and waiting-for-children sets by `(time, id)`, and the workers' tasks by
//! `<worker>|<lease token>|<id>` as Redis's `wtasks`. A page starts right after its cursor (a
//! range of the map, not a walk from the start) and examines at most `BROWSE_SCAN` entries.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

use switchyard_core::{BROWSE_SCAN, Browse, BrowseOrder, TaskPage};
use switchyard_core::{Error, Result, TASK_ID_TEXT_LEN, TaskId, TaskState};

use super::State;

/// Where an index entry stands in its order; written out, it is the cursor of a page.
#[derive(Debug, Clone)]
enum Key {
    /// The ready or delayed order `(key, seq)`.
    Ordered(i64, u64),
    /// The dead or finished order `(time, id)`.
    Timed(u64, TaskId),
    /// A worker's task, as `wtasks` holds it.
    Text(String),
}

impl Key {
    /// As text: fixed-width hex (the signed key offset into unsigned), so that the text of
    /// each kind sorts as the key does.
    fn text(&self) -> String {
        match self {
            Key::Ordered(key, seq) => format!("{:016x}{seq:012x}", (*key as u64) ^ (1 << 63)),
            Key::Timed(at, id) => format!("{at:016x}{id}"),
            Key::Text(t) => t.clone(),
        }
    }

    /// The key of `cursor` in the index of `state`, if it is one.
    fn parse(state: TaskState, cursor: &str) -> Option<Key> {
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        match state {
            TaskState::Ready | TaskState::Scheduled | TaskState::RetryScheduled => {
                if cursor.len() != 28 || !cursor.is_char_boundary(16) {
                    return None;
                }
                let key = (hex(&cursor[..16])? ^ (1 << 63)) as i64;
                Some(Key::Ordered(key, hex(&cursor[16..])?))
            }
            TaskState::Dead
            | TaskState::Succeeded
            | TaskState::Cancelled
            | TaskState::Expired
            | TaskState::WaitingChildren => {
                if cursor.len() != 16 + TASK_ID_TEXT_LEN || !cursor.is_char_boundary(16) {
                    return None;
                }
                Some(Key::Timed(hex(&cursor[..16])?, cursor[16..].parse().ok()?))
            }
            _ => cursor.contains('|').then(|| Key::Text(cursor.to_owned())),
        }
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
        let from = match &query.cursor {
            None => None,
            Some(c) => Some(Key::parse(query.state, c).ok_or_else(|| {
                Error::invalid("cursor", format!("`{c}` is not a cursor of this state"))
            })?),
        };
        let mut walk: Box<dyn Iterator<Item = (Key, TaskId)> + '_> = match query.state {
            TaskState::Ready | TaskState::Scheduled | TaskState::RetryScheduled => {
                let map = if query.state == TaskState::Ready {
                    &q.ready
                } else {
                    &q.delayed
                };
                let at = match &from {
                    Some(Key::Ordered(k, s)) => Some((*k, *s)),
                    _ => None,
                };
                let entries: Box<dyn Iterator<Item = (&(i64, u64), &TaskId)>> =
                    match (at, query.order) {
                        (None, BrowseOrder::Oldest) => Box::new(map.iter()),
                        (None, BrowseOrder::Newest) => Box::new(map.iter().rev()),
                        (Some(at), BrowseOrder::Oldest) => {
                            Box::new(map.range((Excluded(at), Unbounded)))
                        }
                        (Some(at), BrowseOrder::Newest) => Box::new(map.range(..at).rev()),
                    };
                Box::new(entries.map(|(&(k, s), &id)| (Key::Ordered(k, s), id)))
            }
            TaskState::Dead
            | TaskState::Succeeded
            | TaskState::Cancelled
            | TaskState::Expired
            | TaskState::WaitingChildren => {
                let set = match query.state {
                    TaskState::Dead => &q.dead,
                    TaskState::WaitingChildren => &q.parents,
                    _ => &q.done,
                };
                let at = match &from {
                    Some(Key::Timed(t, id)) => Some((*t, *id)),
                    _ => None,
                };
                let entries: Box<dyn Iterator<Item = &(u64, TaskId)>> = match (at, query.order) {
                    (None, BrowseOrder::Oldest) => Box::new(set.iter()),
                    (None, BrowseOrder::Newest) => Box::new(set.iter().rev()),
                    (Some(at), BrowseOrder::Oldest) => {
                        Box::new(set.range((Excluded(at), Unbounded)))
                    }
                    (Some(at), BrowseOrder::Newest) => Box::new(set.range(..at).rev()),
                };
                Box::new(entries.map(|&(t, id)| (Key::Timed(t, id), id)))
            }
            // Dispatched and running: every worker's tasks, keyed as `wtasks` keys them (as
            // many as the workers' capacities allow: built whole, then ranged).
            _ => {
                let active: BTreeMap<String, TaskId> = self
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
                    .collect();
                let at = match &from {
                    Some(Key::Text(t)) => Some(t.clone()),
                    _ => None,
                };
                let entries: Box<dyn Iterator<Item = (&String, &TaskId)>> = match (&at, query.order)
                {
                    (None, BrowseOrder::Oldest) => Box::new(active.iter()),
                    (None, BrowseOrder::Newest) => Box::new(active.iter().rev()),
                    (Some(at), BrowseOrder::Oldest) => {
                        Box::new(active.range::<String, _>((Excluded(at), Unbounded)))
                    }
                    (Some(at), BrowseOrder::Newest) => {
                        Box::new(active.range::<String, _>(..at).rev())
                    }
                };
                let picked: Vec<(Key, TaskId)> =
                    entries.map(|(k, &id)| (Key::Text(k.clone()), id)).collect();
                Box::new(picked.into_iter())
            }
        };
        let mut page = TaskPage {
            tasks: Vec::new(),
            next: None,
            examined: 0,
        };
        while let Some((key, id)) = walk.next() {
            page.examined += 1;
            if let Some(t) = self.tasks.get(&id)
                && shown(t)
            {
                page.tasks.push(t.info());
            }
            if page.tasks.len() == query.limit || page.examined == BROWSE_SCAN {
                if walk.next().is_some() {
                    page.next = Some(key.text());
                }
                break;
            }
        }
        Ok(page)
    }
}
