//! `switchyard dashboard` in a real browser: a redis-server, two worker processes and two
//! dashboards (one with `--allow-actions`, one without), the page opened in headless Chromium.
//! The page must show the queues and workers with the numbers `stats` gives, follow them as
//! tasks run, re-drive a dead task when actions are on, and show no action (the API refusing
//! it) when they are off; a
//! third dashboard checks the bearer token. The screenshot is saved for `docs/`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::time::Duration;

use browser::{ChromeDriver, Session, http};
use serde_json::{Value, json};
use support::{DashboardProcess, WorkerProcess, eventually, ok, registered};
use switchyard::{Client, TaskState};
use switchyard_testkit::redis_server::RedisServer;

const NS: &str = "dash";
const WAIT: Duration = Duration::from_secs(30);

/// A dashboard of the test's namespace.
struct Dashboard(DashboardProcess);

impl Dashboard {
    fn start(server: &RedisServer, extra: &[&str]) -> Dashboard {
        Dashboard(DashboardProcess::start(server, NS, extra))
    }

    fn url(&self) -> String {
        self.0.url()
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let (status, body) = http(self.0.port, "GET", path, None, headers);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

/// The page's queue row of `queue`, as {field: text}, or null until it is there.
const QUEUE_ROW: &str =
    "const tr = document.querySelector(`#queues tr[data-queue=\"${arguments[0]}\"]`);
  if (!tr) return null;
  const o = {};
  tr.querySelectorAll('[data-field]').forEach(td => { o[td.dataset.field] = td.textContent; });
  return o;";

/// The page's worker rows, as {id: {field: text}}, or null while there are none.
const WORKER_ROWS: &str = "const rows = document.querySelectorAll('#workers tbody tr');
  if (rows.length === 0) return null;
  const all = {};
  rows.forEach(tr => {
    const o = {};
    tr.querySelectorAll('[data-field]').forEach(td => { o[td.dataset.field] = td.textContent; });
    all[tr.dataset.worker] = o;
  });
  return all;";

/// A script answering whether the element `arguments[0]` is on the page (null while not).
const EXISTS: &str = "return document.querySelector(arguments[0]) !== null ? true : null;";

/// Clicks `css` and waits for the page's answer: its class (`ok`, `refused`) and words.
fn act(page: &Session, css: &str, class: &str, words: &str) {
    page.run(
        "document.getElementById('message').hidden = true;",
        json!([]),
    );
    page.click(css);
    let said = page.wait_for(
        WAIT,
        &format!("the answer containing {words:?}"),
        "const m = document.getElementById('message');
         return m.hidden || !m.textContent.includes(arguments[0]) ? null : [m.className, m.textContent];",
        json!([words]),
    );
    assert_eq!(said[0], class, "{said}");
}

/// An action a read-only dashboard refuses: 403, with the flag that would allow it.
fn refused(dashboard: &Dashboard, path: &str) {
    let (status, body) = http(dashboard.0.port, "POST", path, None, &[]);
    assert_eq!(status, 403, "{path}: {body}");
    assert!(body.contains("--allow-actions"), "{path}: {body}");
}

async fn queue_paused(client: &Client, queue: &str) -> bool {
    let stats = client.stats().await.unwrap();
    stats
        .queues
        .iter()
        .find(|q| q.queue.as_ref().is_some_and(|n| n.as_str() == queue))
        .unwrap()
        .paused
}

fn number(v: &Value) -> u64 {
    v.as_str()
        .unwrap_or_else(|| panic!("not text: {v}"))
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {v}"))
}

/// Waits until the page's `queue` row shows `field` = `want`.
fn wait_field(page: &Session, queue: &str, field: &str, want: u64) -> Value {
    let script = format!(
        "const o = (function() {{ {QUEUE_ROW} }}).apply(null, arguments);
         return o && o[arguments[1]] === Number(arguments[2]).toLocaleString('en-US') ? o : null;"
    );
    page.wait_for(
        WAIT,
        &format!("{queue} {field} = {want}"),
        &script,
        json!([queue, field, want]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_follows_and_acts_in_a_real_browser() {
    let server = RedisServer::start().unwrap();
    ok(
        &server,
        NS,
        &[
            "declare",
            "emails",
            "--strategy",
            "weighted",
            "--max-attempts",
            "1",
            "--events",
            "all",
        ],
    );
    ok(&server, NS, &["declare", "reports", "--policy", "priority"]);
    let client = Client::connect(&server.url(), NS).await.unwrap();
    let light = WorkerProcess::start(
        &server,
        NS,
        "w-light",
        &["-q", "emails", "-q", "reports", "-c", "2", "--weight", "1"],
    );
    let heavy = WorkerProcess::start(
        &server,
        NS,
        "w-heavy",
        &["-q", "emails", "-q", "reports", "-c", "2", "--weight", "3"],
    );
    registered(&client, "w-light").await;
    registered(&client, "w-heavy").await;

    let acting = Dashboard::start(&server, &["--allow-actions"]);
    let looking = Dashboard::start(&server, &[]);
    let driver = ChromeDriver::start();
    let page = driver.session(1280, 1000);
    page.goto(&acting.url());

    // Queues and workers appear, with their configuration, before any task.
    let row = wait_field(&page, "emails", "succeeded", 0);
    assert_eq!(row["policy"], "fcfs");
    assert_eq!(row["strategy"], "weighted");
    let row = wait_field(&page, "reports", "ready", 0);
    assert_eq!(row["policy"], "priority");
    let workers = page.wait_for(WAIT, "two workers", WORKER_ROWS, json!([]));
    for (id, weight) in [("w-light", "1"), ("w-heavy", "3")] {
        assert_eq!(workers[id]["capacity"], "2", "{workers}");
        assert_eq!(workers[id]["weight"], weight, "{workers}");
        assert_eq!(workers[id]["state"], "active", "{workers}");
    }

    // A queue shared between tenants shows its groups (one waiting, none held: no worker
    // serves it yet), a plain one a dash; a schedule shows in its own section.
    ok(
        &server,
        NS,
        &[
            "declare",
            "tenants",
            "--fair-share",
            "on",
            "--group-concurrency",
            "1",
        ],
    );
    ok(
        &server,
        NS,
        &[
            "submit", "tenants", "sleep", "1", "-n", "3", "--group", "acme", "--quiet",
        ],
    );
    let row = wait_field(&page, "tenants", "ready", 3);
    assert_eq!(row["groups"], "1", "{row}");
    assert_eq!(page.run(QUEUE_ROW, json!(["emails"]))["groups"], "-");
    ok(
        &server,
        NS,
        &[
            "schedule",
            "add",
            "nightly",
            "--queue",
            "reports",
            "--kind",
            "echo",
            "--cron",
            "0 30 2 * * *",
        ],
    );
    let schedule = page.wait_for(
        WAIT,
        "the schedule's row",
        "const tr = document.querySelector('#schedules tr[data-schedule=\"nightly\"]');
         if (!tr || document.getElementById('schedules-section').hidden) return null;
         const o = {};
         tr.querySelectorAll('[data-field]').forEach(td => { o[td.dataset.field] = td.textContent; });
         return o;",
        json!([]),
    );
    assert_eq!(schedule["creates"], "reports / echo", "{schedule}");
    assert_eq!(schedule["state"], "active", "{schedule}");
    assert!(
        schedule["every"]
            .as_str()
            .unwrap_or_default()
            .contains("0 30 2 * * *"),
        "{schedule}"
    );

    // The numbers follow the tasks as they run: 40 tasks of 50 ms on 4 slots, 4 that fail.
    ok(
        &server,
        NS,
        &[
            "submit",
            "emails",
            "sleep",
            "{\"ms\":50}",
            "-n",
            "40",
            "--quiet",
        ],
    );
    ok(
        &server,
        NS,
        &["submit", "emails", "fail", "\"boom\"", "-n", "4", "--quiet"],
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut running_shot = None;
    eventually(WAIT, "the page to count 40 successes", || {
        let row = page.run(QUEUE_ROW, json!(["emails"]));
        let n = number(&row["succeeded"]);
        seen.insert(n);
        if running_shot.is_none() && n > 0 && n < 30 {
            running_shot = Some(page.screenshot());
        }
        async move { (n == 40).then_some(()) }
    })
    .await;
    assert!(
        seen.len() >= 2,
        "the page never showed the count moving: {seen:?}"
    );
    let row = wait_field(&page, "emails", "dead", 4);
    // Once the queue is quiet, the page and `stats` agree.
    let stats = client.stats().await.unwrap();
    let emails = stats
        .queues
        .iter()
        .find(|q| q.queue.as_ref().is_some_and(|n| n.as_str() == "emails"))
        .unwrap();
    assert_eq!(number(&row["succeeded"]), emails.succeeded);
    assert_eq!(number(&row["dead"]), emails.dead);
    assert_eq!(number(&row["running"]), emails.running);
    assert_eq!(emails.totals.succeeded, 40);
    assert_eq!(emails.totals.dead, 4);
    let workers = page.wait_for(
        WAIT,
        "workers' completions to add up to 40",
        &format!(
            "const all = (function() {{ {WORKER_ROWS} }})();
             if (!all) return null;
             const sum = Object.values(all).reduce((s, w) => s + Number(w.completed), 0);
             return sum === 40 ? all : null;"
        ),
        json!([]),
    );
    for w in &stats.workers {
        assert_eq!(
            number(&workers[w.id.as_str()]["completed"]),
            w.completed,
            "{workers}"
        );
        assert_eq!(
            number(&workers[w.id.as_str()]["dispatched"]),
            w.dispatched,
            "{workers}"
        );
    }
    // The chart has points to draw, on a time axis; the hour chart is there too (its minutes
    // come as whole minutes pass).
    let points = page.run(
        "return document.querySelector('canvas[data-chart=\"emails\"]') !== null;",
        json!([]),
    );
    assert_eq!(points, Value::Bool(true));
    let captions = page.run(
        "return [...document.querySelectorAll('#charts figcaption, #hour figcaption')]
           .map(c => c.textContent);",
        json!([]),
    );
    let captions = captions.to_string();
    assert!(
        captions.contains("reads, ") && captions.contains(" UTC"),
        "{captions}"
    );
    assert!(captions.contains("minutes"), "{captions}");
    assert!(
        page.run(
            "return document.querySelector('canvas[data-chart-hour=\"emails\"]') !== null;",
            json!([])
        ) == Value::Bool(true)
    );
    let shot = page.screenshot();
    assert!(shot.starts_with(b"\x89PNG\r\n\x1a\n") && shot.len() > 10_000);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(dir.join("dashboard.png"), &shot).unwrap();
    if let Some(running) = running_shot {
        // The picture in docs/ (taken while the tasks run).
        std::fs::write(dir.join("dashboard-running.png"), running).unwrap();
    }
    eprintln!("screenshots in {}", dir.display());

    // Actions: with the workers gone, a re-driven task stays ready.
    light.terminate(WAIT);
    heavy.terminate(WAIT);
    let dead = client.dead_letters("emails", 10).await.unwrap();
    assert_eq!(dead.len(), 4);
    let first = dead[0].id.to_string();
    let second = dead[1].id.to_string();

    // Read-only: the page shows the dead tasks without a single action button, and the API
    // refuses the action with the reason; nothing changes.
    let readonly = driver.session(1280, 900);
    readonly.goto(&looking.url());
    readonly.wait_for(
        WAIT,
        "the dead task's row",
        EXISTS,
        json!([format!("#dead tr[data-task=\"{second}\"]")]),
    );
    let buttons = readonly.run(
        "return document.querySelectorAll('#dead button, #queues button').length;",
        json!([]),
    );
    assert_eq!(buttons, 0, "a read-only page shows no action");
    refused(&looking, &format!("/api/tasks/{second}/redrive"));
    assert_eq!(
        client.task_handle(dead[1].id).state().await.unwrap(),
        Some(TaskState::Dead)
    );

    // Actions on: the re-drive works, the page says so, and the task is ready again.
    let button = format!("#dead button.redrive[data-task=\"{first}\"]");
    page.wait_for(
        WAIT,
        "the dead task's re-drive button",
        "return document.querySelector(arguments[0]) !== null;",
        json!([button]),
    );
    page.click(&button);
    let said = page.wait_for(
        WAIT,
        "the re-drive's answer",
        "const m = document.getElementById('message'); return m.hidden ? null : [m.className, m.textContent];",
        json!([]),
    );
    assert_eq!(said[0], "ok", "{said}");
    assert!(said[1].as_str().unwrap().contains("re-driven"), "{said}");
    assert_eq!(
        client.task_handle(dead[0].id).state().await.unwrap(),
        Some(TaskState::Ready)
    );
    wait_field(&page, "emails", "dead", 3);
    wait_field(&page, "emails", "ready", 1);
    // With its workers gone, the queue's ready task is flagged: nobody serves it.
    page.wait_for(
        WAIT,
        "the warning that nobody serves the queue",
        "const w = document.getElementById('warnings');
         return !w.hidden && w.textContent.includes(arguments[0]) ? true : null;",
        json!(["queue `emails` has 1 ready task and no live worker serves it"]),
    );

    // Delete one dead task from its row: refused read-only, done with actions on.
    let button = format!("#dead button.delete[data-task=\"{second}\"]");
    refused(&looking, &format!("/api/tasks/{second}/delete"));
    assert!(
        client
            .task_handle(dead[1].id)
            .info()
            .await
            .unwrap()
            .is_some()
    );
    page.wait_for(WAIT, "the delete button", EXISTS, json!([button]));
    act(&page, &button, "ok", "deleted");
    assert_eq!(client.task_handle(dead[1].id).info().await.unwrap(), None);
    wait_field(&page, "emails", "dead", 2);
    // The picture of the dead letters in docs/: their buttons.
    std::fs::write(dir.join("dashboard-actions.png"), page.screenshot()).unwrap();

    // Purge the dead-letter set: the first click only asks, the second purges.
    let purge = "#dead button.purge[data-queue=\"emails\"]";
    page.wait_for(
        WAIT,
        "the purge button of 2 dead tasks",
        "const h = document.querySelector(arguments[0]);
         return h && h.closest('h3').textContent.includes('(2)') ? true : null;",
        json!([purge]),
    );
    page.click(purge);
    let asked = page.run(
        "const b = document.querySelector(arguments[0]); return [b.dataset.armed || '', b.textContent];",
        json!([purge]),
    );
    assert_eq!(asked[0], "yes", "{asked}");
    assert!(
        asked[1].as_str().unwrap().contains("delete 2 dead tasks"),
        "{asked}"
    );
    assert_eq!(
        client.dead_letters("emails", 10).await.unwrap().len(),
        2,
        "one click purges nothing"
    );
    act(&page, purge, "ok", "2 dead tasks deleted");
    for t in &dead[2..] {
        assert_eq!(
            client.task_handle(t.id).info().await.unwrap(),
            None,
            "{}",
            t.id
        );
    }
    wait_field(&page, "emails", "dead", 0);

    // Pause and resume from the queue row (read-only: refused).
    let pause = "#queues tr[data-queue=\"emails\"] button.pause";
    refused(&looking, "/api/queues/emails/pause");
    assert!(!queue_paused(&client, "emails").await);
    page.wait_for(WAIT, "the pause button", EXISTS, json!([pause]));
    act(&page, pause, "ok", "paused");
    assert!(queue_paused(&client, "emails").await);
    let resume = "#queues tr[data-queue=\"emails\"] button.resume";
    page.wait_for(
        WAIT,
        "the queue marked paused, with a resume button",
        EXISTS,
        json!([resume]),
    );
    let row = page.run(QUEUE_ROW, json!(["emails"]));
    assert_eq!(row["paused"], "paused", "{row}");
    act(&page, resume, "ok", "resumed");
    assert!(!queue_paused(&client, "emails").await);
    page.wait_for(WAIT, "the pause button again", EXISTS, json!([pause]));

    // The task page: reachable by id, with its events.
    page.goto(&format!("{}#task={first}", acting.url()));
    let task = page.wait_for(
        WAIT,
        "the task page",
        "const d = document.querySelector('#task dl'); if (!d) return null;
         const o = {}; d.querySelectorAll('dd').forEach(dd => { o[dd.dataset.field] = dd.textContent; });
         o.events = document.querySelectorAll('#task table tr').length; return o;",
        json!([]),
    );
    assert_eq!(task["state"], "ready", "{task}");
    assert_eq!(task["queue"], "emails", "{task}");
    // submitted, dispatched, failed, dead, retried (the re-drive): events all on this queue.
    assert!(task["events"].as_u64().unwrap() >= 5, "{task}");

    // A running task's page follows its progress (the built-in sleep reports each second).
    let runner = WorkerProcess::start(&server, NS, "w-progress", &["-q", "reports"]);
    registered(&client, "w-progress").await;
    let sleeper = ok(
        &server,
        NS,
        &["submit", "reports", "sleep", "{\"ms\":4000}"],
    );
    page.goto(&format!("{}#task={}", acting.url(), sleeper.trim()));
    let shown = page.wait_for(
        WAIT,
        "the task's progress on its page",
        "const d = document.querySelector('#task dd[data-field=progress]');
         return d && d.textContent.includes('slept') ? d.textContent : null;",
        json!([]),
    );
    let shown = shown.as_str().unwrap();
    assert!(shown.contains("of 4000 ms (attempt 1, report "), "{shown}");
    let later = page.wait_for(
        WAIT,
        "a later report, shown without a reload",
        "const d = document.querySelector('#task dd[data-field=progress]');
         return d && d.textContent.includes('report 2') ? d.textContent : null;",
        json!([]),
    );
    assert!(later.as_str().unwrap().contains('%'), "{later}");
    runner.terminate(WAIT);

    // A token protects the API (the page's code stays public); a wrong one is refused.
    let guarded = Dashboard::start(&server, &["--token", "s3cret"]);
    let (status, body) = guarded.get("/api/snapshot", &[]);
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("token"),
        "{body}"
    );
    let (status, _) = guarded.get("/api/snapshot", &[("Authorization", "Bearer wrong")]);
    assert_eq!(status, 401);
    let (status, body) = guarded.get("/api/snapshot", &[("Authorization", "Bearer s3cret")]);
    assert_eq!(status, 200);
    assert_eq!(body["namespace"], NS);
    let (status, _) = http(guarded.0.port, "GET", "/", None, &[]);
    assert_eq!(status, 200);
    // Actions answer in words even when refused for another reason.
    let (status, body) = acting.get("/api/tasks/not-an-id", &[]);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("task id"),
        "{body}"
    );
}
