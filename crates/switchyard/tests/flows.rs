//! Flows through the worker runtime (`switchyard::tree`), on the memory backend and on a real
//! Redis: a parent with 1,000 children over eight workers runs once, after every child, and
//! reads all 1,000 results; each failure policy end to end (the parent's maintenance is the
//! workers' own).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchyard::tree::{Flow, FlowNode, OnFailure};
use switchyard::{
    Client, QueueConfig, ShutdownHandle, TaskError, TaskOutcome, TaskSpec, Worker, WorkerReport,
};
use switchyard_testkit::redis_server::RedisServer;
use tokio::task::JoinHandle;

async fn client(redis: Option<&RedisServer>) -> Client {
    static NS: AtomicU64 = AtomicU64::new(0);
    match redis {
        None => Client::memory(),
        Some(server) => Client::connect(
            &server.url(),
            &format!("flows{}", NS.fetch_add(1, Ordering::SeqCst)),
        )
        .await
        .unwrap(),
    }
}

type Running = (ShutdownHandle, JoinHandle<switchyard::Result<WorkerReport>>);

/// What the parent handler saw: how often it ran, and the children's results it read.
#[derive(Default)]
struct Seen {
    parent_runs: AtomicU32,
    /// How many children had ended when the parent last started.
    children_done_at_parent: AtomicU32,
}

/// Eight workers of four slots on `images` and `archives`: `resize` answers its payload (and
/// fails for a payload starting with `bad`), `zip` reads its children and answers how many
/// succeeded.
fn workers(c: &Client, seen: &Arc<Seen>, done: &Arc<AtomicU32>) -> Vec<Running> {
    (0..8)
        .map(|i| {
            let (seen, done, ended) = (seen.clone(), done.clone(), done.clone());
            let worker = Worker::builder(c, &format!("w{i}"), ["images", "archives"])
                .unwrap()
                .capacity(4)
                .handle("resize", move |_ctx, payload| {
                    let done = done.clone();
                    async move {
                        if payload.starts_with(b"bad") {
                            done.fetch_add(1, Ordering::SeqCst);
                            return Err(TaskError::fatal("cannot resize"));
                        }
                        if payload.starts_with(b"slow") {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                        Ok(payload)
                    }
                })
                .handle("zip", move |ctx, _payload| {
                    let (seen, ended) = (seen.clone(), ended.clone());
                    async move {
                        seen.parent_runs.fetch_add(1, Ordering::SeqCst);
                        seen.children_done_at_parent
                            .store(ended.load(Ordering::SeqCst), Ordering::SeqCst);
                        let children = ctx.children().await.map_err(TaskError::retry)?;
                        let ok = children.iter().filter(|c| c.succeeded()).count();
                        Ok(format!("{ok}/{}", children.len()).into_bytes())
                    }
                })
                .build()
                .unwrap();
            (worker.shutdown_handle(), tokio::spawn(worker.run()))
        })
        .collect()
}

async fn stop(running: Vec<Running>) {
    for (stop, _) in &running {
        stop.shutdown();
    }
    for (_, run) in running {
        run.await.unwrap().unwrap();
    }
}

fn resize(payload: &str) -> TaskSpec {
    TaskSpec::builder("images", "resize")
        .payload(payload.as_bytes().to_vec())
        .max_attempts(1)
        .build()
        .unwrap()
}

fn zip() -> TaskSpec {
    TaskSpec::builder("archives", "zip").build().unwrap()
}

async fn declare(c: &Client) {
    c.declare("images", QueueConfig::default()).await.unwrap();
    c.declare("archives", QueueConfig::default()).await.unwrap();
}

/// 1,000 children over eight workers: the parent runs once, after every child, and reads
/// every result.
async fn a_thousand_children(c: Client) {
    declare(&c).await;
    let seen = Arc::new(Seen::default());
    let done = Arc::new(AtomicU32::new(0));
    let running = workers(&c, &seen, &done);
    let children: Vec<TaskSpec> = (0..1_000).map(|i| resize(&format!("img-{i}"))).collect();
    let flow = Flow::new(zip()).children(children.iter().cloned().map(FlowNode::new));
    let started = Instant::now();
    let handles = c.submit_flow(flow).await.unwrap();
    assert_eq!(handles.len(), 1_001);
    let outcome = handles[0].wait(Duration::from_secs(120)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(outcome, TaskOutcome::Succeeded(b"1000/1000".to_vec()));
    assert_eq!(
        seen.parent_runs.load(Ordering::SeqCst),
        1,
        "the parent ran once"
    );
    assert_eq!(done.load(Ordering::SeqCst), 1_000, "each child ran once");
    assert_eq!(
        seen.children_done_at_parent.load(Ordering::SeqCst),
        1_000,
        "the parent started after every child had ended"
    );
    let ends = c
        .backend()
        .children(handles[0].id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ends.len(), 1_000);
    for (end, spec) in ends.iter().zip(&children) {
        assert_eq!(end.id, spec.id());
        assert_eq!(
            end.outcome,
            Some(TaskOutcome::Succeeded(spec.payload().to_vec())),
            "{}",
            end.id
        );
    }
    eprintln!("1,000 children and their parent over 8 workers: {took:?}");
    stop(running).await;
}

/// Each failure policy end to end.
async fn failure_policies(c: Client) {
    declare(&c).await;
    let seen = Arc::new(Seen::default());
    let done = Arc::new(AtomicU32::new(0));
    let running = workers(&c, &seen, &done);

    // Fail the parent: it ends dead, naming the child.
    let bad = resize("bad-1");
    let flow = Flow::new(zip())
        .child(FlowNode::new(resize("ok-1")))
        .child(FlowNode::new(bad.clone()));
    let h = c.submit_flow(flow).await.unwrap();
    let outcome = h[0].wait(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        outcome,
        TaskOutcome::Dead(format!("child {} failed", bad.id()))
    );

    // Ignore: the parent runs and counts the failure.
    let flow = Flow::new(zip())
        .child(FlowNode::new(resize("ok-2")))
        .child(FlowNode::new(resize("bad-2")).on_failure(OnFailure::Ignore));
    let h = c.submit_flow(flow).await.unwrap();
    let outcome = h[0].wait(Duration::from_secs(30)).await.unwrap();
    assert_eq!(outcome, TaskOutcome::Succeeded(b"1/2".to_vec()));

    // Continue: the parent runs at the failure, before its slow sibling ends.
    let flow = Flow::new(zip())
        .child(FlowNode::new(resize("slow-3")))
        .child(FlowNode::new(resize("bad-3")).on_failure(OnFailure::Continue));
    let h = c.submit_flow(flow).await.unwrap();
    let outcome = h[0].wait(Duration::from_secs(30)).await.unwrap();
    assert_eq!(outcome, TaskOutcome::Succeeded(b"0/2".to_vec()));
    let slow = h[1].wait(Duration::from_secs(30)).await.unwrap();
    assert_eq!(slow, TaskOutcome::Succeeded(b"slow-3".to_vec()));
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_runs_a_parent_once_after_a_thousand_children() {
    a_thousand_children(client(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_runs_a_parent_once_after_a_thousand_children() {
    let server = RedisServer::start().unwrap();
    a_thousand_children(client(Some(&server)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_follows_each_failure_policy() {
    failure_policies(client(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_follows_each_failure_policy() {
    let server = RedisServer::start().unwrap();
    failure_policies(client(Some(&server)).await).await;
}

/// The widest flow: 10,000 tasks, staged in steps of `FLOW_STEP` and made seen by maintenance
/// a step a round (`switchyard::tree`, rule 6); the calls' server time is printed
/// (`docs/performance.md`) beside a plain batch's. One more task is refused before anything is
/// sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stages_the_widest_flow() {
    use switchyard::tree::{FLOW_STEP, MAX_FLOW_TASKS};
    let server = RedisServer::start().unwrap();
    let c = client(Some(&server)).await;
    declare(&c).await;
    // (calls, µs) of FCALL so far.
    let fcalls = || async {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        let line = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_fcall:"))
            .unwrap_or_default()
            .to_owned();
        let field = |name: &str| {
            line.split(',')
                .find_map(|f| f.strip_prefix(name))
                .map_or(0u64, |v| v.parse().unwrap())
        };
        (field("calls="), field("usec="))
    };
    let count = |c: &Client| {
        let c = c.clone();
        async move {
            let stats = c.stats().await.unwrap();
            stats.queues.iter().map(|q| q.total()).sum::<u64>()
        }
    };
    let wide = |n: usize| {
        Flow::new(zip()).children((0..n).map(|i| FlowNode::new(resize(&format!("img-{i}")))))
    };
    let before = fcalls().await;
    let handles = c.submit_flow(wide(MAX_FLOW_TASKS - 1)).await.unwrap();
    let staged = fcalls().await;
    assert_eq!(handles.len(), MAX_FLOW_TASKS);
    assert_eq!(count(&c).await, 0, "nothing is seen before maintenance");
    let mut rounds = 0;
    loop {
        let report = c.backend().maintain(1_000).await.unwrap();
        rounds += report.flows_settled;
        if !report.more && report.flows_settled == 0 {
            break;
        }
    }
    let seen = fcalls().await;
    assert_eq!(rounds, MAX_FLOW_TASKS.div_ceil(FLOW_STEP));
    assert_eq!(count(&c).await, MAX_FLOW_TASKS as u64);
    let stats = c.stats().await.unwrap();
    let archives = stats
        .queues
        .iter()
        .find(|q| q.queue.as_ref().is_some_and(|q| q.as_str() == "archives"))
        .unwrap();
    assert_eq!(archives.waiting_children, 1);
    eprintln!(
        "a flow of {MAX_FLOW_TASKS} tasks: submitted in {} calls, {} µs of server time ({} µs a call); \
         made seen in {rounds} rounds, {} calls, {} µs",
        staged.0 - before.0,
        staged.1 - before.1,
        (staged.1 - before.1) / (staged.0 - before.0).max(1),
        seen.0 - staged.0,
        seen.1 - staged.1,
    );
    // The same number of plain tasks as a batch (in steps of 256), for comparison.
    let before = fcalls().await;
    let batch = (0..MAX_FLOW_TASKS)
        .map(|i| resize(&format!("plain-{i}")))
        .collect();
    c.submit_batch(batch).await.unwrap();
    let after = fcalls().await;
    eprintln!(
        "{MAX_FLOW_TASKS} plain tasks as a batch: {} calls, {} µs of server time",
        after.0 - before.0,
        after.1 - before.1
    );
    let err = c.submit_flow(wide(MAX_FLOW_TASKS)).await.unwrap_err();
    assert!(err.to_string().contains("more than 10000 tasks"), "{err}");
}
