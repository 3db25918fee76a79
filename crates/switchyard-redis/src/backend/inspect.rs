//! [`Inspect`] on Redis: stats, peek, the event log, learned costs.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use redis::Value;
use switchyard_core::{
    Error, Event, EventCounts, EventKind, Inspect, QueueName, QueueStats, Result, Stats, TaskId,
    TaskKind, WorkerId, WorkerStats,
};

use super::RedisBackend;
use crate::codec::{array, protocol, text, uint};
use crate::error::Failure;
use crate::{codec, keys};

/// Longest list a single peek returns.
const PEEK_MAX: usize = 1_000_000;

#[async_trait]
impl Inspect for RedisBackend {
    async fn stats(&self) -> Result<Stats> {
        let names = self.queue_names().await?;
        let groups: Vec<&QueueName> = names.iter().collect();
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().stats, &groups, &now);
        inv.arg(groups.len());
        for q in &groups {
            inv.arg(q.as_str());
        }
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        let mut parts = array(v)?.into_iter();
        let qs = array(parts.next().unwrap_or(Value::Nil))?;
        let ws = array(parts.next().unwrap_or(Value::Nil))?;
        let mut queues = Vec::new();
        for q in qs {
            let f = array(q)?;
            if f.len() < 17 {
                return Err(protocol("short queue stats"));
            }
            let n = |i: usize| uint(&f[i]);
            let mut totals = EventCounts::default();
            for (i, kind) in EventKind::ALL.into_iter().enumerate() {
                totals.add(kind, n(9 + i)?);
            }
            queues.push(QueueStats {
                queue: Some(QueueName::new(text(f[0].clone())?)?),
                scheduled: n(1)?,
                ready: n(2)?,
                dispatched: n(3)?,
                running: n(4)?,
                retry_scheduled: n(5)?,
                succeeded: n(6)?,
                dead: n(7)?,
                cancelled: n(8)?,
                totals,
                paused: n(16)? == 1,
            });
        }
        let mut workers = BTreeMap::new();
        for w in ws {
            let f = array(w)?;
            if f.len() < 9 {
                return Err(protocol("short worker stats"));
            }
            let id = WorkerId::new(text(f[0].clone())?)?;
            let queues = text(f[5].clone())?
                .split(',')
                .filter(|q| !q.is_empty())
                .map(QueueName::new)
                .collect::<Result<Vec<_>>>()?;
            let small = |i: usize| {
                u32::try_from(uint(&f[i])?).map_err(|_| protocol("worker field out of range"))
            };
            workers.insert(
                id.clone(),
                WorkerStats {
                    id,
                    capacity: small(1)?,
                    weight: small(2)?,
                    inflight: small(3)?,
                    draining: uint(&f[6])? == 1,
                    queues,
                    expires_at: uint(&f[4])?,
                    dispatched: uint(&f[7])?,
                    completed: uint(&f[8])?,
                },
            );
        }
        let warnings = self.replication().await.warning().into_iter().collect();
        Ok(Stats {
            warnings,
            queues,
            workers: workers.into_values().collect(),
        })
    }

    async fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().peek, &[queue], &now);
        inv.arg(queue.as_str()).arg(limit.min(PEEK_MAX));
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        array(v)?.into_iter().map(codec::task_id).collect()
    }

    async fn events(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        let start = match after {
            None => "-".to_owned(),
            Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
                format!("({a}")
            }
            Some(a) => {
                return Err(Error::invalid(
                    "event id",
                    format!("`{a}` is not a stream id"),
                ));
            }
        };
        let entries: Vec<(String, HashMap<String, Vec<u8>>)> = self
            .query(
                redis::cmd("XRANGE")
                    .arg(self.inner.keys.fixed(keys::EVENTS))
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit.clamp(1, 100_000)),
            )
            .await?;
        entries
            .into_iter()
            .map(|(id, fields)| codec::event(id, &fields))
            .collect()
    }

    async fn learned_cost(&self, queue: &QueueName, kind: &TaskKind) -> Result<Option<u32>> {
        let [state, ..] = self.inner.keys.queue_group(queue);
        let avg: Option<u64> = self
            .query(redis::cmd("HGET").arg(state).arg(format!("k:{kind}")))
            .await?;
        Ok(avg.map(|a| u32::try_from(a).unwrap_or(u32::MAX)))
    }
}
