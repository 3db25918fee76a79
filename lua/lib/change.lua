-- lib/change.lua: changing a task that has not started — its payload, priority or run time,
-- in that order (the rule: switchyard_core::TaskChange's module). Used by change.lua, and by
-- submit.lua when a debouncing queue's waiting task takes a later submit
-- (switchyard_core::flow::dedup).
-- Rust twin: crates/switchyard-memory/src/state/change.rs.

-- Changes `r` (scheduled, ready or waiting for its retry: the caller checked) of queue `q`:
-- `body` (nil: unchanged) replaces its body; `prio` (-1: unchanged) its priority, a ready task
-- moving by what the policy makes of the difference (the score moves by it, times the aging
-- step: Policy::rekeyed); `at` (-1: unchanged) its run time: a scheduled task (or one waiting
-- for its retry) is rescheduled, or made ready now if that time has come; a ready task given a
-- future time is scheduled (an FCFS list keeps its entry as a tombstone). Returns the record
-- as it is left (a task left ready may have been handed off: its record says so).
local function change_waiting(r, q, body, prio, at)
  -- The ready and delayed sets are read and written directly: apply what this call deferred
  -- first (submit.lua may have just placed `r`).
  flush()
  local st, id = r.st, r.id
  if body then r.body = body end
  if prio >= 0 and prio ~= r.pr then
    if st == S_READY and (q.pol == P_PRIO or q.pol == P_PRIO_AGING) then
      local m = format('%012x%s', r.pos, id)
      local step = 1
      if q.pol == P_PRIO_AGING then step = q.age end
      local to = tonumber(call('ZSCORE', q.k_ready, m)) - (prio - r.pr) * step
      if q.grp then GROUP.rekey(q, r, m, to) else call('ZADD', q.k_ready, to, m) end
    end
    r.pr = prio
  end
  rec_put(r)
  if at >= 0 and (st ~= S_READY or at > NOW) then
    if st == S_READY then
      if q.grp then
        GROUP.remove(q, r, format('%012x%s', r.pos, id))
      elseif q.list then
        set_state(q, 'tomb', q.tomb + 1)
      else
        call('ZREM', q.k_ready, format('%012x%s', r.pos, id))
      end
    else
      DELAYED.remove(q, r)
    end
    if at > NOW then place(r, q, at, st == S_RETRY, NOW) else place(r, q, nil, false, NOW) end
  end
  if r.st == S_READY then return rec_get(id) end
  return r
end
