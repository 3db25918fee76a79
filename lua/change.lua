-- change: changes a task that has not started — its payload, priority or run time, in that
-- order (State::change_task; the rule: switchyard_core::TaskChange's module). A ready task
-- given a new priority moves by what its queue's policy makes of the difference (the score
-- moves by it, times the aging step: Policy::rekeyed); a scheduled task (or one waiting for its
-- retry) given a run time is rescheduled, or made ready now if that time has come; a ready task
-- given a future run time is scheduled (an FCFS list keeps its entry as a tombstone).
-- KEYS: the fixed keys, then the task's queue group.
-- ARGV: now, queue, id, priority (-1: unchanged), run-at (-1: unchanged), body ('': unchanged;
--       else the whole new body, built by the client from the old one and the new payload).
-- Reply: {state, worker or ''}. Errors: SY_NOT_FOUND, SY_WRONG_STATE <state>, SY_STALE.
local q = queues_open(2, 1)[1]
local id = ARGV[3]
local prio = int_arg(4, 'priority', -1, 65535)
local at = int_arg(5, 'run at', -1, MAX_MS)
local body = ARGV[6] or ''
local r = rec_get(id)
if not r then fail('SY_NOT_FOUND', id) end
if r.q ~= q.name then fail('SY_STALE', 'task ' .. id .. ' is in queue ' .. r.q) end
local st = r.st
if st ~= S_SCHEDULED and st ~= S_READY and st ~= S_RETRY then fail('SY_WRONG_STATE', st) end
if body ~= '' then
  if sub(body, 7, 6 + byte(body, 1)) ~= q.name then fail('SY_INVALID', 'body: not of queue ' .. q.name) end
  r.body = body
end
if prio >= 0 and prio ~= r.pr then
  if st == S_READY and (q.pol == P_PRIO or q.pol == P_PRIO_AGING) then
    local m = format('%012x%s', r.pos, id)
    local step = 1
    if q.pol == P_PRIO_AGING then step = q.age end
    call('ZADD', q.k_ready, tonumber(call('ZSCORE', q.k_ready, m)) - (prio - r.pr) * step, m)
  end
  r.pr = prio
end
rec_put(r)
if at >= 0 and (st ~= S_READY or at > NOW) then
  if st == S_READY then
    if q.pol == P_FCFS then
      set_state(q, 'tomb', q.tomb + 1)
    else
      call('ZREM', q.k_ready, format('%012x%s', r.pos, id))
    end
  else
    call('ZREM', q.k_delayed, format('%012x%s', r.pos, id))
    if st == S_RETRY then call('HINCRBY', K_META, '~n:' .. q.name .. ':' .. S_RETRY, -1) end
  end
  if at > NOW then place(r, q, at, st == S_RETRY, NOW) else place(r, q, nil, false, NOW) end
end
flush()
-- Left ready, it may still have been handed off (place's hand_off_ready) from its record.
if r.st == S_READY then r = rec_get(id) end
return {r.st, r.w}
