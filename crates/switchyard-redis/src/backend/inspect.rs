//! [`Inspect`] on Redis: stats, peek, the event log, learned costs.

use std::collections::HashMap;

use async_trait::async_trait;
use switchyard_core::{Error, Event, Inspect, QueueName, Result, Stats, TaskId, TaskKind};

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
