//! Worker registration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::duration_ms;
use crate::strategy::validate_worker_limits;
use crate::{Error, QueueName, WorkerId};

/// Most queues one worker may serve.
pub const MAX_WORKER_QUEUES: usize = 64;
/// Default heartbeat time-to-live: a worker silent this long is considered dead.
pub const DEFAULT_HEARTBEAT_TTL_MS: u32 = 15_000;

/// What a worker registers with.
///
/// The queue list is ordered: when a slot frees up, the worker takes the next task from the
/// first of its queues that has one.
///
/// ```
/// use switchyard_core::WorkerSpec;
/// let spec = WorkerSpec::new("w-1", ["emails", "reports"]).unwrap().capacity(8).weight(2);
/// spec.validate().unwrap();
/// assert_eq!(spec.queues().len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSpec {
    id: WorkerId,
    capacity: u32,
    weight: u32,
    queues: Vec<QueueName>,
    heartbeat_ttl_ms: u32,
}

impl WorkerSpec {
    /// A worker with capacity 1 and weight 1 serving `queues` in that order.
    pub fn new<I, Q>(id: impl AsRef<str>, queues: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = Q>,
        Q: AsRef<str>,
    {
        let queues = queues
            .into_iter()
            .map(|q| QueueName::new(q))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WorkerSpec {
            id: WorkerId::new(id)?,
            capacity: 1,
            weight: 1,
            queues,
            heartbeat_ttl_ms: DEFAULT_HEARTBEAT_TTL_MS,
        })
    }

    /// Sets the number of concurrent slots (`1..=65535`).
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the weight for the weighted strategy (`1..=1000`).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets how long the worker may stay silent before it is considered dead.
    pub fn heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.heartbeat_ttl_ms = u32::try_from(duration_ms(ttl)).unwrap_or(u32::MAX);
        self
    }

    /// The worker's id.
    pub fn id(&self) -> &WorkerId {
        &self.id
    }
    /// Concurrent slots.
    pub fn get_capacity(&self) -> u32 {
        self.capacity
    }
    /// Weight.
    pub fn get_weight(&self) -> u32 {
        self.weight
    }
    /// Served queues, in preference order.
    pub fn queues(&self) -> &[QueueName] {
        &self.queues
    }
    /// Heartbeat time-to-live in ms.
    pub fn heartbeat_ttl_ms(&self) -> u32 {
        self.heartbeat_ttl_ms
    }

    /// Checks limits, the queue list and the heartbeat TTL.
    pub fn validate(&self) -> Result<(), Error> {
        validate_worker_limits(self.capacity, self.weight)?;
        if self.queues.is_empty() {
            return Err(Error::invalid(
                "worker queues",
                "a worker must serve at least one queue",
            ));
        }
        if self.queues.len() > MAX_WORKER_QUEUES {
            return Err(Error::invalid(
                "worker queues",
                format!("{} queues; at most {MAX_WORKER_QUEUES}", self.queues.len()),
            ));
        }
        for (i, q) in self.queues.iter().enumerate() {
            if self.queues[..i].contains(q) {
                return Err(Error::invalid(
                    "worker queues",
                    format!("`{q}` is listed twice"),
                ));
            }
        }
        if self.heartbeat_ttl_ms < 100 {
            return Err(Error::invalid(
                "heartbeat ttl",
                format!(
                    "{} ms is too short; use at least 100 ms",
                    self.heartbeat_ttl_ms
                ),
            ));
        }
        Ok(())
    }
}
