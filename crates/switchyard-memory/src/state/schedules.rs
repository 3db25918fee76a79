//! Schedules: upserting, pausing, removing, and claiming their due ticks (the rule:
//! `switchyard_core::schedule`).
//!
//! Lua twin: lua/schedule_upsert.lua, lua/schedule_pause.lua, lua/schedule_remove.lua,
//! lua/schedule_claim.lua.

use switchyard_core::schedule::{
    Claim, ScheduleInfo, ScheduleSpec, ScheduleState, Ticks, Upserted, fold_claim, overlap_allows,
};
use switchyard_core::{
    Assignment, Claimed, Error, MaintenanceReport, Millis, Result, ScheduleName,
};

use super::State;

/// A stored schedule, with its compiled ticks.
#[derive(Debug)]
pub(crate) struct Schedule {
    info: ScheduleInfo,
    ticks: Ticks,
}

impl State {
    pub(crate) fn upsert_schedule(&mut self, spec: &ScheduleSpec, now: Millis) -> Result<Upserted> {
        let ticks = spec.validate(now)?;
        let next = ticks.next_after(now);
        let (state, upserted) = match self.schedules.get(&spec.name) {
            Some(old) if old.info.spec == *spec => return Ok(Upserted::Unchanged),
            Some(old) => {
                let mut state = old.info.state.clone();
                (state.next, state.version, state.defined_at) = (next, state.version + 1, now);
                (state, Upserted::Changed)
            }
            None => {
                let mut state = ScheduleState::default();
                (state.next, state.version, state.defined_at) = (next, 1, now);
                (state, Upserted::Created)
            }
        };
        self.unindex_schedule(&spec.name);
        let info = ScheduleInfo::new(spec.clone(), state);
        self.schedules
            .insert(spec.name.clone(), Schedule { info, ticks });
        self.index_schedule(&spec.name);
        Ok(upserted)
    }

    pub(crate) fn get_schedule(&self, name: &ScheduleName) -> Option<ScheduleInfo> {
        self.schedules.get(name).map(|s| s.info.clone())
    }

    pub(crate) fn all_schedules(&self) -> Vec<ScheduleInfo> {
        self.schedules.values().map(|s| s.info.clone()).collect()
    }

    pub(crate) fn set_schedule_paused(
        &mut self,
        name: &ScheduleName,
        paused: bool,
        now: Millis,
    ) -> Result<bool> {
        if self
            .schedules
            .get(name)
            .is_none_or(|s| s.info.state.paused == paused)
        {
            return Ok(self.schedules.contains_key(name));
        }
        // Out of the due set under its old state, back in under its new one.
        self.unindex_schedule(name);
        let Some(s) = self.schedules.get_mut(name) else {
            return Ok(false);
        };
        s.info.state.paused = paused;
        if !paused && s.info.state.next.is_some() {
            // The ticks of the pause are not misfires: the next is the first after now.
            s.info.state.next = s.ticks.next_after(now);
        }
        self.index_schedule(name);
        Ok(true)
    }

    pub(crate) fn remove_schedule(&mut self, name: &ScheduleName) -> bool {
        self.unindex_schedule(name);
        self.schedules.remove(name).is_some()
    }

    pub(crate) fn claim_ticks(
        &mut self,
        name: &ScheduleName,
        claim: &Claim,
        now: Millis,
    ) -> Result<Option<Claimed>> {
        let Some(s) = self.schedules.get(name) else {
            return Ok(None);
        };
        if !claim.holds(&s.info.state) {
            return Ok(None);
        }
        if let Some(tick) = claim.run.iter().find(|t| **t > now) {
            return Err(Error::invalid(
                "claim",
                format!("tick {tick} has not come (now {now})"),
            ));
        }
        let spec = s.info.spec.clone();
        let previous = s.info.state.last_task.and_then(|id| self.tasks.get(&id));
        let run = overlap_allows(spec.overlap, previous.map(|t| t.state));
        let mut claimed = Claimed::default();
        let mut last_task = s.info.state.last_task;
        if run && !claim.run.is_empty() {
            let tasks = claim
                .run
                .iter()
                .map(|tick| spec.task.task(&spec.name, *tick))
                .collect::<Result<Vec<_>>>()?;
            // The queue must exist and have room, before anything changes.
            self.queue(&spec.task.queue)?;
            self.check_room(
                &tasks,
                &switchyard_core::flow::bounded::Remaining::default(),
                now,
            )?;
            for task in tasks {
                let out = self.submit(task, now)?;
                last_task = Some(out.id);
                if !out.duplicate {
                    claimed.created.push(out.id);
                }
                if let Some(worker) = out.assigned {
                    claimed.assignments.push(Assignment {
                        task: out.id,
                        queue: spec.task.queue.clone(),
                        worker,
                    });
                }
            }
        }
        claimed.skipped = !run && !claim.run.is_empty();
        let ran = claim.run.len() as u64;
        self.unindex_schedule(name);
        let s = self
            .schedules
            .get_mut(name)
            .ok_or_else(|| super::internal("schedule gone during its claim"))?;
        let state = &mut s.info.state;
        state.runs += ran;
        if claimed.skipped {
            state.skipped += ran;
        }
        if let Some(last) = claim.run.last() {
            state.last_tick = Some(*last);
        }
        state.last_task = last_task;
        state.next = claim.next;
        self.index_schedule(name);
        Ok(Some(claimed))
    }

    /// Maintenance's step: claims the due schedules' ticks, earliest next tick first, at most
    /// `limit` schedules. A schedule whose claim fails (its queue is missing or full) stays due
    /// and is left for a later pass, the reason logged.
    pub(crate) fn tick_schedules(
        &mut self,
        limit: usize,
        now: Millis,
        report: &mut MaintenanceReport,
    ) -> Result<()> {
        let due: Vec<ScheduleName> = self
            .schedule_due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, name)| name.clone())
            .collect();
        report.more |= due.len() > limit;
        for name in due.into_iter().take(limit) {
            let Some(claim) = self
                .schedules
                .get(&name)
                .and_then(|s| Claim::at(&s.info, &s.ticks, now))
            else {
                continue;
            };
            if let Some(e) = fold_claim(report, self.claim_ticks(&name, &claim, now))? {
                tracing::warn!(schedule = %name, "schedule tick left waiting: {e}");
            }
        }
        Ok(())
    }

    /// The earliest next tick of an unpaused schedule.
    pub(crate) fn next_tick(&self) -> Option<Millis> {
        self.schedule_due.first().map(|(at, _)| *at)
    }

    /// What is wrong with the due set (the audit): it must hold exactly the unpaused
    /// schedules that have a next tick, under that tick.
    pub(crate) fn schedule_due_mismatch(&self) -> Option<String> {
        let want: std::collections::BTreeSet<(Millis, ScheduleName)> = self
            .schedules
            .iter()
            .filter(|(_, s)| !s.info.state.paused)
            .filter_map(|(name, s)| s.info.state.next.map(|n| (n, name.clone())))
            .collect();
        (want != self.schedule_due).then(|| {
            format!(
                "schedule due set {:?}, expected {want:?}",
                self.schedule_due
            )
        })
    }

    fn index_schedule(&mut self, name: &ScheduleName) {
        if let Some(s) = self.schedules.get(name)
            && let Some(next) = s.info.state.next.filter(|_| !s.info.state.paused)
        {
            self.schedule_due.insert((next, name.clone()));
            self.due_moved.notify_waiters();
        }
    }

    fn unindex_schedule(&mut self, name: &ScheduleName) {
        if let Some(s) = self.schedules.get(name)
            && let Some(next) = s.info.state.next
        {
            self.schedule_due.remove(&(next, name.clone()));
        }
    }
}
