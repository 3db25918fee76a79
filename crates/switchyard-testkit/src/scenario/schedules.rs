//! The schedule steps of a scenario ([`Op::UpsertSchedule`], [`Op::ClaimTicks`],
//! [`Op::PauseSchedule`], [`Op::RemoveSchedule`]; the rule: `switchyard_core::schedule`): applied,
//! the schedules' state recorded in the trace (so that the backends are compared on it), and
//! the tasks their ticks create accepted by id, so that conservation (invariant 1) covers them.

use switchyard_core::prelude::*;
use switchyard_core::schedule::{
    Claim, Every, Misfire, Overlap, Recurrence, ScheduleSpec, TaskTemplate,
};
use switchyard_core::{Clock, ScheduleName, TaskId, TaskKind};

use super::runner::fatal;
use super::{Op, Runner, queue_name};

fn schedule_name(index: u8) -> ScheduleName {
    // "s0", "s1": valid names.
    ScheduleName::new(format!("s{index}")).unwrap_or_else(|_| unreachable!())
}

impl<B: Backend> Runner<B> {
    pub(super) async fn apply_schedule(&mut self, op: &Op) -> Result<String, String> {
        let line = match op {
            Op::UpsertSchedule {
                index,
                queue,
                every_ms,
                misfire,
                overlap_skip,
                limit,
            } => {
                let mut recurrence = Recurrence::new(Every::interval_ms(*every_ms));
                recurrence.limit = *limit;
                let kind = TaskKind::new("tick").map_err(|e| e.to_string())?;
                let template = TaskTemplate::new(queue_name(*queue), kind)
                    .payload(format!("s{index}").into_bytes());
                let spec = ScheduleSpec::new(schedule_name(*index), recurrence, template)
                    .with_misfire(match misfire {
                        0 => Misfire::RunOnce,
                        1 => Misfire::Skip { grace_ms: 200 },
                        _ => Misfire::CatchUp(2),
                    })
                    .with_overlap(if *overlap_skip {
                        Overlap::Skip
                    } else {
                        Overlap::Allow
                    });
                let label = format!("upsert schedule s{index}");
                match self.backend.upsert_schedule(&spec).await {
                    Ok(upserted) => {
                        self.schedules.insert(*index, spec);
                        format!("{label} -> {upserted:?}")
                    }
                    Err(e) if fatal(&e) => return Err(format!("{label}: backend failed: {e}")),
                    Err(e) => format!("{label} -> error: {e}"),
                }
            }
            Op::ClaimTicks {
                index,
                advance_ms,
                paused_between,
            } => {
                self.clock
                    .advance(std::time::Duration::from_millis(*advance_ms));
                let name = schedule_name(*index);
                let label = format!("claim s{index} after {advance_ms} ms");
                let info = self
                    .backend
                    .get_schedule(&name)
                    .await
                    .map_err(|e| format!("{label}: {e}"))?;
                let claim = info.as_ref().and_then(|info| {
                    let ticks = info.spec.validate(info.state.defined_at).ok()?;
                    Claim::at(info, &ticks, self.clock.now_ms())
                });
                if let (Some(claim), true) = (&claim, *paused_between) {
                    // A ticker that read before a pause must change nothing after it.
                    let pause = |paused| self.backend.set_schedule_paused(&name, paused);
                    pause(true)
                        .await
                        .map_err(|e| format!("{label}: pause: {e}"))?;
                    let snap = self.snapshot().await?;
                    let late = self
                        .backend
                        .claim_ticks(&name, claim)
                        .await
                        .map_err(|e| format!("{label} paused: {e}"))?;
                    if late.is_some() || self.snapshot().await? != snap {
                        return Err(format!("{label}: applied while paused: {late:?}"));
                    }
                    pause(false)
                        .await
                        .map_err(|e| format!("{label}: resume: {e}"))?;
                    return Ok(format!(
                        "{label} -> paused between{}",
                        self.schedule_view().await?
                    ));
                }
                match claim {
                    None => format!("{label} -> nothing due"),
                    Some(claim) => match self.backend.claim_ticks(&name, &claim).await {
                        Ok(claimed) => {
                            if let Some(c) = &claimed {
                                self.ticked(&c.created)?;
                            }
                            // A second ticker with the same claim changes nothing.
                            let snap = self.snapshot().await?;
                            let again = self
                                .backend
                                .claim_ticks(&name, &claim)
                                .await
                                .map_err(|e| format!("{label} again: {e}"))?;
                            if again.is_some() {
                                return Err(format!("{label}: applied twice: {again:?}"));
                            }
                            if self.snapshot().await? != snap {
                                return Err(format!("{label}: the second claim changed state"));
                            }
                            format!("{label} {claim:?} -> {claimed:?}")
                        }
                        Err(e) if fatal(&e) => {
                            return Err(format!("{label}: backend failed: {e}"));
                        }
                        Err(e) => format!("{label} -> error: {e}"),
                    },
                }
            }
            Op::PauseSchedule { index, paused } => {
                let label = format!("pause s{index} {paused}");
                match self
                    .backend
                    .set_schedule_paused(&schedule_name(*index), *paused)
                    .await
                {
                    Ok(found) => format!("{label} -> {found}"),
                    Err(e) => return Err(format!("{label}: {e}")),
                }
            }
            Op::RemoveSchedule { index } => {
                let label = format!("remove s{index}");
                match self.backend.remove_schedule(&schedule_name(*index)).await {
                    Ok(found) => format!("{label} -> {found}"),
                    Err(e) => return Err(format!("{label}: {e}")),
                }
            }
            other => return Err(format!("not a schedule step: {other:?}")),
        };
        Ok(format!("{line}{}", self.schedule_view().await?))
    }

    /// Accepts the tasks schedule ticks created: each is the tick's task of one of the
    /// schedules upserted (its id names the tick).
    pub(super) fn ticked(&mut self, created: &[TaskId]) -> Result<(), String> {
        for id in created {
            let spec = self
                .schedules
                .values()
                .find(|s| {
                    switchyard_core::schedule::tick_task_id(s.name.as_str(), id.millis()) == *id
                })
                .ok_or_else(|| format!("ticked task {id} is no tick of a known schedule"))?;
            let task = spec
                .task
                .task(&spec.name, id.millis())
                .map_err(|e| e.to_string())?;
            self.specs.insert(*id, task);
            self.accepted.push(*id);
        }
        Ok(())
    }

    /// The schedules and their state, for the trace (empty while there are none).
    pub(super) async fn schedule_view(&self) -> Result<String, String> {
        let all = self
            .backend
            .schedules()
            .await
            .map_err(|e| format!("schedules: {e}"))?;
        if all.is_empty() {
            return Ok(String::new());
        }
        let states: Vec<_> = all
            .iter()
            .map(|s| (s.spec.name.to_string(), &s.state))
            .collect();
        Ok(format!("; schedules {states:?}"))
    }
}
