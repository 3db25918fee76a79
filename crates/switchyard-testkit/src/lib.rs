//! # switchyard-testkit
//!
//! Dev-only support for Switchyard's tests:
//!
//! * [`scenario`] — random operation sequences over any backend, with the invariants of
//!   DESIGN §3 checked after every step, and a trace for comparing backends;
//! * [`fairness`] — the fairness property of each dispatch strategy, as reusable checks.

pub mod fairness;
pub mod scenario;
