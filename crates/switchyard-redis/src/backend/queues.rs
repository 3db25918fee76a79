//! [`Queues`] on Redis: declare, configuration, pause; purge, reconfigure and delete are in
//! the `admin` module.

use async_trait::async_trait;
use switchyard_core::admin::{Purge, PurgeReport};
use switchyard_core::flow::groups;
use switchyard_core::{Assignment, Error, QueueConfig, QueueName, Queues, Result};

use super::{RedisBackend, admin};
use crate::codec::{array, assignments};
use crate::error::Failure;
use crate::{codec, keys};

#[async_trait]
impl Queues for RedisBackend {
    async fn declare_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<()> {
        config.validate()?;
        let json = codec::config_json(&config)?;
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().declare, &[queue], &now);
        inv.arg(queue.as_str()).arg(&json);
        admin::push_config(&mut inv, &config);
        match self.exec_durable(&inv).await {
            Ok(_) => {
                self.mark_born().await;
                Ok(())
            }
            Err(Failure::Conflict(existing)) => {
                let existing = codec::config_from_json(existing.as_bytes())?;
                if existing == config {
                    // The same configuration in another spelling (stored by another version).
                    return Ok(());
                }
                Err(Error::QueueConflict {
                    queue: queue.clone(),
                    detail: existing.diff(&config),
                })
            }
            Err(f) => Err(f.into_error()),
        }
    }

    async fn queue_config(&self, queue: &QueueName) -> Result<Option<QueueConfig>> {
        let raw: Option<Vec<u8>> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.inner.keys.fixed(keys::META))
                    .arg(queue.as_str()),
            )
            .await?;
        raw.map(|b| codec::config_from_json(&b)).transpose()
    }

    async fn set_paused(&self, queue: &QueueName, paused: bool) -> Result<Vec<Assignment>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().pause, &[queue], &now);
        inv.arg(queue.as_str()).arg(u8::from(paused));
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        assignments(&mut array(v)?.into_iter(), None)
    }

    async fn purge_queue(
        &self,
        queue: &QueueName,
        what: Purge,
        limit: usize,
    ) -> Result<PurgeReport> {
        self.purge_queue_now(queue, what, limit).await
    }

    async fn reconfigure_queue(&self, queue: &QueueName, config: QueueConfig) -> Result<bool> {
        self.reconfigure_queue_now(queue, config).await
    }

    async fn delete_queue(&self, queue: &QueueName) -> Result<()> {
        self.delete_queue_now(queue).await
    }

    async fn set_group_weight(&self, queue: &QueueName, key: &str, weight: u32) -> Result<()> {
        self.set_group_weight_now(queue, key, weight).await
    }

    async fn set_group_limits(
        &self,
        queue: &QueueName,
        key: &str,
        limits: groups::GroupLimits,
    ) -> Result<()> {
        self.set_group_limits_now(queue, key, limits).await
    }

    async fn groups(&self, queue: &QueueName) -> Result<Vec<groups::GroupInfo>> {
        self.groups_now(queue).await
    }
}
