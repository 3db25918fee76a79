//! Random scenarios: queue configurations, steps, and whole [`Scenario`]s for proptest.

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use switchyard_core::admin::Purge;
use switchyard_core::flow::dedup::DedupMode;
use switchyard_core::flow::groups::{GroupLimits, GroupShare};
use switchyard_core::flow::rate::RateLimit;
use switchyard_core::{Backoff, EventLevel, Policy, QueueConfig, Strategy};

use super::{FlowChildOp, Op, QUEUES, Scenario, SubmitOp, WORKERS};

/// Every policy variant.
pub fn any_policy() -> impl proptest::strategy::Strategy<Value = Policy> {
    prop_oneof![
        1 => Just(Policy::Fcfs),
        1 => Just(Policy::PRIORITY),
        1 => (1u32..500).prop_map(|s| Policy::Priority {
            aging_step_ms: Some(s)
        }),
        1 => Just(Policy::SJF),
        1 => (1u32..8).prop_map(|f| Policy::ShortestJobFirst {
            aging_factor: Some(f)
        }),
        2 => Just(Policy::EarliestDeadlineFirst),
    ]
}

/// Every strategy.
pub fn any_strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::RoundRobin),
        Just(Strategy::Random),
        Just(Strategy::Weighted),
        Just(Strategy::LeastLoaded),
        (1u16..8).prop_map(|vnodes| Strategy::Affinity { vnodes }),
        Just(Strategy::Pull),
    ]
}

/// A queue configuration with short timeouts and backoffs so that retries and lease expiry
/// happen inside a scenario; retention is long so that no record is purged. A third of the
/// queues are bounded, a third have a concurrency limit, and a third a rate limit, small
/// enough to be reached (windows of 100 ms to 5 s against the steps' clock advances). Two
/// thirds of the earliest-deadline-first queues expire late tasks.
pub fn any_config() -> impl proptest::strategy::Strategy<Value = QueueConfig> {
    (
        any_policy(),
        any_strategy(),
        any::<u64>(),
        1u32..4,
        prop_oneof![Just(2_000u32), Just(30_000u32)],
        (0u32..3_000, 0u8..60),
        prop_oneof![Just(0u64), Just(1_000u64), Just(60_000u64)],
        prop_oneof![
            Just(EventLevel::Off),
            Just(EventLevel::Failures),
            Just(EventLevel::All)
        ],
        (
            proptest::option::weighted(0.35, 1u32..6),
            proptest::option::weighted(0.35, 1u32..4),
            proptest::option::weighted(
                0.35,
                (
                    1u32..4,
                    prop_oneof![Just(100u64), Just(1_000u64), Just(5_000u64)],
                ),
            ),
        ),
    )
        .prop_map(
            |(policy, strategy, seed, attempts, timeout, (base, jitter), dedup, events, limits)| {
                let mut config = QueueConfig::new(policy, strategy);
                config.expire_late = policy == Policy::EarliestDeadlineFirst && seed % 3 != 0;
                let (max_waiting, concurrency, rate) = limits;
                (config.max_waiting, config.concurrency) = (max_waiting, concurrency);
                config.rate = rate.map(|(max, per_ms)| RateLimit { max, per_ms });
                // Retention by count on some queues (0 to 2 kept), drawn from the seed.
                let kept = |every: u64, n: u64| {
                    (seed % every == 1).then(|| u32::try_from(seed / every % n).unwrap_or(0))
                };
                (config.keep_finished, config.keep_dead) = (kept(4, 3), kept(5, 2));
                // Half the queues debounce their dedup keys, drawn from the seed.
                if seed / 7 % 2 == 1 {
                    config.dedup_mode = DedupMode::Debounce;
                }
                // Two in five queues are shared between groups, half of those with a limit of
                // one or two per group, a third with a rate limit of one or two per second per
                // group, a third with a bound of two to four waiting per group, drawn from the
                // seed.
                if seed / 11 % 5 < 2 {
                    let mut share = GroupShare::default();
                    if seed / 13 % 2 == 1 {
                        share =
                            share.with_concurrency(1 + u32::try_from(seed / 17 % 2).unwrap_or(0));
                    }
                    if seed / 19 % 3 == 1 {
                        share = share.with_rate(RateLimit {
                            max: 1 + u32::try_from(seed / 23 % 2).unwrap_or(0),
                            per_ms: 1_000,
                        });
                    }
                    if seed / 29 % 3 == 1 {
                        share =
                            share.with_max_waiting(2 + u32::try_from(seed / 31 % 3).unwrap_or(0));
                    }
                    config.groups = Some(share);
                }
                config
                    .with_events(events)
                    .with_seed(seed)
                    .with_max_attempts(attempts)
                    .with_timeout(std::time::Duration::from_millis(u64::from(timeout)))
                    .with_backoff(Backoff {
                        base_ms: base,
                        max_ms: 10_000,
                        jitter_pct: jitter,
                    })
                    .with_dedup_window(std::time::Duration::from_millis(dedup))
                    .with_result_ttl(std::time::Duration::from_secs(86_400))
            },
        )
}

pub(super) fn submit_op() -> impl proptest::strategy::Strategy<Value = SubmitOp> {
    (
        0..QUEUES,
        prop_oneof![Just(0u16), 0u16..5, any::<u16>()],
        proptest::option::of(prop_oneof![0u32..10, 0u32..100_000]),
        proptest::option::weighted(0.15, prop_oneof![Just(0u32), 1u32..3_000]),
        proptest::option::of(0u8..6),
        proptest::option::weighted(0.2, 0u8..3),
        proptest::option::weighted(0.3, 1u32..4),
        proptest::option::weighted(0.6, prop_oneof![Just(0u32), 1u32..20_000]),
        proptest::option::weighted(0.4, 0u8..3),
    )
        .prop_map(
            |(
                queue,
                priority,
                cost_ms,
                delay_ms,
                affinity,
                dedup,
                max_attempts,
                deadline_ms,
                group,
            )| {
                SubmitOp {
                    queue,
                    priority,
                    cost_ms,
                    delay_ms,
                    affinity,
                    dedup,
                    max_attempts,
                    deadline_ms,
                    group,
                }
            },
        )
}

/// A flow: a root and one to four children, some with one or two children of their own, each
/// child with any failure policy.
pub(super) fn flow_op() -> impl proptest::strategy::Strategy<Value = Op> {
    let child = (
        submit_op(),
        0u8..3,
        prop_oneof![3 => Just(Vec::new()), 1 => proptest::collection::vec(submit_op(), 1..3)],
    )
        .prop_map(|(task, policy, children)| FlowChildOp {
            task,
            policy,
            children,
        });
    (submit_op(), proptest::collection::vec(child, 1..5))
        .prop_map(|(root, children)| Op::SubmitFlow { root, children })
}

pub(super) fn register_op() -> impl proptest::strategy::Strategy<Value = Op> {
    let queues =
        proptest::sample::subsequence((0..QUEUES).collect::<Vec<_>>(), 1..=QUEUES).prop_shuffle();
    let instance = prop_oneof![3 => Just(0u8), 1 => Just(1u8)];
    (0..WORKERS, instance, 1u32..4, 1u32..5, queues).prop_map(
        |(worker, instance, capacity, weight, queues)| Op::Register {
            worker,
            instance,
            capacity,
            weight,
            queues,
        },
    )
}

/// One random step.
pub fn any_op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        8 => submit_op().prop_map(Op::Submit),
        2 => flow_op(),
        2 => proptest::collection::vec(submit_op(), 1..6).prop_map(Op::Batch),
        2 => proptest::collection::vec(submit_op(), 2..5).prop_map(Op::SubmitTogether),
        2 => proptest::collection::vec((any::<usize>(), 0usize..3), 2..5)
            .prop_map(|picks| Op::CompleteTogether { picks }),
        1 => any::<usize>().prop_map(|pick| Op::Resubmit { pick }),
        3 => register_op(),
        1 => (0..WORKERS).prop_map(|worker| Op::Deregister { worker }),
        1 => (0..WORKERS).prop_map(|worker| Op::Drain { worker }),
        2 => (0..WORKERS).prop_map(|worker| Op::Heartbeat { worker }),
        2 => prop_oneof![Just(0u64), Just(1), Just(500), Just(1_000), Just(2_500), Just(16_000)].prop_map(|ms| Op::Advance { ms }),
        7 => (0..WORKERS, 1usize..4).prop_map(|(worker, max)| Op::Receive { worker, max }),
        4 => (0..WORKERS, 0usize..4).prop_map(|(worker, max)| Op::Park { worker, max }),
        2 => (0..WORKERS).prop_map(|worker| Op::Running { worker }),
        6 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        3 => (any::<usize>(), 1usize..4).prop_map(|(pick, max)| Op::CompleteAndReceive { pick, max }),
        1 => any::<usize>().prop_map(|pick| Op::CompleteAgain { pick }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, retry)| Op::Fail { pick, retry }),
        2 => (any::<usize>(), prop_oneof![Just(0u64), Just(100), Just(1_000)])
            .prop_map(|(pick, hold_ms)| Op::Throttle { pick, hold_ms }),
        4 => progress_op(),
        2 => change_op(),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Redrive { pick }),
        1 => (0..QUEUES).prop_map(|queue| Op::Dispatch { queue }),
        2 => (0..QUEUES, any::<bool>()).prop_map(|(queue, paused)| Op::Pause { queue, paused }),
        1 => (0..WORKERS).prop_map(|worker| Op::Impostor { worker }),
        1 => any::<usize>().prop_map(|pick| Op::DeleteTask { pick }),
        1 => (
            0..QUEUES,
            prop_oneof![Just(Purge::Waiting), Just(Purge::Dead), Just(Purge::Finished)],
            prop_oneof![Just(1usize), Just(2), Just(1_000)],
        )
            .prop_map(|(queue, what, limit)| Op::PurgeQueue { queue, what, limit }),
        1 => (0..QUEUES, any_config(), any::<bool>())
            .prop_map(|(queue, config, keep_shape)| Op::Reconfigure { queue, config, keep_shape }),
        1 => (0..QUEUES).prop_map(|queue| Op::DeleteQueue { queue }),
        1 => (0..QUEUES, 0u8..3, prop_oneof![3 => 1u32..4, 1 => Just(0u32)])
            .prop_map(|(queue, group, weight)| Op::SetGroupWeight { queue, group, weight }),
    ]
}

/// A scenario of up to `max_ops` steps drawn from `op`, after one to three registrations, on
/// queues of any configuration.
fn scenario_of(
    op: impl proptest::strategy::Strategy<Value = Op>,
    max_ops: usize,
) -> impl proptest::strategy::Strategy<Value = Scenario> {
    (
        proptest::collection::vec(any_config(), QUEUES),
        proptest::collection::vec(register_op(), 1..4),
        proptest::collection::vec(op, 1..max_ops),
    )
        .prop_map(|(configs, mut ops, rest)| {
            ops.extend(rest);
            Scenario { configs, ops }
        })
}

/// A random scenario of flows ([`flow_op`]): children received, completed, failed (often for
/// good), re-driven and cancelled, parents cancelled, maintenance settling what their ends
/// decided, workers lost.
pub fn flow_scenario(max_ops: usize) -> impl proptest::strategy::Strategy<Value = Scenario> {
    let op = prop_oneof![
        4 => flow_op(),
        2 => submit_op().prop_map(Op::Submit),
        2 => register_op(),
        1 => (0..WORKERS).prop_map(|worker| Op::Deregister { worker }),
        6 => (0..WORKERS, 1usize..4).prop_map(|(worker, max)| Op::Receive { worker, max }),
        6 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        4 => (any::<usize>(), prop_oneof![3 => Just(false), 1 => Just(true)])
            .prop_map(|(pick, retry)| Op::Fail { pick, retry }),
        2 => any::<usize>().prop_map(|pick| Op::Redrive { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        4 => prop_oneof![3 => Just(0u64), 1 => Just(1_000), 1 => Just(16_000)]
            .prop_map(|ms| Op::Advance { ms }),
        1 => any::<usize>().prop_map(|pick| Op::DeleteTask { pick }),
        1 => (0..QUEUES).prop_map(|queue| Op::DeleteQueue { queue }),
    ];
    scenario_of(op, max_ops)
}

/// A random scenario of up to `max_ops` steps, starting with one to three registrations.
pub fn any_scenario(max_ops: usize) -> impl proptest::strategy::Strategy<Value = Scenario> {
    scenario_of(any_op(), max_ops)
}

/// A change of a task: a priority, a run time around now, a payload, or several (or none:
/// refused alike).
fn change_op() -> impl proptest::strategy::Strategy<Value = Op> {
    (
        any::<usize>(),
        proptest::option::of(0u16..8),
        proptest::option::of(prop_oneof![Just(-1_000i64), Just(0), Just(1), Just(2_500)]),
        any::<bool>(),
    )
        .prop_map(|(pick, priority, run_in, payload)| Op::Change {
            pick,
            priority,
            run_in,
            payload,
        })
}

/// A progress report of a delivered task (the runner prefers current leases).
fn progress_op() -> impl proptest::strategy::Strategy<Value = Op> {
    (
        any::<usize>(),
        prop_oneof![Just(0u32), Just(1), Just(333_333), Just(1_000_000)],
        any::<bool>(),
    )
        .prop_map(|(pick, ppm, message)| Op::Progress { pick, ppm, message })
}

/// One step of a running task's life: submits, receives, progress reports, the clock moving in
/// steps around the progress announcement gap (one second), failures with retries, throttles,
/// completions and heartbeats.
fn running_op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        3 => submit_op().prop_map(Op::Submit),
        4 => (0..WORKERS, 1usize..4).prop_map(|(worker, max)| Op::Receive { worker, max }),
        8 => progress_op(),
        4 => prop_oneof![Just(0u64), Just(1), Just(499), Just(500), Just(999), Just(1_000)]
            .prop_map(|ms| Op::Advance { ms }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, retry)| Op::Fail { pick, retry }),
        1 => any::<usize>().prop_map(|pick| Op::Throttle { pick, hold_ms: 0 }),
        2 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        1 => (0..WORKERS).prop_map(|worker| Op::Heartbeat { worker }),
    ]
}

/// A random scenario of running tasks' lives ([`running_op`]): what the mixed scenarios reach
/// only now and then — several reports of one attempt a set time apart, reports of a task's
/// next attempt, reports under leases taken back.
pub fn running_scenario(max_ops: usize) -> impl proptest::strategy::Strategy<Value = Scenario> {
    scenario_of(running_op(), max_ops)
}

/// A submit with one of two dedup keys, often delayed: the steps that throttle and debounce.
fn dedup_submit_op() -> impl proptest::strategy::Strategy<Value = SubmitOp> {
    (
        submit_op(),
        0u8..2,
        prop_oneof![
            Just(None),
            Just(Some(0u32)),
            Just(Some(700)),
            Just(Some(2_000))
        ],
    )
        .prop_map(|(mut op, key, delay)| {
            op.dedup = Some(key);
            op.delay_ms = delay;
            op
        })
}

/// One step of dedup keys' lives: submits and batches of submits sharing keys, the clock
/// moving around the windows (1 s and 2.5 s), receives and completions that start and end the
/// tasks holding keys, and changes.
fn dedup_op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        6 => dedup_submit_op().prop_map(Op::Submit),
        2 => proptest::collection::vec(dedup_submit_op(), 2..4).prop_map(Op::Batch),
        1 => proptest::collection::vec(dedup_submit_op(), 2..4).prop_map(Op::SubmitTogether),
        1 => any::<usize>().prop_map(|pick| Op::Resubmit { pick }),
        4 => prop_oneof![Just(0u64), Just(500), Just(999), Just(1_000), Just(1_500), Just(2_500)]
            .prop_map(|ms| Op::Advance { ms }),
        3 => (0..WORKERS, 1usize..3).prop_map(|(worker, max)| Op::Receive { worker, max }),
        2 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        1 => change_op(),
        1 => (0..WORKERS).prop_map(|worker| Op::Heartbeat { worker }),
    ]
}

/// A random scenario of dedup keys ([`dedup_op`]) on queues whose windows are 0, 1 s or 2.5 s,
/// half of them debouncing: what the mixed scenarios, with their longer windows and few
/// keyed submits, reach only now and then — a window restarted by a debounce and then
/// lapsing, a holder that started before the next submit.
pub fn dedup_scenario(max_ops: usize) -> impl proptest::strategy::Strategy<Value = Scenario> {
    (
        proptest::collection::vec(
            (
                any_config(),
                prop_oneof![Just(0u64), Just(1_000), Just(2_500)],
                any::<bool>(),
            ),
            QUEUES,
        ),
        proptest::collection::vec(register_op(), 1..4),
        proptest::collection::vec(dedup_op(), 1..max_ops),
    )
        .prop_map(|(configs, mut ops, rest)| {
            let configs = configs
                .into_iter()
                .map(|(config, window, debounce)| {
                    let mode = if debounce {
                        DedupMode::Debounce
                    } else {
                        DedupMode::Throttle
                    };
                    config
                        .with_dedup_window(std::time::Duration::from_millis(window))
                        .with_dedup_mode(mode)
                })
                .collect();
            ops.extend(rest);
            Scenario { configs, ops }
        })
}

/// One step of schedules' lives: upserts (two schedules, intervals of 0.5 to 2.5 s, each
/// misfire and overlap policy, sometimes a limit), second tickers replaying a claim, pauses,
/// removals, the clock moving (maintenance claims the due ticks), and the receives,
/// completions and submits that make the last tick's task run or end.
fn schedule_op() -> impl proptest::strategy::Strategy<Value = Op> {
    let upsert = (
        0u8..2,
        0..QUEUES,
        prop_oneof![Just(500u64), Just(1_000), Just(2_500)],
        0u8..3,
        any::<bool>(),
        proptest::option::weighted(0.3, 1u64..4),
    )
        .prop_map(|(index, queue, every_ms, misfire, overlap_skip, limit)| {
            Op::UpsertSchedule {
                index,
                queue,
                every_ms,
                misfire,
                overlap_skip,
                limit,
            }
        });
    prop_oneof![
        2 => upsert,
        3 => (
            0u8..2,
            prop_oneof![Just(0u64), Just(500), Just(1_000), Just(3_000)],
            proptest::bool::weighted(0.2),
        )
            .prop_map(|(index, advance_ms, paused_between)| Op::ClaimTicks {
                index,
                advance_ms,
                paused_between,
            }),
        1 => (0u8..2, any::<bool>()).prop_map(|(index, paused)| Op::PauseSchedule { index, paused }),
        1 => (0u8..2).prop_map(|index| Op::RemoveSchedule { index }),
        5 => prop_oneof![Just(0u64), Just(300), Just(500), Just(1_000), Just(2_500), Just(7_000)]
            .prop_map(|ms| Op::Advance { ms }),
        3 => (0..WORKERS, 1usize..4).prop_map(|(worker, max)| Op::Receive { worker, max }),
        3 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        1 => submit_op().prop_map(Op::Submit),
        1 => (0..WORKERS).prop_map(|worker| Op::Heartbeat { worker }),
    ]
}

/// A random scenario of schedules ([`schedule_op`]).
pub fn schedule_scenario(max_ops: usize) -> impl proptest::strategy::Strategy<Value = Scenario> {
    scenario_of(schedule_op(), max_ops)
}

/// A random scenario like [`any_scenario`] whose queues all pull: workers park and take
/// hand-offs (`Leases::receive_wait`) in most steps.
pub fn pull_scenario(max_ops: usize) -> impl proptest::strategy::Strategy<Value = Scenario> {
    any_scenario(max_ops).prop_map(|mut s| {
        for c in &mut s.configs {
            c.strategy = Strategy::Pull;
        }
        s
    })
}

/// A submit to a shared queue: mostly with one of three group keys, sometimes without one
/// (the group `""`).
fn group_submit_op() -> impl proptest::strategy::Strategy<Value = SubmitOp> {
    (submit_op(), proptest::option::weighted(0.85, 0u8..3)).prop_map(|(mut op, group)| {
        op.group = group;
        op
    })
}

/// One step of shared queues' lives: submits to groups (alone, in batches, together), the
/// receives, completions, failures, throttles and hand-backs that move groups in and out of
/// their limits and the ring, weights, cancels and changes of waiting tasks, purges and
/// reconfigures (limits changed, sharing turned off and on).
fn group_op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        6 => group_submit_op().prop_map(Op::Submit),
        2 => proptest::collection::vec(group_submit_op(), 1..6).prop_map(Op::Batch),
        1 => proptest::collection::vec(group_submit_op(), 2..4).prop_map(Op::SubmitTogether),
        5 => (0..WORKERS, 1usize..4).prop_map(|(worker, max)| Op::Receive { worker, max }),
        2 => (0..WORKERS, 0usize..4).prop_map(|(worker, max)| Op::Park { worker, max }),
        5 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        2 => (any::<usize>(), 1usize..4).prop_map(|(pick, max)| Op::CompleteAndReceive { pick, max }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, retry)| Op::Fail { pick, retry }),
        1 => (any::<usize>(), prop_oneof![Just(0u64), Just(500), Just(2_500)])
            .prop_map(|(pick, hold_ms)| Op::Throttle { pick, hold_ms }),
        2 => (0..QUEUES, 0u8..3, prop_oneof![3 => 1u32..4, 1 => Just(0u32)])
            .prop_map(|(queue, group, weight)| Op::SetGroupWeight { queue, group, weight }),
        1 => (0..QUEUES, 0u8..3, proptest::option::of(0u32..4), 0u8..3)
            .prop_map(|(queue, group, concurrency, r)| {
                let mut limits = GroupLimits::default();
                limits.concurrency = concurrency;
                limits.rate = match r {
                    0 => None,
                    1 => Some(RateLimit { max: 1, per_ms: 1_000 }),
                    _ => Some(RateLimit { max: 3, per_ms: 500 }),
                };
                Op::SetGroupLimits { queue, group, limits }
            }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => change_op(),
        1 => (0..QUEUES).prop_map(|queue| Op::Dispatch { queue }),
        1 => (0..QUEUES, any::<bool>()).prop_map(|(queue, paused)| Op::Pause { queue, paused }),
        1 => register_op(),
        1 => (0..WORKERS).prop_map(|worker| Op::Drain { worker }),
        1 => (0..WORKERS).prop_map(|worker| Op::Deregister { worker }),
        1 => (0..WORKERS).prop_map(|worker| Op::Heartbeat { worker }),
        // 999 and 1 ms: just before and at the end of a one-second window of a group's rate.
        2 => prop_oneof![Just(0u64), Just(1), Just(500), Just(999), Just(2_500), Just(16_000)].prop_map(|ms| Op::Advance { ms }),
        1 => (0..QUEUES, prop_oneof![Just(1usize), Just(1_000)])
            .prop_map(|(queue, limit)| Op::PurgeQueue { queue, what: Purge::Waiting, limit }),
        1 => (0..QUEUES, shared_config(), any::<bool>())
            .prop_map(|(queue, config, keep_shape)| Op::Reconfigure { queue, config, keep_shape }),
    ]
}

/// [`any_config`], shared between groups: no limit, or one or two per group, no rate limit,
/// or one or two per second or 2.5 s per group, and no bound, or two or three waiting per
/// group; one in eight not shared (what a reconfigure turning sharing off looks like).
fn shared_config() -> impl proptest::strategy::Strategy<Value = QueueConfig> {
    (any_config(), 0u8..8, 0u8..3, 0u32..4).prop_map(|(mut config, n, r, bound)| {
        let rate = match r {
            0 => None,
            1 => Some(RateLimit {
                max: 1,
                per_ms: 1_000,
            }),
            _ => Some(RateLimit {
                max: 2,
                per_ms: 2_500,
            }),
        };
        let mut share = GroupShare::default();
        share.rate = rate;
        share.max_waiting = (bound >= 2).then_some(bound);
        config.groups = match n {
            0 => None,
            1..=3 => Some(share),
            _ => Some(share.with_concurrency(u32::from(n % 2) + 1)),
        };
        config
    })
}

/// A random scenario of queues shared between groups ([`group_op`]). It starts with group `g0`
/// of each queue weighing 1 to 3 and two batches of submits waiting before any worker
/// registers, so that the first registrations take backlogs of several groups by the ring's
/// turns (what a weight decides); then the workers register and the steps follow.
pub fn group_scenario(max_ops: usize) -> impl proptest::strategy::Strategy<Value = Scenario> {
    (
        proptest::collection::vec(shared_config(), QUEUES),
        proptest::collection::vec(1u32..4, QUEUES),
        proptest::collection::vec(proptest::collection::vec(group_submit_op(), 3..7), 2),
        proptest::collection::vec(register_op(), 1..4),
        proptest::collection::vec(group_op(), 1..max_ops),
    )
        .prop_map(|(configs, weights, backlog, registers, rest)| {
            let mut ops: Vec<Op> = weights
                .into_iter()
                .enumerate()
                .map(|(queue, weight)| Op::SetGroupWeight {
                    queue,
                    group: 0,
                    weight,
                })
                .collect();
            ops.extend(backlog.into_iter().map(Op::Batch));
            ops.extend(registers);
            ops.extend(rest);
            Scenario { configs, ops }
        })
}
