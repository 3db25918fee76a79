//! Where Redis is: the URL forms Switchyard accepts, parsed into an [`Address`].
//!
//! * `redis://[user:password@]host[:port][/db]` — one standalone server (`rediss://` for TLS).
//! * `redis+sentinel://[user:password@]host[:port][,host[:port]…]/master-name[/db]` — the
//!   primary that the listed Sentinels monitor under `master-name` (Sentinel port default
//!   26379). The user and password are those of the Redis servers (primary and replicas); the
//!   Sentinels' own, if they require one, go in the query: `?sentinel_username=…&sentinel_password=…`.
//!   `rediss+sentinel://` uses TLS for both.
//! * `redis+cluster://[user:password@]host[:port][,host[:port]…]` — a Redis Cluster, reached
//!   through any of the listed seed nodes (port default 6379); `rediss+cluster://` for TLS.

use switchyard_core::display;
use switchyard_core::{Error, Result};

/// The default port of a Sentinel.
pub const SENTINEL_PORT: u16 = 26379;

/// A parsed Redis location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// One server; the URL is passed to redis-rs as given.
    Standalone {
        /// The `redis://` or `rediss://` URL.
        url: String,
    },
    /// A primary found through Sentinels.
    Sentinel(SentinelAddress),
    /// A Redis Cluster.
    Cluster(ClusterAddress),
}

/// The parts of a `redis+cluster://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAddress {
    /// `host:port` of each seed node, in the order given.
    pub seeds: Vec<String>,
    /// Whether to use TLS (`rediss+cluster://`).
    pub tls: bool,
    /// `user:password` (still percent-encoded), if any.
    pub userinfo: Option<String>,
}

impl ClusterAddress {
    /// The `redis://` URL of the node at `host:port` (with this address's TLS and credentials).
    pub fn node_url(&self, host: &str, port: u16) -> String {
        node_url(self.tls, self.userinfo.as_deref(), host, port, 0)
    }

    /// The `redis://` URL of each seed node.
    pub fn seed_urls(&self) -> Vec<String> {
        self.seeds
            .iter()
            .map(|hp| {
                let (host, port) = hp.rsplit_once(':').unwrap_or((hp, ""));
                let host = host.trim_start_matches('[').trim_end_matches(']');
                node_url(
                    self.tls,
                    self.userinfo.as_deref(),
                    host,
                    port.parse().unwrap_or(REDIS_PORT),
                    0,
                )
            })
            .collect()
    }
}

/// The default port of a Redis server (for Cluster seeds written without one).
pub const REDIS_PORT: u16 = 6379;

/// The parts of a `redis+sentinel://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelAddress {
    /// The name the Sentinels monitor the primary under.
    pub master_name: String,
    /// `host:port` of each Sentinel, in the order given.
    pub sentinels: Vec<String>,
    /// Whether to use TLS (`rediss+sentinel://`).
    pub tls: bool,
    /// `user:password` (still percent-encoded) for the Redis servers, if any.
    pub userinfo: Option<String>,
    /// The database number on the servers.
    pub db: u32,
    /// `user:password` (percent-encoded) for the Sentinels, from the query.
    pub sentinel_userinfo: Option<String>,
}

impl SentinelAddress {
    /// The `redis://` URL of one Redis server of this set-up (as a Sentinel names it).
    pub fn node_url(&self, host: &str, port: u16) -> String {
        node_url(self.tls, self.userinfo.as_deref(), host, port, self.db)
    }

    /// The `redis://` URL of the Sentinel at `host_port`.
    pub fn sentinel_url(&self, host_port: &str) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.sentinel_userinfo {
            Some(u) => format!("{scheme}://{u}@{host_port}"),
            None => format!("{scheme}://{host_port}"),
        }
    }
}

fn node_url(tls: bool, userinfo: Option<&str>, host: &str, port: u16, db: u32) -> String {
    let scheme = if tls { "rediss" } else { "redis" };
    // An IPv6 address as a Sentinel reports it has no brackets.
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match userinfo {
        Some(u) => format!("{scheme}://{u}@{host}:{port}/{db}"),
        None => format!("{scheme}://{host}:{port}/{db}"),
    }
}

fn invalid(url: &str, reason: impl std::fmt::Display) -> Error {
    Error::invalid("redis url", format!("`{}`: {reason}", display::url(url)))
}

impl Address {
    /// Parses a URL; the error names the form expected.
    ///
    /// ```
    /// use switchyard_topology::Address;
    /// let a = Address::parse("redis+sentinel://:pw@10.0.0.1,10.0.0.2:26380/jobs/2")?;
    /// let Address::Sentinel(s) = a else { unreachable!() };
    /// assert_eq!(s.master_name, "jobs");
    /// assert_eq!(s.sentinels, ["10.0.0.1:26379", "10.0.0.2:26380"]);
    /// assert_eq!(s.node_url("10.0.0.7", 6379), "redis://:pw@10.0.0.7:6379/2");
    /// # Ok::<(), switchyard_core::Error>(())
    /// ```
    pub fn parse(url: &str) -> Result<Address> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid(
                url,
                "expected redis://host:port, rediss://host:port, \
                 redis+sentinel://host:port[,host:port]/master-name or \
                 redis+cluster://host:port[,host:port]",
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "redis" | "rediss" | "unix" | "redis+unix" => Ok(Address::Standalone {
                url: url.to_owned(),
            }),
            "redis+sentinel" => Self::sentinel(url, rest, false),
            "rediss+sentinel" => Self::sentinel(url, rest, true),
            "redis+cluster" => Self::cluster(url, rest, false),
            "rediss+cluster" => Self::cluster(url, rest, true),
            other => Err(invalid(
                url,
                format!(
                    "unknown scheme `{other}`: use redis://, rediss://, redis+sentinel://, \
                     rediss+sentinel://, redis+cluster:// or rediss+cluster://"
                ),
            )),
        }
    }

    fn cluster(url: &str, rest: &str, tls: bool) -> Result<Address> {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if rest.contains('?') {
            return Err(invalid(url, "a Cluster URL takes no parameters"));
        }
        if !matches!(path, "" | "0") {
            return Err(invalid(
                url,
                format!("`/{path}`: a Cluster has only database 0"),
            ));
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_owned()), h),
            None => (None, authority),
        };
        let seeds = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| host_port(url, h, REDIS_PORT))
            .collect::<Result<Vec<_>>>()?;
        if seeds.is_empty() {
            return Err(invalid(url, "no seed node: name at least one host:port"));
        }
        Ok(Address::Cluster(ClusterAddress {
            seeds,
            tls,
            userinfo,
        }))
    }

    fn sentinel(url: &str, rest: &str, tls: bool) -> Result<Address> {
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_owned()), h),
            None => (None, authority),
        };
        let mut sentinels = Vec::new();
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            sentinels.push(host_port(url, host, SENTINEL_PORT)?);
        }
        if sentinels.is_empty() {
            return Err(invalid(url, "no Sentinel address before the master name"));
        }
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let Some(master_name) = parts.next() else {
            return Err(invalid(
                url,
                "no master name: write it after the Sentinel addresses, as in \
                 redis+sentinel://host:26379/mymaster",
            ));
        };
        let db = match parts.next() {
            None => 0,
            Some(d) => d
                .parse()
                .map_err(|_| invalid(url, format!("database `{d}` is not a number")))?,
        };
        if let Some(extra) = parts.next() {
            return Err(invalid(
                url,
                format!("unexpected `/{extra}` after the database"),
            ));
        }
        let (mut s_user, mut s_pass) = (String::new(), None);
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("sentinel_username", v)) => s_user = v.to_owned(),
                Some(("sentinel_password", v)) => s_pass = Some(v.to_owned()),
                _ if pair.is_empty() => {}
                _ => {
                    return Err(invalid(
                        url,
                        format!(
                            "unknown parameter `{}`: only sentinel_username and \
                             sentinel_password are understood",
                            pair.split('=').next().unwrap_or(pair)
                        ),
                    ));
                }
            }
        }
        let sentinel_userinfo = match (s_user.is_empty(), s_pass) {
            (true, None) => None,
            (_, Some(p)) => Some(format!("{s_user}:{p}")),
            (false, None) => Some(s_user),
        };
        Ok(Address::Sentinel(SentinelAddress {
            master_name: master_name.to_owned(),
            sentinels,
            tls,
            userinfo,
            db,
            sentinel_userinfo,
        }))
    }
}

/// `host[:port]` with a default port, checked.
fn host_port(url: &str, host: &str, default_port: u16) -> Result<String> {
    let (name, port) = match host.rsplit_once(':') {
        // `[::1]:26379`, `host:26379`; a bare IPv6 address needs brackets.
        Some((name, port)) if !name.is_empty() && (!name.contains(':') || name.ends_with(']')) => {
            let port: u16 = port
                .parse()
                .map_err(|_| invalid(url, format!("port `{port}` of `{host}` is not a number")))?;
            (name, port)
        }
        _ => (host, default_port),
    };
    Ok(format!("{name}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelAddress {
        match Address::parse(url) {
            Ok(Address::Sentinel(s)) => s,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn standalone_urls_pass_through() {
        for url in [
            "redis://127.0.0.1:6380",
            "rediss://u:p@h:1/3",
            "unix:///tmp/r.sock",
        ] {
            assert_eq!(
                Address::parse(url).unwrap(),
                Address::Standalone { url: url.into() }
            );
        }
    }

    #[test]
    fn sentinel_urls_name_sentinels_master_auth_and_db() {
        let s = sentinel(
            "rediss+sentinel://app:p%40ss@a:1,b,[::1]:3/jobs/4?sentinel_username=s&sentinel_password=q",
        );
        assert_eq!(s.sentinels, ["a:1", "b:26379", "[::1]:3"]);
        assert_eq!(s.master_name, "jobs");
        assert_eq!(s.db, 4);
        assert!(s.tls);
        assert_eq!(s.node_url("::1", 7000), "rediss://app:p%40ss@[::1]:7000/4");
        assert_eq!(s.sentinel_url("a:1"), "rediss://s:q@a:1");
        let plain = sentinel("redis+sentinel://h/m");
        assert_eq!(plain.sentinel_url("h:26379"), "redis://h:26379");
        assert_eq!(plain.node_url("h", 1), "redis://h:1/0");
    }

    #[test]
    fn cluster_urls_name_seeds_and_auth() {
        let Ok(Address::Cluster(c)) = Address::parse("rediss+cluster://u:p@a:7000,b,[::1]:7002")
        else {
            panic!("not a Cluster address")
        };
        assert_eq!(c.seeds, ["a:7000", "b:6379", "[::1]:7002"]);
        assert!(c.tls);
        assert_eq!(
            c.seed_urls(),
            [
                "rediss://u:p@a:7000/0",
                "rediss://u:p@b:6379/0",
                "rediss://u:p@[::1]:7002/0"
            ]
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        let cases = [
            ("127.0.0.1:6379", "expected redis://"),
            ("http://x", "unknown scheme `http`"),
            ("redis+sentinel://:s3cret@h:1", "no master name"),
            ("redis+sentinel://:s3cret@/m", "no Sentinel address"),
            ("redis+sentinel://h:x/m", "port `x`"),
            ("redis+sentinel://h/m/z", "database `z`"),
            (
                "redis+sentinel://h/m?password=s3cret",
                "unknown parameter `password`",
            ),
            ("redis+cluster://:s3cret@", "no seed node"),
            ("redis+cluster://:s3cret@h:1/2", "only database 0"),
            ("redis+cluster://:s3cret@h:1?x=1", "no parameters"),
        ];
        for (url, expected) in cases {
            let message = Address::parse(url).unwrap_err().to_string();
            assert!(message.contains(expected), "{url}: {message}");
            assert!(!message.contains("s3cret"), "{url}: {message}");
        }
    }
}
