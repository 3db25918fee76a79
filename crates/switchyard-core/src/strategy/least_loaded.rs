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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn w(name: &str) -> WorkerId {
        WorkerId::new(name).unwrap()
    }

    fn load(inflight: u32, capacity: u32) -> Load {
        Load { inflight, capacity }
    }

    #[test]
    fn ties_go_to_the_least_recently_picked_then_the_smallest_id() {
        let mut b = LeastLoaded::default();
        let (a, c, d) = (w("a"), w("c"), w("d"));
        // Joined out of id order: the order of joining must not matter.
        for x in [&d, &a, &c] {
            b.join(x);
            b.set_load(x, load(0, 4));
        }
        // Nobody picked yet: equal ratios, equal stamps, so by id.
        assert_eq!(b.pick(), Some(a.clone()));
        // `a`'s load is not raised (as if its task were refused elsewhere): still the lowest
        // ratio, but now the most recently picked, so the others come first, by id.
        assert_eq!(b.pick(), Some(c.clone()));
        assert_eq!(b.pick(), Some(d.clone()));
        assert_eq!(
            b.pick(),
            Some(a.clone()),
            "then the least recently picked again"
        );
        // A lower ratio beats recency: `c` and `d` get busier.
        b.set_load(&c, load(1, 4));
        b.set_load(&d, load(2, 8));
        assert_eq!(b.pick(), Some(a.clone()));
        b.set_load(&a, load(1, 4));
        // All at 1/4 now; stamps: c = 2, d = 3, a = 5.
        assert_eq!(b.pick(), Some(c.clone()));
        assert_eq!(b.pick(), Some(d.clone()));
        // A worker that leaves and rejoins forgets its picks (stamp 0 again).
        b.join(&d);
        b.set_load(&d, load(2, 8));
        assert_eq!(b.pick(), Some(d.clone()));
        // A full worker is never picked, whatever its stamp.
        b.set_load(&a, load(4, 4));
        b.set_load(&c, load(4, 4));
        b.set_load(&d, load(8, 8));
        assert_eq!(b.pick(), None);
        assert_eq!(b.eligible_count(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Join(usize),
        Leave(usize),
        SetLoad(usize, u32, u32),
        Pick,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => (0usize..5).prop_map(Op::Join),
            1 => (0usize..5).prop_map(Op::Leave),
            4 => (0usize..5, 0u32..5, 1u32..5).prop_map(|(i, n, c)| Op::SetLoad(i, n.min(c), c)),
            6 => Just(Op::Pick),
        ]
    }

    proptest! {
        /// Against a plain scan: every pick is the eligible member with the smallest
        /// `(load ratio, pick stamp, id)`, where the stamp is the pick counter at the member's
        /// latest pick since it joined (0 before that).
        #[test]
        fn picks_match_a_linear_scan(ops in proptest::collection::vec(op(), 1..200)) {
            let names: Vec<WorkerId> = (0..5).map(|i| w(&format!("w{i}"))).collect();
            let mut b = LeastLoaded::default();
            // Reference: member -> (load, stamp).
            let mut model: BTreeMap<WorkerId, (Load, u64)> = BTreeMap::new();
            let mut counter = 0u64;
            for op in ops {
                match op {
                    Op::Join(i) => {
                        b.join(&names[i]);
                        model.insert(names[i].clone(), (load(0, 0), 0));
                    }
                    Op::Leave(i) => {
                        b.leave(&names[i]);
                        model.remove(&names[i]);
                    }
                    Op::SetLoad(i, n, c) => {
                        b.set_load(&names[i], load(n, c));
                        if let Some(m) = model.get_mut(&names[i]) {
                            m.0 = load(n, c);
                        }
                    }
                    Op::Pick => {
                        let expected = model
                            .iter()
                            .filter(|(_, (l, _))| l.has_free_slot())
                            .min_by_key(|(id, (l, stamp))| (load_ratio(*l), *stamp, (*id).clone()))
                            .map(|(id, _)| id.clone());
                        let got = b.pick();
                        prop_assert_eq!(&got, &expected);
                        if let Some(id) = got {
                            counter += 1;
                            if let Some(m) = model.get_mut(&id) {
                                m.1 = counter;
                            }
                        }
                        prop_assert_eq!(b.counter(), counter);
                    }
                }
                let eligible = model.values().filter(|(l, _)| l.has_free_slot()).count();
                prop_assert_eq!(b.eligible_count(), eligible);
                let min = model
                    .values()
                    .filter(|(l, _)| l.has_free_slot())
                    .map(|(l, _)| load_ratio(*l))
                    .min();
                prop_assert_eq!(b.min_ratio(), min);
            }
        }
    }
}
