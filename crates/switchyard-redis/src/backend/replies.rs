//! Decoding the replies that several transitions share.

use redis::Value;
use switchyard_core::{Error, HandBack, Result, SubmitOutcome, TaskId, WorkerId};

use crate::codec;
use crate::codec::{array, assignments, int, protocol, text, uint};
use crate::error::Failure;
use crate::protocol::state_from;

/// A `SY_WRONG_STATE` answer as the public error of `operation` on task `id`.
pub(super) fn wrong_state(f: Failure, id: TaskId, operation: &'static str) -> Failure {
    match f {
        Failure::WrongState(s) => match state_from(s) {
            Ok(state) => Failure::Error(Error::WrongState {
                id,
                state,
                operation,
            }),
            Err(e) => Failure::Error(e),
        },
        other => other,
    }
}

pub(super) fn submit_outcome(it: &mut impl Iterator<Item = Value>) -> Result<SubmitOutcome> {
    let mut next = || it.next().ok_or_else(|| protocol("truncated submit reply"));
    let duplicate = int(&next()?)? == 1;
    let id = codec::task_id(next()?)?;
    let st = int(&next()?)?;
    let worker = text(next()?)?;
    Ok(SubmitOutcome {
        id,
        state: if st < 0 { None } else { Some(state_from(st)?) },
        duplicate,
        assigned: if worker.is_empty() {
            None
        } else {
            Some(WorkerId::new(worker)?)
        },
    })
}

pub(super) fn hand_back_from(v: Value) -> Result<HandBack> {
    let mut it = array(v)?.into_iter();
    let n = uint(&it.next().ok_or_else(|| protocol("empty hand-back reply"))?)?;
    let mut returned = Vec::new();
    for _ in 0..n {
        returned.push(codec::task_id(
            it.next().ok_or_else(|| protocol("truncated hand-back"))?,
        )?);
    }
    Ok(HandBack {
        returned,
        assignments: assignments(&mut it, None)?,
    })
}
