//! The backend traits, for code that calls backend methods on a concrete backend type.
//!
//! A generic `B: Backend` or a `dyn Backend` sees every method already; a `MemoryBackend` or a
//! `RedisBackend` held by value needs the trait that declares the method in scope:
//!
//! ```
//! use switchyard_core::prelude::*;
//!
//! fn takes_any_backend(_: &dyn Backend) {}
//! ```

pub use crate::backend::{
    Backend, Inspect, Leases, Maintain, Membership, Produce, Queues, Schedules, Tasks,
};
