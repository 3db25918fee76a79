//! Random: uniform over the eligible workers, from a generator whose state lives with the queue.

use super::RankSet;
use crate::WorkerId;
use crate::rng::Minstd;

/// Random state: the eligible workers (ranked by id) and the queue's generator.
///
/// A pick draws `x` from [`Minstd`] and takes the eligible worker of rank `x mod |E|`. No draw
/// is made when no worker is eligible, so the sequence of draws depends only on the picks.
#[derive(Debug, Clone)]
pub struct RandomPick {
    eligible: RankSet<WorkerId>,
    rng: Minstd,
}

impl RandomPick {
    /// Fresh state from the queue's seed.
    pub fn new(seed: u64) -> Self {
        RandomPick {
            eligible: RankSet::new(),
            rng: Minstd::from_seed(seed),
        }
    }

    /// The generator's state.
    pub fn rng_state(&self) -> u64 {
        self.rng.state()
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

    pub(crate) fn pick(&mut self) -> Option<WorkerId> {
        let n = self.eligible.len();
        if n == 0 {
            return None;
        }
        let index = self.rng.below(n as u64) as usize;
        self.eligible.select(index).cloned()
    }

    pub(crate) fn eligible_count(&self) -> usize {
        self.eligible.len()
    }

    pub(crate) fn is_eligible(&self, worker: &WorkerId) -> bool {
        self.eligible.contains(worker)
    }
}
