//! Parsing of script replies: the plain values, assignments, deliveries and hand-off messages.

use super::*;

pub(crate) fn array(v: Value) -> Result<Vec<Value>, Error> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(protocol(format!("expected an array reply, got {other:?}"))),
    }
}

pub(crate) fn int(v: &Value) -> Result<i64, Error> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| protocol("expected an integer")),
        other => Err(protocol(format!("expected an integer, got {other:?}"))),
    }
}

pub(crate) fn uint(v: &Value) -> Result<u64, Error> {
    u64::try_from(int(v)?).map_err(|_| protocol("expected a non-negative integer"))
}

pub(crate) fn bytes(v: Value) -> Result<Vec<u8>, Error> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Nil => Ok(Vec::new()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(protocol(format!("expected a string, got {other:?}"))),
    }
}

pub(crate) fn text(v: Value) -> Result<String, Error> {
    String::from_utf8(bytes(v)?).map_err(|_| protocol("expected UTF-8 text"))
}

pub(crate) fn task_id(v: Value) -> Result<TaskId, Error> {
    text(v)?.parse()
}

/// Reads `n` assignment triples (id, queue, worker).
pub(crate) fn assignments(
    items: &mut impl Iterator<Item = Value>,
    n: Option<usize>,
) -> Result<Vec<Assignment>, Error> {
    let mut out = Vec::new();
    loop {
        if n.is_some_and(|n| out.len() >= n) {
            break;
        }
        let Some(id) = items.next() else { break };
        let queue = items
            .next()
            .ok_or_else(|| protocol("truncated assignment"))?;
        let worker = items
            .next()
            .ok_or_else(|| protocol("truncated assignment"))?;
        out.push(Assignment {
            task: task_id(id)?,
            queue: QueueName::new(text(queue)?)?,
            worker: WorkerId::new(text(worker)?)?,
        });
    }
    Ok(out)
}

/// The numbers of a delivery, as the scripts send them.
struct Attempt {
    token: u64,
    attempt: u64,
    max_attempts: u64,
    deadline: u64,
    timeout_ms: u64,
    ready_since: u64,
}

/// A delivery to `worker` of task `id`, from its numbers and the task body.
fn delivery(
    id: TaskId,
    queue: QueueName,
    n: &Attempt,
    body: &[u8],
    worker: &WorkerId,
) -> Result<Delivery, Error> {
    let Body {
        kind,
        payload,
        trace,
        trace_state,
        ..
    } = decode_body(&mut Reader { bytes: body, at: 0 })?;
    Ok(Delivery {
        lease: Lease {
            task: id,
            queue,
            worker: worker.clone(),
            token: LeaseToken(n.token),
        },
        kind,
        payload,
        attempt: num(n.attempt)?,
        max_attempts: num(n.max_attempts)?,
        deadline: n.deadline,
        timeout_ms: num(n.timeout_ms)?,
        ready_since: (n.ready_since > 0).then_some(n.ready_since),
        trace_parent: trace,
        trace_state,
    })
}

/// Reads deliveries (9 fields each) for `worker`: `n` of them, or with `None` until the
/// iterator ends.
pub(crate) fn deliveries(
    items: &mut impl Iterator<Item = Value>,
    worker: &WorkerId,
    n: Option<usize>,
) -> Result<Vec<Delivery>, Error> {
    let mut out = Vec::with_capacity(n.unwrap_or(0));
    loop {
        if n.is_some_and(|n| out.len() >= n) {
            break;
        }
        let Some(id) = items.next() else {
            if n.is_some() {
                return Err(protocol("truncated deliveries"));
            }
            break;
        };
        let mut field = || items.next().ok_or_else(|| protocol("truncated delivery"));
        let queue = QueueName::new(text(field()?)?)?;
        let n = Attempt {
            token: uint(&field()?)?,
            attempt: uint(&field()?)?,
            max_attempts: uint(&field()?)?,
            deadline: uint(&field()?)?,
            timeout_ms: uint(&field()?)?,
            ready_since: uint(&field()?)?,
        };
        let body = bytes(field()?)?;
        out.push(delivery(task_id(id)?, queue, &n, &body, worker)?);
    }
    Ok(out)
}

/// A decoded hand-off message (`record::HAND_OFF`).
pub(crate) struct HandOff {
    pub(crate) delivery: Delivery,
    /// The worker is still parked (and waiting).
    pub(crate) parked: bool,
    /// The instance token of the registration it was handed to.
    pub(crate) instance: u64,
}

/// A hand-off message of `worker`'s wake channel; `None` for a plain wake-up.
pub(crate) fn hand_off(message: &[u8], worker: &WorkerId) -> Result<Option<HandOff>, Error> {
    if message.first() != Some(&record::HAND_OFF_TAG) {
        return Ok(None);
    }
    if message.len() < record::HAND_OFF_LEN + 26 {
        return Err(protocol("short hand-off message"));
    }
    let mut r = Reader {
        bytes: message,
        at: 1,
    };
    let parked = r.uint(1)? == 1;
    let instance = r.uint(6)?;
    let n = Attempt {
        token: r.uint(6)?,
        attempt: r.uint(6)?,
        max_attempts: r.uint(6)?,
        deadline: r.uint(6)?,
        timeout_ms: r.uint(6)?,
        ready_since: r.uint(6)?,
    };
    let queue_len = usize::try_from(r.uint(2)?).map_err(|_| protocol("queue length"))?;
    let id: TaskId = r
        .text(26)?
        .parse()
        .map_err(|_| protocol("hand-off task id"))?;
    let queue = QueueName::new(r.text(queue_len)?)?;
    let body = &message[r.at..];
    Ok(Some(HandOff {
        delivery: delivery(id, queue, &n, body, worker)?,
        parked,
        instance,
    }))
}
