//! The client and the worker runtime, on both backends: results and errors, panics, timeouts
//! (on the worker's clock, and enforced by the heartbeat), concurrency up to capacity, retries
//! and backoff with jitter, the dead-letter set, delays, deduplication, result expiry, learned
//! costs, events, cancellation, graceful shutdown (within and past its grace), a killed or
//! silent worker, a reaped worker that registers again, fencing.
//! Redis runs in a redis-server started by the test on a free port.
//! One module per topic (`results`, `retries`, `shutdown`, `workers`, `clock`), the shared
//! helpers here, and `tap`, a backend that loses one worker's calls; `on_both!` runs each test
//! on the memory backend and on Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchyard::backend::prelude::*;
use switchyard::backend::{
    Ack, AckOutcome, Assignment, Claimed, Clock, Delivery, HandBack, HeartbeatReply, Lease,
    MaintenanceReport, RegisterOutcome, Rejection, SubmitOutcome, SystemClock, WorkerRef,
    WorkerSpec, lost_worker_error, next_average, timeout_error,
};
use switchyard::schedule::{Claim, ScheduleInfo, ScheduleSpec, Upserted};
use switchyard::{
    Backoff, CancelOutcome, Client, Error, Event, EventKind, EventLevel, Policy, QueueConfig,
    QueueName, RedisBackend, RedisConfig, ScheduleName, Stats, Strategy, TaskError, TaskId,
    TaskInfo, TaskKind, TaskOutcome, TaskSpec, TaskState, Worker, WorkerId,
};
use switchyard_testkit::redis_server::RedisServer;

mod clock;
mod results;
mod retries;
mod shutdown;
mod tap;
mod workers;

use clock::*;
use results::*;
use retries::*;
use shutdown::*;
use tap::Tap;
use workers::*;

/// Backends keep due times in whole milliseconds of the system clock, so a task can fall
/// due up to a millisecond before its delay has passed on `Instant`; lower bounds on
/// waiting allow this much.
const CLOCK_GRAIN: Duration = Duration::from_millis(2);

/// A client of a fresh memory backend, or of a fresh namespace on a test redis-server.
async fn client(redis: Option<&RedisServer>) -> Client {
    static NS: AtomicU64 = AtomicU64::new(0);
    match redis {
        None => Client::memory(),
        Some(server) => Client::connect(
            &server.url(),
            &format!("rt{}", NS.fetch_add(1, Ordering::SeqCst)),
        )
        .await
        .unwrap(),
    }
}

/// Polls `check` every 20 ms until it answers `Some`, for at most `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < within,
            "gave up after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lease of a task running on `worker`, read from its record.
async fn running_on(c: &Client, id: TaskId, worker: &str) -> Option<Lease> {
    let info = c.task_handle(id).info().await.ok()??;
    let lease = info.lease()?;
    (info.state == TaskState::Running && lease.worker.as_str() == worker).then_some(lease)
}

/// The events of one task, oldest first.
async fn events_of(c: &Client, id: TaskId) -> Vec<Event> {
    let all = c.events(None, 10_000).await.unwrap();
    all.into_iter().filter(|e| e.task == id).collect()
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

fn quick(config: QueueConfig) -> QueueConfig {
    config.with_backoff(Backoff {
        base_ms: 100,
        max_ms: 1_000,
        jitter_pct: 0,
    })
}

/// Runs a worker in the background; returns its stop handle and join handle.
fn spawn(
    worker: Worker,
) -> (
    switchyard::ShutdownHandle,
    tokio::task::JoinHandle<switchyard::Result<switchyard::WorkerReport>>,
) {
    let stop = worker.shutdown_handle();
    (stop, tokio::spawn(worker.run()))
}

macro_rules! on_both {
    ($($name:ident),* $(,)?; with a server: $($with_server:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::client(None).await).await })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $with_server() { super::$with_server(None).await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let server = switchyard_testkit::redis_server::RedisServer::start().unwrap();
                super::$name(super::client(Some(&server)).await).await
            })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $with_server() {
                let server = switchyard_testkit::redis_server::RedisServer::start().unwrap();
                super::$with_server(Some(&server)).await
            })*
        }
    };
}

on_both!(
    results_and_errors,
    retries_back_off_then_dead_letter_and_redrive,
    retry_delays_respect_jitter_and_cap,
    delayed_tasks_run_on_time,
    a_backed_off_retry_wakes_sleeping_maintenance,
    cancellation_of_ready_delayed_and_running,
    graceful_shutdown_loses_nothing,
    a_stop_drains_at_once_even_while_the_worker_waits,
    shutdown_past_its_grace_hands_running_tasks_back,
    a_hand_off_the_worker_never_saw_is_stopped_with_the_rest,
    a_panicking_handler_fails_its_task_and_the_worker_goes_on,
    a_slow_handler_times_out_and_is_retried_then_dead,
    a_worker_runs_up_to_its_capacity_at_once,
    a_reaped_worker_registers_again_and_goes_on,
    a_second_worker_with_the_same_id_does_not_start,
    a_replaced_worker_stops_and_says_why,
    the_heartbeat_fails_an_overrunning_task,
    a_silent_worker_s_task_is_returned_by_another_worker_s_maintenance,
    a_killed_worker_s_tasks_finish_elsewhere,
    late_completion_is_refused,
    learned_costs_are_the_moving_average_and_fill_missing_hints,
    results_expire_after_their_ttl,
    dedup_keys_hold_for_their_window,
    events_report_every_kind;
    with a server:
    timeouts_ignore_clock_skew,
    maintenance_keeps_its_pace_under_clock_skew,
);
