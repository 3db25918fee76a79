//! [`Membership`] on Redis: register, heartbeat, drain, deregister.

use std::sync::Arc;

use async_trait::async_trait;
use redis::Value;
use switchyard_core::{
    HandBack, HeartbeatReply, Membership, QueueName, RegisterOutcome, Result, TaskId, WorkerRef,
    WorkerSpec,
};

use super::replies::hand_back_from;
use super::{RedisBackend, verified};
use crate::codec;
use crate::codec::{array, assignments, protocol, uint};

#[async_trait]
impl Membership for RedisBackend {
    async fn register_worker(&self, spec: WorkerSpec) -> Result<RegisterOutcome> {
        spec.validate()?;
        // Kept tasks belonged to the registration this one replaces.
        self.unstash(spec.id(), usize::MAX);
        self.renew_waiting(spec.id());
        let registered = verified("register", |_| async {
            let old = self.queues_of(spec.id(), true).await?;
            let mut groups: Vec<&QueueName> = spec.queues().iter().collect();
            if let Some(old) = &old {
                for q in old.iter() {
                    if !groups.contains(&q) {
                        groups.push(q);
                    }
                }
            }
            let now = self.now_arg();
            let mut inv = self.invocation(&self.functions().register, &groups, &now);
            inv.arg(spec.id().as_str())
                .arg(spec.get_capacity())
                .arg(spec.get_weight())
                .arg(spec.heartbeat_ttl_ms())
                .arg(spec.get_instance().get());
            inv.arg(spec.queues().len()).arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            let v = self.exec(&inv).await?;
            if let Ok(mut cache) = self.inner.worker_queues.write() {
                cache.insert(spec.id().clone(), Arc::new(spec.queues().to_vec()));
            }
            let mut it = array(v)?.into_iter();
            let replaced = uint(&it.next().ok_or_else(|| protocol("empty register reply"))?)? == 1;
            Ok(RegisterOutcome {
                replaced,
                assignments: assignments(&mut it, None)?,
            })
        })
        .await;
        match registered {
            Ok(out) => {
                self.renew_waiting(spec.id());
                Ok(out)
            }
            Err(e) => Err(self.explained(e).await),
        }
    }

    /// Behind Sentinels, also looks whether the primary moved (see
    /// `Topology::check_primary`), beside the heartbeat: a worker follows a failover within a
    /// heartbeat even if it missed the Sentinels' announcement.
    async fn heartbeat(&self, me: &WorkerRef) -> Result<HeartbeatReply> {
        let (reply, ()) =
            tokio::join!(self.heartbeat_call(me), self.inner.topology.check_primary());
        reply
    }

    async fn drain_worker(&self, me: &WorkerRef) -> Result<HandBack> {
        let worker = &me.id;
        self.renew_waiting(worker);
        verified("drain", |attempt| async move {
            let queues = self.worker_queues(worker, attempt).await?;
            let groups: Vec<&QueueName> = queues.iter().collect();
            let now = self.now_arg();
            let mut inv = self.invocation(&self.functions().drain, &groups, &now);
            inv.arg(worker.as_str())
                .arg(me.instance.get())
                .arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            Ok(hand_back_from(self.exec(&inv).await?)?)
        })
        .await
        .inspect(|_| self.renew_waiting(worker))
    }

    async fn deregister_worker(&self, me: &WorkerRef) -> Result<HandBack> {
        let worker = &me.id;
        // Stashed tasks are leased to the worker: the deregistration hands them back.
        self.unstash(worker, usize::MAX);
        self.renew_waiting(worker);
        verified("deregister", |attempt| async move {
            let queues = self.worker_queues(worker, attempt).await?;
            let groups: Vec<&QueueName> = queues.iter().collect();
            let now = self.now_arg();
            let mut inv = self.invocation(&self.functions().deregister, &groups, &now);
            inv.arg(worker.as_str())
                .arg(me.instance.get())
                .arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            let v = self.exec(&inv).await?;
            self.forget_worker(worker);
            Ok(hand_back_from(v)?)
        })
        .await
        .inspect(|_| self.renew_waiting(worker))
        .inspect_err(|e| self.forget_if_unknown(e))
    }
}

impl RedisBackend {
    async fn heartbeat_call(&self, me: &WorkerRef) -> Result<HeartbeatReply> {
        let worker = &me.id;
        verified("heartbeat", |attempt| async move {
            let queues = self.worker_queues(worker, attempt).await?;
            let groups: Vec<&QueueName> = queues.iter().collect();
            let now = self.now_arg();
            let mut inv = self.invocation(&self.functions().heartbeat, &groups, &now);
            inv.arg(worker.as_str())
                .arg(me.instance.get())
                .arg(groups.len());
            for q in &groups {
                inv.arg(q.as_str());
            }
            let v = self.exec(&inv).await?;
            let mut it = array(v)?.into_iter().skip(1);
            let ids = |it: &mut dyn Iterator<Item = Value>| -> Result<Vec<TaskId>> {
                let truncated = || protocol("truncated heartbeat reply");
                let n = uint(&it.next().ok_or_else(truncated)?)?;
                (0..n)
                    .map(|_| codec::task_id(it.next().ok_or_else(truncated)?))
                    .collect()
            };
            let cancel = ids(&mut it)?;
            let expired = ids(&mut it)?;
            Ok(HeartbeatReply {
                cancel,
                expired,
                assignments: assignments(&mut it, None)?,
            })
        })
        .await
        .inspect_err(|e| self.forget_if_unknown(e))
    }
}
