//! The weighted strategy's renormalisation (at a virtual time of 2⁴⁰) is too far away for the
//! random scenarios to reach, so this test puts a Redis queue just before it — by writing the
//! balancer state the way the scripts store it (docs/redis-layout.md) — and checks that the
//! Lua picks the same workers as the reference rule in `switchyard_core::strategy::Weighted`
//! from the same state, across the renormalisation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;

use redis::AsyncCommands;
use switchyard_core::prelude::*;
use switchyard_core::strategy::{WEIGHTED_RENORM_AT, Weighted, first_n_at, pass};
use switchyard_core::{
    ManualClock, Policy, QueueConfig, QueueName, Strategy, TaskIdGenerator, TaskSpec, WorkerId,
    WorkerSpec,
};
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;

fn be6(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[tokio::test]
async fn lua_renormalises_like_the_reference() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let b = RedisBackend::with_config(
        RedisConfig::new(server.url(), "renorm").with_clock(Arc::new(clock)),
    )
    .await
    .unwrap();
    let q = QueueName::new("w").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::Weighted))
        .await
        .unwrap();
    let weights = [("a", 1u32), ("b", 3), ("c", 7)];
    for (id, weight) in weights {
        b.register_worker(
            WorkerSpec::new(id, ["w"])
                .unwrap()
                .capacity(1000)
                .weight(weight),
        )
        .await
        .unwrap();
    }
    // Move everyone to just before the renormalisation point, in Redis and in the reference.
    let vt = WEIGHTED_RENORM_AT - 40_000;
    let mut members = Vec::new();
    let mut conn = b.connection().await.unwrap();
    let free = b.key("free").unwrap().to_owned();
    let workers = b.key("workers").unwrap().to_owned();
    let _: () = conn.del(&free).await.unwrap();
    for (i, (id, weight)) in weights.into_iter().enumerate() {
        let n = first_n_at(vt, weight) + i as u64;
        let member = format!("w|{:013x}|{id}", pass(n, weight));
        // The weighted balancer state (`BAL` in lua/lib/protocol.lua): weight, n, epoch, then the entry.
        let mut state = u16::try_from(weight).unwrap().to_be_bytes().to_vec();
        state.extend_from_slice(&be6(n));
        state.extend_from_slice(&be6(0));
        state.extend_from_slice(member.as_bytes());
        let _: () = conn.hset(&workers, format!("{id}|w"), state).await.unwrap();
        let _: () = conn.zadd(&free, &member, 0).await.unwrap();
        members.push((WorkerId::new(id).unwrap(), weight, n));
    }
    let [state_key, ..] = b.queue_keys(&q);
    let d: Vec<u8> = conn.hget(&state_key, "d").await.unwrap();
    let mut patched = d[..18].to_vec(); // tombstones, random state, jitter state
    patched.extend_from_slice(&be6(vt));
    patched.extend_from_slice(&be6(0));
    patched.extend_from_slice(&d[30..]);
    let _: () = conn.hset(&state_key, "d", patched).await.unwrap();
    let mut reference = Weighted::restore(members, vt);

    let mut ids = TaskIdGenerator::new(3);
    for n in 0..400 {
        let spec = TaskSpec::builder("w", "job")
            .id(ids.next_at(1))
            .build()
            .unwrap();
        let got = b.submit(spec).await.unwrap().assigned;
        let want = reference.pick_next();
        assert_eq!(got, want, "pick {n} differs");
    }
    assert!(
        reference.epoch() >= 1,
        "the run crossed the renormalisation point"
    );
    let d: Vec<u8> = conn.hget(&state_key, "d").await.unwrap();
    let epoch = d[24..30].iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
    assert_eq!(epoch, reference.epoch(), "Redis renormalised too");
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error() {
    use switchyard_core::{BackendErrorKind, Error};
    use switchyard_testkit::redis_server::ServerOptions;
    let server =
        RedisServer::start_with(&ServerOptions::default().arg("requirepass", "s3cret")).unwrap();
    let err = RedisBackend::connect(&server.url(), "auth")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                kind: BackendErrorKind::Auth,
                ..
            }
        ),
        "{err}"
    );
    let url = format!("redis://:s3cret@127.0.0.1:{}", server.port());
    RedisBackend::connect(&url, "auth").await.unwrap();
}
