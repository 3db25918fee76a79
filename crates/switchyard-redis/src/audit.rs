//! A read-only consistency check of everything a namespace holds in Redis: every task record
//! sits in exactly the structures its state names, and nothing else is there. `O(n)` reads and
//! no writes; for tests and offline checks, not for a hot path.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use redis::AsyncCommands;
use switchyard_core::flow::concurrency;
use switchyard_core::{InstanceToken, QueueName, Result, Schedules, TaskState};

mod flows;
mod groups;

use crate::backend::RedisBackend;
use crate::codec::{self, Record};
use crate::error::map_redis;

/// What the audit reads of one queue.
struct QueueView {
    pull: bool,
    /// Paused (field `p` of the queue state): work conservation does not apply.
    paused: bool,
    /// The concurrency limit, and the active count kept for it (field `a`): while held at
    /// the limit, work conservation does not apply.
    limit: Option<u32>,
    active_field: Option<i64>,
    /// Marked to open again later (field `t`: closed by its rate limit or a hold, or not yet
    /// taken up by maintenance): work conservation does not apply.
    marked: bool,
    /// Expires late tasks: its expiry mark (field `xm`) and the deadline at the head of its
    /// ready set (lib/deadline.lua: the mark is at or before it).
    expiry: Option<(Option<i64>, Option<f64>)>,
    /// Ready entries (an FCFS list may hold entries of cancelled tasks, counted in `tomb`).
    ready: Vec<String>,
    /// The same entries, to look one up.
    ready_index: HashSet<String>,
    tomb: i64,
    delayed: BTreeMap<String, f64>,
    done: BTreeSet<String>,
    /// A queue shared between groups: what its groups hold.
    shared: Option<groups::Shared>,
}

impl QueueView {
    fn ready_len(&self) -> i64 {
        self.ready.len() as i64 - self.tomb
    }

    /// Whether it has a task to dispatch: a ready task (in a shared queue, one of an open
    /// group).
    fn has_next(&self) -> bool {
        match &self.shared {
            Some(shared) => shared.has_next(),
            None => self.ready_len() > 0,
        }
    }
}

fn pairs(v: Vec<(String, f64)>) -> BTreeMap<String, f64> {
    v.into_iter().collect()
}

impl RedisBackend {
    /// Checks the invariants of `docs/architecture.md` that Redis state can show (conservation,
    /// capacity, work conservation, index consistency) and returns every problem found (empty
    /// when consistent). Reads the whole namespace: use it in tests and offline checks only.
    pub async fn audit(&self) -> Result<Vec<String>> {
        let mut conn = self.connection().await?;
        let key = |role: &str| self.key(role).unwrap_or_default().to_owned();
        let e = |e: redis::RedisError| map_redis(&e);
        let tasks: HashMap<String, Vec<u8>> = conn.hgetall(key("tasks")).await.map_err(e)?;
        let meta: HashMap<String, String> = conn.hgetall(key("meta")).await.map_err(e)?;
        let workers: HashMap<String, Vec<u8>> = conn.hgetall(key("workers")).await.map_err(e)?;
        let hb = pairs(conn.zrange_withscores(key("hb"), 0, -1).await.map_err(e)?);
        let free: BTreeSet<String> = conn
            .zrange::<_, Vec<String>>(key("free"), 0, -1)
            .await
            .map_err(e)?
            .into_iter()
            .collect();
        let wtasks: BTreeSet<String> = conn
            .zrange::<_, Vec<String>>(key("wtasks"), 0, -1)
            .await
            .map_err(e)?
            .into_iter()
            .collect();
        let dead: BTreeSet<String> = conn
            .zrange::<_, Vec<String>>(key("dead"), 0, -1)
            .await
            .map_err(e)?
            .into_iter()
            .collect();
        let parents: BTreeSet<String> = conn
            .zrange::<_, Vec<String>>(key("parents"), 0, -1)
            .await
            .map_err(e)?
            .into_iter()
            .collect();
        let settle: Vec<String> = conn.zrange(key("settle"), 0, -1).await.map_err(e)?;

        let mut problems = Vec::new();
        let mut queues: BTreeMap<QueueName, QueueView> = BTreeMap::new();
        for (name, json) in meta.iter().filter(|(k, _)| !k.starts_with('~')) {
            let queue = QueueName::new(name)?;
            let config = codec::config_from_json(json.as_bytes())?;
            let keys = self.queue_keys(&queue);
            let [state, ready, delayed, _, done, ..] = keys.clone();
            let shared = match config.groups {
                Some(g) => Some(groups::Shared::read(&mut conn, &keys, g.concurrency).await?),
                None => None,
            };
            // A shared queue's ready set is a sorted set under every policy.
            let fcfs = config.policy == switchyard_core::Policy::Fcfs && shared.is_none();
            let dynamic: Option<Vec<u8>> = conn.hget(&state, "d").await.map_err(e)?;
            // The dynamic state starts with the tombstone count (`>I6`, see `QDYN` in lua/lib/protocol.lua).
            let tomb = dynamic
                .as_deref()
                .and_then(|d| d.get(..6))
                .map(|b| b.iter().fold(0i64, |acc, x| (acc << 8) | i64::from(*x)));
            let expiry = if config.expire_late {
                let mark: Option<i64> = conn.hget(&state, "xm").await.map_err(e)?;
                let head: Vec<(String, f64)> =
                    conn.zrange_withscores(&ready, 0, 0).await.map_err(e)?;
                Some((mark, head.first().map(|(_, s)| *s)))
            } else {
                None
            };
            let ready: Vec<String> = if fcfs {
                conn.lrange(&ready, 0, -1).await.map_err(e)?
            } else {
                conn.zrange(&ready, 0, -1).await.map_err(e)?
            };
            let paused: Option<String> = conn.hget(&state, "p").await.map_err(e)?;
            let active_field: Option<i64> = conn.hget(&state, "a").await.map_err(e)?;
            let wake: Option<i64> = conn.hget(&state, "t").await.map_err(e)?;
            let ready_index = ready.iter().cloned().collect();
            let view = QueueView {
                pull: !config.strategy.is_push(),
                paused: paused.as_deref() == Some("1"),
                limit: config.concurrency,
                active_field,
                marked: wake.is_some(),
                expiry,
                ready,
                ready_index,
                tomb: if fcfs { tomb.unwrap_or(0) } else { 0 },
                delayed: pairs(conn.zrange_withscores(&delayed, 0, -1).await.map_err(e)?),
                done: conn
                    .zrange::<_, Vec<String>>(&done, 0, -1)
                    .await
                    .map_err(e)?
                    .into_iter()
                    .collect(),
                shared,
            };
            queues.insert(queue, view);
        }
        let mut worker_records = BTreeMap::new();
        for (field, raw) in &workers {
            if !field.contains('|') {
                match codec::decode_worker(raw) {
                    Ok(w) if InstanceToken::new(w.instance).is_err() => problems.push(format!(
                        "worker {field} has instance token {}, outside 1..=2^48-1",
                        w.instance
                    )),
                    Ok(w) => {
                        worker_records.insert(field.clone(), w);
                    }
                    Err(err) => problems.push(format!("worker {field} does not decode: {err}")),
                }
            }
        }

        let mut records: HashMap<String, Record> = HashMap::new();
        for (id, raw) in tasks.iter().filter(|(id, _)| {
            // Dedup keys, progress and flow fields (`lua/lib/flows.lua`) beside the records.
            !["d:", "p:", "fp:", "fc:", "fn:", "fe:"]
                .iter()
                .any(|p| id.starts_with(p))
        }) {
            match codec::decode_record(raw) {
                Ok(r) => {
                    records.insert(id.clone(), r);
                }
                Err(err) => problems.push(format!("record {id} does not decode: {err}")),
            }
        }
        // Progress lives and goes with its task's record (`lua/progress.lua`).
        for (field, id, raw) in tasks
            .iter()
            .filter_map(|(f, raw)| Some((f, f.strip_prefix("p:")?, raw)))
        {
            if !records.contains_key(id) {
                problems.push(format!("progress {field} of a task without a record"));
            }
            if let Err(err) = codec::decode_progress(raw) {
                problems.push(format!("progress {field} does not decode: {err}"));
            }
        }
        let mut counts: BTreeMap<(String, u8), i64> = BTreeMap::new();
        let mut held: BTreeMap<String, u32> = BTreeMap::new();
        let mut inboxes: BTreeMap<String, u32> = BTreeMap::new();
        let mut live_ready: BTreeMap<QueueName, i64> = BTreeMap::new();
        let mut active: BTreeMap<QueueName, u32> = BTreeMap::new();
        let mut expected_wtasks = BTreeSet::new();
        // A wide flow's staged tasks are in no index until made seen (audit/flows.rs).
        for (id, r) in records.iter().filter(|(_, r)| !r.staged) {
            let Some(view) = queues.get(&r.queue) else {
                problems.push(format!("{id} is in undeclared queue {}", r.queue));
                continue;
            };
            if r.state.is_leased() != r.worker.is_some() {
                problems.push(format!(
                    "{id} is {} but its worker field is {:?}",
                    r.state, r.worker
                ));
            }
            let member = format!("{:012x}{id}", r.pos);
            match r.state {
                TaskState::Scheduled | TaskState::RetryScheduled => {
                    if view.delayed.get(&member).copied() != Some(r.time as f64) {
                        problems.push(format!(
                            "{id} is {} but not in its delayed set at {}",
                            r.state, r.time
                        ));
                    }
                }
                TaskState::Ready => {
                    if !view.ready_index.contains(&member) {
                        problems.push(format!("{id} is ready but not in its ready set"));
                    }
                    *live_ready.entry(r.queue.clone()).or_default() += 1;
                }
                TaskState::Dispatched | TaskState::Running => {
                    *active.entry(r.queue.clone()).or_default() += 1;
                    let w = r
                        .worker
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    let m = format!("{w}|{:012x}|{id}", r.token);
                    if !wtasks.contains(&m) {
                        problems.push(format!(
                            "{id} is {} on {w} but not among its tasks",
                            r.state
                        ));
                    }
                    expected_wtasks.insert(m);
                    match worker_records.get(&w) {
                        None => problems.push(format!("{id} is held by unregistered worker {w}")),
                        Some(wr) => {
                            let received = r.token <= wr.received_upto;
                            if received != (r.state == TaskState::Running) {
                                problems.push(format!(
                                    "{id} is {} with token {} but {w} has received up to {}",
                                    r.state, r.token, wr.received_upto
                                ));
                            }
                        }
                    }
                    if r.state == TaskState::Dispatched {
                        *inboxes.entry(w.clone()).or_default() += 1;
                    }
                    *held.entry(w).or_default() += 1;
                }
                TaskState::Succeeded
                | TaskState::Dead
                | TaskState::Cancelled
                | TaskState::Expired => {
                    if !view.done.contains(id) {
                        problems.push(format!("{id} is {} without a retention entry", r.state));
                    }
                    if r.state == TaskState::Dead
                        && !dead.contains(&format!("{}|{:012x}|{id}", r.queue, r.time))
                    {
                        problems.push(format!("{id} is dead but not in the dead set"));
                    }
                }
                // Checked against the parents index below (audit/flows.rs).
                TaskState::WaitingChildren => {}
                other => problems.push(format!(
                    "{id} is in a state this audit does not know: {other}"
                )),
            }
            *counts
                .entry((r.queue.to_string(), crate::protocol::state_code(r.state)))
                .or_default() += 1;
        }
        problems.extend(flows::problems(&tasks, &records, &parents, &settle));
        if let Some(extra) = wtasks.difference(&expected_wtasks).next() {
            problems.push(format!("worker task entry {extra} has no matching task"));
        }
        if dead.len()
            != records
                .values()
                .filter(|r| r.state == TaskState::Dead)
                .count()
        {
            problems.push("the dead set and the dead records disagree".into());
        }
        for (queue, view) in &queues {
            let count = |state: TaskState| {
                counts
                    .get(&(queue.to_string(), crate::protocol::state_code(state)))
                    .copied()
                    .unwrap_or(0)
            };
            let leased = i64::from(active.get(queue).copied().unwrap_or(0));
            if view.limit.is_some() && view.active_field.unwrap_or(0) != leased {
                problems.push(format!(
                    "{queue}: counts {:?} active tasks for its concurrency limit, {leased} are",
                    view.active_field
                ));
            }
            let live = live_ready.get(queue).copied().unwrap_or(0);
            if view.ready_len() != live {
                problems.push(format!(
                    "{queue}: {} ready entries, {live} ready tasks",
                    view.ready_len()
                ));
            }
            if let Some(shared) = &view.shared {
                shared.problems(queue, &records, &mut problems);
            }
            let scheduled = count(TaskState::Scheduled) + count(TaskState::RetryScheduled);
            if view.delayed.len() as i64 != scheduled {
                problems.push(format!(
                    "{queue}: {} delayed entries, {scheduled} scheduled tasks",
                    view.delayed.len()
                ));
            }
            let finished = count(TaskState::Succeeded)
                + count(TaskState::Dead)
                + count(TaskState::Cancelled)
                + count(TaskState::Expired);
            if view.done.len() as i64 != finished {
                problems.push(format!(
                    "{queue}: {} retention entries, {finished} finished tasks",
                    view.done.len()
                ));
            }
            if let Some((mark, Some(head))) = view.expiry
                && head < switchyard_core::MAX_RUN_AT_MS as f64
                && mark.is_none_or(|m| m as f64 > head)
            {
                problems.push(format!(
                    "{queue}: the earliest deadline waiting is {head}, after its expiry mark {mark:?}"
                ));
            }
            for state in [
                TaskState::RetryScheduled,
                TaskState::Cancelled,
                TaskState::Expired,
            ] {
                let stored: i64 = meta
                    .get(&format!(
                        "~n:{queue}:{}",
                        crate::protocol::state_code(state)
                    ))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if stored != count(state) {
                    problems.push(format!(
                        "{queue}: {state} count is {stored}, records say {}",
                        count(state)
                    ));
                }
            }
        }
        // Workers: capacity, heartbeat index, eligibility entries, work conservation.
        let mut eligible = BTreeSet::new();
        for (w, wr) in &worker_records {
            let inflight = held.get(w).copied().unwrap_or(0);
            if inflight > wr.capacity {
                problems.push(format!(
                    "{w} holds {inflight} tasks with capacity {}",
                    wr.capacity
                ));
            }
            if inflight != wr.inflight {
                problems.push(format!(
                    "{w} holds {inflight} tasks but its record counts {}",
                    wr.inflight
                ));
            }
            let inbox = inboxes.get(w).copied().unwrap_or(0);
            if inbox != wr.inbox {
                problems.push(format!(
                    "{w} has {inbox} tasks in its inbox but its record counts {}",
                    wr.inbox
                ));
            }
            if hb.get(w).copied() != Some(wr.expires as f64) {
                problems.push(format!("{w} has no heartbeat entry at its expiry"));
            }
            let free_slot = !wr.draining && inflight < wr.capacity;
            for (i, q) in wr.queues.iter().enumerate() {
                let Some(view) = queues.get(q) else {
                    problems.push(format!("{w} serves undeclared queue {q}"));
                    continue;
                };
                if view.pull {
                    continue;
                }
                // The entry the worker must have in the free set while it has a free slot
                // (see `settle` in lua/lib/workers.lua).
                let member = match wr.strategies.get(i).copied() {
                    Some(2) => {
                        let Some(state) = workers.get(&format!("{w}|{q}")) else {
                            problems.push(format!("{w} serves {q} without balancer state"));
                            continue;
                        };
                        let member = String::from_utf8_lossy(state.get(14..).unwrap_or_default())
                            .to_string();
                        if free_slot == member.is_empty() {
                            problems.push(format!(
                                "{w} in {q}: {inflight}/{} in flight but eligibility entry `{member}`",
                                wr.capacity
                            ));
                        }
                        member
                    }
                    Some(3) => format!(
                        "{q}|{:012x}|{}|{w}",
                        (u64::from(inflight) << 32) / u64::from(wr.capacity.max(1)),
                        wr.stamps.get(i).map_or("", String::as_str)
                    ),
                    _ => format!("{q}|{w}"),
                };
                if free_slot && !member.is_empty() {
                    if !free.contains(&member) {
                        problems.push(format!(
                            "{w} in {q}: entry `{member}` missing from the free set"
                        ));
                    }
                    eligible.insert(member);
                }
                let count = active.get(q).copied().unwrap_or(0);
                if free_slot
                    && !view.paused
                    && !view.marked
                    && !concurrency::held(count, view.limit)
                    && view.has_next()
                {
                    problems.push(format!(
                        "{q} has {} ready tasks while {w} has a free slot",
                        view.ready_len()
                    ));
                }
            }
        }
        for member in &free {
            let parked = queues
                .iter()
                .any(|(q, view)| view.pull && member.starts_with(&format!("{q}|")));
            if !parked && !eligible.contains(member) {
                problems.push(format!(
                    "free entry `{member}` belongs to no eligible worker"
                ));
            }
        }
        for w in hb.keys() {
            if !worker_records.contains_key(w) {
                problems.push(format!("heartbeat entry of unregistered worker {w}"));
            }
        }
        problems.extend(self.schedule_problems().await?);
        Ok(problems)
    }

    /// Every schedule decodes, and the due set holds exactly the unpaused ones that have a next
    /// tick, under that tick (`lua/lib/schedules.lua`).
    async fn schedule_problems(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let want: BTreeMap<String, u64> = self
            .schedules()
            .await?
            .into_iter()
            .filter(|s| !s.state.paused)
            .filter_map(|s| Some((s.spec.name.to_string(), s.state.next?)))
            .collect();
        let due: BTreeMap<String, u64> = self.schedule_due_entries().await?.into_iter().collect();
        if due != want {
            problems.push(format!("schedule due set {due:?}, expected {want:?}"));
        }
        Ok(problems)
    }
}
