//! [`Maintain`] on Redis: reaping, promotion, retention, and sleeping until due.

use std::time::Duration;

use async_trait::async_trait;
use switchyard_core::backend::due_pause;
use switchyard_core::{Maintain, MaintenanceReport, Result, WorkerId};

use super::{RedisBackend, verified};
use crate::error::{Failure, map_redis};
use crate::{codec, keys};

#[async_trait]
impl Maintain for RedisBackend {
    async fn until_due(&self) -> Result<Option<Duration>> {
        let names = self.queue_names().await?;
        let mut pipe = redis::pipe();
        for q in &names {
            let [state, _, delayed, .., gwake] = self.inner.keys.queue_group(q);
            // The first due delayed task, and the first group mark (lib/group_limits.lua).
            for first in [delayed, gwake] {
                pipe.cmd("ZRANGE")
                    .arg(first)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES");
            }
            // The time a queue closed by its rate limit or hold opens again (lib/rate.lua),
            // and the expiry mark of one that expires late tasks (lib/deadline.lua).
            pipe.cmd("HMGET").arg(state).arg("t").arg("xm");
        }
        // The first schedule tick, the first flow settle entry, then the first heartbeat expiry
        // (last: see `due` below).
        let [_, schedules_due] = self.inner.keys.schedules();
        for first in [schedules_due.as_str(), self.inner.keys.fixed(keys::SETTLE)] {
            pipe.cmd("ZRANGE")
                .arg(first)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
        }
        pipe.cmd("ZRANGE")
            .arg(self.inner.keys.fixed(keys::HB))
            .arg(0)
            .arg(0)
            .arg("WITHSCORES");
        fn decode<T: redis::FromRedisValue>(v: redis::Value) -> Result<T> {
            redis::from_redis_value(v).map_err(|e| map_redis(&e.into()))
        }
        let mut firsts: Vec<Vec<(String, f64)>> = Vec::new();
        let mut wakes: Vec<u64> = Vec::new();
        let mut expiring = Vec::new();
        let replies: Vec<redis::Value> = self.query_pipe(&pipe).await?;
        for (i, v) in replies.into_iter().enumerate() {
            if i % 3 == 2 && i < 3 * names.len() {
                let (wake, mark): (Option<u64>, Option<u64>) = decode(v)?;
                wakes.extend(wake);
                if mark.is_some() {
                    expiring.push(&names[i / 3]);
                }
            } else {
                firsts.push(decode(v)?);
            }
        }
        // The earliest deadline at the head of each queue that expires late tasks: the ready
        // set of such a queue is scored by deadline (no deadline: MAX_RUN_AT_MS).
        if !expiring.is_empty() {
            let mut pipe = redis::pipe();
            for q in &expiring {
                let [_, ready, ..] = self.inner.keys.queue_group(q);
                pipe.cmd("ZRANGE")
                    .arg(ready)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES");
            }
            let heads: Vec<Vec<(String, f64)>> = self.query_pipe(&pipe).await?;
            wakes.extend(
                heads
                    .iter()
                    .filter_map(|h| h.first())
                    .map(|(_, at)| *at as u64)
                    .filter(|at| *at < switchyard_core::MAX_RUN_AT_MS),
            );
        }
        let n = firsts.len();
        let due = firsts
            .into_iter()
            .enumerate()
            .filter_map(|(i, first)| {
                // Heartbeat expiries are due one millisecond later (reaping needs expiry < now).
                first
                    .first()
                    .map(|(_, at)| *at as u64 + u64::from(i + 1 == n))
            })
            .chain(wakes)
            .min();
        let Some(due) = due else {
            return Ok(None);
        };
        let now = self.now_ms().await?;
        Ok(Some(Duration::from_millis(due.saturating_sub(now))))
    }

    /// Waits on the shared subscription for `sy:{ns}:due` (a delayed task became the first of
    /// its queue), so a maintenance loop learns of new due times without polling. Without the
    /// subscription (it cannot start, or its connection was lost during this call) it sleeps
    /// until the due time it knows of.
    async fn sleep_until_due(&self, at_most: Duration) -> Result<()> {
        let channel = self.inner.keys.due_channel();
        let deadline = tokio::time::Instant::now() + at_most;
        let mut wake_at = deadline;
        let mut listening = true;
        loop {
            // Listen first, then ask, so that a due time moved after the ask is not missed.
            let mut registration = if listening {
                match self.registration(&channel).await {
                    Ok(registration) => Some(registration),
                    Err(e) => {
                        tracing::debug!("no due-time subscription: {e}");
                        None
                    }
                }
            } else {
                None
            };
            let until_due = self.until_due().await?;
            let now = tokio::time::Instant::now();
            let Some(pause) = due_pause(until_due, deadline.saturating_duration_since(now)) else {
                return Ok(());
            };
            // Never later than an earlier pass promised: a stream of announcements must not
            // keep pushing a due wake-up back.
            wake_at = wake_at.min(now + pause);
            let Some(registration) = registration.as_mut() else {
                tokio::time::sleep_until(wake_at).await;
                return Ok(());
            };
            tokio::select! {
                moved = registration.announced() => listening = moved.is_ok(),
                _ = tokio::time::sleep_until(wake_at) => return Ok(()),
            }
        }
    }

    async fn maintain(&self, limit: usize) -> Result<MaintenanceReport> {
        let limit = limit.min(1_000_000);
        // The instant that decides which heartbeats expired. Each call then runs at its own
        // time (`now_arg`: the configured clock's, or the server's own inside the script), so
        // that no call carries a time older than a call the server already ran: rate limits
        // count dispatches by those times. On a manual clock every call has this instant, as
        // in the memory backend.
        let now = self.now_ms().await?;
        let now_arg = self.now_arg();
        let mut report = MaintenanceReport::default();
        // 1. Workers whose heartbeat expired.
        let due_workers: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.inner.keys.fixed(keys::HB))
                    .arg("-inf")
                    .arg(format!("({now}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        for w in due_workers {
            let worker = WorkerId::new(w)?;
            let now_arg = &now_arg;
            let worker = &worker;
            // `None`: the worker was gone already, or was not reaped (it heartbeat again).
            let back = verified("reap", |_| async move {
                let Some(queues) = self.queues_of(worker, true).await? else {
                    return Ok(None);
                };
                // Instance 0: maintenance acts on the worker, whichever instance it is.
                let reap = &self.functions().reap_worker;
                let inv = self.worker_call(reap, worker, 0, &queues, now_arg);
                Ok(codec::reaped(self.exec(&inv).await?)?)
            })
            .await?;
            if let Some(back) = back {
                report.tasks_returned += back.returned.len();
                report.assignments.extend(back.assignments);
                report.workers_reaped.push(worker.clone());
                self.forget_worker(worker);
            }
        }
        report.more |= self.any_below(keys::HB, now).await?;
        // 2. Due delayed tasks, queue by queue in name order.
        let names = self.queue_names().await?;
        let mut budget = limit;
        for queue in &names {
            let mut inv = self.invocation(&self.functions().promote, &[queue], &now_arg);
            inv.arg(queue.as_str()).arg(budget);
            let v = self.exec(&inv).await.map_err(Failure::into_error)?;
            let (n, more, expired, assignments) = codec::promoted(v)?;
            report.more |= more;
            report.promoted += n;
            report.tasks_expired += expired;
            budget -= (n + expired).min(budget);
            report.assignments.extend(assignments);
        }
        // 3. Due schedule ticks (backend/schedules.rs), then due flow settle entries
        //    (backend/flows.rs).
        self.tick_schedules(limit, now, &mut report).await?;
        self.settle_due(limit, now, &now_arg, &mut report).await?;
        // 4. Finished records past their retention, queue by queue in name order (and expired
        //    dedup keys along with the first queue).
        let mut budget = limit;
        for (i, queue) in names.iter().enumerate() {
            let mut inv = self.invocation(&self.functions().purge, &[queue], &now_arg);
            inv.arg(queue.as_str()).arg(budget).arg(u8::from(i == 0));
            let v = self.exec(&inv).await.map_err(Failure::into_error)?;
            let (n, more) = codec::purged(v)?;
            report.records_purged += n;
            budget -= n.min(budget);
            report.more |= more;
        }
        Ok(report)
    }
}

impl RedisBackend {
    /// Whether a sorted set has a member scored below `now`.
    pub(super) async fn any_below(&self, role: usize, now: u64) -> Result<bool> {
        let max = format!("({now}");
        let found: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.inner.keys.fixed(role))
                    .arg("-inf")
                    .arg(max)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1),
            )
            .await?;
        Ok(!found.is_empty())
    }
}
