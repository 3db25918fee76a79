//! Partitioned namespaces on the in-memory reference backend (one `MemoryBackend` per
//! partition): routing by key and by id, every task done by the workers the assignment names,
//! and the assignment following a worker that leaves and one that joins; and, on Redis, a
//! partitioned batch cut short by `maxmemory`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard::backend::prelude::*;
use switchyard::partition::route::partition_of;
use switchyard::{
    Client, MemoryBackend, Partitioned, QueueConfig, TaskId, TaskSpec, TaskState, Worker, WorkerId,
};
use switchyard_testkit::wait_until;

const P: u16 = 3;

fn partitioned() -> (Client, Arc<Partitioned>) {
    let parts: Vec<Arc<dyn Backend>> = (0..P)
        .map(|_| Arc::new(MemoryBackend::new()) as Arc<dyn Backend>)
        .collect();
    let backend = Arc::new(Partitioned::new(parts).unwrap());
    (Client::from_arc(backend.clone()), backend)
}

/// Which worker ran each task.
type Runs = Arc<Mutex<HashMap<TaskId, Vec<String>>>>;

fn worker(client: &Client, name: &str, runs: &Runs) -> Worker {
    let (runs, me) = (runs.clone(), name.to_owned());
    Worker::builder(client, name, ["jobs"])
        .unwrap()
        .capacity(4)
        .heartbeat_ttl(Duration::from_millis(600))
        .handle("noop", move |ctx, _payload| {
            let (runs, me) = (runs.clone(), me.clone());
            async move {
                runs.lock().unwrap().entry(ctx.id).or_default().push(me);
                Ok(Vec::new())
            }
        })
        .build()
        .unwrap()
}

async fn submit_all(client: &Client, n: usize) -> Vec<TaskId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let spec = TaskSpec::builder("jobs", "noop").build().unwrap();
        ids.push(client.submit(spec).await.unwrap().id());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_spread_and_follow_the_assignment() {
    let (client, backend) = partitioned();
    client
        .declare("jobs", QueueConfig::default())
        .await
        .unwrap();

    // Keys: one partition per key; ids name it.
    let keyed: Vec<TaskId> = {
        let mut ids = Vec::new();
        for _ in 0..20 {
            let spec = TaskSpec::builder("jobs", "noop")
                .affinity_key("customer-42")
                .build()
                .unwrap();
            ids.push(client.submit(spec).await.unwrap().id());
        }
        ids
    };
    let home: BTreeSet<u16> = keyed.iter().map(|id| partition_of(*id, P)).collect();
    assert_eq!(home.len(), 1, "one key, one partition");
    let loose = submit_all(&client, 300).await;
    let mut per_partition = [0usize; P as usize];
    for id in &loose {
        per_partition[usize::from(partition_of(*id, P))] += 1;
    }
    assert!(per_partition.iter().all(|n| *n > 50), "{per_partition:?}");
    // Each partition holds its tasks, and only those.
    for (p, part) in backend.partitions().iter().enumerate() {
        let ready = part.stats().await.unwrap().queues[0].ready as usize;
        let expected = per_partition[p] + if home.contains(&(p as u16)) { 20 } else { 0 };
        assert_eq!(ready, expected, "partition {p}");
    }

    // Two workers for three partitions: one serves two.
    let runs: Runs = Arc::default();
    let a = worker(&client, "a", &runs);
    let b = worker(&client, "b", &runs);
    let (stop_a, stop_b) = (a.shutdown_handle(), b.shutdown_handle());
    let run_a = tokio::spawn(a.run());
    let run_b = tokio::spawn(b.run());
    let all: Vec<TaskId> = keyed.iter().chain(&loose).copied().collect();
    wait_until(Duration::from_secs(30), "every task run", || {
        let r = runs.lock().unwrap();
        all.iter().all(|id| r.contains_key(id))
    })
    .await;
    let serving = |w: &str| backend.serving(&WorkerId::new(w).unwrap());
    // `a` started alone and took all three; `b`'s registration makes it give one up.
    wait_until(
        Duration::from_secs(10),
        "two workers sharing three partitions",
        || {
            let (sa, sb) = (serving("a"), serving("b"));
            sa.len() + sb.len() == 3 && sa.is_disjoint(&sb)
        },
    )
    .await;
    // Once settled, a task runs on the worker serving its partition.
    let settled = submit_all(&client, 90).await;
    wait_until(Duration::from_secs(30), "the settled tasks run", || {
        let r = runs.lock().unwrap();
        settled.iter().all(|id| r.contains_key(id))
    })
    .await;
    for id in &settled {
        let who = runs.lock().unwrap()[id].clone();
        let p = partition_of(*id, P);
        assert!(
            serving(&who[0]).contains(&p),
            "{id} of partition {p} ran on {who:?}"
        );
    }
    // Every task ran once.
    for (id, who) in runs.lock().unwrap().iter() {
        assert_eq!(who.len(), 1, "{id} ran {who:?}");
    }

    // `b` leaves: `a` takes every partition up within a few heartbeats.
    stop_b.shutdown();
    run_b.await.unwrap().unwrap();
    wait_until(Duration::from_secs(10), "a serving all three", || {
        serving("a").len() == 3
    })
    .await;
    let later = submit_all(&client, 60).await;
    wait_until(Duration::from_secs(30), "the later tasks run", || {
        let r = runs.lock().unwrap();
        later.iter().all(|id| r.contains_key(id))
    })
    .await;

    // `c` and `d` join: three workers for three partitions, one each.
    let c = worker(&client, "c", &runs);
    let d = worker(&client, "d", &runs);
    let (stop_c, stop_d) = (c.shutdown_handle(), d.shutdown_handle());
    let run_c = tokio::spawn(c.run());
    let run_d = tokio::spawn(d.run());
    wait_until(Duration::from_secs(10), "one partition each", || {
        let union: BTreeSet<u16> = ["a", "c", "d"].iter().flat_map(|w| serving(w)).collect();
        ["a", "c", "d"].iter().all(|w| serving(w).len() == 1) && union == (0..P).collect()
    })
    .await;
    let last = submit_all(&client, 60).await;
    wait_until(Duration::from_secs(30), "the last tasks run", || {
        let r = runs.lock().unwrap();
        last.iter().all(|id| r.contains_key(id))
    })
    .await;
    for id in all.iter().chain(&settled).chain(&later).chain(&last) {
        assert_eq!(
            client.task_handle(*id).state().await.unwrap(),
            Some(TaskState::Succeeded)
        );
    }
    for stop in [stop_a, stop_c, stop_d] {
        stop.shutdown();
    }
    for run in [run_a, run_c, run_d] {
        run.await.unwrap().unwrap();
    }
    let stats = client.stats().await.unwrap();
    assert!(stats.workers.is_empty(), "{:?}", stats.workers);
}

#[tokio::test]
async fn a_batch_is_split_by_partition_and_answered_in_order() {
    let (client, _) = partitioned();
    client
        .declare("jobs", QueueConfig::default())
        .await
        .unwrap();
    let specs: Vec<TaskSpec> = (0..100)
        .map(|i| {
            let b = TaskSpec::builder("jobs", "noop");
            let b = if i % 3 == 0 {
                b.dedup_key(format!("k{}", i % 27))
            } else {
                b
            };
            b.build().unwrap()
        })
        .collect();
    let handles = client.submit_batch(specs.clone()).await.unwrap();
    assert_eq!(handles.len(), 100);
    for (i, (spec, h)) in specs.iter().zip(&handles).enumerate() {
        if spec.dedup_key().is_none() {
            assert_eq!(h.id(), spec.id(), "task {i} keeps its id");
        }
        // Tasks with one dedup key meet in one partition, where the second is a duplicate.
        assert_eq!(h.was_duplicate(), i % 3 == 0 && i >= 27, "task {i}");
    }
    // Submitting the same batch again creates nothing.
    let again = client.submit_batch(specs).await.unwrap();
    assert!(again.iter().all(|h| h.was_duplicate()));
    let unknown = TaskSpec::builder("nope", "noop").build().unwrap();
    let err = client
        .submit_batch(vec![
            TaskSpec::builder("jobs", "noop").build().unwrap(),
            unknown,
        ])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(client.stats().await.unwrap().queues[0].ready, 66 + 9);
}

/// Workers of different queues are assigned among their own kind: with one worker per queue,
/// each serves every partition, and no queue's partition is left without a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_different_queues_each_cover_every_partition() {
    let (client, backend) = partitioned();
    let runs: Runs = Arc::default();
    let mut running = Vec::new();
    for queue in ["emails", "images"] {
        client.declare(queue, QueueConfig::default()).await.unwrap();
        let runs = runs.clone();
        let worker = Worker::builder(&client, &format!("{queue}-worker"), [queue])
            .unwrap()
            .capacity(4)
            .heartbeat_ttl(Duration::from_millis(600))
            .handle("noop", move |ctx, _payload| {
                let runs = runs.clone();
                async move {
                    runs.lock()
                        .unwrap()
                        .entry(ctx.id)
                        .or_default()
                        .push(String::new());
                    Ok(Vec::new())
                }
            })
            .build()
            .unwrap();
        running.push((worker.shutdown_handle(), tokio::spawn(worker.run())));
    }
    let mut ids = Vec::new();
    for i in 0..120 {
        let queue = if i % 2 == 0 { "emails" } else { "images" };
        let spec = TaskSpec::builder(queue, "noop").build().unwrap();
        ids.push(client.submit(spec).await.unwrap().id());
    }
    wait_until(Duration::from_secs(30), "every task run", || {
        let r = runs.lock().unwrap();
        ids.iter().all(|id| r.contains_key(id))
    })
    .await;
    for w in ["emails-worker", "images-worker"] {
        assert_eq!(
            backend.serving(&WorkerId::new(w).unwrap()).len(),
            usize::from(P)
        );
    }
    for (stop, run) in running {
        stop.shutdown();
        run.await.unwrap().unwrap();
    }
}

/// On Redis at `maxmemory`, a partitioned batch stops in every partition on its own: the
/// error lists exactly the tasks stored, wherever they are in the batch (the count matches what
/// the partitions hold, every listed task exists and no other does), and submitting the same
/// specs again stores only the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_batch_cut_short_lists_exactly_what_it_stored() {
    use switchyard::{Error, RedisConfig};
    use switchyard_testkit::redis_server::{RedisServer, ServerOptions};
    let server = RedisServer::start_with(
        &ServerOptions::default()
            .arg("maxmemory", "3mb")
            .arg("maxmemory-policy", "noeviction"),
    )
    .unwrap();
    let client = Client::redis(RedisConfig::new(server.url(), "cut"), Some(P))
        .await
        .unwrap();
    client
        .declare("jobs", QueueConfig::default())
        .await
        .unwrap();
    let specs: Vec<TaskSpec> = (0..12_000)
        .map(|i| {
            TaskSpec::builder("jobs", "noop")
                .payload(format!("{i:0>200}").into_bytes())
                .build()
                .unwrap()
        })
        .collect();
    let err = client.submit_batch(specs.clone()).await.unwrap_err();
    let Error::BatchIncomplete {
        total, accepted, ..
    } = &err
    else {
        panic!("expected BatchIncomplete, got {err}");
    };
    eprintln!("{err}");
    assert_eq!(*total, specs.len());
    assert!(!accepted.is_empty() && accepted.len() < specs.len());
    let held: u64 = client
        .stats()
        .await
        .unwrap()
        .queues
        .iter()
        .map(|q| q.ready)
        .sum();
    assert_eq!(held, accepted.len() as u64, "the count is exact");
    let listed: BTreeSet<usize> = accepted.iter().map(|(i, _)| *i).collect();
    assert_eq!(listed.len(), accepted.len());
    for (i, outcome) in accepted {
        assert!(
            client
                .task_handle(outcome.id)
                .state()
                .await
                .unwrap()
                .is_some(),
            "listed task {i} is stored"
        );
    }
    // Unlisted tasks are not stored (a sample: every 97th).
    for (i, spec) in specs.iter().enumerate().step_by(97) {
        if !listed.contains(&i) {
            let (_, routed) = switchyard::partition::route::route(spec.clone(), P);
            assert!(
                client
                    .task_handle(routed.id())
                    .state()
                    .await
                    .unwrap()
                    .is_none(),
                "unlisted task {i} is not stored"
            );
        }
    }
    // Room again: the same specs store the rest, and the stored ones come back as duplicates.
    let admin = redis::Client::open(server.url()).unwrap();
    let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let again = client.submit_batch(specs.clone()).await.unwrap();
    let duplicates: BTreeSet<usize> = again
        .iter()
        .enumerate()
        .filter(|(_, h)| h.was_duplicate())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(duplicates, listed);
}

/// Bounded queues hold per partition (docs/scaling.md): a queue bounded at 4 in a namespace of
/// 3 partitions takes at most 4 waiting tasks in each, and refuses what a full partition
/// cannot take.
#[tokio::test]
async fn a_bound_holds_in_each_partition() {
    let (client, parts) = partitioned();
    let config = QueueConfig::default().with_max_waiting(4);
    client.declare("jobs", config).await.unwrap();
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..300 {
        match client
            .submit(TaskSpec::builder("jobs", "noop").build().unwrap())
            .await
        {
            Ok(_) => accepted += 1,
            Err(switchyard::Error::QueueFull { bound: 4, .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        (accepted, refused),
        (4 * usize::from(P), 300 - 4 * usize::from(P))
    );
    for (p, part) in parts.partitions().iter().enumerate() {
        let stats = part.stats().await.unwrap();
        assert_eq!(stats.queues[0].ready, 4, "partition {p}");
    }
    // Every partition is full: a batch is refused by each part, and nothing is stored.
    let batch = (0..9)
        .map(|_| TaskSpec::builder("jobs", "noop").build().unwrap())
        .collect();
    assert!(client.submit_batch(batch).await.is_err());
    assert_eq!(client.stats().await.unwrap().queues[0].ready, 12);
}

/// Rate limits hold per partition (docs/scaling.md): a queue limited to 2 dispatches an hour
/// in a namespace of 3 partitions dispatches 2 in each, 6 in all, and each partition says it
/// has no token left and when it opens again.
#[tokio::test]
async fn a_rate_limit_holds_in_each_partition() {
    let (client, parts) = partitioned();
    let config = QueueConfig::default().with_rate(2, Duration::from_secs(3_600));
    client.declare("jobs", config).await.unwrap();
    client
        .backend()
        .register_worker(
            switchyard::backend::WorkerSpec::new("w", ["jobs"])
                .unwrap()
                .capacity(100),
        )
        .await
        .unwrap();
    let specs = (0..30)
        .map(|_| TaskSpec::builder("jobs", "noop").build().unwrap())
        .collect();
    client.submit_batch(specs).await.unwrap();
    let total = client.stats().await.unwrap();
    assert_eq!((total.queues[0].dispatched, total.queues[0].ready), (6, 24));
    for (p, part) in parts.partitions().iter().enumerate() {
        let q = &part.stats().await.unwrap().queues[0];
        assert_eq!(q.dispatched, 2, "partition {p}");
        assert_eq!(q.rate_tokens, Some(0), "partition {p}");
        assert!(q.opens_at.is_some(), "partition {p}");
    }
}

/// The task browser pages through a partitioned namespace one partition at a time: 100 tasks
/// spread over 3 partitions, 7 a page, each listed once, every page's cursor naming its
/// partition; a cursor of a partition that does not exist is refused.
#[tokio::test]
async fn the_browser_pages_through_every_partition() {
    let (client, parts) = partitioned();
    client
        .declare("jobs", QueueConfig::default())
        .await
        .unwrap();
    let ids: BTreeSet<TaskId> = submit_all(&client, 100).await.into_iter().collect();
    let queue = switchyard::QueueName::new("jobs").unwrap();
    let mut query = switchyard::Browse::new(queue.clone(), TaskState::Ready).limit(7);
    let mut seen = Vec::new();
    let mut partitions_seen = BTreeSet::new();
    loop {
        let page = client.browse(&query).await.unwrap();
        assert!(page.tasks.len() <= 7);
        seen.extend(page.tasks.iter().map(|t| t.id));
        let Some(next) = page.next else { break };
        let (p, _) = next.split_once('/').expect("a partition's cursor");
        partitions_seen.insert(p.parse::<u16>().unwrap());
        query.cursor = Some(next);
    }
    let listed: BTreeSet<TaskId> = seen.iter().copied().collect();
    assert_eq!(listed.len(), seen.len(), "a task listed twice");
    assert_eq!(listed, ids);
    assert_eq!(partitions_seen, (0..P).collect());
    // Each partition holds some of them: the listing really went through all three.
    for part in parts.partitions() {
        assert!(part.stats().await.unwrap().queues[0].ready > 0);
    }
    let bad = switchyard::Browse::new(queue, TaskState::Ready).after(Some(format!("{P}/")));
    let e = client.browse(&bad).await.unwrap_err().to_string();
    assert!(e.contains("cursor"), "{e}");
}
