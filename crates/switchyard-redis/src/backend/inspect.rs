//! [`Inspect`] on Redis: stats, peek, the task browser, the event log, learned costs, memory
//! per queue.

use std::collections::HashMap;

use async_trait::async_trait;
use switchyard_core::{
    BROWSE_SCAN, Browse, BrowseOrder, Error, Event, Inspect, QueueName, Result, Stats, TaskId,
    TaskKind, TaskPage,
};

use super::RedisBackend;
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
        inv.names(&groups);
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        let (queues, workers) = codec::stats(v)?;
        let warnings = self.replication().await.warning().into_iter().collect();
        let mut stats = Stats::new(queues, workers);
        stats.warnings = warnings;
        Ok(stats)
    }

    async fn peek_ready(&self, queue: &QueueName, limit: usize) -> Result<Vec<TaskId>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().peek, &[queue], &now);
        inv.arg(queue.as_str()).arg(limit.min(PEEK_MAX));
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        codec::task_ids(v)
    }

    async fn browse(&self, query: &Browse) -> Result<TaskPage> {
        query.validate()?;
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().browse, &[&query.queue], &now);
        inv.arg(query.queue.as_str())
            .arg(crate::protocol::state_code(query.state))
            .arg(u8::from(query.order == BrowseOrder::Newest))
            .arg(query.limit)
            .arg(query.kind.as_ref().map_or("", |k| k.as_str()))
            .arg(query.id_prefix.as_deref().unwrap_or(""))
            .arg(query.cursor.as_deref().unwrap_or(""))
            .arg(BROWSE_SCAN);
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        Ok(codec::task_page(v)?)
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

    /// One `stats` read for the task counts, then one pipeline: `MEMORY USAGE` (sampled) of
    /// the task hash and the dead-letter set with their sizes, and of every key of each
    /// queue's group. A queue's share of a shared key is its count of entries times the key's
    /// average entry size.
    async fn memory(&self) -> Result<Vec<(QueueName, u64)>> {
        const SAMPLES: u32 = 20;
        let stats = self.stats().await?;
        let (tasks, dead) = (
            self.inner.keys.fixed(keys::TASKS),
            self.inner.keys.fixed(keys::DEAD),
        );
        let mut pipe = redis::pipe();
        pipe.cmd("MEMORY")
            .arg("USAGE")
            .arg(tasks)
            .arg("SAMPLES")
            .arg(SAMPLES);
        pipe.cmd("HLEN").arg(tasks);
        pipe.cmd("MEMORY")
            .arg("USAGE")
            .arg(dead)
            .arg("SAMPLES")
            .arg(SAMPLES);
        pipe.cmd("ZCARD").arg(dead);
        let names: Vec<&QueueName> = stats
            .queues
            .iter()
            .filter_map(|q| q.queue.as_ref())
            .collect();
        for q in &names {
            for key in self.inner.keys.queue_group(q) {
                pipe.cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .arg("SAMPLES")
                    .arg(SAMPLES);
            }
        }
        let sizes: Vec<Option<u64>> = self.query_pipe(&pipe).await?;
        let at = |i: usize| sizes.get(i).copied().flatten().unwrap_or(0);
        // Bytes per entry of a shared key (0 when it is empty).
        let per = |bytes: u64, entries: u64| bytes.checked_div(entries).unwrap_or(0);
        let (per_task, per_dead) = (per(at(0), at(1)), per(at(2), at(3)));
        let group = keys::GROUP.len();
        Ok(stats
            .queues
            .iter()
            .filter_map(|q| q.queue.clone().map(|name| (name, q)))
            .enumerate()
            .map(|(i, (name, q))| {
                let own: u64 = (0..group).map(|k| at(4 + i * group + k)).sum();
                (name, own + q.total() * per_task + q.dead * per_dead)
            })
            .collect())
    }
}
