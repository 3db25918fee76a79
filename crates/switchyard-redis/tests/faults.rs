//! Faults found from outside, on real servers: a batch cut short by `maxmemory` says what it
//! stored, a server that is not Redis is named as such, worker ids are fenced by instance.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use switchyard_core::prelude::*;
use switchyard_core::{
    BackendErrorKind, Error, Policy, QueueConfig, QueueName, Strategy, TaskSpec, WorkerSpec,
};
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::{RedisServer, ServerOptions};

async fn config_set(server: &RedisServer, name: &str, value: &str) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// With `maxmemory` reached part-way, `submit_batch` answers `BatchIncomplete`: the tasks it
/// lists are exactly the ones stored (on one backend, the first ones, in order), and
/// submitting the same specs again once there is room stores the rest, the stored ones coming
/// back as duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_short_by_maxmemory_says_what_it_stored_and_resubmitting_completes_it() {
    let server = RedisServer::start_with(
        &ServerOptions::default()
            .arg("maxmemory", "3mb")
            .arg("maxmemory-policy", "noeviction"),
    )
    .unwrap();
    let b = RedisBackend::connect(&server.url(), "oom").await.unwrap();
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::Pull))
        .await
        .unwrap();
    let specs: Vec<TaskSpec> = (0..20_000)
        .map(|i| {
            TaskSpec::builder("q", "k")
                .payload(format!("{i:0>200}").into_bytes())
                .build()
                .unwrap()
        })
        .collect();
    let err = b.submit_batch(specs.clone()).await.unwrap_err();
    eprintln!("{err}");
    let Error::BatchIncomplete {
        total,
        accepted,
        source,
    } = &err
    else {
        panic!("expected BatchIncomplete, got {err}");
    };
    assert_eq!(*total, 20_000);
    assert!(
        !accepted.is_empty() && accepted.len() < 20_000,
        "{}",
        accepted.len()
    );
    assert!(
        matches!(
            **source,
            Error::Backend {
                kind: BackendErrorKind::OutOfMemory,
                ..
            }
        ),
        "{source}"
    );
    let message = err.to_string();
    assert!(message.contains(&format!("{} of 20000 tasks were stored", accepted.len())));
    assert!(message.contains("submitting the same specs again is safe"));
    // Exactly the listed tasks are stored: the first ones, in order.
    for (k, (i, outcome)) in accepted.iter().enumerate() {
        assert_eq!(*i, k);
        assert_eq!(outcome.id, specs[k].id());
        assert!(!outcome.duplicate);
    }
    let stats = b.stats().await.unwrap();
    assert_eq!(stats.queues[0].ready, accepted.len() as u64);
    let next = specs[accepted.len()].id();
    assert!(b.get_task(next).await.unwrap().is_none());

    config_set(&server, "maxmemory", "0").await;
    let again = b.submit_batch(specs.clone()).await.unwrap();
    let duplicates = again.iter().filter(|o| o.duplicate).count();
    assert_eq!(duplicates, accepted.len());
    assert!(again[..accepted.len()].iter().all(|o| o.duplicate));
    assert_eq!(b.stats().await.unwrap().queues[0].ready, 20_000);
}

/// A port that answers HTTP instead of Redis: the error says so in one line, under its own
/// kind, instead of a parser message under "protocol" (which means a Switchyard bug).
#[tokio::test]
async fn a_server_that_is_not_redis_is_named_as_such() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nBad Request",
            );
        }
    });
    let config = RedisConfig {
        response_timeout: Duration::from_secs(5),
        ..RedisConfig::new(format!("redis://127.0.0.1:{port}"), "x")
    };
    let err = RedisBackend::with_config(config).await.unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(
        matches!(
            err,
            Error::Backend {
                kind: BackendErrorKind::NotRedis,
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("this is not a Redis server"), "{text}");
    assert!(!text.contains('\n'), "one line: {text:?}");
}

/// Instance fencing on a real server, as the lockstep tests check it against the reference:
/// a live registration of another instance is refused; an expired one is taken over, and the
/// old instance's calls are refused from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_ids_are_fenced_by_instance() {
    let server = RedisServer::start().unwrap();
    let b = RedisBackend::connect(&server.url(), "fence").await.unwrap();
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::default()).await.unwrap();
    let first = WorkerSpec::new("w", ["q"])
        .unwrap()
        .heartbeat_ttl(Duration::from_millis(1_500));
    b.register_worker(first.clone()).await.unwrap();
    let second = first.renewed();
    match b.register_worker(second.clone()).await {
        Err(Error::WorkerIdInUse {
            worker,
            expires_in_ms,
        }) => {
            assert_eq!(worker.as_str(), "w");
            assert!(expires_in_ms <= 1_500, "{expires_in_ms}");
        }
        other => panic!("expected WorkerIdInUse, got {other:?}"),
    }
    // The same instance may register again (a retried call): it replaces itself.
    assert!(b.register_worker(first.clone()).await.unwrap().replaced);
    b.heartbeat(&first.worker_ref()).await.unwrap();
    // No heartbeat for longer than the TTL: the registration expires.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert!(b.register_worker(second.clone()).await.unwrap().replaced);
    let old = first.worker_ref();
    for refused in [
        b.heartbeat(&old).await.err(),
        b.receive(&old, 1).await.err(),
        b.drain_worker(&old).await.err(),
        b.deregister_worker(&old).await.err(),
    ] {
        assert!(
            matches!(refused, Some(Error::WorkerReplaced(ref w)) if w.as_str() == "w"),
            "{refused:?}"
        );
    }
    b.heartbeat(&second.worker_ref()).await.unwrap();
    assert_eq!(b.stats().await.unwrap().workers.len(), 1);
}

/// Connecting and working leaves no error in the server's statistics (redis-rs's greeting,
/// `CLIENT SETINFO`, is not sent: Redis before 7.2 answers it with `ERR`), and a password given
/// as `?password=` in the URL is used, as the messages that hide it suggest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_leaves_no_errors_and_a_query_password_is_used() {
    let server =
        RedisServer::start_with(&ServerOptions::default().arg("requirepass", "s3cret")).unwrap();
    // The test's own connection (a plain redis-rs one, which greets with CLIENT SETINFO) and
    // the harness's readiness probe leave their errors before the count is reset.
    let admin =
        redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}", server.port())).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let url = format!("redis://127.0.0.1:{}/?password=s3cret", server.port());
    let b = RedisBackend::connect(&url, "quiet").await.unwrap();
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::default()).await.unwrap();
    b.submit(TaskSpec::builder("q", "k").build().unwrap())
        .await
        .unwrap();
    b.stats().await.unwrap();
    let errors: String = redis::cmd("INFO")
        .arg("errorstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        !errors.contains("errorstat_"),
        "the server counted errors: {errors}"
    );
}
