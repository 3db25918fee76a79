//! Schedules on Redis (`lua/schedule_*.lua`, `lua/lib/schedules.lua`; the rule:
//! `switchyard_core::schedule`). The client computes what the scripts cannot — cron
//! arithmetic, in `switchyard_core::schedule` — and the scripts apply it only if the state it
//! was computed from still holds.

use async_trait::async_trait;
use switchyard_core::schedule::{
    Claim, Overlap, ScheduleInfo, ScheduleSpec, ScheduleState, Upserted, fold_claim,
};
use switchyard_core::{
    Assignment, Claimed, Error, MaintenanceReport, Millis, Result, ScheduleName, Schedules,
};

use super::{RedisBackend, verified};
use crate::codec::protocol as protocol_error;
use crate::codec::{self, array, int};
use crate::error::Failure;
use crate::library::{Call, Function};

/// The fixed part of a stored schedule state (`STATE` in `lua/lib/schedules.lua`).
const STATE_LEN: usize = 37;

/// A tick's claim reaches at most this many ticks (`schedule_claim.lua` checks it too).
const MAX_CLAIM: usize = 10_000;

impl RedisBackend {
    /// A call of a schedule script: the fixed keys, `groups`' keys, the schedule keys.
    fn schedule_call(&self, function: &Function, groups: &[&switchyard_core::QueueName]) -> Call {
        let keys = &self.inner.keys;
        let group_keys: Vec<String> = groups.iter().flat_map(|q| keys.queue_group(q)).collect();
        let [sched, due] = keys.schedules();
        let mut inv = function.call(
            keys.fixed
                .iter()
                .map(String::as_str)
                .chain(group_keys.iter().map(String::as_str))
                .chain([sched.as_str(), due.as_str()]),
        );
        inv.arg(self.now_arg());
        inv
    }

    /// Schedule `name`'s definition and state, read in one `HMGET`.
    async fn read_schedule(&self, name: &str) -> Result<Option<ScheduleInfo>> {
        let [sched, _] = self.inner.keys.schedules();
        let (def, state): (Option<String>, Option<Vec<u8>>) = self
            .query(
                redis::cmd("HMGET")
                    .arg(sched)
                    .arg(format!("d:{name}"))
                    .arg(format!("s:{name}")),
            )
            .await?;
        let (Some(def), Some(state)) = (def, state) else {
            return Ok(None);
        };
        let spec: ScheduleSpec = serde_json::from_str(&def)
            .map_err(|e| protocol_error(format!("schedule {name}: definition: {e}")))?;
        Ok(Some(ScheduleInfo::new(spec, decode_state(&state)?)))
    }

    /// Maintenance's step: claims the due schedules' ticks, earliest next tick first, at most
    /// `limit` schedules (the memory twin: `State::tick_schedules`).
    pub(super) async fn tick_schedules(
        &self,
        limit: usize,
        now: Millis,
        report: &mut MaintenanceReport,
    ) -> Result<()> {
        let [_, due] = self.inner.keys.schedules();
        let names: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(due)
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit.saturating_add(1)),
            )
            .await?;
        report.more |= names.len() > limit;
        for name in names.into_iter().take(limit) {
            let name = ScheduleName::new(name)?;
            let Some(info) = self.read_schedule(name.as_str()).await? else {
                continue;
            };
            let ticks = info.spec.validate(info.state.defined_at)?;
            let Some(claim) = Claim::at(&info, &ticks, now) else {
                continue;
            };
            if let Some(e) = fold_claim(report, self.apply_claim(&info, &claim).await)? {
                tracing::warn!(schedule = %name, "schedule tick left waiting: {e}");
            }
        }
        Ok(())
    }

    /// The due set's entries (the audit).
    pub(crate) async fn schedule_due_entries(&self) -> Result<Vec<(String, Millis)>> {
        let [_, due] = self.inner.keys.schedules();
        let all: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(due)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES"),
            )
            .await?;
        Ok(all.into_iter().map(|(n, at)| (n, at as Millis)).collect())
    }

    async fn apply_claim(&self, info: &ScheduleInfo, claim: &Claim) -> Result<Option<Claimed>> {
        let spec = &info.spec;
        if claim.run.len() > MAX_CLAIM {
            return Err(Error::invalid(
                "claim",
                format!("{} ticks; at most {MAX_CLAIM} at once", claim.run.len()),
            ));
        }
        let queue = &spec.task.queue;
        let mut inv = self.schedule_call(&self.functions().schedule_claim, &[queue]);
        inv.arg(queue.as_str())
            .arg(spec.name.as_str())
            .arg(claim.version)
            .arg(claim.expected_next)
            .arg(claim.next.map_or(-1, millis_arg))
            .arg(u8::from(spec.overlap == Overlap::Skip))
            .arg(claim.run.len());
        for tick in &claim.run {
            inv.arg(*tick);
        }
        for tick in &claim.run {
            inv.arg(codec::encode_task_arg(
                &spec.task.task(&spec.name, *tick)?,
                1,
            ));
        }
        let reply = self.exec_durable(&inv).await.map_err(Failure::into_error)?;
        let mut items = array(reply)?.into_iter();
        if int(&items
            .next()
            .ok_or_else(|| protocol_error("empty claim reply"))?)?
            == 0
        {
            return Ok(None);
        }
        let skipped = int(&items
            .next()
            .ok_or_else(|| protocol_error("short claim reply"))?)?
            == 1;
        let mut claimed = Claimed::default();
        claimed.skipped = skipped;
        let rows = if skipped { 0 } else { claim.run.len() };
        for _ in 0..rows {
            let out = codec::submit_outcome(&mut items)?;
            if !out.duplicate {
                claimed.created.push(out.id);
            }
            if let Some(worker) = out.assigned {
                claimed.assignments.push(Assignment {
                    task: out.id,
                    queue: queue.clone(),
                    worker,
                });
            }
        }
        Ok(Some(claimed))
    }
}

fn millis_arg(ms: Millis) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A stored state (`STATE` in `lua/lib/schedules.lua`: `>BI6I6I6I6I6I6`, then the last task's
/// id).
fn decode_state(v: &[u8]) -> Result<ScheduleState> {
    if v.len() < STATE_LEN {
        return Err(protocol_error("schedule state shorter than its header"));
    }
    let uint = |at: usize| {
        v[at..at + 6]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    let flags = v[0];
    let mut state = ScheduleState::default();
    state.next = (flags & 1 != 0).then(|| uint(1));
    state.runs = uint(7);
    state.skipped = uint(13);
    state.last_tick = (flags & 2 != 0).then(|| uint(19));
    state.version = uint(25);
    state.defined_at = uint(31);
    state.paused = flags & 4 != 0;
    let task = std::str::from_utf8(&v[STATE_LEN..])
        .map_err(|_| protocol_error("schedule state: task id not text"))?;
    state.last_task = if task.is_empty() {
        None
    } else {
        Some(task.parse()?)
    };
    Ok(state)
}

#[async_trait]
impl Schedules for RedisBackend {
    async fn upsert_schedule(&self, spec: &ScheduleSpec) -> Result<Upserted> {
        let now = self.now_ms().await?;
        let next = spec.validate(now)?.next_after(now);
        let def = serde_json::to_string(spec)
            .map_err(|e| Error::invalid("schedule", format!("not storable: {e}")))?;
        let mut inv = self.schedule_call(&self.functions().schedule_upsert, &[]);
        inv.arg(spec.name.as_str())
            .arg(def)
            .arg(now)
            .arg(next.map_or(-1, millis_arg));
        let v = self.exec_durable(&inv).await.map_err(Failure::into_error)?;
        match int(&v)? {
            0 => Ok(Upserted::Unchanged),
            1 => Ok(Upserted::Created),
            _ => Ok(Upserted::Changed),
        }
    }

    async fn get_schedule(&self, name: &ScheduleName) -> Result<Option<ScheduleInfo>> {
        self.read_schedule(name.as_str()).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let [sched, _] = self.inner.keys.schedules();
        let fields: Vec<String> = self.query(redis::cmd("HKEYS").arg(sched)).await?;
        let mut names: Vec<&str> = fields.iter().filter_map(|f| f.strip_prefix("d:")).collect();
        names.sort_unstable();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.extend(self.read_schedule(name).await?);
        }
        Ok(out)
    }

    async fn set_schedule_paused(&self, name: &ScheduleName, paused: bool) -> Result<bool> {
        verified("pause schedule", |_| async move {
            let Some(info) = self.read_schedule(name.as_str()).await? else {
                return Ok(false);
            };
            let now = self.now_ms().await?;
            let next = info.spec.validate(info.state.defined_at)?.next_after(now);
            let mut inv = self.schedule_call(&self.functions().schedule_pause, &[]);
            inv.arg(name.as_str())
                .arg(u8::from(paused))
                .arg(info.state.version)
                .arg(next.map_or(-1, millis_arg));
            match int(&self.exec_durable(&inv).await?)? {
                -1 => Err(Failure::Stale(format!("schedule {name} changed"))),
                n => Ok(n == 1),
            }
        })
        .await
    }

    async fn remove_schedule(&self, name: &ScheduleName) -> Result<bool> {
        let mut inv = self.schedule_call(&self.functions().schedule_remove, &[]);
        inv.arg(name.as_str());
        let v = self.exec_durable(&inv).await.map_err(Failure::into_error)?;
        Ok(int(&v)? == 1)
    }

    async fn claim_ticks(&self, name: &ScheduleName, claim: &Claim) -> Result<Option<Claimed>> {
        // The definition gives the task and the overlap policy; whether the claim still holds
        // is the script's to say, atomically (a check here would only race it).
        let Some(info) = self.read_schedule(name.as_str()).await? else {
            return Ok(None);
        };
        self.apply_claim(&info, claim).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_decodes_as_the_script_packs_it() {
        let mut v = vec![1 | 4];
        for n in [7u64, 3, 1, 0, 2, 99] {
            v.extend_from_slice(&n.to_be_bytes()[2..]);
        }
        let s = decode_state(&v).unwrap();
        assert_eq!(
            (
                s.next,
                s.runs,
                s.skipped,
                s.last_tick,
                s.version,
                s.defined_at,
                s.paused
            ),
            (Some(7), 3, 1, None, 2, 99, true)
        );
        assert_eq!(s.last_task, None);
        assert!(decode_state(&v[..10]).is_err());
    }
}
