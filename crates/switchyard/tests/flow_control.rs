//! Concurrency limits through the worker runtime, on the memory backend and on a real Redis:
//! eight workers of four slots each serve a queue limited to `L` active tasks; the handlers
//! themselves count how many run at once. Checked over thousands of tasks: never more than
//! `L` at once, the limit reached, every task succeeded once; and a slot held by a worker that
//! died comes back when maintenance reclaims its lease. And `TaskError::rate_limited`: the task
//! goes back to its place without using an attempt, and is the first to run when the hold ends.
//! And the same per group of a queue shared between groups (below `GROUPS`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use switchyard::backend::WorkerSpec;
use switchyard::flow::groups::GroupShare;
use switchyard::{
    Client, Error, Policy, QueueConfig, QueueName, ShutdownHandle, Strategy, TaskError,
    TaskOutcome, TaskSpec, Worker, WorkerReport,
};
use switchyard_testkit::redis_server::RedisServer;
use tokio::task::JoinHandle;

async fn client(redis: Option<&RedisServer>) -> Client {
    static NS: AtomicU64 = AtomicU64::new(0);
    match redis {
        None => Client::memory(),
        Some(server) => Client::connect(
            &server.url(),
            &format!("limit{}", NS.fetch_add(1, Ordering::SeqCst)),
        )
        .await
        .unwrap(),
    }
}

/// How many handlers run now, the most seen at once, and how many ran in all.
#[derive(Default)]
struct Gauge {
    now: AtomicU32,
    most: AtomicU32,
    runs: AtomicU32,
}

type Running = (ShutdownHandle, JoinHandle<switchyard::Result<WorkerReport>>);

/// Eight workers of four slots on queue `q`, each handler counted by `gauge`.
fn workers(c: &Client, gauge: &Arc<Gauge>) -> Vec<Running> {
    (0..8)
        .map(|i| {
            let gauge = gauge.clone();
            let worker = Worker::builder(c, &format!("w{i}"), ["q"])
                .unwrap()
                .capacity(4)
                .handle("work", move |_ctx, _payload| {
                    let gauge = gauge.clone();
                    async move {
                        let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
                        gauge.most.fetch_max(now, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        tokio::time::sleep(Duration::from_micros(200)).await;
                        gauge.now.fetch_sub(1, Ordering::SeqCst);
                        gauge.runs.fetch_add(1, Ordering::SeqCst);
                        Ok(Vec::new())
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

/// `tasks` tasks through a queue limited to `limit`: never more at once, the limit reached.
async fn never_more_than_the_limit(c: Client, strategy: Strategy, limit: u32, tasks: usize) {
    let config = QueueConfig::new(Policy::Fcfs, strategy).with_concurrency(limit);
    c.declare("q", config).await.unwrap();
    let gauge = Arc::new(Gauge::default());
    let running = workers(&c, &gauge);
    let specs = (0..tasks)
        .map(|_| TaskSpec::builder("q", "work").build().unwrap())
        .collect();
    let handles = c.submit_batch(specs).await.unwrap();
    for h in &handles {
        let outcome = h.wait(Duration::from_secs(60)).await.unwrap();
        assert!(matches!(outcome, TaskOutcome::Succeeded(_)), "{outcome:?}");
    }
    stop(running).await;
    let most = gauge.most.load(Ordering::SeqCst);
    eprintln!("{strategy:?}, limit {limit}: {tasks} tasks, at most {most} at once");
    assert!(
        most <= limit,
        "{most} handlers ran at once under a limit of {limit}"
    );
    assert_eq!(most, limit, "the limit was never reached");
    assert_eq!(
        gauge.runs.load(Ordering::SeqCst) as usize,
        tasks,
        "each ran once"
    );
}

/// A worker that takes the queue's only slot and dies: its lease is reclaimed when its
/// heartbeat expires (maintenance, run by the live workers), the slot comes back, and every
/// task, the dead worker's included, succeeds.
async fn a_dead_workers_slot_comes_back(c: Client) {
    let config = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin).with_concurrency(1);
    c.declare("q", config).await.unwrap();
    let dead = WorkerSpec::new("dead", ["q"])
        .unwrap()
        .capacity(4)
        .heartbeat_ttl(Duration::from_millis(500));
    c.backend().register_worker(dead).await.unwrap();
    let first = c
        .submit(TaskSpec::builder("q", "work").build().unwrap())
        .await
        .unwrap();
    let info = first.info().await.unwrap().unwrap();
    assert_eq!(info.worker.map(|w| w.to_string()), Some("dead".to_owned()));
    let mut handles = vec![first];
    for _ in 0..20 {
        handles.push(
            c.submit(TaskSpec::builder("q", "work").build().unwrap())
                .await
                .unwrap(),
        );
    }
    let stats = c.stats().await.unwrap();
    assert_eq!(
        (stats.queues[0].dispatched, stats.queues[0].ready),
        (1, 20),
        "the limit holds the rest while the dead worker has the slot"
    );
    let gauge = Arc::new(Gauge::default());
    let running = workers(&c, &gauge);
    for h in &handles {
        let outcome = h.wait(Duration::from_secs(30)).await.unwrap();
        assert!(matches!(outcome, TaskOutcome::Succeeded(_)), "{outcome:?}");
    }
    stop(running).await;
    assert_eq!(gauge.runs.load(Ordering::SeqCst), 21);
    assert_eq!(gauge.most.load(Ordering::SeqCst), 1);
}

/// A limit raised, then removed, by `reconfigure`: the waiting tasks go out in the same step,
/// up to the new limit, then to every free slot.
async fn reconfigure_takes_up_what_waits(c: Client) {
    let limited = QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin).with_concurrency(1);
    c.declare("q", limited).await.unwrap();
    let b = c.backend();
    for w in ["a", "b"] {
        b.register_worker(WorkerSpec::new(w, ["q"]).unwrap().capacity(4))
            .await
            .unwrap();
    }
    let specs = (0..10)
        .map(|_| TaskSpec::builder("q", "work").build().unwrap())
        .collect();
    c.submit_batch(specs).await.unwrap();
    let counts = |s: switchyard::Stats| (s.queues[0].dispatched, s.queues[0].ready);
    assert_eq!(counts(c.stats().await.unwrap()), (1, 9));
    let q = switchyard::QueueName::new("q").unwrap();
    b.reconfigure_queue(&q, limited.with_concurrency(3))
        .await
        .unwrap();
    assert_eq!(counts(c.stats().await.unwrap()), (3, 7), "raised to 3");
    let mut unlimited = limited;
    unlimited.concurrency = None;
    b.reconfigure_queue(&q, unlimited).await.unwrap();
    assert_eq!(
        counts(c.stats().await.unwrap()),
        (8, 2),
        "removed: every free slot"
    );
}

/// Tasks a, b, c wait in a FCFS queue served by one worker of one slot; the first run of `a`
/// answers `rate_limited(300 ms)`. Then `a` runs again first, still on attempt 1, no sooner
/// than the hold allows, and `b` and `c` follow in order; nothing counts as failed.
async fn a_rate_limited_task_keeps_its_place(c: Client) {
    const HOLD: Duration = Duration::from_millis(300);
    c.declare("q", QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin))
        .await
        .unwrap();
    let specs = ["a", "b", "c"]
        .map(|name| {
            TaskSpec::builder("q", "work")
                .payload(name)
                .build()
                .unwrap()
        })
        .to_vec();
    let handles = c.submit_batch(specs).await.unwrap();
    let starts: Arc<Mutex<Vec<(String, u32, std::time::Instant)>>> = Arc::default();
    let throttled = Arc::new(AtomicBool::new(false));
    let (seen, once) = (starts.clone(), throttled.clone());
    let worker = Worker::builder(&c, "w", ["q"])
        .unwrap()
        .capacity(1)
        .handle("work", move |ctx, payload| {
            let (seen, once) = (seen.clone(), once.clone());
            async move {
                let name = String::from_utf8(payload).unwrap();
                let first_a = name == "a" && !once.swap(true, Ordering::SeqCst);
                seen.lock()
                    .unwrap()
                    .push((name, ctx.attempt, std::time::Instant::now()));
                if first_a {
                    return Err(TaskError::rate_limited(HOLD));
                }
                Ok(Vec::new())
            }
        })
        .build()
        .unwrap();
    let running = vec![(worker.shutdown_handle(), tokio::spawn(worker.run()))];
    for h in &handles {
        let outcome = h.wait(Duration::from_secs(30)).await.unwrap();
        assert!(matches!(outcome, TaskOutcome::Succeeded(_)), "{outcome:?}");
    }
    let info = handles[0].info().await.unwrap().unwrap();
    assert_eq!(info.attempts, 1, "the throttled run used no attempt");
    let (stop, run) = running.into_iter().next().unwrap();
    stop.shutdown();
    let report = run.await.unwrap().unwrap();
    assert_eq!((report.throttled, report.failed), (1, 0));
    let starts = starts.lock().unwrap().clone();
    let order: Vec<(&str, u32)> = starts.iter().map(|(n, a, _)| (n.as_str(), *a)).collect();
    assert_eq!(order, [("a", 1), ("a", 1), ("b", 1), ("c", 1)]);
    let held = starts[1].2 - starts[0].2;
    // The hold is kept in whole milliseconds of the server's clock.
    assert!(
        held >= HOLD - Duration::from_millis(2),
        "a ran again {held:?} after it was held for {HOLD:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_keeps_a_rate_limited_tasks_place() {
    a_rate_limited_task_keeps_its_place(client(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keeps_a_rate_limited_tasks_place() {
    let server = RedisServer::start().unwrap();
    a_rate_limited_task_keeps_its_place(client(Some(&server)).await).await;
}

#[tokio::test]
async fn memory_takes_up_what_waits_when_the_limit_goes() {
    reconfigure_takes_up_what_waits(client(None).await).await;
}

#[tokio::test]
async fn redis_takes_up_what_waits_when_the_limit_goes() {
    let server = RedisServer::start().unwrap();
    reconfigure_takes_up_what_waits(client(Some(&server)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_never_runs_more_than_the_limit() {
    never_more_than_the_limit(client(None).await, Strategy::LeastLoaded, 1, 3_000).await;
    never_more_than_the_limit(client(None).await, Strategy::Pull, 3, 3_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_never_runs_more_than_the_limit() {
    let server = RedisServer::start().unwrap();
    never_more_than_the_limit(client(Some(&server)).await, Strategy::LeastLoaded, 1, 2_000).await;
    never_more_than_the_limit(client(Some(&server)).await, Strategy::Pull, 3, 2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_gets_a_dead_workers_slot_back() {
    a_dead_workers_slot_comes_back(client(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gets_a_dead_workers_slot_back() {
    let server = RedisServer::start().unwrap();
    a_dead_workers_slot_comes_back(client(Some(&server)).await).await;
}

// Per-group concurrency limits (`switchyard_core::flow::groups`): eight workers of four slots
// serve a queue shared between 50 groups, each limited to one active task; the handlers count
// how many tasks of their group run at once. Over 2,000 tasks: never two of one group at once,
// many groups at once, each task succeeded once; a group's slot held by a worker that died comes
// back when maintenance reclaims its lease, while the other groups run on.

const GROUPS: usize = 50;

/// Per group: how many of its handlers run now and the most seen at once; all groups: the
/// same, and how many ran in all.
struct Gauges {
    now: Vec<AtomicU32>,
    most: Vec<AtomicU32>,
    all_now: AtomicU32,
    all_most: AtomicU32,
    runs: AtomicU32,
}

impl Gauges {
    fn new() -> Arc<Gauges> {
        let zeros = || (0..GROUPS).map(|_| AtomicU32::new(0)).collect();
        Arc::new(Gauges {
            now: zeros(),
            most: zeros(),
            all_now: AtomicU32::new(0),
            all_most: AtomicU32::new(0),
            runs: AtomicU32::new(0),
        })
    }

    fn most_of_one_group(&self) -> u32 {
        self.most
            .iter()
            .map(|m| m.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0)
    }
}

/// Eight workers of four slots on queue `q`; each handler reads its group's number from the
/// payload and counts itself in.
fn group_workers(c: &Client, gauges: &Arc<Gauges>) -> Vec<Running> {
    (0..8)
        .map(|i| {
            let gauges = gauges.clone();
            let worker = Worker::builder(c, &format!("w{i}"), ["q"])
                .unwrap()
                .capacity(4)
                .handle("work", move |_ctx, payload| {
                    let gauges = gauges.clone();
                    async move {
                        let g: usize = String::from_utf8_lossy(&payload).parse().unwrap();
                        let now = gauges.now[g].fetch_add(1, Ordering::SeqCst) + 1;
                        gauges.most[g].fetch_max(now, Ordering::SeqCst);
                        let all = gauges.all_now.fetch_add(1, Ordering::SeqCst) + 1;
                        gauges.all_most.fetch_max(all, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        tokio::time::sleep(Duration::from_micros(300)).await;
                        gauges.all_now.fetch_sub(1, Ordering::SeqCst);
                        gauges.now[g].fetch_sub(1, Ordering::SeqCst);
                        gauges.runs.fetch_add(1, Ordering::SeqCst);
                        Ok(Vec::new())
                    }
                })
                .build()
                .unwrap();
            (worker.shutdown_handle(), tokio::spawn(worker.run()))
        })
        .collect()
}

fn one_per_group() -> QueueConfig {
    QueueConfig::new(Policy::Fcfs, Strategy::RoundRobin)
        .with_groups(GroupShare::default().with_concurrency(1))
}

fn task(group: usize) -> TaskSpec {
    TaskSpec::builder("q", "work")
        .group_key(format!("g{group}"))
        .payload(group.to_string())
        .build()
        .unwrap()
}

async fn never_two_of_one_group(c: Client) {
    const TASKS: usize = 2_000;
    c.declare("q", one_per_group()).await.unwrap();
    let gauges = Gauges::new();
    let running = group_workers(&c, &gauges);
    // Submitted group by group: the first groups' backlogs are whole before the last arrive.
    let specs = (0..TASKS).map(|i| task(i * GROUPS / TASKS)).collect();
    let handles = c.submit_batch(specs).await.unwrap();
    for h in &handles {
        let outcome = h.wait(Duration::from_secs(120)).await.unwrap();
        assert!(matches!(outcome, TaskOutcome::Succeeded(_)), "{outcome:?}");
    }
    stop(running).await;
    let (one, all) = (
        gauges.most_of_one_group(),
        gauges.all_most.load(Ordering::SeqCst),
    );
    eprintln!("{TASKS} tasks in {GROUPS} groups: at most {one} of one group, {all} in all");
    assert_eq!(one, 1, "a group limited to 1 ran {one} at once");
    assert!(all > 1, "the groups ran one at a time ({all}): no sharing");
    assert_eq!(gauges.runs.load(Ordering::SeqCst) as usize, TASKS);
    let groups = c
        .backend()
        .groups(&QueueName::new("q").unwrap())
        .await
        .unwrap();
    assert!(
        groups.iter().all(|g| g.ready == 0 && g.active == 0),
        "{groups:?}"
    );
}

/// A worker takes group 0's first task and dies: group 0 waits (its limit is 1) while group 1
/// runs; when maintenance reclaims the dead worker's lease the group's slot comes back and
/// every task of it succeeds, never two at once.
async fn a_dead_workers_group_slot_comes_back(c: Client) {
    c.declare("q", one_per_group()).await.unwrap();
    let dead = WorkerSpec::new("dead", ["q"])
        .unwrap()
        .capacity(4)
        .heartbeat_ttl(Duration::from_millis(500));
    c.backend().register_worker(dead).await.unwrap();
    let first = c.submit(task(0)).await.unwrap();
    let info = first.info().await.unwrap().unwrap();
    assert_eq!(info.worker.map(|w| w.to_string()), Some("dead".to_owned()));
    assert_eq!(info.group_key.as_deref(), Some("g0"));
    let mut handles = vec![first];
    for i in 0..20 {
        handles.push(c.submit(task(i % 2)).await.unwrap());
    }
    let stats = c.stats().await.unwrap();
    assert_eq!(
        (stats.queues[0].dispatched, stats.queues[0].ready),
        (2, 19),
        "group 0 is held by the dead worker's task; group 1's first went to its free slot too"
    );
    let gauges = Gauges::new();
    let running = group_workers(&c, &gauges);
    for h in &handles {
        let outcome = h.wait(Duration::from_secs(30)).await.unwrap();
        assert!(matches!(outcome, TaskOutcome::Succeeded(_)), "{outcome:?}");
    }
    stop(running).await;
    // The dead worker's two tasks ran again on the live workers: 21 runs in all.
    assert_eq!(gauges.runs.load(Ordering::SeqCst), 21);
    assert_eq!(gauges.most_of_one_group(), 1);
}

/// What is refused, and how it reads: a group key on a plain queue, fair share turned on while
/// tasks wait, a weight out of range.
async fn refusals_say_why(c: Client) {
    c.declare("plain", QueueConfig::default()).await.unwrap();
    let spec = TaskSpec::builder("plain", "work")
        .group_key("acme")
        .build()
        .unwrap();
    let e = c.submit(spec.clone()).await.unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
    assert!(
        e.to_string().contains("does not share between groups"),
        "{e}"
    );
    let e = c.submit_batch(vec![spec.clone()]).await.unwrap_err();
    assert!(
        e.to_string().contains("does not share between groups"),
        "{e}"
    );
    assert_eq!(
        c.stats().await.unwrap().queues[0].ready,
        0,
        "nothing stored"
    );
    let q = QueueName::new("plain").unwrap();
    let e = c
        .backend()
        .set_group_weight(&q, "acme", 3)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("does not share between groups"),
        "{e}"
    );
    // Turning sharing on with a task waiting.
    c.submit(TaskSpec::builder("plain", "work").build().unwrap())
        .await
        .unwrap();
    let e = c
        .backend()
        .reconfigure_queue(
            &q,
            QueueConfig::default().with_groups(GroupShare::default()),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("1 tasks are waiting or active"),
        "{e}"
    );
    // A weight out of range.
    c.declare("shared", one_per_group()).await.unwrap();
    let shared = QueueName::new("shared").unwrap();
    let e = c
        .backend()
        .set_group_weight(&shared, "acme", 0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("group weight"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_never_runs_two_of_one_group() {
    never_two_of_one_group(client(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_never_runs_two_of_one_group() {
    let server = RedisServer::start().unwrap();
    never_two_of_one_group(client(Some(&server)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_gets_a_dead_workers_group_slot_back() {
    a_dead_workers_group_slot_comes_back(client(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gets_a_dead_workers_group_slot_back() {
    let server = RedisServer::start().unwrap();
    a_dead_workers_group_slot_comes_back(client(Some(&server)).await).await;
}

#[tokio::test]
async fn memory_refusals_say_why() {
    refusals_say_why(client(None).await).await;
}

#[tokio::test]
async fn redis_refusals_say_why() {
    let server = RedisServer::start().unwrap();
    refusals_say_why(client(Some(&server)).await).await;
}
