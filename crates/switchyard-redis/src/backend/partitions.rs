//! A namespace's partitions: each one a keyspace of its own on the same connections, and the
//! partition count every client of the namespace must agree on (stored with partition 0,
//! copied to the others so that a Cluster client finds it while partition 0's node is down).

use switchyard_core::{Error, Result};

use super::RedisBackend;
use crate::codec::protocol;
use crate::keys::{self, Keyspace};

/// The field of every partition's `meta` hash that holds the namespace's partition count
/// (partition 0's decides; the others hold copies).
const PARTITIONS_FIELD: &str = "~partitions";

/// How many partitions' copies of the count a client on a Cluster reads when it connects, so
/// that it finds the count while partition 0's node is down.
const COUNT_COPIES_READ: u16 = 16;

impl RedisBackend {
    /// Partition `index` of this backend's namespace (partition 0 is the namespace itself),
    /// on the same connections: its keys carry the hash tag `{<namespace>/<index>}`, so on a
    /// Cluster it has a slot of its own. See `switchyard::partition`.
    pub fn partition(&self, index: u16) -> Result<RedisBackend> {
        let keys = Keyspace::partition(&self.inner.config.namespace, index)?;
        Ok(Self::on(
            self.inner.topology.clone(),
            self.inner.config.clone(),
            keys,
        ))
    }

    /// How many partitions the namespace was declared with (`None`: never partitioned), as
    /// partition 0 holds it. On a Cluster whose node of partition 0 is down, the copy of any
    /// other partition that answers is taken (every partition holds one; see
    /// [`claim_partition_count`](Self::claim_partition_count)).
    pub async fn partition_count(&self) -> Result<Option<u16>> {
        if !self.inner.topology.is_cluster() {
            return self.stored_partition_count().await;
        }
        // Partition 0 first; copies from partitions 1 to 15 if it does not answer.
        let mut reads: futures_util::stream::FuturesUnordered<_> = (0..COUNT_COPIES_READ)
            .map(|p| async move {
                let read = match p {
                    0 => self.stored_partition_count().await,
                    _ => match self.partition(p) {
                        Ok(b) => b.stored_partition_count().await,
                        Err(e) => Err(e),
                    },
                };
                (p, read)
            })
            .collect();
        let mut failure = None;
        while let Some((p, read)) = futures_util::StreamExt::next(&mut reads).await {
            match read {
                Ok(count) if p == 0 => return Ok(count),
                Ok(Some(count)) => return Ok(Some(count)),
                Ok(None) => {}
                Err(e) if p == 0 => failure = Some(e),
                Err(_) => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// The count as this backend's partition holds it.
    async fn stored_partition_count(&self) -> Result<Option<u16>> {
        let stored: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.inner.keys.fixed(keys::META))
                    .arg(PARTITIONS_FIELD),
            )
            .await?;
        stored
            .map(|s| {
                s.parse()
                    .map_err(|_| protocol(format!("partition count `{s}` is not a number")))
            })
            .transpose()
    }

    /// Records that the namespace has `count` partitions, unless it already has a count;
    /// returns the count stored, and (for a `count` above 1) copies it to every partition, so
    /// that a client finds it while partition 0 is down. Refused for a namespace that already holds tasks without a
    /// count (their ids would not name their partitions).
    pub async fn claim_partition_count(&self, count: u16) -> Result<u16> {
        if let Some(stored) = self.partition_count().await? {
            // A client that names the count (as `--partitions` does) refreshes the copies; one
            // that only takes what is there does not.
            if count > 1 {
                self.copy_partition_count(stored).await;
            }
            return Ok(stored);
        }
        let tasks: u64 = self
            .query(redis::cmd("HLEN").arg(self.inner.keys.fixed(keys::TASKS)))
            .await?;
        if tasks > 0 && count > 1 {
            return Err(Error::invalid(
                "partitions",
                format!(
                    "namespace `{}` already holds {tasks} tasks without partitions: partition \
                     a new namespace",
                    self.inner.config.namespace
                ),
            ));
        }
        let _: bool = self
            .query(
                redis::cmd("HSETNX")
                    .arg(self.inner.keys.fixed(keys::META))
                    .arg(PARTITIONS_FIELD)
                    .arg(count),
            )
            .await?;
        let stored = self.partition_count().await?.unwrap_or(count);
        self.copy_partition_count(stored).await;
        Ok(stored)
    }

    /// Writes the count into partitions 1 to `count - 1` where it is missing (best effort: a
    /// partition that does not answer gets it from the next client that claims the count).
    async fn copy_partition_count(&self, count: u16) {
        let copies = (1..count).map(|p| async move {
            let part = self.partition(p)?;
            let stored = part.stored_partition_count().await?;
            if stored.is_none() {
                let _: bool = part
                    .query(
                        redis::cmd("HSETNX")
                            .arg(part.inner.keys.fixed(keys::META))
                            .arg(PARTITIONS_FIELD)
                            .arg(count),
                    )
                    .await?;
            }
            Ok::<_, Error>(())
        });
        for (p, copied) in futures_util::future::join_all(copies)
            .await
            .iter()
            .enumerate()
        {
            if let Err(e) = copied {
                tracing::debug!(
                    partition = p + 1,
                    "cannot copy the partition count yet: {e}"
                );
            }
        }
    }
}
