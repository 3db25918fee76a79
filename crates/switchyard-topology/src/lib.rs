//! # switchyard-topology — planned, not implemented yet
//!
//! This crate is a placeholder: it has no API yet, and nothing in Switchyard depends on it.
//! Support for Redis Sentinel and Redis Cluster is the subject of a later issue; until then the
//! Redis backend (`switchyard-redis`) connects to one standalone Redis URL by itself.
//!
//! What it will hold — the ways the Redis backend reaches Redis:
//!
//! * **standalone**: one Redis server at a URL (what `switchyard-redis` does today);
//! * **Sentinel**: discover the master through the Sentinels, and follow a failover — reconnect
//!   on connection loss or a `READONLY` reply, including the dedicated connections that idle
//!   workers block on, so that workers do not go quiet after a failover;
//! * **Cluster**: route to the slot of a namespace's hash tag; for scale-out, split a namespace
//!   into partitions, each its own hash tag (so its own slot), with producers routing by affinity
//!   key or round-robin and workers serving partitions.
//!
//! Every script already touches a single hash tag (`sy:{ns}:…`), so the scripts themselves will
//! run unchanged on Cluster; what is missing is the connection layer above.
