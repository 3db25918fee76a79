//! Worker registration, and the instance token that fences a worker's calls.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::duration_ms;
use crate::strategy::validate_worker_limits;
use crate::{Error, QueueName, WorkerId};

/// Largest instance token (tokens are `1..=MAX_INSTANCE_TOKEN`, exact in a Lua number).
pub const MAX_INSTANCE_TOKEN: u64 = (1 << 48) - 1;

/// Identifies one registration of a worker id: fencing for workers, as a
/// [`LeaseToken`](crate::LeaseToken) is for tasks.
///
/// A worker registers with a fresh token and names it in every call it makes as that worker
/// ([`WorkerRef`]). While a registration is alive, registering the same id with another token
/// is refused ([`Error::WorkerIdInUse`]); once it has expired, another instance may take the id
/// over, and every later call with the old token is refused ([`Error::WorkerReplaced`]). So two
/// processes that share an id never both hold tasks under it.
///
/// ```
/// use switchyard_core::InstanceToken;
/// let a = InstanceToken::random();
/// assert_ne!(a, InstanceToken::random());
/// assert!(InstanceToken::new(0).is_err());
/// assert_eq!(InstanceToken::new(7)?.get(), 7);
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceToken(u64);

impl InstanceToken {
    /// A token from a number in `1..=MAX_INSTANCE_TOKEN`.
    pub fn new(token: u64) -> Result<Self, Error> {
        if (1..=MAX_INSTANCE_TOKEN).contains(&token) {
            Ok(InstanceToken(token))
        } else {
            Err(Error::invalid(
                "instance token",
                format!("{token} is outside 1..={MAX_INSTANCE_TOKEN}"),
            ))
        }
    }

    /// A fresh random token (what [`WorkerSpec::new`] gives each spec).
    pub fn random() -> Self {
        InstanceToken(crate::rng::entropy() % MAX_INSTANCE_TOKEN + 1)
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for InstanceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:012x}", self.0)
    }
}

/// How a worker names itself in the calls it makes as that worker (heartbeat, receive, drain,
/// deregister): its id and the instance token it registered with.
///
/// ```
/// use switchyard_core::WorkerSpec;
/// let spec = WorkerSpec::new("w-1", ["emails"])?;
/// let me = spec.worker_ref();
/// assert_eq!(me.id, *spec.id());
/// assert_eq!(me.instance, spec.get_instance());
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerRef {
    /// The worker's id.
    pub id: WorkerId,
    /// The token of its registration.
    pub instance: InstanceToken,
}

impl std::fmt::Display for WorkerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (instance {})", self.id, self.instance)
    }
}

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
    instance: InstanceToken,
    capacity: u32,
    weight: u32,
    queues: Vec<QueueName>,
    heartbeat_ttl: Duration,
}

impl WorkerSpec {
    /// A worker with capacity 1 and weight 1 serving `queues` in that order, with a fresh
    /// random [`InstanceToken`].
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
            instance: InstanceToken::random(),
            capacity: 1,
            weight: 1,
            queues,
            heartbeat_ttl: Duration::from_millis(u64::from(DEFAULT_HEARTBEAT_TTL_MS)),
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

    /// Sets how long the worker may stay silent before it is considered dead (100 ms to
    /// `u32::MAX` ms).
    pub fn heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.heartbeat_ttl = ttl;
        self
    }

    /// Sets the instance token (a fresh random one is the default; tests that must be
    /// deterministic set their own).
    pub fn instance(mut self, instance: InstanceToken) -> Self {
        self.instance = instance;
        self
    }

    /// A copy with a fresh random instance token: the spec of a new registration of the same
    /// worker (the runtime takes one each time it runs).
    pub fn renewed(&self) -> Self {
        self.clone().instance(InstanceToken::random())
    }

    /// The worker's id.
    pub fn id(&self) -> &WorkerId {
        &self.id
    }
    /// The instance token of this registration.
    pub fn get_instance(&self) -> InstanceToken {
        self.instance
    }
    /// How this registration names itself in the calls it makes as the worker.
    pub fn worker_ref(&self) -> WorkerRef {
        WorkerRef {
            id: self.id.clone(),
            instance: self.instance,
        }
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
    /// Heartbeat time-to-live in ms (`u32::MAX` for anything longer; `validate` refuses it).
    pub fn heartbeat_ttl_ms(&self) -> u32 {
        u32::try_from(duration_ms(self.heartbeat_ttl)).unwrap_or(u32::MAX)
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
        if self.heartbeat_ttl < Duration::from_millis(100) {
            return Err(Error::invalid(
                "heartbeat ttl",
                format!(
                    "{} is too short; use at least 100 ms",
                    crate::display::duration(self.heartbeat_ttl)
                ),
            ));
        }
        if duration_ms(self.heartbeat_ttl) > u64::from(u32::MAX) {
            return Err(Error::invalid(
                "heartbeat ttl",
                format!(
                    "{} is too long; at most {} ms",
                    crate::display::duration(self.heartbeat_ttl),
                    u32::MAX
                ),
            ));
        }
        Ok(())
    }
}
