//! A flow whose child's worker is SIGKILLed: the child runs twice (its lease is reclaimed when
//! the dead worker's heartbeat expires, by the live worker's maintenance), and the parent
//! still starts only after every child has succeeded — once. Checked on a real Redis with two
//! worker processes, by the event log's times and by task id; `switchyard task` shows the
//! tree and what the parent waits on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod support;

use std::time::Duration;

use support::{WorkerProcess, eventually, ok, registered};
use switchyard::tree::{Flow, FlowNode};
use switchyard::{Client, EventKind, TaskOutcome, TaskSpec, TaskState};
use switchyard_testkit::redis_server::RedisServer;

const CHILDREN: usize = 12;

fn sleep(queue: &str, ms: u32) -> TaskSpec {
    TaskSpec::builder(queue, "sleep")
        .payload(ms.to_string().into_bytes())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_run_twice_does_not_start_its_parent_early() {
    let server = RedisServer::start().unwrap();
    let ns = "flowkill";
    for q in ["kids", "top"] {
        ok(
            &server,
            ns,
            &["declare", q, "--events", "all", "--max-attempts", "5"],
        );
    }
    let client = Client::connect(&server.url(), ns).await.unwrap();
    let children: Vec<TaskSpec> = (0..CHILDREN).map(|_| sleep("kids", 1_500)).collect();
    let flow = Flow::new(sleep("top", 10)).children(children.iter().cloned().map(FlowNode::new));
    let handles = client.submit_flow(flow).await.unwrap();
    let root = handles[0].id();

    let shown = ok(&server, ns, &["task", &root.to_string()]);
    assert!(shown.contains("waiting-children"), "{shown}");
    assert!(
        shown.contains(&format!(
            "{CHILDREN} children: waits on {CHILDREN}, 0 failed"
        )),
        "{shown}"
    );

    let flags = |queues: &str| {
        [
            "--queue",
            queues,
            "--capacity",
            "4",
            "--heartbeat-ttl-ms",
            "1500",
            "--maintenance-ms",
            "200",
        ]
        .map(str::to_owned)
    };
    let victim_flags = flags("kids");
    let victim_flags: Vec<&str> = victim_flags.iter().map(String::as_str).collect();
    let mut victim = WorkerProcess::start(&server, ns, "victim", &victim_flags);
    registered(&client, "victim").await;
    // The victim holds children (running their 1.5 s sleep) when it is killed.
    let held = eventually(
        Duration::from_secs(20),
        "the victim to run a child",
        || async {
            let mut held = Vec::new();
            for c in &children {
                let info = client.backend().get_task(c.id()).await.ok()??;
                if info.state == TaskState::Running
                    && info.worker.as_ref().is_some_and(|w| w.as_str() == "victim")
                {
                    held.push(c.id());
                }
            }
            (!held.is_empty()).then_some(held)
        },
    )
    .await;
    victim.kill();
    let rest_flags = flags("kids,top");
    let rest_flags: Vec<&str> = rest_flags.iter().map(String::as_str).collect();
    let survivor = WorkerProcess::start(&server, ns, "survivor", &rest_flags);

    let outcome = handles[0].wait(Duration::from_secs(90)).await.unwrap();
    assert!(matches!(outcome, TaskOutcome::Succeeded(_)), "{outcome:?}");

    // By id: every child succeeded, the killed ones on a second attempt; the parent once.
    let mut twice = 0;
    for c in &children {
        let info = client.backend().get_task(c.id()).await.unwrap().unwrap();
        assert_eq!(info.state, TaskState::Succeeded, "{}", c.id());
        if held.contains(&c.id()) {
            assert!(
                info.attempts >= 2,
                "{} was held by the killed worker",
                c.id()
            );
            twice += 1;
        }
    }
    let parent = client.backend().get_task(root).await.unwrap().unwrap();
    assert_eq!(parent.attempts, 1, "the parent ran once");
    let ends = client.backend().children(root).await.unwrap().unwrap();
    assert_eq!(ends.iter().filter(|c| c.succeeded()).count(), CHILDREN);

    // By the event log: the parent was dispatched once, after the last child succeeded.
    let events = client.events(None, 10_000).await.unwrap();
    let last_child = events
        .iter()
        .filter(|e| e.kind == EventKind::Succeeded && e.task != root)
        .map(|e| e.at)
        .max()
        .unwrap();
    let dispatched: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == EventKind::Dispatched && e.task == root)
        .map(|e| e.at)
        .collect();
    assert_eq!(dispatched.len(), 1, "{dispatched:?}");
    assert!(
        dispatched[0] >= last_child,
        "the parent started at {} before its last child succeeded at {last_child}",
        dispatched[0]
    );
    let retried = events
        .iter()
        .filter(|e| e.kind == EventKind::Retried && held.contains(&e.task))
        .count();
    eprintln!(
        "{} children held by the killed worker, {twice} ran twice ({retried} retried events); \
         parent dispatched {} ms after the last child succeeded",
        held.len(),
        dispatched[0] - last_child
    );
    let shown = ok(&server, ns, &["task", &root.to_string()]);
    assert!(
        shown.contains(&format!("{CHILDREN} children: waits on 0, 0 failed")),
        "{shown}"
    );
    survivor.terminate(Duration::from_secs(10));
}
