//! A Redis Cluster for tests: `masters` primaries (each with `replicas` replicas) on free
//! loopback ports below 55535 (a node's bus port is its port + 10000), joined with
//! `redis-cli --cluster create` (by hand for fewer than 3 primaries, which it refuses), and
//! waited for until every node reports `cluster_state:ok`
//! and knows every other node. Killed on drop.
//!
//! [`RedisCluster::move_slot`] moves one slot between primaries by hand, key by key, with a
//! pause between keys, so that requests meet the slot half-migrated (what `redis-cli --cluster
//! reshard` does, slowed down).

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use crate::redis_server::{RedisServer, ServerOptions, answers};
use crate::sentinel::wait_for;

/// A running Cluster; every node is killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

fn connect(port: u16) -> Result<redis::Connection, String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .map_err(|e| format!("port {port}: {e}"))?;
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .map_err(|e| format!("port {port}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("port {port}: {e}"))?;
    Ok(conn)
}

/// Runs `cmd` on the node at `port`.
fn on<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Result<T, String> {
    cmd.query(&mut connect(port)?)
        .map_err(|e| format!("port {port}: {e}"))
}

/// `CLUSTER INFO` of the node at `port`, as fields.
fn cluster_info(port: u16) -> Option<HashMap<String, String>> {
    let text: String = on(port, redis::cmd("CLUSTER").arg("INFO")).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect(),
    )
}

impl RedisCluster {
    /// Starts and joins a Cluster of `masters` primaries with `replicas` replicas each.
    pub fn start(masters: usize, replicas: usize) -> Result<Self, String> {
        Self::start_with(masters, replicas, ServerOptions::default())
    }

    /// [`RedisCluster::start`] with more server settings (e.g.
    /// `cluster-require-full-coverage no`, so that the other slots are served while a
    /// primary without replica is down).
    pub fn start_with(
        masters: usize,
        replicas: usize,
        options: ServerOptions,
    ) -> Result<Self, String> {
        let options = options
            .arg("cluster-enabled", "yes")
            .arg("cluster-config-file", "nodes.conf")
            .arg("cluster-node-timeout", "2000");
        let nodes = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start_with(&options))
            .collect::<Result<Vec<_>, _>>()?;
        if masters < 3 {
            // redis-cli refuses to create a Cluster of fewer than 3 primaries: do its work.
            let cluster = RedisCluster { nodes };
            cluster.join_by_hand(masters)?;
            cluster.wait_ok(Duration::from_secs(30))?;
            return Ok(cluster);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port()));
        }
        let out = create
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes")
            .output()
            .map_err(|e| format!("cannot run redis-cli (install redis-tools): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Splits the slots over the first `masters` nodes, introduces every node to the first,
    /// and makes the rest replicas, round-robin over the primaries.
    fn join_by_hand(&self, masters: usize) -> Result<(), String> {
        const SLOTS: usize = 16384;
        let ports: Vec<u16> = self.nodes.iter().map(RedisServer::port).collect();
        for (i, port) in ports.iter().take(masters).enumerate() {
            let (lo, hi) = (SLOTS * i / masters, SLOTS * (i + 1) / masters - 1);
            on::<()>(
                *port,
                redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(lo).arg(hi),
            )?;
        }
        for port in ports.iter().skip(1) {
            on::<()>(
                ports[0],
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(*port),
            )?;
        }
        let n = ports.len().to_string();
        wait_for(
            Duration::from_secs(30),
            "every node known to every node",
            || {
                ports
                    .iter()
                    .all(|p| {
                        cluster_info(*p).and_then(|i| i.get("cluster_known_nodes").cloned())
                            == Some(n.clone())
                    })
                    .then_some(())
            },
        )?;
        for (i, port) in ports.iter().enumerate().skip(masters) {
            let primary = node_id(ports[i % masters])?;
            on::<()>(*port, redis::cmd("CLUSTER").arg("REPLICATE").arg(&primary))?;
        }
        Ok(())
    }

    /// Waits until every node says `cluster_state:ok`, has all slots assigned, knows every
    /// other node, and every replica's link to its primary is up.
    pub fn wait_ok(&self, within: Duration) -> Result<(), String> {
        let n = self.nodes.len().to_string();
        wait_for(within, "cluster_state:ok on every node", || {
            for node in &self.nodes {
                let info = cluster_info(node.port())?;
                let ok = info.get("cluster_state").map(String::as_str) == Some("ok")
                    && info.get("cluster_slots_assigned").map(String::as_str) == Some("16384")
                    && info.get("cluster_known_nodes") == Some(&n);
                if !ok {
                    return None;
                }
                let replication: String =
                    on(node.port(), redis::cmd("INFO").arg("replication")).ok()?;
                if replication.contains("role:slave")
                    && !replication.contains("master_link_status:up")
                {
                    return None;
                }
            }
            Some(())
        })
    }

    /// `redis+cluster://127.0.0.1:<p1>,…` naming every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The ports of the nodes that are primaries now.
    pub fn primary_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .map(RedisServer::port)
            .filter(|p| crate::sentinel::role(*p).as_deref() == Some("master"))
            .collect()
    }

    /// The first node that answers.
    fn live_port(&self) -> Result<u16, String> {
        self.nodes
            .iter()
            .map(RedisServer::port)
            .find(|p| answers(*p))
            .ok_or_else(|| "no node of the Cluster answers".to_owned())
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> Result<u16, String> {
        on(
            self.live_port()?,
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(key),
        )
    }

    /// The port of the primary that owns `slot` (as the first live node's `CLUSTER SLOTS`
    /// says).
    pub fn owner_of(&self, slot: u16) -> Result<u16, String> {
        let port = self.live_port()?;
        // Each range: [first slot, last slot, [ip, port, id], replicas…].
        self.slot_ranges(port)?
            .into_iter()
            .find(|r| (r.first..=r.last).contains(&slot))
            .map(|r| r.primary)
            .ok_or_else(|| format!("no primary owns slot {slot}"))
    }

    fn slot_ranges(&self, port: u16) -> Result<Vec<SlotRange>, String> {
        let raw: Vec<Vec<redis::Value>> = on(port, redis::cmd("CLUSTER").arg("SLOTS"))?;
        raw.into_iter()
            .map(|range| {
                let mut it = range.into_iter();
                let (Some(lo), Some(hi), Some(primary)) = (it.next(), it.next(), it.next()) else {
                    return Err(format!("port {port}: short CLUSTER SLOTS entry"));
                };
                fn parse<T: redis::FromRedisValue>(
                    what: &str,
                    v: redis::Value,
                ) -> Result<T, String> {
                    redis::from_redis_value(v).map_err(|e| format!("CLUSTER SLOTS {what}: {e}"))
                }
                let primary: Vec<redis::Value> = parse("primary", primary)?;
                let mut p = primary.into_iter();
                let (Some(_ip), Some(primary)) = (p.next(), p.next()) else {
                    return Err(format!("port {port}: short primary in CLUSTER SLOTS"));
                };
                Ok(SlotRange {
                    first: parse("first slot", lo)?,
                    last: parse("last slot", hi)?,
                    primary: parse("port", primary)?,
                })
            })
            .collect()
    }

    /// A directory that lives as long as the Cluster (its first node's), for logs.
    pub fn dir(&self) -> &std::path::Path {
        self.nodes[0].dir()
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) -> Result<(), String> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .ok_or_else(|| format!("no node of this Cluster is on port {port}"))?;
        node.kill();
        Ok(())
    }

    /// Starts the killed node on `port` again, empty but with its Cluster configuration
    /// (`nodes.conf`): it rejoins, learns that its slots moved, and becomes a replica of the
    /// primary that took them. Waits until the Cluster is whole again.
    pub fn rejoin(&mut self, port: u16, within: Duration) -> Result<(), String> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .ok_or_else(|| format!("no node of this Cluster is on port {port}"))?;
        node.restart_empty()?;
        self.wait_ok(within)
    }

    /// Waits until a node other than `old` owns `slot` and says it is a primary, and every
    /// node that answers reports `cluster_state:ok`; returns the new owner's port.
    pub fn wait_promoted(&self, slot: u16, old: u16, within: Duration) -> Result<u16, String> {
        wait_for(
            within,
            "a replica promoted in place of the killed primary",
            || {
                let owner = self.owner_of(slot).ok().filter(|o| *o != old)?;
                if crate::sentinel::role(owner).as_deref() != Some("master") {
                    return None;
                }
                let live = self
                    .nodes
                    .iter()
                    .map(RedisServer::port)
                    .filter(|p| answers(*p));
                for port in live {
                    let info = cluster_info(port)?;
                    if info.get("cluster_state").map(String::as_str) != Some("ok") {
                        return None;
                    }
                }
                Some(owner)
            },
        )
    }

    /// Moves `slot` to the primary at `to`: marks it importing there and migrating on its
    /// owner, then moves its keys one `MIGRATE` at a time with `pause` after each, then
    /// assigns the slot to `to` on every primary. Returns how many keys moved.
    pub fn move_slot(&self, slot: u16, to: u16, pause: Duration) -> Result<usize, String> {
        let from = self.owner_of(slot)?;
        if from == to {
            return Err(format!("slot {slot} is already on port {to}"));
        }
        let (from_id, to_id) = (node_id(from)?, node_id(to)?);
        let setslot = |port: u16, how: &str, id: &str| -> Result<(), String> {
            on::<()>(
                port,
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg(how)
                    .arg(id),
            )
        };
        setslot(to, "IMPORTING", &from_id)?;
        setslot(from, "MIGRATING", &to_id)?;
        let mut moved = 0;
        loop {
            let keys: Vec<String> = on(
                from,
                redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(1),
            )?;
            let Some(key) = keys.into_iter().next() else {
                break;
            };
            let _: redis::Value = on(
                from,
                redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(to)
                    .arg("")
                    .arg(0)
                    .arg(10_000)
                    .arg("KEYS")
                    .arg(&key),
            )?;
            moved += 1;
            std::thread::sleep(pause);
        }
        for port in self.primary_ports() {
            setslot(port, "NODE", &to_id)?;
        }
        self.wait_ok(Duration::from_secs(30))?;
        Ok(moved)
    }
}

/// One range of `CLUSTER SLOTS`: its slots and the port of their primary.
struct SlotRange {
    first: u16,
    last: u16,
    primary: u16,
}

/// `CLUSTER MYID` of the node at `port`.
fn node_id(port: u16) -> Result<String, String> {
    on(port, redis::cmd("CLUSTER").arg("MYID"))
}
