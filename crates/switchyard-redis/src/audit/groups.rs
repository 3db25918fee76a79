//! The audit of a queue shared between groups (`lua/lib/groups.lua`): its groups mirror its
//! ready set, its ring holds exactly the open groups (below their limit — their own where set —
//! and not marked) with ready tasks (each once), and its active and scheduled counts match the
//! records.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redis::AsyncCommands;
use switchyard_core::flow::concurrency::held;
use switchyard_core::{QueueName, Result};
use switchyard_topology::Connection;

use crate::codec::Record;
use crate::error::map_redis;

/// The policy keys' offset in a gready member (`OFFSET` in `lua/lib/groups.lua`).
const OFFSET: f64 = 4_503_599_627_370_496.0; // 2^52

/// What the audit reads of a shared queue's groups.
pub(super) struct Shared {
    limit: Option<u32>,
    /// The ready set with its scores.
    scores: BTreeMap<String, f64>,
    gready: Vec<String>,
    ring: Vec<String>,
    fields: HashMap<String, String>,
    /// The marked groups (gwake).
    marked: BTreeSet<String>,
}

impl Shared {
    /// Reads the queue's groups; `keys` are its key group (`ready`, `groups`, `gready`,
    /// `gring` among them), `limit` its per-group concurrency limit.
    pub(super) async fn read(
        conn: &mut Connection,
        keys: &[String; 11],
        limit: Option<u32>,
    ) -> Result<Shared> {
        let e = |e: redis::RedisError| map_redis(&e);
        Ok(Shared {
            limit,
            scores: conn
                .zrange_withscores::<_, Vec<(String, f64)>>(&keys[1], 0, -1)
                .await
                .map_err(e)?
                .into_iter()
                .collect(),
            gready: conn.zrange(&keys[7], 0, -1).await.map_err(e)?,
            ring: conn.lrange(&keys[8], 0, -1).await.map_err(e)?,
            fields: conn.hgetall(&keys[6]).await.map_err(e)?,
            marked: conn
                .zrange::<_, Vec<String>>(&keys[10], 0, -1)
                .await
                .map_err(e)?
                .into_iter()
                .collect(),
        })
    }

    /// Whether the queue has a task to dispatch (its ring holds a group): work conservation
    /// applies to it.
    pub(super) fn has_next(&self) -> bool {
        !self.ring.is_empty()
    }

    /// The problems of queue `queue`, whose task records are `records`.
    pub(super) fn problems(
        &self,
        queue: &QueueName,
        records: &HashMap<String, Record>,
        out: &mut Vec<String>,
    ) {
        let mut ready: BTreeMap<String, u64> = BTreeMap::new();
        let mut active: BTreeMap<String, u32> = BTreeMap::new();
        let mut scheduled: BTreeMap<String, u64> = BTreeMap::new();
        let mut expected = BTreeSet::new();
        for (id, r) in records.iter().filter(|(_, r)| &r.queue == queue) {
            let group = r.group.clone().unwrap_or_default();
            if r.state.is_leased() {
                *active.entry(group).or_default() += 1;
            } else if matches!(
                r.state,
                switchyard_core::TaskState::Scheduled | switchyard_core::TaskState::RetryScheduled
            ) {
                *scheduled.entry(group).or_default() += 1;
            } else if r.state == switchyard_core::TaskState::Ready {
                let member = format!("{:012x}{id}", r.pos);
                match self.scores.get(&member) {
                    Some(score) => {
                        expected
                            .insert(format!("{group}\0{:014x}{member}", (score + OFFSET) as u64));
                    }
                    None => out.push(format!("{queue}: ready {id} is not in the ready set")),
                }
                *ready.entry(group).or_default() += 1;
            }
        }
        let gready: BTreeSet<String> = self.gready.iter().cloned().collect();
        if gready != expected || self.gready.len() != self.scores.len() {
            let extra: Vec<_> = gready.difference(&expected).take(3).collect();
            let missing: Vec<_> = expected.difference(&gready).take(3).collect();
            out.push(format!(
                "{queue}: the groups' ready entries differ from the ready tasks (extra {extra:?}, missing {missing:?}; {} entries, {} ready)",
                self.gready.len(),
                self.scores.len()
            ));
        }
        let count = |g: &str| active.get(g).copied().unwrap_or(0);
        // A group's own concurrency limit (`k:<group>`, set_group_limits) in place of the queue's.
        let limit = |g: &str| {
            self.fields
                .get(&format!("k:{g}"))
                .and_then(|k| k.parse::<u32>().ok())
                .filter(|k| *k > 0)
                .or(self.limit)
        };
        let open: BTreeSet<&String> = ready
            .keys()
            .filter(|g| !held(count(g), limit(g)) && !self.marked.contains(*g))
            .collect();
        let ring: BTreeSet<&String> = self.ring.iter().collect();
        if ring != open || ring.len() != self.ring.len() {
            out.push(format!(
                "{queue}: the ring holds {:?}, the open groups with ready tasks are {open:?}",
                self.ring
            ));
        }
        let stored: BTreeMap<String, u32> = self
            .fields
            .iter()
            .filter_map(|(f, v)| Some((f.strip_prefix("a:")?.to_owned(), v.parse().ok()?)))
            .collect();
        if stored != active {
            out.push(format!(
                "{queue}: groups count {stored:?} active, the records say {active:?}"
            ));
        }
        let delayed: BTreeMap<String, u64> = self
            .fields
            .iter()
            .filter_map(|(f, v)| Some((f.strip_prefix("d:")?.to_owned(), v.parse().ok()?)))
            .collect();
        if delayed != scheduled {
            out.push(format!(
                "{queue}: groups count {delayed:?} scheduled, the records say {scheduled:?}"
            ));
        }
    }
}
