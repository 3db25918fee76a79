//! Queue administration across partitions (rules in `switchyard_core::admin`) and [`Queues`]
//! on a partitioned namespace: each partition holds its share of every queue, so each operation
//! runs on all of them (a group's weight and own limits too: the group lives in one partition,
//! which uses them; the groups of each partition are listed one after the other).

use async_trait::async_trait;
use switchyard_core::admin::{Purge, PurgeReport};
use switchyard_core::prelude::*;
use switchyard_core::{Assignment, Error, QueueConfig, QueueName, Result};

use super::Partitioned;

impl Partitioned {
    /// Up to `limit` in all: partition after partition, each with what is left of the budget.
    pub(super) async fn purge_parts(
        &self,
        queue: &QueueName,
        what: Purge,
        limit: usize,
    ) -> Result<PurgeReport> {
        let mut total = PurgeReport::default();
        for b in &self.parts {
            let left = limit.saturating_sub(usize::try_from(total.removed).unwrap_or(usize::MAX));
            let r = b.purge_queue(queue, what, left).await?;
            total.removed += r.removed;
            total.more |= r.more;
        }
        Ok(total)
    }

    /// Partition after partition; when one refuses, the ones already changed are changed back
    /// (so that all keep one configuration) and the refusal is returned.
    pub(super) async fn reconfigure_parts(
        &self,
        queue: &QueueName,
        config: QueueConfig,
    ) -> Result<bool> {
        let Some(old) = self.parts[0].queue_config(queue).await? else {
            return Err(Error::UnknownQueue(queue.clone()));
        };
        let mut changed = false;
        for (i, b) in self.parts.iter().enumerate() {
            match b.reconfigure_queue(queue, config).await {
                Ok(c) => changed |= c,
                Err(e) => {
                    for done in &self.parts[..i] {
                        if let Err(back) = done.reconfigure_queue(queue, old).await {
                            tracing::warn!(
                                %queue,
                                "partition refused to take its configuration back ({back}); \
                                 run the change again when the queue allows it"
                            );
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(changed)
    }

    /// Checks every partition first (one `stats` each), then deletes partition after
    /// partition.
    pub(super) async fn delete_parts(&self, queue: &QueueName) -> Result<()> {
        for b in &self.parts {
            let stats = b.stats().await?;
            let busy = stats
                .queues
                .iter()
                .any(|q| q.queue.as_ref() == Some(queue) && q.total() > 0)
                || stats.workers.iter().any(|w| w.queues.contains(queue));
            if busy {
                // Let the partition say why, in the words every backend uses.
                return b.delete_queue(queue).await;
            }
        }
        for b in &self.parts {
            b.delete_queue(queue).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Queues for Partitioned {
    async fn declare_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<()> {
        for b in &self.parts {
            b.declare_queue(queue, config).await?;
        }
        Ok(())
    }

    /// Every partition holds the same declarations: the first that answers says.
    async fn queue_config(&self, queue: &QueueName) -> Result<Option<QueueConfig>> {
        let mut order = self.all();
        order.sort_by_key(|p| !self.health.usable(*p));
        let mut failure = None;
        for p in order {
            let r = self.part(p).queue_config(queue).await;
            self.health.record(p, self.part(p), &r);
            match r {
                Err(e) if e.is_transient() => {
                    failure.get_or_insert(e);
                }
                other => return other,
            }
        }
        Err(failure.unwrap_or_else(|| self.unreachable_error(&[])))
    }

    /// Every partition of the queue, one after the other (a resume dispatches in each).
    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<Vec<Assignment>> {
        let mut all = Vec::new();
        for b in &self.parts {
            all.extend(b.set_paused(queue, paused).await?);
        }
        Ok(all)
    }

    async fn purge_queue(
        &self,
        queue: &QueueName,
        what: Purge,
        limit: usize,
    ) -> Result<PurgeReport> {
        self.purge_parts(queue, what, limit).await
    }

    async fn reconfigure_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<bool> {
        self.reconfigure_parts(queue, config).await
    }

    async fn delete_queue(&self, queue: &QueueName) -> Result<()> {
        self.delete_parts(queue).await
    }

    /// Every partition of the queue (each shares its own tasks between their groups).
    async fn set_group_weight(&self, queue: &QueueName, key: &str, weight: u32) -> Result<()> {
        for b in &self.parts {
            b.set_group_weight(queue, key, weight).await?;
        }
        Ok(())
    }

    /// Every partition of the queue (a group lives in one partition, but which one is the
    /// router's to say: the limits go to all, and only the group's own partition uses them).
    async fn set_group_limits(
        &self,
        queue: &QueueName,
        key: &str,
        limits: switchyard_core::flow::groups::GroupLimits,
    ) -> Result<()> {
        for b in &self.parts {
            b.set_group_limits(queue, key, limits).await?;
        }
        Ok(())
    }

    /// The groups of every partition, one after the other.
    async fn groups(
        &self,
        queue: &QueueName,
    ) -> Result<Vec<switchyard_core::flow::groups::GroupInfo>> {
        let mut all = Vec::new();
        for b in &self.parts {
            all.extend(b.groups(queue).await?);
        }
        Ok(all)
    }
}
