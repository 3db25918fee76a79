//! Schedules (`switchyard_core::schedule`) on the memory reference and on a real Redis, each
//! driven by the same manual clock: ticks claimed by maintenance, exactly once per tick however
//! many tickers apply the same claim; misfires, overlaps, pause and resume, a changed
//! definition, a count limit, a missing queue, cron with seconds; and, on Redis, eight
//! concurrent upserts and eight concurrent claims.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;

use futures_util::future::join_all;
use switchyard_core::prelude::*;
use switchyard_core::schedule::{
    Claim, Every, Misfire, Overlap, Recurrence, ScheduleSpec, TaskTemplate, Upserted, tick_task_id,
};
use switchyard_core::{
    Clock, Error, ManualClock, Millis, Policy, QueueConfig, QueueName, ScheduleName, Strategy,
    TaskKind, TaskState,
};
use switchyard_memory::MemoryBackend;
use switchyard_redis::{RedisBackend, RedisConfig};
use switchyard_testkit::redis_server::RedisServer;
use switchyard_testkit::{me, test_worker};

const START: Millis = 1_700_000_000_000;

fn name(n: &str) -> ScheduleName {
    ScheduleName::new(n).unwrap()
}

fn every(n: &str, queue: &str, ms: u64) -> ScheduleSpec {
    ScheduleSpec::new(
        name(n),
        Recurrence::new(Every::interval_ms(ms)),
        TaskTemplate::new(
            QueueName::new(queue).unwrap(),
            TaskKind::new("tick").unwrap(),
        )
        .payload(n.as_bytes().to_vec()),
    )
}

async fn declare(b: &dyn Backend, queue: &str) {
    b.declare_queue(
        &QueueName::new(queue).unwrap(),
        QueueConfig::new(Policy::Fcfs, Strategy::Pull),
    )
    .await
    .unwrap();
}

/// Maintenance at `at`: how many tasks schedule ticks created.
async fn ticked_at(b: &dyn Backend, clock: &ManualClock, at: Millis) -> usize {
    clock.set(at);
    b.maintain(100).await.unwrap().ticked.len()
}

async fn state_of(b: &dyn Backend, n: &str) -> switchyard_core::schedule::ScheduleState {
    b.get_schedule(&name(n)).await.unwrap().unwrap().state
}

async fn task_state(b: &dyn Backend, n: &str, tick: Millis) -> Option<TaskState> {
    b.get_task(tick_task_id(n, tick))
        .await
        .unwrap()
        .map(|t| t.state)
}

async fn ticks_once(b: &dyn Backend, clock: &ManualClock) {
    declare(b, "sq").await;
    let spec = every("sec", "sq", 1_000);
    assert_eq!(b.upsert_schedule(&spec).await.unwrap(), Upserted::Created);
    assert_eq!(b.upsert_schedule(&spec).await.unwrap(), Upserted::Unchanged);
    let s = state_of(b, "sec").await;
    assert_eq!((s.next, s.runs, s.version), (Some(START + 1_000), 0, 1));
    assert_eq!(
        b.until_due().await.unwrap(),
        Some(std::time::Duration::from_secs(1))
    );
    // Not before its time; then one task, with the tick's id and the template's payload.
    assert_eq!(ticked_at(b, clock, START + 999).await, 0);
    assert_eq!(ticked_at(b, clock, START + 1_000).await, 1);
    let task = b
        .get_task(tick_task_id("sec", START + 1_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (task.state, &task.payload[..]),
        (TaskState::Ready, &b"sec"[..])
    );
    let s = state_of(b, "sec").await;
    assert_eq!(
        (s.next, s.runs, s.last_tick),
        (Some(START + 2_000), 1, Some(START + 1_000))
    );
    assert_eq!(
        ticked_at(b, clock, START + 1_500).await,
        0,
        "a tick runs once"
    );
    // Two tickers with the same claim: one applies it, the other changes nothing.
    clock.set(START + 2_000);
    let info = b.get_schedule(&name("sec")).await.unwrap().unwrap();
    let ticks = info.spec.validate(info.state.defined_at).unwrap();
    let claim = Claim::at(&info, &ticks, START + 2_000).unwrap();
    let first = b.claim_ticks(&name("sec"), &claim).await.unwrap().unwrap();
    assert_eq!(first.created, [tick_task_id("sec", START + 2_000)]);
    assert_eq!(b.claim_ticks(&name("sec"), &claim).await.unwrap(), None);
    assert_eq!(b.maintain(100).await.unwrap().ticked, []);
    assert_eq!(state_of(b, "sec").await.runs, 2);
    // Down from 2 s to 10.5 s: eight ticks missed; the default runs the latest once.
    assert_eq!(ticked_at(b, clock, START + 10_500).await, 1);
    assert_eq!(
        task_state(b, "sec", START + 10_000).await,
        Some(TaskState::Ready)
    );
    assert_eq!(task_state(b, "sec", START + 9_000).await, None);
    let s = state_of(b, "sec").await;
    assert_eq!((s.next, s.runs), (Some(START + 11_000), 3));
    // Paused: nothing is claimed; resumed at 20.2 s, it ticks from 21 s (the pause's ticks
    // are not misfires).
    assert!(b.set_schedule_paused(&name("sec"), true).await.unwrap());
    assert_eq!(ticked_at(b, clock, START + 15_000).await, 0);
    clock.set(START + 20_200);
    assert!(b.set_schedule_paused(&name("sec"), false).await.unwrap());
    assert_eq!(state_of(b, "sec").await.next, Some(START + 21_000));
    assert_eq!(ticked_at(b, clock, START + 21_000).await, 1);
    // Another definition: version 2, from the first tick after now, counts kept.
    clock.set(START + 21_300);
    let slower = every("sec", "sq", 5_000);
    assert_eq!(b.upsert_schedule(&slower).await.unwrap(), Upserted::Changed);
    let s = state_of(b, "sec").await;
    assert_eq!((s.next, s.runs, s.version), (Some(START + 26_300), 4, 2));
    // The old claim no longer holds.
    assert_eq!(b.claim_ticks(&name("sec"), &claim).await.unwrap(), None);
    // Removed: gone, its tasks stay.
    assert!(b.remove_schedule(&name("sec")).await.unwrap());
    assert!(!b.remove_schedule(&name("sec")).await.unwrap());
    assert!(b.get_schedule(&name("sec")).await.unwrap().is_none());
    assert_eq!(ticked_at(b, clock, START + 40_000).await, 0);
    assert_eq!(
        task_state(b, "sec", START + 21_000).await,
        Some(TaskState::Ready)
    );
}

async fn policies(b: &dyn Backend, clock: &ManualClock) {
    let t0 = START + 100_000;
    clock.set(t0);
    declare(b, "pq").await;
    // Catch up at most 3, and a limit of 5 ticks in all.
    let mut catch = every("catch", "pq", 1_000).with_misfire(Misfire::CatchUp(3));
    catch.recurrence = catch.recurrence.clone().limited_to(5);
    b.upsert_schedule(&catch).await.unwrap();
    assert_eq!(ticked_at(b, clock, t0 + 6_200).await, 3);
    for (tick, made) in [(3_000, false), (4_000, true), (5_000, true), (6_000, true)] {
        assert_eq!(
            task_state(b, "catch", t0 + tick).await.is_some(),
            made,
            "{tick}"
        );
    }
    assert_eq!(ticked_at(b, clock, t0 + 9_000).await, 2, "two left of five");
    let s = state_of(b, "catch").await;
    assert_eq!((s.next, s.runs), (None, 5));
    assert_eq!(ticked_at(b, clock, t0 + 20_000).await, 0, "ended");
    // Skip beyond a grace of 100 ms.
    clock.set(t0 + 30_000);
    let skip = every("skip", "pq", 1_000).with_misfire(Misfire::Skip { grace_ms: 100 });
    b.upsert_schedule(&skip).await.unwrap();
    assert_eq!(
        ticked_at(b, clock, t0 + 33_500).await,
        0,
        "500 ms late: skipped"
    );
    assert_eq!(state_of(b, "skip").await.next, Some(t0 + 34_000));
    assert_eq!(
        ticked_at(b, clock, t0 + 34_050).await,
        1,
        "50 ms late: runs"
    );
    b.remove_schedule(&name("skip")).await.unwrap();
    // Overlap skip: while the last tick's task runs, ticks create nothing.
    clock.set(t0 + 40_000);
    let single = every("single", "pq", 1_000).with_overlap(Overlap::Skip);
    b.upsert_schedule(&single).await.unwrap();
    assert_eq!(ticked_at(b, clock, t0 + 41_000).await, 1);
    b.register_worker(test_worker("w1", ["pq"]).capacity(8))
        .await
        .unwrap();
    let got = b.receive(&me("w1"), 8).await.unwrap();
    let running = got
        .iter()
        .find(|d| d.lease.task == tick_task_id("single", t0 + 41_000))
        .unwrap();
    assert_eq!(ticked_at(b, clock, t0 + 42_000).await, 0);
    let s = state_of(b, "single").await;
    assert_eq!((s.runs, s.skipped), (2, 1));
    b.complete(&running.lease, Vec::new()).await.unwrap();
    assert_eq!(ticked_at(b, clock, t0 + 43_000).await, 1);
    b.remove_schedule(&name("single")).await.unwrap();
    // A queue that is not there: maintenance goes on, the tick waits; declared, it runs (late:
    // once).
    clock.set(t0 + 50_000);
    b.upsert_schedule(&every("orphan", "later", 1_000))
        .await
        .unwrap();
    assert_eq!(ticked_at(b, clock, t0 + 52_000).await, 0);
    assert_eq!(state_of(b, "orphan").await.next, Some(t0 + 51_000));
    declare(b, "later").await;
    assert_eq!(ticked_at(b, clock, t0 + 53_000).await, 1);
    b.remove_schedule(&name("orphan")).await.unwrap();
    // Cron with seconds, in a zone: every 2 s.
    clock.set(t0 + 60_000);
    let cron = ScheduleSpec::new(
        name("cron"),
        Recurrence::new(Every::cron("*/2 * * * * *", "Europe/Berlin")),
        TaskTemplate::new(
            QueueName::new("pq").unwrap(),
            TaskKind::new("tick").unwrap(),
        ),
    );
    b.upsert_schedule(&cron).await.unwrap();
    let first = state_of(b, "cron").await.next.unwrap();
    assert_eq!((first % 2_000, first > t0 + 60_000), (0, true));
    assert_eq!(ticked_at(b, clock, first).await, 1);
    assert_eq!(state_of(b, "cron").await.next, Some(first + 2_000));
    // Bad definitions are refused before anything is stored.
    let bad = ScheduleSpec::new(
        name("bad"),
        Recurrence::new(Every::cron("* * *", "UTC")),
        TaskTemplate::new(
            QueueName::new("pq").unwrap(),
            TaskKind::new("tick").unwrap(),
        ),
    );
    let refused = b.upsert_schedule(&bad).await.unwrap_err();
    assert!(matches!(refused, Error::Invalid { .. }), "{refused}");
    assert!(b.get_schedule(&name("bad")).await.unwrap().is_none());
    let names: Vec<String> = b
        .schedules()
        .await
        .unwrap()
        .iter()
        .map(|s| s.spec.name.to_string())
        .collect();
    assert_eq!(
        names,
        ["catch", "cron"],
        "an ended schedule stays until removed"
    );
}

#[tokio::test]
async fn memory_schedules_tick_once() {
    let clock = ManualClock::new(START);
    let b = MemoryBackend::with_clock(Arc::new(clock.clone()));
    ticks_once(&b, &clock).await;
    policies(&b, &clock).await;
    b.audit().unwrap();
}

async fn redis(server: &RedisServer, ns: &str, clock: &ManualClock) -> RedisBackend {
    let config =
        RedisConfig::new(server.url(), ns).with_clock(Arc::new(clock.clone()) as Arc<dyn Clock>);
    RedisBackend::with_config(config).await.unwrap()
}

#[tokio::test]
async fn redis_schedules_tick_once() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(START);
    let b = redis(&server, "sched", &clock).await;
    ticks_once(&b, &clock).await;
    policies(&b, &clock).await;
    assert_eq!(b.audit().await.unwrap(), Vec::<String>::new());
}

/// Eight producers upsert one schedule at once: one schedule, one pending tick. Eight tickers
/// apply one claim at once: one applies it, one task.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_concurrent_upserts_and_claims_leave_one() {
    let server = RedisServer::start().unwrap();
    let clock = ManualClock::new(START);
    let backends = join_all((0..8).map(|_| redis(&server, "race", &clock))).await;
    declare(&backends[0], "rq").await;
    let spec = every("race", "rq", 1_000);
    let answers = join_all(backends.iter().map(|b| b.upsert_schedule(&spec))).await;
    let created = answers
        .iter()
        .filter(|a| matches!(a, Ok(Upserted::Created)))
        .count();
    let unchanged = answers
        .iter()
        .filter(|a| matches!(a, Ok(Upserted::Unchanged)))
        .count();
    assert_eq!((created, unchanged), (1, 7), "{answers:?}");
    assert_eq!(backends[0].schedules().await.unwrap().len(), 1);
    let s = state_of(&backends[0], "race").await;
    assert_eq!((s.next, s.version), (Some(START + 1_000), 1));
    clock.set(START + 1_000);
    let info = backends[0]
        .get_schedule(&name("race"))
        .await
        .unwrap()
        .unwrap();
    let ticks = info.spec.validate(info.state.defined_at).unwrap();
    let claim = Claim::at(&info, &ticks, START + 1_000).unwrap();
    let race = name("race");
    let claims = join_all(backends.iter().map(|b| b.claim_ticks(&race, &claim))).await;
    let applied = claims.iter().filter(|c| matches!(c, Ok(Some(_)))).count();
    let refused = claims.iter().filter(|c| matches!(c, Ok(None))).count();
    assert_eq!((applied, refused), (1, 7), "{claims:?}");
    let stats = backends[0].stats().await.unwrap();
    assert_eq!(stats.queues[0].ready, 1);
    assert_eq!(state_of(&backends[0], "race").await.runs, 1);
}
