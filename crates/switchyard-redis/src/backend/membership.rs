//! [`Membership`] on Redis: register, heartbeat, drain, deregister.

use std::sync::Arc;

use async_trait::async_trait;
use switchyard_core::{
    HandBack, HeartbeatReply, Membership, QueueName, RegisterOutcome, Result, WorkerRef, WorkerSpec,
};

use super::{RedisBackend, verified};
use crate::codec;

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
            inv.arg(spec.queues().len()).names(&groups);
            let v = self.exec(&inv).await?;
            if let Ok(mut cache) = self.inner.worker_queues.write() {
                cache.insert(spec.id().clone(), Arc::new(spec.queues().to_vec()));
            }
            Ok(codec::registered(v)?)
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
            let now = self.now_arg();
            let drain = &self.functions().drain;
            let inv = self.worker_call(drain, worker, me.instance.get(), &queues, &now);
            Ok(codec::hand_back(self.exec(&inv).await?)?)
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
            let now = self.now_arg();
            let deregister = &self.functions().deregister;
            let inv = self.worker_call(deregister, worker, me.instance.get(), &queues, &now);
            let v = self.exec(&inv).await?;
            self.forget_worker(worker);
            Ok(codec::hand_back(v)?)
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
            let now = self.now_arg();
            let heartbeat = &self.functions().heartbeat;
            let inv = self.worker_call(heartbeat, worker, me.instance.get(), &queues, &now);
            let v = self.exec(&inv).await?;
            Ok(codec::heartbeat(v)?)
        })
        .await
        .inspect_err(|e| self.forget_if_unknown(e))
    }
}
