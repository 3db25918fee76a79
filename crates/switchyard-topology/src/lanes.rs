//! The lanes: the multiplexed connections requests are spread over, opened, replaced when the
//! primary moved or a connection broke, and repaired once per generation however many
//! requests met the failure.

use super::*;

impl Topology {
    pub(crate) fn lane(&self) -> Lane {
        let i = self.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        self.lanes[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// One new connection to the primary known now.
    pub(crate) async fn open(&self) -> RedisResult<Connection> {
        let single = match &self.nodes {
            Nodes::Standalone { pool: None, client } => {
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
            }
            Nodes::Standalone {
                pool: Some(pool), ..
            } => match pool.get().await {
                Ok(conn) => Ok(deadpool_redis::Connection::take(conn)),
                Err(deadpool_redis::PoolError::Backend(e)) => Err(e),
                Err(other) => Err(RedisError::from((
                    redis::ErrorKind::Io,
                    "connection pool",
                    other.to_string(),
                ))),
            },
            Nodes::Sentinel { primary, .. } => {
                let client = read(primary).client.clone();
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
            }
            Nodes::Cluster { client, .. } => {
                return client.get_async_connection().await.map(Connection::Cluster);
            }
        };
        single.map(Connection::Single)
    }

    /// `n` connections to the primary: for Sentinel, found again first when `rediscover`.
    /// Also answers where the primary was, if it moved.
    pub(crate) async fn open_lanes(
        &self,
        n: usize,
        rediscover: bool,
    ) -> RedisResult<(Vec<Connection>, Option<String>)> {
        let mut moved_from = None;
        if let Nodes::Sentinel { sentinels, primary } = &self.nodes
            && rediscover
        {
            let found = sentinels.discover(&self.discovery).await?;
            let mut known = primary
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if known.addr != found.addr {
                moved_from = Some(known.addr.clone());
            }
            *known = found;
        }
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(self.open().await?);
        }
        Ok((conns, moved_from))
    }

    /// Finds the primary again and replaces every lane (the repair lock held). When the
    /// primary moved, says so and abandons the requests still waiting for the old one.
    pub(crate) async fn replace_lanes(
        &self,
        cause: &(dyn std::fmt::Display + Sync),
    ) -> RedisResult<()> {
        let (conns, moved_from) = self.open_lanes(self.lanes.len(), true).await?;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        for (slot, conn) in self.lanes.iter().zip(conns) {
            *slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Lane { generation, conn };
        }
        metrics::counter!("switchyard_redis_reconnects_total").increment(1);
        match moved_from {
            Some(from) => {
                self.moves.send_modify(|m| *m += 1);
                metrics::counter!("switchyard_redis_failovers_followed_total").increment(1);
                tracing::warn!(
                    from = %from,
                    to = %self.primary().unwrap_or_default(),
                    "the primary of {} moved ({cause}): requests now go to the new primary; \
                     those still waiting for {from} are abandoned and retried, and anything \
                     {from} accepted after it was cut off from its replicas is lost",
                    self.described
                );
            }
            None => tracing::info!(
                generation,
                "reconnected to {} after: {cause}",
                self.described
            ),
        }
        Ok(())
    }

    /// Finds the primary again and replaces every lane, unless another caller already did
    /// since `seen` or a failed repair asked to wait.
    pub(crate) async fn repair(&self, seen: u64, cause: &RedisError) {
        if self.is_cluster() {
            // A ClusterConnection reconnects and re-reads the slot map by itself.
            return;
        }
        let mut guard = self.repair.lock().await;
        if self.generation() != seen {
            return;
        }
        let (backoff, not_before) = &mut *guard;
        if not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match self.replace_lanes(cause).await {
            Ok(()) => {
                backoff.reset();
                *not_before = None;
            }
            Err(e) => {
                let pause = backoff.next();
                *not_before = Some(Instant::now() + pause);
                metrics::counter!("switchyard_redis_reconnect_failures_total").increment(1);
                tracing::debug!(
                    failures = backoff.failures(),
                    "cannot reach {} yet ({e}); next attempt in {pause:?} at the earliest",
                    self.described
                );
            }
        }
    }
}
