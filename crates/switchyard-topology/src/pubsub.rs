//! Pub/sub connections: to the primary known now, or, on a Cluster, to the node that owns a
//! key's slot (a `PUBLISH` from a script reaches only the subscribers of the node it ran on).

use super::*;

impl Topology {
    /// A new pub/sub connection to the primary known now. When it cannot be opened for a
    /// reason that [calls for repair](calls_for_repair), the topology repairs before the
    /// error is returned.
    pub async fn pubsub(&self) -> RedisResult<PubSub> {
        let generation = self.generation();
        let client = match &self.nodes {
            Nodes::Standalone { client, .. } => client.clone(),
            Nodes::Sentinel { primary, .. } => read(primary).client.clone(),
            Nodes::Cluster {
                seeds, next_seed, ..
            } => {
                // Any node will do; the first seed that answers, starting with the next one.
                let first = next_seed.fetch_add(1, Ordering::Relaxed);
                let mut last = None;
                for i in 0..seeds.len() {
                    let seed = &seeds[(first + i) % seeds.len()];
                    match self.open_pubsub(seed).await {
                        Ok(p) => return Ok(p),
                        Err(e) => last = Some(e),
                    }
                }
                return Err(last.unwrap_or_else(|| {
                    RedisError::from((redis::ErrorKind::Io, "no seed node", String::new()))
                }));
            }
        };
        match self.open_pubsub(&client).await {
            Ok(p) => Ok(p),
            Err(e) => {
                if calls_for_repair(&e) {
                    self.repair(generation, &e).await;
                }
                Err(e)
            }
        }
    }

    /// A new pub/sub connection where a script that touches `key` sees its subscriptions (for
    /// `PUBSUB NUMSUB`): on a Cluster, the primary of `key`'s slot (any node still receives
    /// every message, but counts only its own subscribers); elsewhere, as [`pubsub`](Self::pubsub).
    /// If the slot's primary cannot be found or reached, a seed node's.
    pub async fn pubsub_for(&self, key: &str) -> RedisResult<PubSub> {
        let Nodes::Cluster { address, .. } = &self.nodes else {
            return self.pubsub().await;
        };
        let (address, tls) = &**address;
        let at = async {
            let (host, port) = self.owner_of(key).await?;
            let client = tls::client(&address.node_url(&host, port), tls.as_ref())?;
            self.open_pubsub(&client).await
        };
        match at.await {
            Ok(p) => Ok(p),
            Err(e) => {
                tracing::debug!(
                    "cannot subscribe at the primary of `{key}`'s slot ({e}); using a seed node"
                );
                self.pubsub().await
            }
        }
    }

    /// `(host, port)` of the Cluster primary that holds `key`'s slot.
    async fn owner_of(&self, key: &str) -> RedisResult<(String, u16)> {
        let mut conn = self.connection();
        let slot: i64 = conn
            .query_at(key, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .await?;
        let slots: redis::Value = conn
            .query_at(key, redis::cmd("CLUSTER").arg("SLOTS"))
            .await?;
        let not_found = || {
            RedisError::from((
                redis::ErrorKind::Io,
                "no primary",
                format!("CLUSTER SLOTS names no primary for slot {slot}"),
            ))
        };
        let redis::Value::Array(ranges) = slots else {
            return Err(not_found());
        };
        for range in ranges {
            let redis::Value::Array(fields) = range else {
                continue;
            };
            let int = |v: Option<&redis::Value>| match v {
                Some(redis::Value::Int(n)) => Some(*n),
                _ => None,
            };
            let (Some(first), Some(last)) = (int(fields.first()), int(fields.get(1))) else {
                continue;
            };
            if !(first..=last).contains(&slot) {
                continue;
            }
            if let Some(redis::Value::Array(node)) = fields.get(2) {
                let host = match node.first() {
                    Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(redis::Value::SimpleString(s)) => s.clone(),
                    _ => return Err(not_found()),
                };
                let port = int(node.get(1))
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(not_found)?;
                return Ok((host, port));
            }
        }
        Err(not_found())
    }

    async fn open_pubsub(&self, client: &Client) -> RedisResult<PubSub> {
        tokio::time::timeout(self.connect_timeout, client.get_async_pubsub())
            .await
            .unwrap_or_else(|_| {
                Err(RedisError::from((
                    redis::ErrorKind::Io,
                    "timed out",
                    format!("no pub/sub connection within {:?}", self.connect_timeout),
                )))
            })
    }
}
