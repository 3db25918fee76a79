//! Least-loaded: the lowest in-flight / capacity ratio.

use std::collections::{BTreeSet, HashMap};

use super::Load;
use crate::WorkerId;

/// The load ratio as an exact integer: `⌊inflight · 2³² / capacity⌋`.
///
/// With capacities up to [`MAX_CAPACITY`](super::MAX_CAPACITY) (< 2¹⁶), two different ratios
/// differ by at least 2⁻³², so the scaled values keep their order and fit below 2⁴⁸.
pub fn load_ratio(load: Load) -> u64 {
    (u64::from(load.inflight) << 32) / u64::from(load.capacity.max(1))
}

#[derive(Debug, Clone)]
struct Member {
    ratio: u64,
    stamp: u64,
    eligible: bool,
}

/// Least-loaded state.
///
/// The eligible worker with the smallest `(load ratio, stamp, id)` is picked, where the stamp
/// is the queue's pick counter at the worker's latest pick (0 before its first). Ties in load
/// therefore go to the least recently picked worker. A pick never chooses a worker with a
/// higher load ratio than another eligible one.
#[derive(Debug, Clone, Default)]
pub struct LeastLoaded {
    members: HashMap<WorkerId, Member>,
    eligible: BTreeSet<(u64, u64, WorkerId)>,
    counter: u64,
}

impl LeastLoaded {
    /// The queue's pick counter.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    pub(crate) fn join(&mut self, worker: &WorkerId) {
        self.leave(worker);
        self.members.insert(
            worker.clone(),
            Member {
                ratio: 0,
                stamp: 0,
                eligible: false,
            },
        );
    }

    pub(crate) fn leave(&mut self, worker: &WorkerId) {
        if let Some(m) = self.members.remove(worker)
            && m.eligible
        {
            self.eligible.remove(&(m.ratio, m.stamp, worker.clone()));
        }
    }

    pub(crate) fn set_load(&mut self, worker: &WorkerId, load: Load) {
        let Some(m) = self.members.get_mut(worker) else {
            return;
        };
        if m.eligible {
            self.eligible.remove(&(m.ratio, m.stamp, worker.clone()));
        }
        m.ratio = load_ratio(load);
        m.eligible = load.has_free_slot();
        if m.eligible {
            self.eligible.insert((m.ratio, m.stamp, worker.clone()));
        }
    }

    pub(crate) fn pick(&mut self) -> Option<WorkerId> {
        let (ratio, _, worker) = self.eligible.pop_first()?;
        self.counter += 1;
        if let Some(m) = self.members.get_mut(&worker) {
            m.stamp = self.counter;
            self.eligible.insert((ratio, m.stamp, worker.clone()));
        }
        Some(worker)
    }

    pub(crate) fn eligible_count(&self) -> usize {
        self.eligible.len()
    }

    pub(crate) fn is_eligible(&self, worker: &WorkerId) -> bool {
        self.members.get(worker).is_some_and(|m| m.eligible)
    }

    /// The smallest load ratio among eligible workers.
    pub fn min_ratio(&self) -> Option<u64> {
        self.eligible.first().map(|(r, _, _)| *r)
    }
}
