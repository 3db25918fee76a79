//! Finding the primary through Sentinels.
//!
//! redis-rs resolves a Sentinel master only when asked and never follows a failover by itself,
//! and deadpool's Sentinel pool hands out connections to a demoted primary as long as it
//! answers PING (see the crate docs). So discovery is done here, in a few lines, and the caller
//! ([`crate::Topology`]) decides when to do it again: after a connection loss or a reply that
//! says the server is no longer the writable primary.
//!
//! One discovery asks each Sentinel in turn (starting after the one that answered last) for
//! `SENTINEL GET-MASTER-ADDR-BY-NAME`, connects to the address it names and accepts it only
//! if `ROLE` there says `master`: during a failover a Sentinel may still name the old primary,
//! or the new one before it finished its promotion.

use std::sync::atomic::{AtomicUsize, Ordering};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult, Value};

use crate::address::SentinelAddress;
use crate::tls::{self, Tls};

/// A primary found by discovery.
#[derive(Debug, Clone)]
pub(crate) struct Primary {
    /// `host:port`, as the Sentinel named it.
    pub(crate) addr: String,
    /// A client for it (with the servers' credentials).
    pub(crate) client: Client,
}

/// The Sentinels of one monitored primary.
#[derive(Debug)]
pub(crate) struct Sentinels {
    address: SentinelAddress,
    clients: Vec<Client>,
    /// Certificates for TLS connections to Sentinels and servers.
    tls: Option<Tls>,
    /// Which Sentinel to ask first (the last one that answered).
    first: AtomicUsize,
}

fn failure(message: String) -> RedisError {
    RedisError::from((redis::ErrorKind::Io, "sentinel discovery", message))
}

impl Sentinels {
    pub(crate) fn new(address: SentinelAddress, tls: Option<Tls>) -> RedisResult<Self> {
        let clients = address
            .sentinels
            .iter()
            .map(|s| tls::client(&address.sentinel_url(s), tls.as_ref()))
            .collect::<RedisResult<_>>()?;
        Ok(Sentinels {
            address,
            clients,
            tls,
            first: AtomicUsize::new(0),
        })
    }

    pub(crate) fn master_name(&self) -> &str {
        &self.address.master_name
    }

    /// Asks the Sentinels for the primary and checks its role; the error says what each
    /// Sentinel answered.
    pub(crate) async fn discover(&self, config: &AsyncConnectionConfig) -> RedisResult<Primary> {
        let n = self.clients.len();
        let first = self.first.load(Ordering::Relaxed);
        let mut answers = Vec::with_capacity(n);
        for k in 0..n {
            let i = (first + k) % n;
            match self.ask(i, config).await {
                Ok(primary) => {
                    self.first.store(i, Ordering::Relaxed);
                    return Ok(primary);
                }
                Err(e) => answers.push(format!("{}: {e}", self.address.sentinels[i])),
            }
        }
        Err(failure(format!(
            "no Sentinel named a reachable primary for `{}` ({})",
            self.address.master_name,
            answers.join("; ")
        )))
    }

    /// `host:port` of the primary as the first Sentinel that answers names it (without
    /// checking it): a cheap look for whether the primary moved.
    pub(crate) async fn named(&self, config: &AsyncConnectionConfig) -> RedisResult<String> {
        let n = self.clients.len();
        let first = self.first.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..n {
            match self.name_of_primary((first + k) % n, config).await {
                Ok((host, port)) => return Ok(format!("{host}:{port}")),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| failure("no Sentinel given".to_owned())))
    }

    /// The master's configuration epoch (`SENTINEL MASTER`'s `config-epoch`) as the first
    /// Sentinel that answers says.
    pub(crate) async fn config_epoch(&self, config: &AsyncConnectionConfig) -> RedisResult<u64> {
        let mut last = None;
        for client in &self.clients {
            let asked = async {
                let mut sentinel = client
                    .get_multiplexed_async_connection_with_config(config)
                    .await?;
                let fields: std::collections::HashMap<String, String> = redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(&self.address.master_name)
                    .query_async(&mut sentinel)
                    .await?;
                fields
                    .get("config-epoch")
                    .and_then(|e| e.parse().ok())
                    .ok_or_else(|| failure("SENTINEL MASTER gave no config-epoch".to_owned()))
            };
            match asked.await {
                Ok(epoch) => return Ok(epoch),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| failure("no Sentinel given".to_owned())))
    }

    /// How many Sentinels were given.
    pub(crate) fn count(&self) -> usize {
        self.clients.len()
    }

    /// A pub/sub connection to Sentinel `i`, subscribed to its `+switch-master` announcements
    /// (`<master-name> <old-ip> <old-port> <new-ip> <new-port>`).
    pub(crate) async fn announcements(
        &self,
        i: usize,
        within: std::time::Duration,
    ) -> RedisResult<redis::aio::PubSub> {
        let open = async {
            let mut pubsub = self.clients[i].get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok(pubsub)
        };
        tokio::time::timeout(within, open)
            .await
            .unwrap_or_else(|_| Err(failure(format!("no answer within {within:?}"))))
    }

    /// `host:port` of Sentinel `i`, for messages.
    pub(crate) fn sentinel(&self, i: usize) -> &str {
        &self.address.sentinels[i]
    }

    async fn name_of_primary(
        &self,
        i: usize,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<(String, u16)> {
        let mut sentinel = self.clients[i]
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.address.master_name)
            .query_async(&mut sentinel)
            .await?;
        named.ok_or_else(|| {
            failure(format!(
                "does not monitor a master named `{}`",
                self.address.master_name
            ))
        })
    }

    async fn ask(&self, i: usize, config: &AsyncConnectionConfig) -> RedisResult<Primary> {
        let (host, port) = self.name_of_primary(i, config).await?;
        let client = tls::client(&self.address.node_url(&host, port), self.tls.as_ref())?;
        // The Sentinel answered: a failure from here on is the named server's, and is said so.
        let at = |e: RedisError| {
            failure(format!(
                "names {host}:{port} as the primary, which failed: {e}"
            ))
        };
        let mut node = client
            .get_multiplexed_async_connection_with_config(config)
            .await
            .map_err(at)?;
        let role = role(&mut node).await.map_err(at)?;
        if role != "master" {
            return Err(failure(format!(
                "names {host}:{port}, which is a {role} (failover in progress)"
            )));
        }
        Ok(Primary {
            addr: format!("{host}:{port}"),
            client,
        })
    }
}

/// The first field of `ROLE`: `master`, `slave` or `sentinel`.
async fn role(conn: &mut MultiplexedConnection) -> RedisResult<String> {
    let reply: Value = redis::cmd("ROLE").query_async(conn).await?;
    let first = match reply {
        Value::Array(items) => items.into_iter().next(),
        _ => None,
    };
    match first {
        Some(Value::BulkString(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Some(Value::SimpleString(s)) => Ok(s),
        other => Err(failure(format!("unexpected ROLE reply {other:?}"))),
    }
}
