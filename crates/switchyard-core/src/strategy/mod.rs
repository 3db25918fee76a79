//! Dispatch strategies: which worker gets a ready task.
//!
//! A queue's [`Strategy`] is its configuration; a [`Balancer`] is the strategy's state for one
//! queue: which workers are eligible and whatever the rule remembers (a cursor, counters, a
//! ring, a generator). A worker is **eligible** for a queue while it is live, serves the queue
//! and has a free slot (`inflight < capacity`). Backends drive a balancer with four calls:
//!
//! * [`Balancer::join`] when a live worker starts serving the queue (registration),
//! * [`Balancer::set_load`] whenever the worker's in-flight count or capacity changes (it decides
//!   eligibility from the load),
//! * [`Balancer::leave`] when the worker stops serving (deregistration, death),
//! * [`Balancer::pick`] to choose a worker for a task; the pick is recorded in the state. The
//!   backend then raises the chosen worker's load and calls `set_load` on every queue it serves.
//!
//! The rules, each `O(log w)` per call in the number of workers `w` unless noted:
//!
//! | strategy | rule | state |
//! | --- | --- | --- |
//! | round-robin | the first eligible worker whose id is greater than the last pick's, wrapping to the smallest | last pick |
//! | random | `E[x mod |E|]` with `E` the eligible workers in id order and `x` the next [`Minstd`](crate::rng::Minstd) draw (no draw when `E` is empty) | generator state |
//! | weighted | stride scheduling: smallest pass `⌊(2n−1)·2¹⁵ / weight⌋`, then id; the pick's `n` grows by one | `n` per worker, virtual time |
//! | least-loaded | smallest `⌊inflight·2³² / capacity⌋`, then least recently picked, then id | pick stamp per worker |
//! | affinity | consistent-hash ring with `vnodes` points per worker; the first eligible worker clockwise from the task key's hash. `O(log(w·v) + s)` where `s` counts points of full workers skipped | the ring |
//! | pull | none: workers take tasks themselves | — |
//!
//! These rules are the specification that both backends follow; the Redis Lua scripts compute
//! the same integers, so the two backends make the same decisions for the same operations.

mod affinity;
mod least_loaded;
mod random;
mod rank_set;
mod round_robin;
mod weighted;

use serde::{Deserialize, Serialize};

pub use affinity::{Affinity, hash52};
pub use least_loaded::{LeastLoaded, load_ratio};
pub use random::RandomPick;
pub use rank_set::RankSet;
pub use round_robin::RoundRobin;
pub use weighted::{WEIGHT_SCALE, WEIGHTED_RENORM_AT, Weighted, first_n_at, pass};

use crate::display::quoted;
use crate::{Error, WorkerId};

/// Largest worker capacity (concurrent slots). Keeps load ratios exact (see [`load_ratio`]).
pub const MAX_CAPACITY: u32 = 65_535;
/// Largest worker weight. Keeps stride arithmetic exact in doubles (see [`Weighted`]).
pub const MAX_WEIGHT: u32 = 1_000;
/// Largest number of ring points per worker for the affinity strategy.
pub const MAX_VNODES: u16 = 256;
/// Default number of ring points per worker.
pub const DEFAULT_VNODES: u16 = 32;

/// How a queue chooses a worker for each ready task. See the module docs for the rules.
///
/// ```
/// use switchyard_core::Strategy;
/// let s: Strategy = "affinity:64".parse().unwrap();
/// assert_eq!(s, Strategy::Affinity { vnodes: 64 });
/// assert_eq!(s.name(), "affinity");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
#[non_exhaustive]
pub enum Strategy {
    /// Next eligible worker in id order after the previous pick.
    #[default]
    RoundRobin,
    /// Uniform over eligible workers, from the queue's seeded generator kept in the backend.
    Random,
    /// Proportional to worker weight (stride scheduling).
    Weighted,
    /// Lowest in-flight / capacity ratio.
    LeastLoaded,
    /// Consistent hashing of the task's affinity key (its id when it has none).
    Affinity {
        /// Ring points per worker (`1..=256`).
        vnodes: u16,
    },
    /// No push: idle workers take the next task themselves.
    Pull,
}

impl Strategy {
    /// Every strategy, with default parameters, in display order.
    pub const ALL: [Strategy; 6] = [
        Strategy::RoundRobin,
        Strategy::Random,
        Strategy::Weighted,
        Strategy::LeastLoaded,
        Strategy::Affinity {
            vnodes: DEFAULT_VNODES,
        },
        Strategy::Pull,
    ];

    /// Short name: `round-robin`, `random`, `weighted`, `least-loaded`, `affinity`, `pull`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::Random => "random",
            Strategy::Weighted => "weighted",
            Strategy::LeastLoaded => "least-loaded",
            Strategy::Affinity { .. } => "affinity",
            Strategy::Pull => "pull",
        }
    }

    /// Whether the backend pushes tasks to workers (every strategy but pull).
    pub fn is_push(&self) -> bool {
        !matches!(self, Strategy::Pull)
    }

    /// Checks parameters.
    pub fn validate(&self) -> Result<(), Error> {
        match *self {
            Strategy::Affinity { vnodes } if vnodes == 0 || vnodes > MAX_VNODES => {
                Err(Error::invalid(
                    "affinity vnodes",
                    format!("{vnodes} is outside 1..={MAX_VNODES}"),
                ))
            }
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = Error;

    /// Parses `round-robin` (or `rr`), `random`, `weighted`, `least-loaded` (or `ll`),
    /// `affinity[:vnodes]`, `pull`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let strategy = match (name, arg) {
            ("round-robin" | "rr", None) => Strategy::RoundRobin,
            ("random", None) => Strategy::Random,
            ("weighted", None) => Strategy::Weighted,
            ("least-loaded" | "ll", None) => Strategy::LeastLoaded,
            ("affinity", None) => Strategy::Affinity {
                vnodes: DEFAULT_VNODES,
            },
            ("affinity", Some(a)) => Strategy::Affinity {
                vnodes: a.parse().map_err(|_| {
                    Error::invalid("strategy", format!("vnodes {} is not a number", quoted(a)))
                })?,
            },
            ("pull", None) => Strategy::Pull,
            _ => {
                return Err(Error::invalid(
                    "strategy",
                    format!(
                        "{}: expected round-robin, random, weighted, least-loaded, affinity[:vnodes] or pull",
                        quoted(s)
                    ),
                ));
            }
        };
        strategy.validate()?;
        Ok(strategy)
    }
}

/// A worker's load as the balancers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Tasks dispatched to or running on the worker.
    pub inflight: u32,
    /// Its slots.
    pub capacity: u32,
}

impl Load {
    /// Whether the worker has a free slot.
    pub fn has_free_slot(&self) -> bool {
        self.inflight < self.capacity
    }
}

/// The state of one queue's strategy. See the module docs.
///
/// ```
/// use switchyard_core::strategy::{Balancer, Load};
/// use switchyard_core::{Strategy, WorkerId};
/// let mut rr = Balancer::new(Strategy::RoundRobin, 0);
/// let (a, b) = (WorkerId::new("a").unwrap(), WorkerId::new("b").unwrap());
/// for w in [&a, &b] {
///     rr.join(w, 1);
///     rr.set_load(w, Load { inflight: 0, capacity: 4 });
/// }
/// assert_eq!(rr.pick(b"task-1"), Some(a.clone()));
/// assert_eq!(rr.pick(b"task-2"), Some(b.clone()));
/// assert_eq!(rr.pick(b"task-3"), Some(a));
/// ```
#[derive(Debug, Clone)]
pub enum Balancer {
    /// See [`RoundRobin`].
    RoundRobin(RoundRobin),
    /// See [`RandomPick`].
    Random(RandomPick),
    /// See [`Weighted`].
    Weighted(Weighted),
    /// See [`LeastLoaded`].
    LeastLoaded(LeastLoaded),
    /// See [`Affinity`].
    Affinity(Affinity),
    /// No state: workers pull.
    Pull,
}

impl Balancer {
    /// Fresh state for a strategy; `seed` seeds the random strategy's generator.
    pub fn new(strategy: Strategy, seed: u64) -> Self {
        match strategy {
            Strategy::RoundRobin => Balancer::RoundRobin(RoundRobin::default()),
            Strategy::Random => Balancer::Random(RandomPick::new(seed)),
            Strategy::Weighted => Balancer::Weighted(Weighted::default()),
            Strategy::LeastLoaded => Balancer::LeastLoaded(LeastLoaded::default()),
            Strategy::Affinity { vnodes } => Balancer::Affinity(Affinity::new(vnodes)),
            Strategy::Pull => Balancer::Pull,
        }
    }

    /// A live worker with `weight` starts serving the queue; it is not eligible until
    /// [`Balancer::set_load`] says it has a free slot.
    pub fn join(&mut self, worker: &WorkerId, weight: u32) {
        match self {
            Balancer::Weighted(b) => b.join(worker, weight),
            Balancer::LeastLoaded(b) => b.join(worker),
            Balancer::Affinity(b) => b.join(worker),
            Balancer::RoundRobin(_) | Balancer::Random(_) | Balancer::Pull => {}
        }
    }

    /// The worker stops serving the queue; everything about it is forgotten.
    pub fn leave(&mut self, worker: &WorkerId) {
        match self {
            Balancer::RoundRobin(b) => b.set_eligible(worker, false),
            Balancer::Random(b) => b.set_eligible(worker, false),
            Balancer::Weighted(b) => b.leave(worker),
            Balancer::LeastLoaded(b) => b.leave(worker),
            Balancer::Affinity(b) => b.leave(worker),
            Balancer::Pull => {}
        }
    }

    /// The worker's load changed (or was just set after [`Balancer::join`]).
    pub fn set_load(&mut self, worker: &WorkerId, load: Load) {
        let eligible = load.has_free_slot();
        match self {
            Balancer::RoundRobin(b) => b.set_eligible(worker, eligible),
            Balancer::Random(b) => b.set_eligible(worker, eligible),
            Balancer::Weighted(b) => b.set_eligible(worker, eligible),
            Balancer::LeastLoaded(b) => b.set_load(worker, load),
            Balancer::Affinity(b) => b.set_eligible(worker, eligible),
            Balancer::Pull => {}
        }
    }

    /// Chooses an eligible worker for a task whose affinity key (or id) is `key`, and records
    /// the choice. `None` if no worker is eligible (or the strategy is pull).
    pub fn pick(&mut self, key: &[u8]) -> Option<WorkerId> {
        match self {
            Balancer::RoundRobin(b) => b.pick(),
            Balancer::Random(b) => b.pick(),
            Balancer::Weighted(b) => b.pick(),
            Balancer::LeastLoaded(b) => b.pick(),
            Balancer::Affinity(b) => b.pick(key),
            Balancer::Pull => None,
        }
    }

    /// Number of eligible workers.
    pub fn eligible_count(&self) -> usize {
        match self {
            Balancer::RoundRobin(b) => b.eligible_count(),
            Balancer::Random(b) => b.eligible_count(),
            Balancer::Weighted(b) => b.eligible_count(),
            Balancer::LeastLoaded(b) => b.eligible_count(),
            Balancer::Affinity(b) => b.eligible_count(),
            Balancer::Pull => 0,
        }
    }

    /// Whether `worker` is eligible.
    pub fn is_eligible(&self, worker: &WorkerId) -> bool {
        match self {
            Balancer::RoundRobin(b) => b.is_eligible(worker),
            Balancer::Random(b) => b.is_eligible(worker),
            Balancer::Weighted(b) => b.is_eligible(worker),
            Balancer::LeastLoaded(b) => b.is_eligible(worker),
            Balancer::Affinity(b) => b.is_eligible(worker),
            Balancer::Pull => false,
        }
    }
}

/// Validates a worker's capacity and weight.
pub fn validate_worker_limits(capacity: u32, weight: u32) -> Result<(), Error> {
    if !(1..=MAX_CAPACITY).contains(&capacity) {
        return Err(Error::invalid(
            "capacity",
            format!("{capacity} is outside 1..={MAX_CAPACITY}"),
        ));
    }
    if !(1..=MAX_WEIGHT).contains(&weight) {
        return Err(Error::invalid(
            "weight",
            format!("{weight} is outside 1..={MAX_WEIGHT}"),
        ));
    }
    Ok(())
}
