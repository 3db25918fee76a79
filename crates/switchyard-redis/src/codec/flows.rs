//! Decoding of the flow scripts' replies (`lua/children.lua`, `lua/settle.lua`).

use super::*;
use switchyard_core::tree::{ChildResult, OnFailure};

/// `children`: `{0}` no such task; `{1, then per child: id, policy digit, end ('' none: the
/// state code then the result or error), state now (-1: gone)}`.
pub(crate) fn children(v: Value) -> Result<Option<Vec<ChildResult>>, Error> {
    let mut items = array(v)?.into_iter();
    let found = items.next().map(|v| uint(&v)).transpose()?.unwrap_or(0);
    if found == 0 {
        return Ok(None);
    }
    let mut out = Vec::new();
    while let Some(id) = items.next() {
        let mut field = || items.next().ok_or_else(|| protocol("truncated child"));
        let id = task_id(id)?;
        let policy = text(field()?)?;
        let policy = policy
            .parse::<u8>()
            .ok()
            .and_then(OnFailure::from_code)
            .ok_or_else(|| protocol(format!("unknown child policy `{policy}`")))?;
        let end = bytes(field()?)?;
        let outcome = match end.split_first() {
            None => None,
            Some((&code, rest)) => Some(match state_from(i64::from(code))? {
                switchyard_core::TaskState::Succeeded => TaskOutcome::Succeeded(rest.to_vec()),
                switchyard_core::TaskState::Dead => {
                    TaskOutcome::Dead(String::from_utf8_lossy(rest).into_owned())
                }
                switchyard_core::TaskState::Cancelled => TaskOutcome::Cancelled,
                switchyard_core::TaskState::Expired => TaskOutcome::Expired,
                other => return Err(protocol(format!("a child's end in state {other}"))),
            }),
        };
        let state = int(&field()?)?;
        let state = if state < 0 {
            None
        } else {
            Some(state_from(state)?)
        };
        out.push(ChildResult::new(id, policy, outcome, state));
    }
    Ok(Some(out))
}

/// `settle`: `{entries carried out, then the assignments}`.
pub(crate) fn settled(v: Value) -> Result<(usize, Vec<Assignment>), Error> {
    let mut items = array(v)?.into_iter();
    let n = items
        .next()
        .map(|v| uint(&v))
        .transpose()?
        .ok_or_else(|| protocol("empty settle reply"))?;
    Ok((n as usize, assignments(&mut items, None)?))
}
