-- lib/schedules.lua: a schedule's stored state (the rule: switchyard_core::schedule).
-- Rust twin: crates/switchyard-memory/src/state/schedules.rs.
--
-- A namespace's schedules live in two keys the schedule scripts take after their others: the
-- schedules hash ('d:<name>' -> the definition's JSON, written by the client, never read here
-- but compared; 's:<name>' -> the state, below) and the due set (name, scored by its next
-- tick; only schedules that have one and are not paused).

-- One table, so that the helpers take one of the main chunk's 200 local slots
-- (lib/prelude.lua).
local SCHEDULE = {}
do
  -- The state: flags (1 it has a next tick, 2 a last tick, 4 paused), next tick, ticks claimed
  -- (runs), of them skipped by the overlap policy, last tick, definition version, when the
  -- definition was set (STATE_LEN bytes); then the id of the last tick's task, if any.
  local STATE, STATE_LEN = '>BI6I6I6I6I6I6', 37

  -- Schedule `name`'s state, or nil.
  function SCHEDULE.get(k_sched, name)
    local v = call('HGET', k_sched, 's:' .. name)
    if not v then return nil end
    local fl, nx, runs, skipped, last, version, defined = sunpack(STATE, v)
    local s = {runs = runs, skipped = skipped, version = version, defined = defined,
               paused = fl >= 4, task = sub(v, STATE_LEN + 1)}
    if fl % 2 == 1 then s.next = nx end
    if floor(fl / 2) % 2 == 1 then s.last = last end
    return s
  end

  -- Stores schedule `name`'s state `s` and its entry in the due set; `wake`: a ticker may have
  -- to look sooner (announced on the due channel, like a delayed task that became first).
  function SCHEDULE.put(k_sched, k_due, name, s, wake)
    local fl = 0
    if s.next then fl = fl + 1 end
    if s.last then fl = fl + 2 end
    if s.paused then fl = fl + 4 end
    call('HSET', k_sched, 's:' .. name, spack(STATE, fl, s.next or 0, s.runs, s.skipped,
      s.last or 0, s.version, s.defined) .. s.task)
    if s.next and not s.paused then
      call('ZADD', k_due, s.next, name)
      if wake then call('PUBLISH', channel(CH_DUE), '1') end
    else
      call('ZREM', k_due, name)
    end
  end
end
