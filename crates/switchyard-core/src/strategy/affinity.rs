//! Affinity: consistent hashing of the task's affinity key onto a ring of worker points.

use std::collections::{BTreeMap, BTreeSet};

use crate::WorkerId;

/// The 52-bit hash used for ring points and keys: the first 13 hex digits of the SHA-1 of
/// `data`. Redis's Lua computes the same value with `redis.sha1hex`, and 52 bits are exact in
/// a double (a sorted-set score).
///
/// ```
/// use switchyard_core::strategy::hash52;
/// // SHA-1("abc") = a9993e364706816aba3e...
/// assert_eq!(hash52(b"abc"), 0xa9993e3647068);
/// ```
pub fn hash52(data: &[u8]) -> u64 {
    let digest = sha1_smol::Sha1::from(data).digest().bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) >> 12
}

/// The label of a worker's `i`-th ring point: `"<worker>#<i>"`.
pub fn vnode_label(worker: &WorkerId, i: u16) -> String {
    format!("{worker}#{i}")
}

/// Affinity state: the ring of every live worker serving the queue, and which are eligible.
///
/// Each worker owns `vnodes` points at `hash52("<id>#<i>")`. A task goes to the owner of the
/// first point at or after `hash52(key)` (wrapping), skipping points of workers without a free
/// slot. So equal keys go to the same worker while it is eligible, and a worker joining or
/// leaving moves only the keys between its points and their predecessors (about `1/w` of them).
/// The ring ignores weights.
#[derive(Debug, Clone)]
pub struct Affinity {
    vnodes: u16,
    ring: BTreeMap<(u64, String), WorkerId>,
    eligible: BTreeSet<WorkerId>,
}

impl Affinity {
    /// An empty ring with `vnodes` points per worker.
    pub fn new(vnodes: u16) -> Self {
        Affinity {
            vnodes: vnodes.max(1),
            ring: BTreeMap::new(),
            eligible: BTreeSet::new(),
        }
    }

    /// The worker owning `key` on the ring, ignoring eligibility.
    pub fn owner(&self, key: &[u8]) -> Option<&WorkerId> {
        let start = (hash52(key), String::new());
        self.ring
            .range(start..)
            .next()
            .or_else(|| self.ring.iter().next())
            .map(|(_, w)| w)
    }

    pub(crate) fn join(&mut self, worker: &WorkerId) {
        for i in 0..self.vnodes {
            let label = vnode_label(worker, i);
            self.ring
                .insert((hash52(label.as_bytes()), label), worker.clone());
        }
    }

    pub(crate) fn leave(&mut self, worker: &WorkerId) {
        for i in 0..self.vnodes {
            let label = vnode_label(worker, i);
            self.ring.remove(&(hash52(label.as_bytes()), label));
        }
        self.eligible.remove(worker);
    }

    pub(crate) fn set_eligible(&mut self, worker: &WorkerId, eligible: bool) {
        if eligible {
            if !self.eligible.contains(worker) {
                self.eligible.insert(worker.clone());
            }
        } else {
            self.eligible.remove(worker);
        }
    }

    pub(crate) fn pick(&mut self, key: &[u8]) -> Option<WorkerId> {
        if self.eligible.is_empty() {
            return None;
        }
        let start = (hash52(key), String::new());
        self.ring
            .range(start.clone()..)
            .chain(self.ring.range(..start))
            .map(|(_, w)| w)
            .find(|w| self.eligible.contains(*w))
            .cloned()
    }

    pub(crate) fn eligible_count(&self) -> usize {
        self.eligible.len()
    }

    pub(crate) fn is_eligible(&self, worker: &WorkerId) -> bool {
        self.eligible.contains(worker)
    }
}
