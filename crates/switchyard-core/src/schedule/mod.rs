//! Schedules: a named definition that creates one task per tick, each tick claimed exactly once
//! however many processes run the ticker.
//!
//! * [`ticks`] — the tick arithmetic: cron (with seconds, in an IANA time zone, daylight saving
//!   included) or a fixed interval, bounded by a start, an end and a count; what a late ticker
//!   runs ([`Misfire`]).
//! * [`spec`] — the definition ([`ScheduleSpec`]: the recurrence, the misfire and [`Overlap`]
//!   policies, the [`TaskTemplate`]), its state ([`ScheduleState`]) and the [`Claim`] of due
//!   ticks.
//!
//! The rule both backends keep (memory `state/schedules.rs`, Lua `lua/schedule_*.lua`, held
//! equal by the lockstep tests):
//!
//! 1. **Upsert.** A new schedule's next tick is its first after now. Upserting the same
//!    definition changes nothing ([`Upserted::Unchanged`]: eight producers upserting one
//!    schedule at once leave one schedule with one pending tick); another definition replaces
//!    it, bumps its version and takes effect from its first tick after now, the counts kept.
//! 2. **Claim.** Maintenance (every worker's, every pass; [`crate::Maintain::maintain`]) claims
//!    the due schedules' ticks, earliest next tick first, within its step limit: from the state
//!    it reads, a ticker computes a [`Claim`] (the ticks to run by the misfire policy and the
//!    next tick after now), and the backend applies it in one atomic step **only if** the
//!    schedule still has the next tick and the version the claim was computed from — a second
//!    ticker with the same claim changes nothing. Applying it creates each tick's task, with the
//!    tick's id ([`tick_task_id`]: a task that exists is not created again), unless the overlap
//!    policy skips the ticks (the previous tick's task has not finished), counts the ticks in
//!    `runs` (and `skipped`), and sets the next tick — so the next tick is never lost between
//!    two steps (BullMQ #3272) and never claimed twice (Asynq #371).
//! 3. **Pause** leaves the next tick unclaimed; **resume** sets it to the first tick after now
//!    (the ticks of the pause are not misfires). **Remove** deletes the schedule (its tasks stay).

pub mod spec;
pub mod ticks;

pub use spec::{
    Claim, Overlap, ScheduleInfo, ScheduleSpec, ScheduleState, TaskTemplate, Upserted, fold_claim,
    overlap_allows,
};
pub use ticks::{Every, Misfire, Plan, Recurrence, Ticks, plan, tick_task_id};
