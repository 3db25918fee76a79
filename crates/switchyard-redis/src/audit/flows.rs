//! The audit of flows (`lua/lib/flows.lua`): the index of tasks waiting for their children is
//! exactly those records; each parent's count of children without an end matches its end
//! fields; a child's link names its parent's children list; every settle entry reads.

use std::collections::{BTreeSet, HashMap};

use switchyard_core::TaskState;
use switchyard_core::tree::parse_settle_entry;

use crate::codec::Record;

/// The problems of the flow fields of the task hash `tasks` (decoded `records`), the parents
/// index `parents` and the settle entries `settle`.
pub(super) fn problems(
    tasks: &HashMap<String, Vec<u8>>,
    records: &HashMap<String, Record>,
    parents: &BTreeSet<String>,
    settle: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let field = |name: String| {
        tasks
            .get(&name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let mut waiting = BTreeSet::new();
    for (id, r) in records {
        if r.state == TaskState::WaitingChildren && !r.staged {
            waiting.insert(format!("{}|{:012x}|{id}", r.queue, r.created));
        }
    }
    if let Some(m) = waiting.symmetric_difference(parents).next() {
        out.push(format!(
            "the parents index and the records waiting for children disagree at {m}"
        ));
    }
    for (f, raw) in tasks {
        if let Some(parent) = f.strip_prefix("fc:") {
            let list = String::from_utf8_lossy(raw);
            let children: Vec<&str> = (0..list.len() / 27)
                .map(|i| &list[i * 27..i * 27 + 26])
                .collect();
            let open = children
                .iter()
                .filter(|c| !tasks.contains_key(&format!("fe:{parent}|{c}")))
                .count();
            let counted = field(format!("fn:{parent}")).and_then(|n| n.parse::<usize>().ok());
            if counted != Some(open) {
                out.push(format!(
                    "{parent} counts {counted:?} children without an end, its end fields say {open}"
                ));
            }
            if !records.contains_key(parent) {
                out.push(format!("children of {parent}, which has no record"));
            }
        } else if let Some(child) = f.strip_prefix("fp:") {
            let up = String::from_utf8_lossy(raw);
            let parent = up.get(..26).unwrap_or_default();
            let listed = field(format!("fc:{parent}")).is_some_and(|list| {
                list.as_bytes()
                    .chunks(27)
                    .any(|c| c.starts_with(child.as_bytes()))
            });
            if records.contains_key(parent) && !listed {
                out.push(format!(
                    "{child} names parent {parent}, whose children it is not among"
                ));
            }
            if !records.contains_key(child) {
                out.push(format!("the parent link of {child}, which has no record"));
            }
        }
    }
    for e in settle {
        if parse_settle_entry(e).is_none() {
            out.push(format!("settle entry `{e}` does not read"));
        }
    }
    out
}
