//! # switchyard-testkit
//!
//! Dev-only support for Switchyard's tests:
//!
//! * [`scenario`] — random operation sequences over any backend, with the invariants of
//!   DESIGN §3 checked after every step, and a trace for comparing backends;
//! * [`fairness`] — the fairness property of each dispatch strategy, as reusable checks;
//! * [`redis_server`] — real `redis-server` processes on free loopback ports.

pub mod fairness;
pub mod redis_server;
pub mod scenario;
