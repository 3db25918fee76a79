//! Round-robin: the next eligible worker in id order after the previous pick.

use std::collections::BTreeSet;
use std::ops::Bound;

use crate::WorkerId;

/// Round-robin state: the eligible workers and the last pick.
///
/// The cursor is an id, not a position, so it survives workers joining and leaving: the next
/// pick is the smallest eligible id greater than the cursor, wrapping to the smallest eligible
/// id. While the eligible set stays the same, every worker is picked once per cycle, so
/// assignment counts differ by at most one.
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    eligible: BTreeSet<WorkerId>,
    cursor: Option<WorkerId>,
}

impl RoundRobin {
    pub(crate) fn set_eligible(&mut self, worker: &WorkerId, eligible: bool) {
        if eligible {
            if !self.eligible.contains(worker) {
                self.eligible.insert(worker.clone());
            }
        } else {
            self.eligible.remove(worker);
        }
    }

    pub(crate) fn pick(&mut self) -> Option<WorkerId> {
        let next = match &self.cursor {
            Some(cursor) => self
                .eligible
                .range::<WorkerId, _>((Bound::Excluded(cursor), Bound::Unbounded))
                .next()
                .or_else(|| self.eligible.first()),
            None => self.eligible.first(),
        }?
        .clone();
        self.cursor = Some(next.clone());
        Some(next)
    }

    /// The last worker picked.
    pub fn cursor(&self) -> Option<&WorkerId> {
        self.cursor.as_ref()
    }

    pub(crate) fn eligible_count(&self) -> usize {
        self.eligible.len()
    }

    pub(crate) fn is_eligible(&self, worker: &WorkerId) -> bool {
        self.eligible.contains(worker)
    }
}
