//! A read-only consistency check of everything a namespace holds in Redis: every task record
//! sits in exactly the structures its state names, and nothing else is there. `O(n)` reads and
//! no writes; for tests and offline checks, not for a hot path.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redis::AsyncCommands;
use switchyard_core::{QueueName, Result, TaskState};

use crate::backend::RedisBackend;
use crate::codec::{self, Record};
use crate::error::map_redis;

fn hex12(n: u64) -> String {
    format!("{n:012x}")
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
        let leases = pairs(
            conn.zrange_withscores(key("leases"), 0, -1)
                .await
                .map_err(e)?,
        );
        let retain = pairs(
            conn.zrange_withscores(key("retain"), 0, -1)
                .await
                .map_err(e)?,
        );
        let dead: BTreeSet<String> = conn
            .zrange::<_, Vec<String>>(key("dead"), 0, -1)
            .await
            .map_err(e)?
            .into_iter()
            .collect();

        let mut problems = Vec::new();
        let mut queues: BTreeMap<QueueName, QueueView> = BTreeMap::new();
        for (name, json) in meta.iter().filter(|(k, _)| !k.starts_with('~')) {
            let queue = QueueName::new(name)?;
            let config = codec::config_from_json(json.as_bytes())?;
            let [state, ready, delayed, _ring] = self.queue_keys(&queue);
            let tomb: Option<i64> = conn.hget(&state, "tomb").await.map_err(e)?;
            let fcfs = config.policy == switchyard_core::Policy::Fcfs;
            let ready: Vec<String> = if fcfs {
                conn.lrange(&ready, 0, -1).await.map_err(e)?
            } else {
                conn.zrange(&ready, 0, -1).await.map_err(e)?
            };
            let delayed = pairs(conn.zrange_withscores(&delayed, 0, -1).await.map_err(e)?);
            queues.insert(
                queue,
                QueueView {
                    pull: !config.strategy.is_push(),
                    ready,
                    delayed,
                    tomb: if fcfs { tomb.unwrap_or(0) } else { 0 },
                },
            );
        }

        let mut records: HashMap<String, Record> = HashMap::new();
        for (id, raw) in &tasks {
            if id.starts_with("d:") {
                continue;
            }
            match codec::decode_record(raw) {
                Ok(r) => {
                    records.insert(id.clone(), r);
                }
                Err(err) => problems.push(format!("record {id} does not decode: {err}")),
            }
        }
        let mut counts: BTreeMap<(String, u8), i64> = BTreeMap::new();
        let mut held: BTreeMap<String, u32> = BTreeMap::new();
        let mut live_ready: BTreeMap<QueueName, usize> = BTreeMap::new();
        let mut expect_wtasks = BTreeSet::new();
        for (id, r) in &records {
            let Some(view) = queues.get(&r.queue) else {
                problems.push(format!("{id} is in undeclared queue {}", r.queue));
                continue;
            };
            let member = format!("{}{id}", hex12(r.pos));
            let leased = r.state.is_leased();
            if leased != r.worker.is_some() {
                problems.push(format!(
                    "{id} is {} but its worker field is {:?}",
                    r.state, r.worker
                ));
            }
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
                    if !view.ready.contains(&member) {
                        problems.push(format!("{id} is ready but not in its ready set"));
                    }
                    *live_ready.entry(r.queue.clone()).or_default() += 1;
                }
                TaskState::Dispatched | TaskState::Running => {
                    let w = r.worker.clone().map(|w| w.to_string()).unwrap_or_default();
                    let m = if r.state == TaskState::Dispatched {
                        format!("{w}|0{}|{id}", hex12(r.pos))
                    } else {
                        format!("{w}|1{id}")
                    };
                    if !wtasks.contains(&m) {
                        problems.push(format!(
                            "{id} is {} on {w} but not in its inbox/running set",
                            r.state
                        ));
                    }
                    expect_wtasks.insert(m);
                    if r.state == TaskState::Running
                        && leases.get(id).copied() != Some(r.time as f64)
                    {
                        problems.push(format!(
                            "{id} is running without a lease entry at {}",
                            r.time
                        ));
                    }
                    if !workers.contains_key(&w) {
                        problems.push(format!("{id} is held by unregistered worker {w}"));
                    }
                    *held.entry(w).or_default() += 1;
                }
                TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled => {
                    if !retain.contains_key(id) {
                        problems.push(format!("{id} is {} without a retention entry", r.state));
                    }
                    if r.state == TaskState::Dead
                        && !dead.contains(&format!("{}|{}|{id}", r.queue, hex12(r.time)))
                    {
                        problems.push(format!("{id} is dead but not in the dead set"));
                    }
                }
            }
            if matches!(
                r.state,
                TaskState::RetryScheduled
                    | TaskState::Succeeded
                    | TaskState::Dead
                    | TaskState::Cancelled
            ) {
                *counts
                    .entry((r.queue.to_string(), codec::state_code(r.state)))
                    .or_default() += 1;
            }
        }
        // Nothing in an index without a record in the matching state.
        if let Some(extra) = wtasks.difference(&expect_wtasks).next() {
            problems.push(format!("inbox/running entry {extra} has no matching task"));
        }
        for id in leases.keys() {
            if records
                .get(id)
                .is_none_or(|r| r.state != TaskState::Running)
            {
                problems.push(format!("lease entry {id} has no running task"));
            }
        }
        for id in retain.keys() {
            if records.get(id).is_none_or(|r| !r.state.is_terminal()) {
                problems.push(format!("retention entry {id} has no finished task"));
            }
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
            let live = live_ready.get(queue).copied().unwrap_or(0);
            let listed = view.ready_len();
            if listed != live as i64 {
                problems.push(format!(
                    "{queue}: {listed} ready entries, {live} ready tasks"
                ));
            }
            let scheduled = records
                .values()
                .filter(|r| {
                    &r.queue == queue
                        && matches!(r.state, TaskState::Scheduled | TaskState::RetryScheduled)
                })
                .count();
            if view.delayed.len() != scheduled {
                problems.push(format!(
                    "{queue}: {} delayed entries, {scheduled} scheduled tasks",
                    view.delayed.len()
                ));
            }
            for code in [4u8, 5, 6, 7] {
                let stored: i64 = meta
                    .get(&format!("~n:{queue}:{code}"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let actual = counts.get(&(queue.to_string(), code)).copied().unwrap_or(0);
                if stored != actual {
                    problems.push(format!(
                        "{queue}: count of state {code} is {stored}, records say {actual}"
                    ));
                }
            }
        }
        // Workers: capacity, heartbeat index, eligibility entries, work conservation.
        let mut eligible_members = BTreeSet::new();
        for (field, raw) in &workers {
            if let Some((w, q)) = field.split_once('|') {
                let Some(wraw) = workers.get(w) else {
                    problems.push(format!("balancer state {field} of an unregistered worker"));
                    continue;
                };
                let (cap, inflight) = (
                    u32::from(u16::from_be_bytes([wraw[0], wraw[1]])),
                    u32::from(u16::from_be_bytes([wraw[4], wraw[5]])),
                );
                let strategy = raw.first().copied().unwrap_or(0);
                let member = String::from_utf8_lossy(raw.get(21..).unwrap_or_default()).to_string();
                if strategy == 5 {
                    continue;
                }
                if (inflight < cap) == member.is_empty() {
                    problems.push(format!(
                        "{w} in {q}: {inflight}/{cap} in flight but eligibility entry `{member}`"
                    ));
                }
                if !member.is_empty() {
                    if !free.contains(&member) {
                        problems.push(format!(
                            "{w} in {q}: entry `{member}` missing from the free set"
                        ));
                    }
                    eligible_members.insert(member);
                    let queue = QueueName::new(q)?;
                    if let Some(view) = queues.get(&queue) {
                        let ready = view.ready_len();
                        if ready > 0 {
                            problems.push(format!(
                                "{q} has {ready} ready tasks while {w} has a free slot"
                            ));
                        }
                    }
                }
                continue;
            }
            let queues_of = match codec::worker_queues(raw) {
                Ok(q) => q,
                Err(err) => {
                    problems.push(format!("worker {field} does not decode: {err}"));
                    continue;
                }
            };
            let cap = u32::from(u16::from_be_bytes([raw[0], raw[1]]));
            let inflight = u32::from(u16::from_be_bytes([raw[4], raw[5]]));
            let holding = held.get(field).copied().unwrap_or(0);
            if inflight != holding || inflight > cap {
                problems.push(format!(
                    "{field}: {inflight} in flight of {cap}, holding {holding}"
                ));
            }
            if !hb.contains_key(field) {
                problems.push(format!("{field} has no heartbeat entry"));
            }
            for q in queues_of {
                if !workers.contains_key(&format!("{field}|{q}")) {
                    problems.push(format!("{field} serves {q} without balancer state"));
                }
            }
        }
        for member in &free {
            let parked = queues
                .iter()
                .any(|(q, view)| view.pull && member.starts_with(&format!("{q}|")));
            if !parked && !eligible_members.contains(member) {
                problems.push(format!(
                    "free entry `{member}` belongs to no eligible worker"
                ));
            }
        }
        for w in hb.keys() {
            if !workers.contains_key(w) {
                problems.push(format!("heartbeat entry of unregistered worker {w}"));
            }
        }
        Ok(problems)
    }
}

/// What the audit reads of one queue.
struct QueueView {
    pull: bool,
    /// Ready entries (an FCFS list may hold tombstones of cancelled tasks).
    ready: Vec<String>,
    delayed: BTreeMap<String, f64>,
    tomb: i64,
}

impl QueueView {
    fn ready_len(&self) -> i64 {
        self.ready.len() as i64 - self.tomb
    }
}
