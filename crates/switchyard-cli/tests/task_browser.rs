//! The dashboard's task browser in a real browser (headless Chromium): a queue of 10,000
//! ready tasks (with running and succeeded ones beside them) listed and paged through, one
//! task found by its id, the running and succeeded tasks listed; the "no live worker" warning
//! appearing when the last worker stops; all 120 dead tasks of a queue re-driven from the
//! page in bounded steps; a read-only dashboard showing the same lists without an action.
//! The screenshot is saved for `docs/`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::time::Duration;

use browser::{ChromeDriver, Session};
use serde_json::{Value, json};
use support::{DashboardProcess, WorkerProcess, ok, registered};
use switchyard::{Browse, Client, QueueName, TaskState};
use switchyard_testkit::redis_server::RedisServer;

const NS: &str = "browse";
const WAIT: Duration = Duration::from_secs(60);

/// The rows of the task browser's table, as [{field: text}], or null while the page shows
/// a different query than `arguments[0]` (state) or none.
const ROWS: &str = "const info = document.getElementById('b-info').textContent;
  if (!info || document.getElementById('b-state').value !== arguments[0]) return null;
  return Array.from(document.querySelectorAll('#b-tasks tbody tr')).map(tr => {
    const o = {};
    tr.querySelectorAll('[data-field]').forEach(td => { o[td.dataset.field] = td.textContent; });
    o.pick = tr.querySelector('input.pick') !== null;
    return o;
  });";

/// Fills the browser's form and lists: queue, state, id prefix; waits for the rows.
fn list(page: &Session, queue: &str, state: &str, id: &str) -> Vec<Value> {
    page.wait_for(
        WAIT,
        &format!("queue {queue} in the browser's list"),
        "return Array.from(document.getElementById('b-queue').options).some(o => o.value === arguments[0]) ? true : null;",
        json!([queue]),
    );
    page.run(
        "document.getElementById('b-info').textContent = '';
         document.getElementById('b-queue').value = arguments[0];
         document.getElementById('b-state').value = arguments[1];
         document.getElementById('b-id').value = arguments[2];",
        json!([queue, state, id]),
    );
    page.click("#browse button[type=submit]");
    rows(page, state)
}

fn rows(page: &Session, state: &str) -> Vec<Value> {
    let rows = page.wait_for(WAIT, &format!("the {state} rows"), ROWS, json!([state]));
    rows.as_array().unwrap().clone()
}

/// Shows the next page and waits for its rows.
fn next_page(page: &Session, state: &str) -> Vec<Value> {
    page.run(
        "document.getElementById('b-info').textContent = '';",
        json!([]),
    );
    page.click("#b-next");
    rows(page, state)
}

fn info(page: &Session) -> String {
    page.run(
        "return document.getElementById('b-info').textContent;",
        json!([]),
    )
    .as_str()
    .unwrap()
    .to_owned()
}

async fn count(client: &Client, queue: &str, state: TaskState) -> u64 {
    let stats = client.stats().await.unwrap();
    stats
        .queues
        .iter()
        .find(|q| q.queue.as_ref().is_some_and(|n| n.as_str() == queue))
        .map_or(0, |q| q.get(state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_browser_lists_pages_finds_and_acts_in_a_real_browser() {
    let server = RedisServer::start().unwrap();
    ok(&server, NS, &["declare", "big"]);
    ok(&server, NS, &["declare", "bad", "--max-attempts", "1"]);
    let client = Client::connect(&server.url(), NS).await.unwrap();
    let worker = WorkerProcess::start(
        &server,
        NS,
        "w1",
        &["-q", "big", "-q", "bad", "-c", "4", "--grace-ms", "200"],
    );
    registered(&client, "w1").await;

    // 30 succeed, 120 die, 4 run for a minute, then 10,000 wait behind them.
    ok(
        &server,
        NS,
        &["submit", "big", "echo", "\"hi\"", "-n", "30", "--quiet"],
    );
    ok(
        &server,
        NS,
        &["submit", "bad", "fail", "\"boom\"", "-n", "120", "--quiet"],
    );
    for (queue, state, n) in [
        ("big", TaskState::Succeeded, 30),
        ("bad", TaskState::Dead, 120),
    ] {
        let mut seen = 0;
        for _ in 0..600 {
            seen = count(&client, queue, state).await;
            if seen == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, n, "{queue} {state}");
    }
    ok(
        &server,
        NS,
        &[
            "submit",
            "big",
            "sleep",
            "{\"ms\":60000}",
            "-n",
            "4",
            "--quiet",
        ],
    );
    ok(
        &server,
        NS,
        &[
            "submit",
            "big",
            "echo",
            "\"later\"",
            "-n",
            "10000",
            "--quiet",
        ],
    );
    assert_eq!(count(&client, "big", TaskState::Ready).await, 10_000);

    let acting = DashboardProcess::start(&server, NS, &["--allow-actions"]);
    let looking = DashboardProcess::start(&server, NS, &[]);
    let driver = ChromeDriver::start();
    let page = driver.session(1280, 1100);
    page.goto(&acting.url());

    // Ready: the first page is the head of the queue; the next one follows it.
    let big = QueueName::new("big").unwrap();
    let head = client
        .browse(&Browse::new(big.clone(), TaskState::Ready).limit(100))
        .await
        .unwrap();
    let first = list(&page, "big", "ready", "");
    assert_eq!(first.len(), 50);
    assert_eq!(first[0]["id"], head.tasks[0].id.to_string());
    assert!(
        first
            .iter()
            .all(|r| r["pick"] == true && r["kind"] == "echo")
    );
    assert!(
        info(&page).starts_with("page 1: 50 tasks"),
        "{}",
        info(&page)
    );
    let second = next_page(&page, "ready");
    assert!(
        info(&page).starts_with("page 2: 50 tasks"),
        "{}",
        info(&page)
    );
    assert_eq!(second.len(), 50);
    assert_eq!(second[0]["id"], head.tasks[50].id.to_string());
    page.run(
        "document.getElementById('browse').parentElement.scrollIntoView();",
        json!([]),
    );
    let shot = page.screenshot();
    assert!(shot.starts_with(b"\x89PNG\r\n\x1a\n") && shot.len() > 10_000);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(dir.join("task-browser.png"), &shot).unwrap();
    eprintln!("screenshot in {}", dir.join("task-browser.png").display());

    // One task among the 10,000, by its id (the middle one, read through the library).
    let mut middle = Browse::new(big.clone(), TaskState::Ready).limit(250);
    for _ in 0..20 {
        let page = client.browse(&middle).await.unwrap();
        middle.cursor = page.next;
    }
    let one = client.browse(&middle.clone().limit(1)).await.unwrap().tasks[0].id;
    let found = list(&page, "big", "ready", &one.to_string().to_ascii_lowercase());
    // A lower-case id is taken as the id; the filter reads bounded pages, so the page holding
    // it may come after pages without it.
    let mut found = found;
    while found.is_empty() {
        assert!(!info(&page).contains("the last page"), "{one} not found");
        found = next_page(&page, "ready");
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], one.to_string());

    // Running (with their worker) and succeeded.
    let running = list(&page, "big", "running", "");
    assert_eq!(running.len(), 4, "{running:?}");
    assert!(
        running.iter().all(|r| r["detail"] == "worker w1"),
        "{running:?}"
    );
    let succeeded = list(&page, "big", "succeeded", "");
    assert_eq!(succeeded.len(), 30);
    assert!(info(&page).contains("the last page"), "{}", info(&page));

    // The last worker stops: the page warns that nobody serves `big`.
    worker.terminate(WAIT);
    let warning = page.wait_for(
        WAIT,
        "the no-worker warning",
        "const w = document.getElementById('warnings');
         return !w.hidden && w.textContent.includes('no live worker serves it') ? w.textContent : null;",
        json!([]),
    );
    assert!(warning.as_str().unwrap().contains("`big`"), "{warning}");
    // The warning comes while the worker drains; once it has gone its row goes too, moving the
    // form below (a click must not race that move).
    page.wait_for(
        WAIT,
        "the worker's row gone",
        "return document.querySelectorAll('#workers tbody tr').length === 0
           && !document.getElementById('no-workers').hidden ? true : null;",
        json!([]),
    );

    // All 120 dead tasks of `bad`, re-driven from the page (two clicks), in steps.
    let dead = list(&page, "bad", "dead", "");
    assert_eq!(dead.len(), 50);
    page.wait_for(
        WAIT,
        "the re-drive-all button with the count",
        "const b = document.querySelector('#b-bulk button.b-all[data-action=redrive]');
         return b && b.textContent.includes('120') ? true : null;",
        json!([]),
    );
    page.click("#b-bulk button.b-all[data-action=redrive]");
    page.click("#b-bulk button.b-all[data-action=redrive]");
    let said = page.wait_for(
        WAIT,
        "the re-drive's answer",
        "const m = document.getElementById('message');
         return !m.hidden && m.textContent.includes('of bad') ? [m.className, m.textContent] : null;",
        json!([]),
    );
    assert_eq!(said[0], "ok", "{said}");
    assert!(
        said[1].as_str().unwrap().starts_with("re-drove 120 dead"),
        "{said}"
    );
    assert_eq!(count(&client, "bad", TaskState::Dead).await, 0);
    assert_eq!(count(&client, "bad", TaskState::Ready).await, 120);
    let after = list(&page, "bad", "dead", "");
    assert!(after.is_empty(), "{after:?}");

    // A selection: two ready tasks of `big` ticked and cancelled, the rest left alone.
    let rows = list(&page, "big", "ready", "");
    page.run(
        "const boxes = document.querySelectorAll('#b-tasks input.pick');
         boxes[0].click(); boxes[1].click();
         document.getElementById('message').hidden = true;",
        json!([]),
    );
    page.click("#b-bulk button.b-selected[data-action=cancel]");
    let said = page.wait_for(
        WAIT,
        "the selection's answer",
        "const m = document.getElementById('message');
         return !m.hidden && m.textContent === 'cancelled 2 of 2 selected tasks' ? m.className : null;",
        json!([]),
    );
    assert_eq!(said, "ok");
    for (i, row) in rows.iter().enumerate().take(3) {
        let id: switchyard::TaskId = row["id"].as_str().unwrap().parse().unwrap();
        let state = client.task_handle(id).state().await.unwrap();
        let want = if i < 2 {
            TaskState::Cancelled
        } else {
            TaskState::Ready
        };
        assert_eq!(state, Some(want), "row {i}");
    }

    // Read-only: the same lists, no box to tick, no action button.
    let readonly = driver.session(1280, 900);
    readonly.goto(&looking.url());
    let rows = list(&readonly, "big", "ready", "");
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|r| r["pick"] == false));
    let buttons = readonly.run(
        "return document.querySelectorAll('#b-bulk button').length;",
        json!([]),
    );
    assert_eq!(buttons, 0);

    // A page of another site cannot act through the operator's browser.
    let (status, body) = browser::http(
        acting.port,
        "POST",
        "/api/queues/big/bulk/cancel?state=ready",
        None,
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cross-site"), "{body}");
    assert_eq!(count(&client, "big", TaskState::Cancelled).await, 2);
}
