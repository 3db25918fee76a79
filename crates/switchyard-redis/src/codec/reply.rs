//! Decoding of script replies, all in one place: the plain values, assignments, deliveries,
//! hand-off messages, and one decoder per transition's reply.

use switchyard_core::admin::PurgeReport;
use switchyard_core::{
    Ack, AckOutcome, CancelOutcome, EventCounts, HandBack, HeartbeatReply, ProgressAck, QueueStats,
    RegisterOutcome, Rejection, SubmitOutcome, TaskPage, WorkerStats,
};

use super::*;
use crate::protocol::{AckCode, SUBMIT_DIFFERS, SUBMIT_DUPLICATE, SUBMIT_REPLACED};

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

// ---------------------------------------------------------------------------------------------
// The replies of the transitions, one decoder each (the layout is in each script's header).

/// A lease's `(code, value)` pair of `complete` and `fail` (`A_*`, [`AckCode`]).
pub(crate) fn ack(code: i64, value: &Value) -> Result<Ack, Error> {
    let known = AckCode::ALL
        .into_iter()
        .find(|c| i64::from(u8::from(*c)) == code);
    Ok(match known {
        Some(AckCode::Succeeded) => Ack::Completed,
        Some(AckCode::NotFound) => Ack::Rejected(Rejection::NotFound),
        Some(AckCode::NotRunning) => Ack::Rejected(Rejection::NotRunning(state_from(int(value)?)?)),
        Some(AckCode::Stale) => Ack::Rejected(Rejection::StaleToken),
        Some(AckCode::Retrying) => Ack::Retrying {
            run_at: uint(value)?,
        },
        Some(AckCode::Dead) => Ack::Dead,
        Some(AckCode::Cancelled) => Ack::Cancelled,
        Some(AckCode::Throttled) => Ack::Throttled {
            until: uint(value)?,
        },
        None => return Err(protocol(format!("unknown acknowledgement code {code}"))),
    })
}

/// The next item of a reply, or a protocol error naming the reply (`what`) as truncated.
fn next_of<I: Iterator<Item = Value> + ?Sized>(items: &mut I, what: &str) -> Result<Value, Error> {
    items
        .next()
        .ok_or_else(|| protocol(format!("truncated {what} reply")))
}

/// The next item of a reply as a count.
fn count_of<I: Iterator<Item = Value> + ?Sized>(items: &mut I, what: &str) -> Result<usize, Error> {
    usize::try_from(uint(&next_of(items, what)?)?)
        .map_err(|_| protocol(format!("count out of range in the {what} reply")))
}

/// One task's answer of `submit`: 0 created, else the bits `SUBMIT_*` (a duplicate, its payload
/// differs, replaced), id, state (-1: none), assigned worker ('').
pub(crate) fn submit_outcome(
    items: &mut impl Iterator<Item = Value>,
) -> Result<SubmitOutcome, Error> {
    let answer = int(&next_of(items, "submit")?)?;
    let id = task_id(next_of(items, "submit")?)?;
    let st = int(&next_of(items, "submit")?)?;
    let worker = text(next_of(items, "submit")?)?;
    let state = if st < 0 { None } else { Some(state_from(st)?) };
    let assigned = if worker.is_empty() {
        None
    } else {
        Some(WorkerId::new(worker)?)
    };
    if answer & SUBMIT_DUPLICATE == 0 {
        return Ok(SubmitOutcome::new(id, state, false, assigned));
    }
    Ok(SubmitOutcome::duplicate_of(
        id,
        state,
        answer & SUBMIT_DIFFERS != 0,
        answer & SUBMIT_REPLACED != 0,
        assigned,
    ))
}

/// `{count, returned ids..., assignments...}` of `drain`, `deregister` and `reap_worker`.
pub(crate) fn hand_back(v: Value) -> Result<HandBack, Error> {
    let mut items = array(v)?.into_iter();
    let n = count_of(&mut items, "hand-back")?;
    let returned = (0..n)
        .map(|_| task_id(next_of(&mut items, "hand-back")?))
        .collect::<Result<_, Error>>()?;
    let mut back = HandBack::default();
    back.returned = returned;
    back.assignments = assignments(&mut items, None)?;
    Ok(back)
}

/// `reap_worker`: `{-1}` if the worker was not reaped (gone, or it heartbeat again), else as
/// [`hand_back`].
pub(crate) fn reaped(v: Value) -> Result<Option<HandBack>, Error> {
    let items = array(v)?;
    if items.first().and_then(|v| int(v).ok()) == Some(-1) {
        return Ok(None);
    }
    hand_back(Value::Array(items)).map(Some)
}

/// `register`: `{replaced 0|1, assignments...}`.
pub(crate) fn registered(v: Value) -> Result<RegisterOutcome, Error> {
    let mut items = array(v)?.into_iter();
    let replaced = uint(&next_of(&mut items, "register")?)? == 1;
    let mut outcome = RegisterOutcome::default();
    outcome.replaced = replaced;
    outcome.assignments = assignments(&mut items, None)?;
    Ok(outcome)
}

/// `heartbeat`: `{0, count, ids to cancel..., count, expired ids..., assignments...}`.
pub(crate) fn heartbeat(v: Value) -> Result<HeartbeatReply, Error> {
    let mut items = array(v)?.into_iter().skip(1);
    let ids = |items: &mut dyn Iterator<Item = Value>| -> Result<Vec<TaskId>, Error> {
        let n = count_of(items, "heartbeat")?;
        (0..n)
            .map(|_| task_id(next_of(items, "heartbeat")?))
            .collect()
    };
    let cancel = ids(&mut items)?;
    let expired = ids(&mut items)?;
    let mut reply = HeartbeatReply::default();
    reply.cancel = cancel;
    reply.expired = expired;
    reply.assignments = assignments(&mut items, None)?;
    Ok(reply)
}

/// `progress`: `{A_SUCCEEDED, announced 0|1}` or a refusal `{code, state}`.
pub(crate) fn progressed(v: Value) -> Result<ProgressAck, Error> {
    let mut items = array(v)?.into_iter();
    let code = int(&next_of(&mut items, "progress")?)?;
    let value = next_of(&mut items, "progress")?;
    match ack(code, &value)? {
        Ack::Completed => Ok(ProgressAck::Stored {
            announced: int(&value)? == 1,
        }),
        Ack::Rejected(rejection) => Ok(ProgressAck::Rejected(rejection)),
        other => Err(protocol(format!("progress answered {other:?}"))),
    }
}

/// `fail` and `throttle`: `{code, value, assignments...}`.
pub(crate) fn failed(v: Value) -> Result<AckOutcome, Error> {
    let mut items = array(v)?.into_iter();
    let code = int(&next_of(&mut items, "fail")?)?;
    let value = items.next().unwrap_or(Value::Int(0));
    Ok(AckOutcome::new(
        ack(code, &value)?,
        assignments(&mut items, None)?,
    ))
}

/// What `complete` answers: per lease its acknowledgement and the tasks received right after
/// it, then the tasks received for the call as a whole.
pub(crate) type Completed = (Vec<(AckOutcome, Vec<Delivery>)>, Vec<Delivery>);

/// `complete` for `leases` leases of `worker`: per lease `{code, state, assignment count,
/// assignments..., received count, deliveries...}`, then the call's deliveries.
pub(crate) fn completed(v: Value, leases: usize, worker: &WorkerId) -> Result<Completed, Error> {
    let mut items = array(v)?.into_iter();
    let mut outcomes = Vec::with_capacity(leases);
    for _ in 0..leases {
        let code = int(&next_of(&mut items, "complete")?)?;
        let state = next_of(&mut items, "complete")?;
        let n = count_of(&mut items, "complete")?;
        let outcome = AckOutcome::new(ack(code, &state)?, assignments(&mut items, Some(n))?);
        let taken = count_of(&mut items, "complete")?;
        outcomes.push((outcome, deliveries(&mut items, worker, Some(taken))?));
    }
    Ok((outcomes, deliveries(&mut items, worker, None)?))
}

/// `cancel`: `{0, assignments...}` cancelled, `{1}` requested, `{2, state}` already finished.
pub(crate) fn cancelled(v: Value) -> Result<CancelOutcome, Error> {
    let mut items = array(v)?.into_iter();
    Ok(match int(&next_of(&mut items, "cancel")?)? {
        0 => CancelOutcome::Cancelled {
            assignments: assignments(&mut items, None)?,
        },
        1 => CancelOutcome::Requested,
        _ => CancelOutcome::AlreadyFinished(state_from(int(&next_of(&mut items, "cancel")?)?)?),
    })
}

/// `purge_queue`: `{removed, more 0|1}`.
pub(crate) fn purge_report(v: Value) -> Result<PurgeReport, Error> {
    let mut items = array(v)?.into_iter();
    let removed = uint(&next_of(&mut items, "purge")?)?;
    let more = int(&next_of(&mut items, "purge")?)? == 1;
    Ok(PurgeReport::new(removed, more))
}

/// `promote`: `{promoted, more 0|1, assignments...}`.
pub(crate) fn promoted(v: Value) -> Result<(usize, bool, usize, Vec<Assignment>), Error> {
    let mut items = array(v)?.into_iter();
    let n = count_of(&mut items, "promote")?;
    let more = uint(&next_of(&mut items, "promote")?)? == 1;
    let expired = count_of(&mut items, "promote")?;
    Ok((n, more, expired, assignments(&mut items, None)?))
}

/// `purge`: `{purged, more 0|1}`.
pub(crate) fn purged(v: Value) -> Result<(usize, bool), Error> {
    let mut items = array(v)?.into_iter();
    let n = count_of(&mut items, "purge")?;
    let more = items.next().map(|v| uint(&v)).transpose()?.unwrap_or(0) == 1;
    Ok((n, more))
}

/// `group_info`: `{key, weight, ready, scheduled, active, in ring 0|1, tokens (-1: no rate limit),
/// marked until (0: not marked), own concurrency, own rate and window (0: the queue's)}` per
/// group.
pub(crate) fn group_infos(
    v: Value,
) -> Result<Vec<switchyard_core::flow::groups::GroupInfo>, Error> {
    array(v)?
        .into_iter()
        .map(|row| {
            let mut f = array(row)?.into_iter();
            let key = text(next_of(&mut f, "group_info")?)?;
            let weight = u32::try_from(uint(&next_of(&mut f, "group_info")?)?)
                .map_err(|_| protocol("group weight out of range"))?;
            let ready = uint(&next_of(&mut f, "group_info")?)?;
            let scheduled = uint(&next_of(&mut f, "group_info")?)?;
            let active = u32::try_from(uint(&next_of(&mut f, "group_info")?)?)
                .map_err(|_| protocol("group active count out of range"))?;
            let in_ring = int(&next_of(&mut f, "group_info")?)? == 1;
            let tokens = u32::try_from(int(&next_of(&mut f, "group_info")?)?).ok();
            let until = uint(&next_of(&mut f, "group_info")?)?;
            let mut limits = switchyard_core::flow::groups::GroupLimits::default();
            let own = uint(&next_of(&mut f, "group_info")?)?;
            if own > 0 {
                limits.concurrency =
                    Some(u32::try_from(own).map_err(|_| protocol("group limit out of range"))?);
            }
            let (max, per_ms) = (
                uint(&next_of(&mut f, "group_info")?)?,
                uint(&next_of(&mut f, "group_info")?)?,
            );
            if max > 0 {
                limits.rate = Some(switchyard_core::flow::rate::RateLimit {
                    max: u32::try_from(max).map_err(|_| protocol("group rate out of range"))?,
                    per_ms,
                });
            }
            Ok(switchyard_core::flow::groups::GroupInfo {
                key,
                weight,
                ready,
                scheduled,
                active,
                in_ring,
                tokens,
                closed_until: (until > 0).then_some(until),
                limits,
            })
        })
        .collect()
}

/// `peek`: task ids.
pub(crate) fn task_ids(v: Value) -> Result<Vec<TaskId>, Error> {
    array(v)?.into_iter().map(task_id).collect()
}

/// `browse`: the next cursor (`''` at the end), the entries examined, then id and record of
/// each task on the page.
pub(crate) fn task_page(v: Value) -> Result<TaskPage, Error> {
    let mut items = array(v)?.into_iter();
    let next = text(next_of(&mut items, "cursor")?)?;
    let examined = count_of(&mut items, "examined")?;
    let mut tasks = Vec::new();
    while let Some(id) = items.next() {
        let id = task_id(id)?;
        let raw = bytes(next_of(&mut items, "record")?)?;
        tasks.push(decode_record(&raw)?.info(id));
    }
    Ok(TaskPage {
        tasks,
        next: (!next.is_empty()).then_some(next),
        examined,
    })
}

/// `stats`: `{queues, workers}`, each row as the header of `lua/stats.lua` lists it.
pub(crate) fn stats(v: Value) -> Result<(Vec<QueueStats>, Vec<WorkerStats>), Error> {
    let mut parts = array(v)?.into_iter();
    let qs = array(parts.next().unwrap_or(Value::Nil))?;
    let ws = array(parts.next().unwrap_or(Value::Nil))?;
    let queues = qs.into_iter().map(queue_stats).collect::<Result<_, _>>()?;
    let mut workers = ws
        .into_iter()
        .map(worker_stats)
        .collect::<Result<Vec<_>, _>>()?;
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((queues, workers))
}

fn queue_stats(row: Value) -> Result<QueueStats, Error> {
    let f = array(row)?;
    let kinds = EventKind::ALL.len();
    if f.len() < 14 + kinds {
        return Err(protocol("short queue stats"));
    }
    let n = |i: usize| uint(&f[i]);
    let mut totals = EventCounts::default();
    for (i, kind) in EventKind::ALL.into_iter().enumerate() {
        totals.add(kind, n(10 + i)?);
    }
    let mut stats = QueueStats::default();
    stats.queue = Some(QueueName::new(text(f[0].clone())?)?);
    stats.scheduled = n(1)?;
    stats.ready = n(2)?;
    stats.dispatched = n(3)?;
    stats.running = n(4)?;
    stats.retry_scheduled = n(5)?;
    stats.succeeded = n(6)?;
    stats.dead = n(7)?;
    stats.cancelled = n(8)?;
    stats.expired = n(9)?;
    stats.totals = totals;
    let at = 10 + kinds;
    stats.paused = n(at)? == 1;
    stats.rate_tokens = u32::try_from(int(&f[at + 1])?).ok();
    stats.opens_at = Some(n(at + 2)?).filter(|&t| t > 0);
    stats.waiting_children = n(at + 3)?;
    Ok(stats)
}

fn worker_stats(row: Value) -> Result<WorkerStats, Error> {
    let f = array(row)?;
    if f.len() < 10 {
        return Err(protocol("short worker stats"));
    }
    let id = WorkerId::new(text(f[0].clone())?)?;
    let queues = text(f[5].clone())?
        .split(',')
        .filter(|q| !q.is_empty())
        .map(QueueName::new)
        .collect::<Result<Vec<_>, _>>()?;
    let small =
        |i: usize| u32::try_from(uint(&f[i])?).map_err(|_| protocol("worker field out of range"));
    let mut stats = WorkerStats::new(id);
    stats.capacity = small(1)?;
    stats.weight = small(2)?;
    stats.inflight = small(3)?;
    stats.draining = uint(&f[6])? == 1;
    stats.queues = queues;
    stats.expires_at = uint(&f[4])?;
    stats.dispatched = uint(&f[7])?;
    stats.completed = uint(&f[8])?;
    stats.heartbeat_ttl_ms = small(9)?;
    Ok(stats)
}
