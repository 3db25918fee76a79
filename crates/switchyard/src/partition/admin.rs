//! Queue administration across partitions (rules in `switchyard_core::admin`): each partition
//! holds its share of every queue, so each operation runs on all of them.

use switchyard_core::admin::{Purge, PurgeReport};
use switchyard_core::{Error, QueueConfig, QueueName, Result};

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
