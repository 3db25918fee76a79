-- change: changes a task that has not started — its payload, priority or run time, in that
-- order (State::change_task; the rule: switchyard_core::TaskChange's module; how:
-- lib/change.lua).
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
if body == '' then
  body = nil
elseif sub(body, 7, 6 + byte(body, 1)) ~= q.name then
  fail('SY_INVALID', 'body: not of queue ' .. q.name)
end
r = change_waiting(r, q, body, prio, at)
flush()
return {r.st, r.w}
