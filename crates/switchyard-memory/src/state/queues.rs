//! Queues: declaring one, finding it, pausing it.
//!
//! Lua twin: lua/lib/queues.lua, lua/declare.lua, lua/pause.lua.

use std::collections::{BTreeMap, BTreeSet};

use switchyard_core::EventCounts;
use switchyard_core::flow::concurrency::held;
use switchyard_core::rng::Minstd;
use switchyard_core::strategy::Balancer;
use switchyard_core::{
    Assignment, Error, Millis, QueueConfig, QueueName, Result, TaskId, WorkerId,
};

use super::State;
use super::groups::Groups;
use super::rate::Rate;

/// One queue.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) config: QueueConfig,
    /// Ready tasks by `(sort key, seq)`.
    pub(crate) ready: BTreeMap<(i64, u64), TaskId>,
    /// Scheduled and retry-scheduled tasks by `(run_at, seq)`.
    pub(crate) delayed: BTreeMap<(i64, u64), TaskId>,
    pub(crate) balancer: Balancer,
    pub(crate) jitter: Minstd,
    /// Dead tasks by `(died_at, id)`.
    pub(crate) dead: BTreeSet<(Millis, TaskId)>,
    /// Flow tasks waiting for their children by `(created_at, id)` (`state/flows.rs`).
    pub(crate) parents: BTreeSet<(Millis, TaskId)>,
    /// Finished tasks by `(retain_until, id)`.
    pub(crate) done: BTreeSet<(Millis, TaskId)>,
    /// Live workers serving the queue.
    pub(crate) members: BTreeSet<WorkerId>,
    /// Pull queues: workers asleep in `receive_wait`, woken one per arriving task.
    pub(crate) parked: BTreeSet<WorkerId>,
    /// Lifetime counts of its tasks' events (counted by `emit`, recorded or not).
    pub(crate) totals: EventCounts,
    /// Nothing is dispatched from it (see `set_paused`).
    pub(crate) paused: bool,
    /// Its dispatched and running tasks (what a concurrency limit counts; kept for every
    /// queue, so that a limit set later starts from the right count).
    pub(crate) active: u32,
    /// Its rate window, hold and wake mark (see `rate`).
    pub(crate) rate: Rate,
    /// A queue shared between groups: its ready tasks by group, the ring, the turn
    /// (`switchyard_core::flow::groups`; see `groups`).
    pub(crate) groups: Option<Groups>,
}

impl Queue {
    /// Whether it may dispatch at `now`: not paused, not held at its concurrency limit
    /// (`switchyard_core::flow::concurrency`), and with a token of its rate limit and no hold
    /// (`switchyard_core::flow::rate`).
    pub(crate) fn dispatches(&self, now: Millis) -> bool {
        !self.paused
            && !held(self.active, self.config.concurrency)
            && self.rate.open(self.config.rate, now)
    }
}

impl State {
    pub(crate) fn declare_queue(&mut self, name: &QueueName, config: QueueConfig) -> Result<()> {
        config.validate()?;
        if let Some(existing) = self.queues.get(name) {
            if existing.config == config {
                return Ok(());
            }
            return Err(Error::QueueConflict {
                queue: name.clone(),
                detail: existing.config.diff(&config),
            });
        }
        self.queues.insert(
            name.clone(),
            Queue {
                config,
                ready: BTreeMap::new(),
                delayed: BTreeMap::new(),
                balancer: Balancer::new(config.strategy, config.seed),
                jitter: config.jitter_rng(),
                dead: BTreeSet::new(),
                parents: BTreeSet::new(),
                done: BTreeSet::new(),
                members: BTreeSet::new(),
                parked: BTreeSet::new(),
                totals: EventCounts::default(),
                paused: false,
                active: 0,
                rate: Rate::default(),
                groups: config.groups.map(|_| Groups::default()),
            },
        );
        Ok(())
    }

    pub(super) fn queue(&self, name: &QueueName) -> Result<&Queue> {
        self.queues
            .get(name)
            .ok_or_else(|| Error::UnknownQueue(name.clone()))
    }

    pub(super) fn queue_mut(&mut self, name: &QueueName) -> Result<&mut Queue> {
        self.queues
            .get_mut(name)
            .ok_or_else(|| Error::UnknownQueue(name.clone()))
    }

    /// Pauses or resumes a queue (Queues::set_paused); resuming dispatches what waits, or, in a
    /// pull queue, hands it to the parked workers that take it.
    pub(crate) fn set_paused(
        &mut self,
        queue: &QueueName,
        paused: bool,
        now: Millis,
    ) -> Result<Vec<Assignment>> {
        let q = self.queue_mut(queue)?;
        if q.paused == paused {
            return Ok(Vec::new());
        }
        q.paused = paused;
        if paused {
            return Ok(Vec::new());
        }
        if q.config.strategy.is_push() {
            return self.dispatch(queue, usize::MAX, now);
        }
        self.hand_off_ready(queue, now)?;
        Ok(Vec::new())
    }
}
