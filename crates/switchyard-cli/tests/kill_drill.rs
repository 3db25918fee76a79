//! The SIGKILL drill: four worker processes run 5,000 tasks of 50 ms while one of them is
//! SIGKILLed every two seconds (and replaced by a new one). Checked by task id at the end:
//!
//! * every task succeeded, and exactly once (one `succeeded` event each);
//! * a task a killed worker held comes back in its old place: in the event log (server order),
//!   after its `retried` event no task submitted after it is dispatched before it (FCFS: it
//!   goes ahead of them);
//! * no attempt is counted for a task whose handler never started: per task, the attempts the
//!   backend counted match the handler starts the workers logged. A kill can still fall
//!   between the backend starting a task and the worker reading that reply (a fraction of a
//!   millisecond per start); such tasks are counted and printed, and may be at most the tasks
//!   one reply carries per kill. (Before, a dead worker that had parked was handed tasks for
//!   a whole heartbeat TTL, each counting an attempt.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{WorkerProcess, ok};
use switchyard::{Client, Event, EventKind, TaskId};
use switchyard_testkit::redis_server::RedisServer;

const TASKS: u64 = 5_000;
const WORKERS: usize = 4;
const CAPACITY: &str = "4";
const KILL_EVERY: Duration = Duration::from_secs(2);

/// `task id -> attempt numbers started`, from the workers' `sleep` handler lines.
fn starts(logs: &[String]) -> HashMap<TaskId, BTreeSet<u32>> {
    let mut out: HashMap<TaskId, BTreeSet<u32>> = HashMap::new();
    for line in logs.iter().flat_map(|l| l.lines()) {
        if !(line.contains("switchyard_cli::sleep") && line.contains(" started")) {
            continue;
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .map(str::to_owned)
        };
        if let (Some(task), Some(attempt)) = (field("task="), field("attempt=")) {
            out.entry(task.parse().unwrap())
                .or_default()
                .insert(attempt.parse().unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_no_task_reclaimed_ones_keep_their_place_and_no_attempt_is_wasted() {
    let server = RedisServer::start().unwrap();
    let ns = "drill";
    ok(
        &server,
        ns,
        &[
            "declare",
            "q",
            "--strategy",
            "round-robin",
            "--events",
            "all",
            "--max-attempts",
            "10",
        ],
    );
    ok(
        &server,
        ns,
        &[
            "submit",
            "q",
            "sleep",
            "50",
            "--count",
            &TASKS.to_string(),
            "--batch",
            "500",
            "--quiet",
        ],
    );
    let client = Client::connect(&server.url(), ns).await.unwrap();

    // The event log, read as it is written (it is capped at about 10,000 entries).
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let reader = {
        let (client, events) = (client.clone(), events.clone());
        tokio::spawn(async move {
            let mut after: Option<String> = None;
            loop {
                if let Ok(batch) = client.events(after.as_deref(), 2_000).await {
                    if let Some(last) = batch.last() {
                        after = Some(last.id.clone());
                    }
                    let full = batch.len() == 2_000;
                    events.lock().unwrap().extend(batch);
                    if full {
                        continue;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let flags = [
        "--queue",
        "q",
        "--capacity",
        CAPACITY,
        "--heartbeat-ttl-ms",
        "1500",
        "--maintenance-ms",
        "200",
    ];
    let filter = "warn,switchyard_cli::sleep=debug";
    let mut next = 0;
    let start = |n: &mut usize| {
        let id = format!("w{n}");
        *n += 1;
        WorkerProcess::start_logging(&server, ns, &id, &flags, filter)
    };
    let mut alive: Vec<WorkerProcess> = (0..WORKERS).map(|_| start(&mut next)).collect();
    let mut killed: Vec<WorkerProcess> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last_kill = Instant::now();
    loop {
        let done = client.stats().await.unwrap().queues[0].succeeded;
        if done == TASKS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {TASKS} succeeded after 3 minutes"
        );
        if last_kill.elapsed() >= KILL_EVERY && done < TASKS * 9 / 10 {
            let victim = killed.len() % WORKERS;
            let mut w = alive.remove(victim);
            w.kill();
            killed.push(w);
            alive.insert(victim, start(&mut next));
            last_kill = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every event of the last completions is in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    reader.abort();
    let logs: Vec<String> = alive
        .iter()
        .chain(&killed)
        .map(WorkerProcess::log)
        .collect();
    drop(alive);
    let events = events.lock().unwrap().clone();

    // Every task succeeded, once.
    let mut succeeded: BTreeMap<TaskId, u32> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == EventKind::Succeeded) {
        *succeeded.entry(e.task).or_default() += 1;
    }
    assert_eq!(succeeded.len() as u64, TASKS, "tasks that succeeded");
    assert!(
        succeeded.values().all(|n| *n == 1),
        "a task succeeded twice"
    );

    // Reclaimed tasks keep their place: ids are in submission order (`--first-id` + i).
    let mut out_of_place = Vec::new();
    let mut reclaimed = 0;
    for (i, e) in events.iter().enumerate() {
        let lost = e.kind == EventKind::Retried
            && events[..i].iter().rev().take(4).any(|f| {
                f.kind == EventKind::Failed
                    && f.task == e.task
                    && f.detail.as_deref().is_some_and(|d| d.contains("was lost"))
            });
        if !lost {
            continue;
        }
        reclaimed += 1;
        let returned: BTreeSet<TaskId> = events[..i]
            .iter()
            .filter(|f| f.kind == EventKind::Retried)
            .map(|f| f.task)
            .collect();
        for later in events[i + 1..].iter() {
            if later.kind != EventKind::Dispatched {
                continue;
            }
            if later.task == e.task {
                break;
            }
            if later.task > e.task && !returned.contains(&later.task) {
                out_of_place.push((e.task, later.task));
            }
        }
    }

    // Attempts counted match handler starts.
    let started = starts(&logs);
    let mut unstarted = Vec::new();
    for id in succeeded.keys() {
        let info = client.task_handle(*id).info().await.unwrap().unwrap();
        let runs = started.get(id).map_or(0, BTreeSet::len) as u32;
        if info.attempts > runs {
            unstarted.push((*id, info.attempts, runs));
        }
    }
    eprintln!(
        "{} kills, {reclaimed} tasks reclaimed from running, {} dispatched ahead of a reclaimed \
         task, {} tasks with an attempt that never started: {:?}",
        killed.len(),
        out_of_place.len(),
        unstarted.len(),
        unstarted.iter().take(10).collect::<Vec<_>>()
    );
    assert!(killed.len() >= 3, "too few kills: {}", killed.len());
    assert!(reclaimed > 0, "no kill caught a running task");
    assert!(
        out_of_place.is_empty(),
        "tasks submitted later went ahead of reclaimed ones: {out_of_place:?}"
    );
    let capacity: usize = CAPACITY.parse().unwrap();
    assert!(
        unstarted.len() <= killed.len() * capacity,
        "{} attempts counted for tasks whose handler never started",
        unstarted.len()
    );
}
