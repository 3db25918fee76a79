//! Two worker processes with one id (the CLI's old default `worker-<pid>` made this likely in
//! containers, where every replica is pid 1): a task never runs in both at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{WorkerProcess, eventually, ok, registered};
use switchyard::{Client, TaskHandle, TaskId, TaskOutcome, TaskSpec, TaskState};
use switchyard_testkit::redis_server::RedisServer;

/// Log filter that makes the `sleep` handler record when each task starts and ends.
const TIMES: &str = "warn,switchyard_cli::sleep=debug";

/// One run of a task's handler in one process: (start, end) timestamps as logged (RFC 3339
/// with microseconds, so they compare as text); `end` is `None` while it runs.
type Runs = BTreeMap<String, Vec<(String, Option<String>)>>;

/// The runs of the `sleep` handler that `log` records, by task id.
fn runs(log: &str) -> Runs {
    let mut out: Runs = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("switchyard_cli::sleep")) {
        let Some(at) = line.split_whitespace().next() else {
            continue;
        };
        let Some(task) = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("task="))
        else {
            continue;
        };
        let entry = out.entry(task.to_owned()).or_default();
        if line.contains(" started") {
            entry.push((at.to_owned(), None));
        } else if line.contains(" ended")
            && let Some(open) = entry.iter_mut().rev().find(|(_, end)| end.is_none())
        {
            open.1 = Some(at.to_owned());
        }
    }
    out
}

/// Whether two runs overlap in time (an open run lasts until now).
fn overlap(a: &(String, Option<String>), b: &(String, Option<String>)) -> bool {
    let far = "9999".to_owned();
    let (a_end, b_end) = (a.1.as_ref().unwrap_or(&far), b.1.as_ref().unwrap_or(&far));
    a.0 < *b_end && b.0 < *a_end
}

async fn running_on(client: &Client, id: TaskId, attempt: u32) -> Option<()> {
    let info = client.task_handle(id).info().await.ok()??;
    (info.state == TaskState::Running && info.attempts == attempt).then_some(())
}

fn sleeps(ms: u32, n: usize) -> Vec<TaskSpec> {
    (0..n)
        .map(|_| {
            TaskSpec::builder("q", "sleep")
                .payload(ms.to_string().into_bytes())
                .build()
                .unwrap()
        })
        .collect()
}

const FLAGS: [&str; 6] = [
    "--queue",
    "q",
    "--capacity",
    "2",
    "--heartbeat-ttl-ms",
    "1500",
];

/// Both processes alive: the second is refused (after waiting once for the holder's
/// registration to expire, which it does not, since the holder heartbeats) and exits with a
/// clear error; the tasks run once, in the first process only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_process_with_the_same_id_is_refused() {
    let server = RedisServer::start().unwrap();
    let ns = "shared";
    ok(&server, ns, &["declare", "q"]);
    let client = Client::connect(&server.url(), ns).await.unwrap();
    let first = WorkerProcess::start_logging(&server, ns, "same", &FLAGS, TIMES);
    registered(&client, "same").await;
    let tasks: Vec<TaskHandle> = client.submit_batch(sleeps(2_500, 2)).await.unwrap();
    for t in &tasks {
        eventually(Duration::from_secs(10), "a task to start", || {
            running_on(&client, t.id(), 1)
        })
        .await;
    }

    let mut second = WorkerProcess::start_logging(&server, ns, "same", &FLAGS, TIMES);
    let (status, said) = second.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "the second process must not run: {said}");
    assert!(
        said.contains("worker id `same` is in use by another live instance"),
        "{said}"
    );

    for t in &tasks {
        let out = t.wait(Duration::from_secs(20)).await.unwrap();
        assert!(matches!(out, TaskOutcome::Succeeded(_)), "{out:?}");
        assert_eq!(t.attempts().await.unwrap(), Some(1), "ran once");
    }
    let (a, b) = (runs(&first.log()), runs(&second.log()));
    assert!(b.is_empty(), "the refused process ran tasks: {b:?}");
    for t in &tasks {
        let id = t.id().to_string();
        let here = a.get(&id).cloned().unwrap_or_default();
        assert_eq!(here.len(), 1, "{id}: {here:?}");
        for x in &here {
            for y in b.get(&id).into_iter().flatten() {
                assert!(!overlap(x, y), "{id} ran in both at once: {x:?} {y:?}");
            }
        }
    }
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.workers.len(), 1);
    drop(first);
}

/// The first process frozen (SIGSTOP) past its heartbeat TTL is presumed dead: the second
/// takes the id over and runs its task again. When the first resumes, it learns it was
/// replaced, stops its handler without reporting anything that counts, and exits with the
/// error; the task ends once, with the second process's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_process_is_replaced_and_stops_when_it_resumes() {
    let server = RedisServer::start().unwrap();
    let ns = "frozen";
    ok(&server, ns, &["declare", "q"]);
    let client = Client::connect(&server.url(), ns).await.unwrap();
    let mut first = WorkerProcess::start_logging(&server, ns, "same", &FLAGS, TIMES);
    registered(&client, "same").await;
    let task = client
        .submit_batch(sleeps(6_000, 1))
        .await
        .unwrap()
        .remove(0);
    eventually(Duration::from_secs(10), "the task to start", || {
        running_on(&client, task.id(), 1)
    })
    .await;
    // Its handler too (a process frozen between the two never starts it once replaced).
    let started = format!("task={}", task.id());
    eventually(Duration::from_secs(10), "the handler to start", || {
        let log = first.log();
        std::future::ready(log.contains(&started).then_some(()))
    })
    .await;

    first.signal("-STOP");
    let second = WorkerProcess::start_logging(&server, ns, "same", &FLAGS, TIMES);
    // Once the frozen registration expired, the second one replaced it: attempt 1 was lost
    // with the first process, attempt 2 runs on the second.
    eventually(Duration::from_secs(20), "attempt 2 to start", || {
        running_on(&client, task.id(), 2)
    })
    .await;
    first.signal("-CONT");
    let (status, said) = first.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "{said}");
    assert!(
        said.contains("was taken over by another instance with the same id"),
        "{said}"
    );

    let out = task.wait(Duration::from_secs(30)).await.unwrap();
    assert!(matches!(out, TaskOutcome::Succeeded(_)), "{out:?}");
    assert_eq!(task.attempts().await.unwrap(), Some(2));
    let (a, b) = (runs(&first.log()), runs(&second.log()));
    let id = task.id().to_string();
    let (a, b) = (
        a.get(&id).cloned().unwrap_or_default(),
        b.get(&id).cloned().unwrap_or_default(),
    );
    assert_eq!(b.len(), 1, "{b:?}");
    // The first process's handler was stopped when it resumed: it ended without success,
    // long before its 6 s were up (it was frozen most of the time in between).
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(a[0].1.is_some(), "the frozen handler was stopped: {a:?}");
    assert!(
        first.log().contains("ok=false"),
        "the frozen handler did not complete: {}",
        first.log()
    );
    drop(second);
}

#[test]
fn runs_are_read_from_the_log_and_overlaps_found() {
    let log = "2026-01-01T00:00:01.000000Z DEBUG switchyard_cli::sleep: started, 5 ms task=T attempt=1\n\
               2026-01-01T00:00:02.000000Z DEBUG switchyard_cli::sleep: ended task=T attempt=1 ok=true\n\
               2026-01-01T00:00:03.000000Z DEBUG switchyard_cli::sleep: started, 5 ms task=T attempt=2\n";
    let r = runs(log);
    assert_eq!(r["T"].len(), 2);
    assert!(!overlap(&r["T"][0], &r["T"][1]));
    let open = ("2026-01-01T00:00:01.500000Z".to_owned(), None);
    assert!(overlap(&r["T"][0], &open));
}
