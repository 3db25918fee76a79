//! Queue administration on Redis (rules in `switchyard_core::admin`; scripts
//! `lua/delete_task.lua`, `lua/purge_queue.lua`, `lua/reconfigure.lua`,
//! `lua/delete_queue.lua`). The [`Backend`](switchyard_core::Backend) impl calls these.

use crate::library::Call;
use switchyard_core::admin::{InUse, Purge, PurgeReport, Reshape};
use switchyard_core::flow::dedup::DedupMode;
use switchyard_core::flow::groups::GroupInfo;
use switchyard_core::rng::Minstd;
use switchyard_core::{Error, EventLevel, QueueConfig, QueueName, Result, TaskId};

use super::{RedisBackend, verified};
use crate::codec::{self, int};
use crate::error::Failure;
use crate::error::wrong_state;

/// Appends a queue configuration as declare and reconfigure take it (ARGV 4..30, after the
/// queue name and its JSON; the Lua side is `config_arg` in `lua/lib/admin.lua`).
pub(super) fn push_config(inv: &mut Call, config: &QueueConfig) {
    let (pol, mut age) = crate::protocol::policy_args(config.policy);
    if config.policy == switchyard_core::Policy::EarliestDeadlineFirst {
        // EDF's parameter: whether the queue expires late tasks (lib/deadline.lua).
        age = u32::from(config.expire_late);
    }
    let (strategy, vnodes) = crate::protocol::strategy_args(config.strategy);
    inv.arg(pol).arg(age).arg(strategy).arg(vnodes);
    inv.arg(config.default_cost_ms)
        .arg(config.max_attempts)
        .arg(config.timeout_ms);
    inv.arg(config.backoff.base_ms)
        .arg(config.backoff.max_ms)
        .arg(config.backoff.jitter_pct);
    inv.arg(config.result_ttl_ms)
        .arg(config.dead_ttl_ms)
        .arg(config.dedup_window_ms);
    inv.arg(Minstd::from_seed(config.seed).state())
        .arg(config.jitter_rng().state())
        .arg(match config.events {
            EventLevel::Off => 0,
            EventLevel::Failures => 1,
            EventLevel::All => 2,
            // A level this build does not know: the script refuses it as invalid.
            _ => u8::MAX,
        });
    inv.arg(config.max_waiting.unwrap_or(0))
        .arg(config.concurrency.unwrap_or(0));
    inv.arg(config.rate.map_or(0, |r| r.max))
        .arg(config.rate.map_or(0, |r| r.per_ms));
    inv.arg(config.keep_finished.map_or(-1, i64::from))
        .arg(config.keep_dead.map_or(-1, i64::from));
    inv.arg(match config.dedup_mode {
        DedupMode::Throttle => 0,
        DedupMode::Debounce => 1,
        // A mode this build does not know: the script refuses it as invalid.
        _ => u8::MAX,
    });
    // Not shared: -1; shared: the per-group limit (0: none).
    inv.arg(
        config
            .groups
            .map_or(-1, |g| i64::from(g.concurrency.unwrap_or(0))),
    );
    // The per-group rate limit and its window (both 0: none).
    let group_rate = config.groups.and_then(|g| g.rate);
    inv.arg(group_rate.map_or(0, |r| r.max))
        .arg(group_rate.map_or(0, |r| r.per_ms));
    // The bound per group (0: none).
    inv.arg(config.groups.and_then(|g| g.max_waiting).unwrap_or(0));
}

fn in_use(queue: &QueueName, operation: &'static str, reason: InUse) -> Error {
    Error::QueueInUse {
        queue: queue.clone(),
        operation,
        reason,
    }
}

impl RedisBackend {
    pub(super) async fn delete_task_now(&self, id: TaskId) -> Result<()> {
        verified("delete", |_| async move {
            let rec = self.record(id).await?.ok_or(Error::TaskNotFound(id))?;
            let now = self.now_arg();
            let mut inv = self.invocation(&self.functions().delete_task, &[&rec.queue], &now);
            inv.arg(id.to_string()).arg(rec.queue.as_str());
            self.exec_durable(&inv).await.map_err(|f| {
                wrong_state(
                    f,
                    id,
                    "delete (only finished tasks can be deleted: cancel it first)",
                )
            })?;
            Ok(())
        })
        .await
    }

    pub(super) async fn purge_queue_now(
        &self,
        queue: &QueueName,
        what: Purge,
        limit: usize,
    ) -> Result<PurgeReport> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().purge_queue, &[queue], &now);
        inv.arg(queue.as_str())
            .arg(what.code())
            .arg(limit.min(1_000_000));
        let v = self.exec_durable(&inv).await.map_err(Failure::into_error)?;
        codec::purge_report(v)
    }

    pub(super) async fn reconfigure_queue_now(
        &self,
        queue: &QueueName,
        config: QueueConfig,
    ) -> Result<bool> {
        config.validate()?;
        let json = codec::config_json(&config)?;
        let (json, config) = (&json, &config);
        verified("reconfigure", |_| async move {
            let raw: Option<Vec<u8>> = self
                .query(
                    redis::cmd("HGET")
                        .arg(self.inner.keys.fixed(crate::keys::META))
                        .arg(queue.as_str()),
                )
                .await?;
            let raw = raw.ok_or_else(|| Error::UnknownQueue(queue.clone()))?;
            let current = codec::config_from_json(&raw)?;
            let reshape = Reshape::between(&current, config);
            let now = self.now_arg();
            let mut inv = self.invocation(&self.functions().reconfigure, &[queue], &now);
            inv.arg(queue.as_str()).arg(json);
            push_config(&mut inv, config);
            inv.arg(raw)
                .arg(u8::from(reshape.order))
                .arg(u8::from(reshape.balancer))
                .arg(u8::from(reshape.groups));
            match self.exec_durable(&inv).await {
                Ok(v) => Ok(int(&v)? == 1),
                Err(Failure::Busy(reason)) => Err(in_use(queue, "reconfigured", reason).into()),
                Err(f) => Err(f),
            }
        })
        .await
    }

    pub(super) async fn set_group_weight_now(
        &self,
        queue: &QueueName,
        key: &str,
        weight: u32,
    ) -> Result<()> {
        switchyard_core::flow::groups::validate_weight(weight)?;
        switchyard_core::flow::groups::validate_key(key)?;
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().group_weight, &[queue], &now);
        inv.arg(queue.as_str()).arg(key).arg(weight);
        self.exec_durable(&inv).await.map_err(Failure::into_error)?;
        Ok(())
    }

    pub(super) async fn set_group_limits_now(
        &self,
        queue: &QueueName,
        key: &str,
        limits: switchyard_core::flow::groups::GroupLimits,
    ) -> Result<()> {
        limits.validate()?;
        switchyard_core::flow::groups::validate_key(key)?;
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().group_limits, &[queue], &now);
        inv.arg(queue.as_str())
            .arg(key)
            .arg(limits.concurrency.unwrap_or(0))
            .arg(limits.rate.map_or(0, |r| r.max))
            .arg(limits.rate.map_or(0, |r| r.per_ms));
        self.exec_durable(&inv).await.map_err(Failure::into_error)?;
        Ok(())
    }

    pub(super) async fn groups_now(&self, queue: &QueueName) -> Result<Vec<GroupInfo>> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().group_info, &[queue], &now);
        inv.arg(queue.as_str());
        let v = self.exec(&inv).await.map_err(Failure::into_error)?;
        codec::group_infos(v)
    }

    pub(super) async fn delete_queue_now(&self, queue: &QueueName) -> Result<()> {
        let now = self.now_arg();
        let mut inv = self.invocation(&self.functions().delete_queue, &[queue], &now);
        inv.arg(queue.as_str());
        match self.exec_durable(&inv).await {
            Ok(_) => Ok(()),
            Err(Failure::Busy(reason)) => Err(in_use(queue, "deleted", reason)),
            Err(f) => Err(f.into_error()),
        }
    }
}
