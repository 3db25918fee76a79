-- schedule_claim: applies a claim of a schedule's due ticks (State::claim_ticks; the rule:
-- switchyard_core::schedule, 2) — only if the schedule still has the next tick and the
-- definition version the claim was computed from, so that of any number of tickers with the
-- same claim one applies it. Creates each tick's task (its id is the tick's: a task that
-- exists is not created again) unless the overlap policy skips them (the last tick's task has
-- not finished), counts the ticks, sets the next tick.
-- KEYS: the fixed keys, the group of the schedule's queue, then the schedules hash and the due
--       set (lib/schedules.lua).
-- ARGV: now, queue, name, version, expected next tick, next tick after the claim (-1: none),
--       overlap skip 0|1, N, the N ticks (each come), then the N ticks' task arguments
--       (`TASK_ARG`, group 1; lib/submit.lua).
-- Reply: {0}: the claim no longer holds, nothing changed; or {1, skipped 0|1, then per task
--        created or found the 4 fields of accept_tasks}.
-- Errors: SY_UNKNOWN_QUEUE, SY_FULL or SY_GROUP_FULL (nothing changed), SY_INVALID.
local q = queues_open(2, 1)[1]
local name = name_arg(3, 'schedule name')
local version = int_arg(4, 'version', 0, 2^53)
local expected = int_arg(5, 'expected next tick', 0, MAX_MS)
local nxt = int_arg(6, 'next tick', -1, MAX_MS)
local skip_overlap = int_arg(7, 'overlap', 0, 1) == 1
local n = int_arg(8, 'tick count', 0, 10000)
local k_sched, k_due = KEYS[NFIXED + GROUP_KEYS + 1], KEYS[NFIXED + GROUP_KEYS + 2]
local s = SCHEDULE.get(k_sched, name)
if not s or s.paused or s.version ~= version or s.next ~= expected then return {0} end
local ticks = {}
for i = 1, n do ticks[i] = int_arg(8 + i, 'tick (one that has come)', 0, NOW) end
local run = true
if skip_overlap and s.task ~= '' then
  local r = rec_get(s.task)
  if r and not finished(r.st) then run = false end
end
local reply = {1, 0}
if n > 0 then
  if run then
    local tasks = task_args(8 + n, n, {q})
    for _, v in ipairs(accept_tasks({q}, {0}, {{}}, tasks)) do reply[#reply + 1] = v end
    s.task = tasks[n].id
  else
    reply[2] = 1
    s.skipped = s.skipped + n
  end
  s.runs, s.last = s.runs + n, ticks[n]
end
s.next = nil
if nxt >= 0 then s.next = nxt end
SCHEDULE.put(k_sched, k_due, name, s, false)
flush()
return reply
