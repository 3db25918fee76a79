//! The Redis backend against a real redis-server: the main transitions, the function library
//! coming back after FUNCTION FLUSH, and the errors a user can act on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::time::Duration;
use switchyard_testkit::{me, test_worker};

use switchyard_core::prelude::*;
use switchyard_core::{
    Ack, BackendErrorKind, Clock, Error, ManualClock, Policy, QueueConfig, QueueName, Rejection,
    Strategy, TaskOutcome, TaskSpec, TaskState,
};
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;

async fn backend(server: &RedisServer, ns: &str) -> (RedisBackend, ManualClock) {
    let clock = ManualClock::new(1_700_000_000_000);
    let config = RedisConfig::new(server.url(), ns).with_clock(Arc::new(clock.clone()));
    (RedisBackend::with_config(config).await.unwrap(), clock)
}

#[tokio::test]
async fn a_task_goes_through_its_life() {
    let server = RedisServer::start().unwrap();
    let (b, clock) = backend(&server, "life").await;
    let q = QueueName::new("emails").unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin))
        .await
        .unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin))
        .await
        .unwrap();
    let conflict = b
        .declare_queue(&q, QueueConfig::new(Policy::SJF, Strategy::RoundRobin))
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, Error::QueueConflict { .. }),
        "{conflict}"
    );
    assert!(
        conflict.to_string().contains("policy fcfs → sjf"),
        "{conflict}"
    );
    // The same configuration stored in another spelling (say, by another version, with its
    // fields in another order) is the same configuration: declaring it again is fine.
    let probe = redis::Client::open(server.url()).unwrap();
    let mut conn = probe.get_multiplexed_async_connection().await.unwrap();
    let meta = "sy:{life}:meta";
    let stored: String = redis::cmd("HGET")
        .arg(meta)
        .arg("emails")
        .query_async(&mut conn)
        .await
        .unwrap();
    let fields: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&stored).unwrap();
    let respelled = serde_json::to_string(&fields).unwrap();
    assert_ne!(respelled, stored, "the fields are stored in another order");
    let _: () = redis::cmd("HSET")
        .arg(meta)
        .arg("emails")
        .arg(&respelled)
        .query_async(&mut conn)
        .await
        .unwrap();
    b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin))
        .await
        .unwrap();

    let spec = TaskSpec::builder("emails", "send")
        .payload(b"hi".to_vec())
        .build()
        .unwrap();
    let id = spec.id();
    let out = b.submit(spec.clone()).await.unwrap();
    assert_eq!(out.state, Some(TaskState::Ready));
    assert!(b.submit(spec).await.unwrap().duplicate);

    b.register_worker(test_worker("w1", ["emails"]).capacity(2))
        .await
        .unwrap();
    assert_eq!(
        b.get_task(id).await.unwrap().unwrap().state,
        TaskState::Dispatched
    );
    let w = me("w1");
    let ds = b.receive(&w, 5).await.unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].payload, b"hi");
    assert_eq!(ds[0].kind.as_str(), "send");
    assert_eq!(ds[0].attempt, 1);
    clock.advance(Duration::from_millis(5));
    let ack = b.complete(&ds[0].lease, b"sent".to_vec()).await.unwrap();
    assert_eq!(ack.ack, Ack::Completed);
    let again = b.complete(&ds[0].lease, b"sent".to_vec()).await.unwrap();
    assert_eq!(
        again.ack,
        Ack::Rejected(Rejection::NotRunning(TaskState::Succeeded))
    );
    assert_eq!(
        b.get_outcome(id).await.unwrap(),
        Some(TaskOutcome::Succeeded(b"sent".to_vec()))
    );
    let stats = b.stats().await.unwrap();
    assert_eq!(stats.queues[0].succeeded, 1);
    assert_eq!(stats.workers[0].inflight, 0);
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}

/// Runs one raw command and returns its reply.
async fn raw(conn: &mut impl redis::aio::ConnectionLike, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    cmd.query_async(conn).await.unwrap()
}

/// The names of the libraries the server holds.
async fn libraries(conn: &mut impl redis::aio::ConnectionLike) -> Vec<String> {
    let list: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(conn)
        .await
        .unwrap();
    list.into_iter()
        .map(|lib| {
            let fields: Vec<redis::Value> = redis::FromRedisValue::from_redis_value(lib).unwrap();
            let at = fields
                .iter()
                .position(|f| matches!(f, redis::Value::BulkString(b) if b == b"library_name"))
                .unwrap();
            redis::FromRedisValue::from_redis_value(fields[at + 1].clone()).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn the_function_library_comes_back_after_a_flush_or_another_version() {
    let server = RedisServer::start().unwrap();
    let (b, _) = backend(&server, "flush").await;
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::default()).await.unwrap();
    let mut conn = b.connection().await.unwrap();
    let ours = libraries(&mut conn).await;
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(ours[0].starts_with("switchyard_"), "{ours:?}");

    // Emptied (as after a restart without persistence).
    raw(&mut conn, &["FUNCTION", "FLUSH"]).await;
    assert!(libraries(&mut conn).await.is_empty());
    let out = b
        .submit(TaskSpec::builder("q", "k").build().unwrap())
        .await
        .unwrap();
    assert_eq!(out.state, Some(TaskState::Ready));
    assert_eq!(libraries(&mut conn).await, ours);

    // Another release's library only: ours is loaded beside it, theirs is left alone.
    raw(&mut conn, &["FUNCTION", "FLUSH"]).await;
    let theirs = "#!lua name=switchyard_000000000000\n\
                  redis.register_function('sy_000000000000_stats', function() return 1 end)";
    raw(&mut conn, &["FUNCTION", "LOAD", theirs]).await;
    let stats = b.stats().await.unwrap();
    assert_eq!(stats.queues[0].ready, 1);
    let mut now = libraries(&mut conn).await;
    now.sort();
    assert_eq!(
        now,
        vec!["switchyard_000000000000".to_owned(), ours[0].clone()]
    );
}

#[tokio::test]
async fn a_lua_error_names_its_file_and_line() {
    let server = RedisServer::start().unwrap();
    let (b, _) = backend(&server, "corrupt").await;
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::default()).await.unwrap();
    let mut conn = b.connection().await.unwrap();
    // A worker record too short to unpack: stats.lua fails reading it.
    raw(
        &mut conn,
        &["HSET", "sy:{corrupt}:workers", "w1", "garbage"],
    )
    .await;
    let err = b.stats().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("lua/stats.lua:"), "{text}");
    assert!(!text.contains("user_function"), "{text}");
}

#[tokio::test]
async fn errors_say_what_to_do() {
    let server = RedisServer::start().unwrap();
    let (b, _) = backend(&server, "errors").await;
    let err = b
        .submit(TaskSpec::builder("nowhere", "k").build().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownQueue(q) if q.as_str() == "nowhere"),
        "{err}"
    );
    let err = b.receive(&me("ghost"), 1).await.unwrap_err();
    assert!(matches!(err, Error::UnknownWorker(_)), "{err}");
    let err = b.cancel(switchyard_core::TaskId::new()).await.unwrap_err();
    assert!(matches!(err, Error::TaskNotFound(_)), "{err}");

    // Nothing listens on this port any more.
    let port = server.port();
    drop(server);
    let err = RedisBackend::connect(&format!("redis://127.0.0.1:{port}"), "x")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                kind: BackendErrorKind::Connection,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("refused") || err.to_string().contains("connect"),
        "{err}"
    );
    // The Redis error itself is kept as the source, for callers that need more than the kind.
    let cause = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<redis::RedisError>())
        .unwrap_or_else(|| panic!("no redis::RedisError under {err:?}"));
    assert!(
        cause.is_connection_refusal() || cause.is_io_error(),
        "{cause:?}"
    );
    let err = RedisBackend::connect("redis://127.0.0.1:1", "bad{ns}")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("namespace"), "{err}");
}

#[tokio::test]
async fn out_of_memory_is_reported_as_such() {
    let server = RedisServer::start().unwrap();
    let (b, _) = backend(&server, "oom").await;
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::default()).await.unwrap();
    let mut conn = b.connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = b
        .submit(TaskSpec::builder("q", "k").build().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                kind: BackendErrorKind::OutOfMemory,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_idle_worker_blocks_until_work_arrives() {
    let server = RedisServer::start().unwrap();
    let (b, _) = backend(&server, "wait").await;
    for (name, strategy) in [("push", Strategy::LeastLoaded), ("pull", Strategy::Pull)] {
        let q = QueueName::new(name).unwrap();
        b.declare_queue(&q, QueueConfig::new(Policy::Fcfs, strategy))
            .await
            .unwrap();
        let worker = format!("{name}-worker");
        b.register_worker(test_worker(&worker, [name]))
            .await
            .unwrap();
        let waiter = {
            let b = b.clone();
            let w = me(&worker);
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let got = b
                    .receive_wait(&w, 1, Duration::from_secs(20))
                    .await
                    .unwrap();
                (got, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = b
            .submit(TaskSpec::builder(name, "k").build().unwrap())
            .await
            .unwrap()
            .id;
        let (got, waited) = waiter.await.unwrap();
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0].lease.task, id);
        assert!(
            waited < Duration::from_secs(10),
            "{name}: woken by the submit, not the timeout ({waited:?})"
        );
    }
}

#[tokio::test]
async fn awaiting_an_outcome_does_not_poll() {
    let server = RedisServer::start().unwrap();
    let (b, clock) = backend(&server, "await").await;
    let q = QueueName::new("q").unwrap();
    b.declare_queue(&q, QueueConfig::default()).await.unwrap();
    b.register_worker(test_worker("w", ["q"])).await.unwrap();
    let id = b
        .submit(TaskSpec::builder("q", "k").max_attempts(1).build().unwrap())
        .await
        .unwrap()
        .id;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.wait_outcome(id, Duration::from_secs(20)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = b.receive(&me("w"), 1).await.unwrap().remove(0);
    let _ = clock.now_ms();
    b.fail(&d.lease, "no such mailbox", true).await.unwrap();
    assert_eq!(
        waiter.await.unwrap(),
        Some(TaskOutcome::Dead("no such mailbox".into()))
    );
}
