//! Byte formats shared with the Lua scripts (see `lua/lib/protocol.lua` and `docs/redis-layout.md`):
//! task bodies and arguments, task and worker records, queue configurations, events. The
//! parsing of script replies is in [`reply`].

mod flows;
mod reply;

pub(crate) use flows::{children, settled};
pub(crate) use reply::*;

use redis::Value;
use switchyard_core::{
    Assignment, Delivery, Error, Event, EventKind, Lease, LeaseToken, MAX_RUN_AT_MS, Progress,
    QueueConfig, QueueName, TRACE_PARENT_LEN, TaskId, TaskInfo, TaskKind, TaskOutcome, TaskSpec,
    TaskState, TraceParent, TraceState, WorkerId,
};

use crate::protocol::{
    TASK_CANCEL_REQUESTED, TASK_DEADLINE, TASK_STAGED, WORKER_DRAINING, record, state_from,
};

pub(crate) use crate::protocol::protocol;

/// The immutable part of a record, built by the client: lengths of queue, kind, affinity key
/// and dedup key (`>BBHH`), those bytes, then the group key if the task has one (bit
/// [`GROUP_BIT`] of the kind's length says so: its length `>H` and its bytes), then the trace
/// context, then the payload. The trace context is a marker byte: 0 (none);
/// [`TRACE_PARENT_LEN`] and the `traceparent` text; or [`TRACE_WITH_STATE`], the
/// `traceparent`, the `tracestate`'s length (`>H`) and its text. The scripts read the parts
/// before the trace context only.
pub(crate) fn encode_body(spec: &TaskSpec) -> Vec<u8> {
    body_of(&BodyParts {
        queue: spec.queue(),
        kind: spec.kind(),
        affinity: spec.affinity_key(),
        dedup: spec.dedup_key(),
        group: spec.group_key(),
        trace: spec.trace_parent(),
        state: spec.trace_state(),
        payload: spec.payload(),
    })
}

/// The bit of a body's kind length that says a group key follows the dedup key (names are at
/// most 128 bytes, so the length itself never sets it; `lua/lib/groups.lua`).
pub(crate) const GROUP_BIT: u8 = 0x80;

/// The body of `record` with another payload (`change.lua`).
pub(crate) fn body_with_payload(record: &Record, payload: &[u8]) -> Vec<u8> {
    body_of(&BodyParts {
        queue: &record.queue,
        kind: &record.kind,
        affinity: record.affinity.as_deref(),
        dedup: record.dedup.as_deref(),
        group: record.group.as_deref(),
        trace: record.trace.as_ref(),
        state: record.trace_state.as_ref(),
        payload,
    })
}

/// What a body holds (see [`encode_body`]).
struct BodyParts<'a> {
    queue: &'a QueueName,
    kind: &'a TaskKind,
    affinity: Option<&'a str>,
    dedup: Option<&'a str>,
    group: Option<&'a str>,
    trace: Option<&'a TraceParent>,
    state: Option<&'a TraceState>,
    payload: &'a [u8],
}

fn body_of(parts: &BodyParts<'_>) -> Vec<u8> {
    let queue = parts.queue.as_str().as_bytes();
    let kind = parts.kind.as_str().as_bytes();
    let affinity = parts.affinity.unwrap_or("").as_bytes();
    let dedup = parts.dedup.unwrap_or("").as_bytes();
    let group = parts.group.map(str::as_bytes);
    let trace = parts.trace.map_or(&[][..], |t| t.as_str().as_bytes());
    let state = parts
        .state
        .filter(|_| !trace.is_empty())
        .map_or(&[][..], |s| s.as_str().as_bytes());
    let mut body = Vec::with_capacity(
        7 + queue.len()
            + kind.len()
            + affinity.len()
            + dedup.len()
            + group.map_or(0, |g| 2 + g.len())
            + trace.len()
            + 2
            + state.len()
            + parts.payload.len(),
    );
    // Lengths are bounded by validation (names <= 128 bytes, keys <= 256 bytes).
    body.push(queue.len() as u8);
    body.push(kind.len() as u8 | if group.is_some() { GROUP_BIT } else { 0 });
    body.extend_from_slice(&(affinity.len() as u16).to_be_bytes());
    body.extend_from_slice(&(dedup.len() as u16).to_be_bytes());
    for part in [queue, kind, affinity, dedup] {
        body.extend_from_slice(part);
    }
    if let Some(group) = group {
        body.extend_from_slice(&(group.len() as u16).to_be_bytes());
        body.extend_from_slice(group);
    }
    // A validated traceparent is 55 bytes, a validated tracestate at most 512.
    if state.is_empty() {
        body.push(trace.len() as u8);
        body.extend_from_slice(trace);
    } else {
        body.push(TRACE_WITH_STATE);
        body.extend_from_slice(trace);
        body.extend_from_slice(&(state.len() as u16).to_be_bytes());
        body.extend_from_slice(state);
    }
    body.extend_from_slice(parts.payload);
    body
}

/// One task argument of `submit.lua` (`TASK_ARG` in `lua/lib/protocol.lua`): a fixed header (`>HBHI4I6I6HI4I6`:
/// queue group, cost given 0|1, priority, cost, run-at (0: none), delay (0: none), max
/// attempts (0: queue default), timeout (0: queue default), deadline (0: none)), the id's 26
/// characters, the body.
/// One packed argument per task keeps the script's per-task parsing to one `struct.unpack`.
pub(crate) fn encode_task_arg(spec: &TaskSpec, group: u16) -> Vec<u8> {
    let (at, delay) = match spec.schedule() {
        switchyard_core::Schedule::Now => (0, 0),
        switchyard_core::Schedule::At(at) => (at, 0),
        switchyard_core::Schedule::After(d) => (0, d),
    };
    let mut out = Vec::with_capacity(record::TASK_ARG_LEN + 64 + spec.payload().len());
    out.extend_from_slice(&group.to_be_bytes());
    out.push(u8::from(spec.cost_hint_ms().is_some()));
    out.extend_from_slice(&spec.priority().to_be_bytes());
    out.extend_from_slice(&spec.cost_hint_ms().unwrap_or(0).to_be_bytes());
    // Run-at and delay are validated to stay below 2^48 (`MAX_RUN_AT_MS`).
    out.extend_from_slice(&at.min(MAX_RUN_AT_MS).to_be_bytes()[2..]);
    out.extend_from_slice(&delay.min(MAX_RUN_AT_MS).to_be_bytes()[2..]);
    // Max attempts are validated to at most `MAX_ATTEMPTS` (1,000).
    let attempts = u16::try_from(spec.max_attempts().unwrap_or(0)).unwrap_or(u16::MAX);
    out.extend_from_slice(&attempts.to_be_bytes());
    out.extend_from_slice(&spec.timeout_ms().unwrap_or(0).to_be_bytes());
    // A deadline is validated to stay below 2^48; 0 (the epoch itself) is no deadline.
    out.extend_from_slice(
        &spec
            .deadline()
            .unwrap_or(0)
            .min(MAX_RUN_AT_MS)
            .to_be_bytes()[2..],
    );
    out.extend_from_slice(spec.id().to_string().as_bytes());
    out.extend_from_slice(&encode_body(spec));
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| protocol("record shorter than its header says"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn uint(&mut self, n: usize) -> Result<u64, Error> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }
    fn text(&mut self, n: usize) -> Result<String, Error> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| protocol("record text is not UTF-8"))
    }
}

/// A decoded task record.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) state: TaskState,
    pub(crate) cancel: bool,
    /// A wide flow's task not yet seen (`TASK_STAGED`).
    pub(crate) staged: bool,
    pub(crate) attempts: u32,
    pub(crate) max_attempts: u32,
    pub(crate) priority: u16,
    pub(crate) cost_ms: u32,
    pub(crate) timeout_ms: u32,
    pub(crate) pos: u64,
    pub(crate) token: u64,
    pub(crate) time: u64,
    pub(crate) created: u64,
    /// The deadline (`F_DEADLINE`), if it has one.
    pub(crate) start_by: Option<u64>,
    pub(crate) worker: Option<WorkerId>,
    pub(crate) error: Option<String>,
    pub(crate) result: Vec<u8>,
    pub(crate) queue: QueueName,
    pub(crate) kind: TaskKind,
    pub(crate) trace: Option<TraceParent>,
    pub(crate) trace_state: Option<TraceState>,
    pub(crate) payload: Vec<u8>,
    pub(crate) affinity: Option<String>,
    pub(crate) dedup: Option<String>,
    pub(crate) group: Option<String>,
}

fn num<T: TryFrom<u64>>(v: u64) -> Result<T, Error> {
    T::try_from(v).map_err(|_| protocol("number out of range in a record"))
}

/// The client-built part of a record.
struct Body {
    queue: QueueName,
    kind: TaskKind,
    affinity: Option<String>,
    dedup: Option<String>,
    group: Option<String>,
    trace: Option<TraceParent>,
    trace_state: Option<TraceState>,
    payload: Vec<u8>,
}

fn decode_body(r: &mut Reader<'_>) -> Result<Body, Error> {
    let ql = num::<usize>(r.uint(1)?)?;
    let kl_raw = r.uint(1)?;
    let grouped = kl_raw & u64::from(GROUP_BIT) != 0;
    let kl = num::<usize>(kl_raw & !u64::from(GROUP_BIT))?;
    let al = num::<usize>(r.uint(2)?)?;
    let dl = num::<usize>(r.uint(2)?)?;
    let queue = QueueName::new(r.text(ql)?)?;
    let kind = TaskKind::new(r.text(kl)?)?;
    let affinity = Some(r.text(al)?).filter(|s| !s.is_empty());
    let dedup = Some(r.text(dl)?).filter(|s| !s.is_empty());
    let group = if grouped {
        let gl = num::<usize>(r.uint(2)?)?;
        Some(r.text(gl)?)
    } else {
        None
    };
    let (trace, trace_state) = trace_part(r);
    Ok(Body {
        queue,
        kind,
        affinity,
        dedup,
        group,
        trace,
        trace_state,
        payload: r.bytes[r.at..].to_vec(),
    })
}

/// The marker of a trace part with a `tracestate` (see [`encode_body`]).
const TRACE_WITH_STATE: u8 = TRACE_PARENT_LEN as u8 + 1;

/// The trace part of a body: a 0 byte (none), 55 and a valid `traceparent`, or 56, a valid
/// `traceparent` and a valid `tracestate` with its length. A body written before the trace
/// part existed has its payload right here instead; it is read as such (a text or JSON payload
/// never starts with byte 0, nor with `7` or `8` followed by a valid `traceparent`), so that
/// workers of this version read the tasks older producers queued.
fn trace_part(r: &mut Reader<'_>) -> (Option<TraceParent>, Option<TraceState>) {
    let rest = &r.bytes[r.at..];
    let parent = |from: usize| {
        rest.get(from..from + TRACE_PARENT_LEN)
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| TraceParent::parse(t).ok())
    };
    match rest.first() {
        Some(0) => {
            r.at += 1;
            (None, None)
        }
        Some(&len) if usize::from(len) == TRACE_PARENT_LEN => match parent(1) {
            Some(trace) => {
                r.at += 1 + TRACE_PARENT_LEN;
                (Some(trace), None)
            }
            None => (None, None),
        },
        Some(&TRACE_WITH_STATE) => {
            let at = 1 + TRACE_PARENT_LEN;
            let state = rest.get(at..at + 2).and_then(|n| {
                let n = usize::from(u16::from_be_bytes([n[0], n[1]]));
                let text = std::str::from_utf8(rest.get(at + 2..at + 2 + n)?).ok()?;
                Some((n, TraceState::parse(text).ok()?))
            });
            match (parent(1), state) {
                (Some(trace), Some((n, state))) => {
                    r.at += at + 2 + n;
                    (Some(trace), Some(state))
                }
                _ => (None, None),
            }
        }
        _ => (None, None),
    }
}

/// A stored progress value (`lua/progress.lua`; [`crate::protocol::PROGRESS_LEN`] bytes, then
/// the message).
pub(crate) fn decode_progress(bytes: &[u8]) -> Result<Progress, Error> {
    if bytes.len() < crate::protocol::PROGRESS_LEN {
        return Err(protocol("progress value shorter than its header"));
    }
    let mut r = Reader { bytes, at: 0 };
    let attempt = num(r.uint(2)?)?;
    let ppm = num(r.uint(4)?)?;
    let at = r.uint(6)?;
    let announced_at = r.uint(6)?;
    let reports = r.uint(6)?;
    let message = r.text(bytes.len() - crate::protocol::PROGRESS_LEN)?;
    Ok(Progress::from_ppm(ppm, message)?.stored(attempt, at, reports, announced_at))
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<Record, Error> {
    if bytes.len() < record::HEADER_LEN {
        return Err(protocol("task record shorter than its header"));
    }
    let mut r = Reader { bytes, at: 0 };
    let state = state_from(num::<i64>(r.uint(1)?)?)?;
    let flags = r.uint(1)?;
    let attempts = num(r.uint(2)?)?;
    let max_attempts = num(r.uint(2)?)?;
    let priority = num(r.uint(2)?)?;
    let cost_ms = num(r.uint(4)?)?;
    let timeout_ms = num(r.uint(4)?)?;
    let pos = r.uint(6)?;
    let token = r.uint(6)?;
    let time = r.uint(6)?;
    let created = r.uint(6)?;
    let wl = num::<usize>(r.uint(1)?)?;
    let el = num::<usize>(r.uint(2)?)?;
    let rl = num::<usize>(r.uint(4)?)?;
    let start_by = if flags & TASK_DEADLINE != 0 {
        Some(r.uint(6)?)
    } else {
        None
    };
    let worker = r.text(wl)?;
    let error = r.text(el)?;
    let result = r.take(rl)?.to_vec();
    let Body {
        queue,
        kind,
        affinity,
        dedup,
        group,
        trace,
        trace_state,
        payload,
    } = decode_body(&mut r)?;
    Ok(Record {
        state,
        cancel: flags & TASK_CANCEL_REQUESTED != 0,
        staged: flags & TASK_STAGED != 0,
        attempts,
        max_attempts,
        priority,
        cost_ms,
        timeout_ms,
        pos,
        token,
        time,
        created,
        start_by,
        worker: if worker.is_empty() {
            None
        } else {
            Some(WorkerId::new(worker)?)
        },
        error: Some(error).filter(|e| !e.is_empty()),
        result,
        queue,
        kind,
        affinity,
        dedup,
        group,
        trace,
        trace_state,
        payload,
    })
}

impl Record {
    pub(crate) fn info(&self, id: TaskId) -> TaskInfo {
        let mut info = TaskInfo::new(id, self.queue.clone(), self.kind.clone(), self.state);
        info.priority = self.priority;
        info.cost_ms = self.cost_ms;
        info.attempts = self.attempts;
        info.max_attempts = self.max_attempts;
        info.timeout_ms = self.timeout_ms;
        info.created_at = self.created;
        info.run_at = Some(self.time);
        info.worker = self.worker.clone();
        info.token = Some(LeaseToken(self.token));
        info.last_error = self.error.clone();
        info.cancel_requested = self.cancel;
        info.affinity_key = self.affinity.clone();
        info.dedup_key = self.dedup.clone();
        info.group_key = self.group.clone();
        info.deadline = Some(self.time);
        info.finished_at = Some(self.time);
        info.start_by = self.start_by;
        info.ready_since = Some(self.time);
        info.trace_parent = self.trace.clone();
        info.trace_state = self.trace_state.clone();
        info.payload = self.payload.clone();
        info.shown()
    }

    pub(crate) fn outcome(&self) -> Option<TaskOutcome> {
        match self.state {
            TaskState::Succeeded => Some(TaskOutcome::Succeeded(self.result.clone())),
            TaskState::Dead => Some(TaskOutcome::Dead(self.error.clone().unwrap_or_default())),
            TaskState::Cancelled => Some(TaskOutcome::Cancelled),
            TaskState::Expired => Some(TaskOutcome::Expired),
            _ => None,
        }
    }
}

/// A worker record: capacity, weight, heartbeat expiry, receive cursor, instance token, queues
/// in order.
#[derive(Debug, Clone)]
pub(crate) struct WorkerRecord {
    pub(crate) capacity: u32,
    /// The instance token of the registration.
    pub(crate) instance: u64,
    /// Tasks dispatched to or running on the worker.
    pub(crate) inflight: u32,
    /// Tasks dispatched to the worker and not yet received.
    pub(crate) inbox: u32,
    pub(crate) draining: bool,
    pub(crate) expires: u64,
    pub(crate) received_upto: u64,
    pub(crate) queues: Vec<QueueName>,
    /// Per queue: the strategy code (see `strategy_args`).
    pub(crate) strategies: Vec<u8>,
    /// Per queue: the least-loaded pick stamp, 13 hex digits.
    pub(crate) stamps: Vec<String>,
}

/// Decodes a worker record (`WREC` in `lua/lib/protocol.lua`): the header `>HHHI6I4I6BHI6I6I6`
/// (capacity, weight, in flight, heartbeat expiry, heartbeat ttl, receive cursor, flags, inbox
/// count, instance token, dispatched and completed since it registered),
/// the queue names joined by `,`, `|`, then per queue two digits (strategy, 1 if FCFS) and
/// per queue a 13-hex-digit least-loaded stamp.
pub(crate) fn decode_worker(bytes: &[u8]) -> Result<WorkerRecord, Error> {
    if bytes.len() < record::WORKER_LEN {
        return Err(protocol("worker record shorter than its header"));
    }
    let mut r = Reader { bytes, at: 0 };
    let capacity = num(r.uint(2)?)?;
    let _weight = r.uint(2)?;
    let inflight = num(r.uint(2)?)?;
    let expires = r.uint(6)?;
    let _ttl = r.uint(4)?;
    let received_upto = r.uint(6)?;
    let flags = r.uint(1)?;
    let inbox = num(r.uint(2)?)?;
    let instance = r.uint(6)?;
    let _dispatched = r.uint(6)?;
    let _completed = r.uint(6)?;
    let tail = std::str::from_utf8(&bytes[record::WORKER_LEN..])
        .map_err(|_| protocol("worker queues are not UTF-8"))?;
    let (names, rest) = tail
        .split_once('|')
        .ok_or_else(|| protocol("worker record without its queue separator"))?;
    let queues = names
        .split(',')
        .filter(|q| !q.is_empty())
        .map(QueueName::new)
        .collect::<Result<Vec<_>, _>>()?;
    let n = queues.len();
    if rest.len() != 15 * n || !rest.is_ascii() {
        return Err(protocol(
            "worker record: queue codes do not match its queues",
        ));
    }
    let strategies = rest.as_bytes()[..2 * n]
        .chunks(2)
        .map(|c| c[0].wrapping_sub(b'0'))
        .collect();
    let stamps = (0..n)
        .map(|i| rest[2 * n + 13 * i..2 * n + 13 * (i + 1)].to_owned())
        .collect();
    Ok(WorkerRecord {
        capacity,
        instance,
        inflight,
        inbox,
        draining: flags >= WORKER_DRAINING,
        expires,
        received_upto,
        queues,
        strategies,
        stamps,
    })
}

/// The queue list of a worker record.
pub(crate) fn worker_queues(bytes: &[u8]) -> Result<Vec<QueueName>, Error> {
    Ok(decode_worker(bytes)?.queues)
}

pub(crate) fn config_json(config: &QueueConfig) -> Result<String, Error> {
    serde_json::to_string(config)
        .map_err(|e| protocol(format!("cannot encode the queue config: {e}")))
}

pub(crate) fn config_from_json(json: &[u8]) -> Result<QueueConfig, Error> {
    serde_json::from_slice(json)
        .map_err(|e| protocol(format!("stored queue config is unreadable: {e}")))
}

/// An event from its stream entry.
pub(crate) fn event(
    id: String,
    fields: &std::collections::HashMap<String, Vec<u8>>,
) -> Result<Event, Error> {
    let field = |k: &str| -> Result<String, Error> {
        let raw = fields
            .get(k)
            .ok_or_else(|| protocol(format!("event {id} lacks `{k}`")))?;
        String::from_utf8(raw.clone()).map_err(|_| protocol("event field is not UTF-8"))
    };
    let kind = field("k")?;
    let worker = field("w")?;
    let detail = field("d")?;
    let kind =
        EventKind::parse(&kind).ok_or_else(|| protocol(format!("unknown event kind `{kind}`")))?;
    let at = field("a")?
        .parse()
        .map_err(|_| protocol("event time is not a number"))?;
    let (task, queue) = (field("t")?.parse()?, QueueName::new(field("q")?)?);
    let mut event = Event::new(id, kind, task, queue, at);
    if !worker.is_empty() {
        event.worker = Some(WorkerId::new(worker)?);
    }
    if !detail.is_empty() {
        event.detail = Some(detail);
    }
    Ok(event)
}

// ----- replies ------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trip() {
        let spec = TaskSpec::builder("emails", "send")
            .payload(b"hello".to_vec())
            .affinity_key("user-1")
            .trace_parent(
                TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                    .unwrap(),
            )
            .build()
            .unwrap();
        let body = encode_body(&spec);
        let b = decode_body(&mut Reader {
            bytes: &body,
            at: 0,
        })
        .unwrap();
        assert_eq!(
            (
                b.queue.as_str(),
                b.kind.as_str(),
                b.affinity.as_deref(),
                b.dedup,
                b.payload.as_slice()
            ),
            ("emails", "send", Some("user-1"), None, &b"hello"[..])
        );
        assert_eq!(b.trace.as_ref(), spec.trace_parent());
        assert_eq!(b.trace_state, None);
    }

    #[test]
    fn a_trace_state_travels_with_its_parent() {
        let spec = TaskSpec::builder("emails", "send")
            .payload(b"8 bytes!".to_vec())
            .trace_parent(
                TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                    .unwrap(),
            )
            .trace_state(TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").unwrap())
            .build()
            .unwrap();
        let body = encode_body(&spec);
        let b = decode_body(&mut Reader {
            bytes: &body,
            at: 0,
        })
        .unwrap();
        assert_eq!(b.trace.as_ref(), spec.trace_parent());
        assert_eq!(b.trace_state.as_ref(), spec.trace_state());
        assert_eq!(b.payload, b"8 bytes!");
    }

    #[test]
    fn bodies_written_before_the_trace_part_keep_their_payload() {
        // `>BBHH`, queue, kind, then the payload right away (the earlier layout).
        let mut old = vec![1, 1, 0, 0, 0, 0, b'q', b'k'];
        old.extend_from_slice(br#"{"ms":200}"#);
        let b = decode_body(&mut Reader { bytes: &old, at: 0 }).unwrap();
        assert_eq!(b.payload, br#"{"ms":200}"#);
        assert_eq!(b.trace, None);
    }

    #[test]
    fn short_records_are_refused() {
        assert!(decode_record(&[0u8; 10]).is_err());
        assert!(worker_queues(&[0u8; 3]).is_err());
    }
}
