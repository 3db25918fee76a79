//! The read / verify / retry loop of every call whose keys come from a read.
//!
//! A script may only touch the keys it is given (that is what makes it safe on a Cluster and
//! during a slot migration), so a call that depends on a worker's queues, a task's record or a
//! queue's configuration reads them first and passes them, with what it read, to the script.
//! The script checks that nothing moved in between and answers `SY_STALE` otherwise; the call
//! then reads again. This is that loop, written once.

use std::future::Future;

use switchyard_core::Result;

use crate::error::Failure;

/// Tries before a call that keeps finding the state moved gives up (each try reads afresh).
const STALE_RETRIES: usize = 16;

/// Runs `step` — read, build the call, run it, decode the reply — until it does not end
/// stale, at most [`STALE_RETRIES`] times. `step` gets the try's number: 0 first, when cached
/// reads may serve it; a later try must read afresh. Every other failure ends the call, as
/// its public error.
pub(super) async fn verified<T, F, Fut>(what: &'static str, mut step: F) -> Result<T>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = std::result::Result<T, Failure>>,
{
    for attempt in 0..STALE_RETRIES {
        match step(attempt).await {
            Ok(v) => return Ok(v),
            Err(Failure::Stale(detail)) => tracing::debug!(what, attempt, "retried: {detail}"),
            Err(f) => return Err(f.into_error()),
        }
    }
    Err(Failure::Stale(what.into()).into_error())
}
