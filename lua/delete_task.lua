-- delete_task: deletes a finished task (succeeded, dead or cancelled) with its outcome
-- (State::delete_task; rules in switchyard_core::admin). The client reads the task's queue
-- first; the call is refused with SY_STALE if the task is not in it.
-- KEYS: the fixed keys, then the task's queue group. ARGV: now, id, queue.
-- Reply: 1. Errors: SY_NOT_FOUND, SY_WRONG_STATE <state>, SY_STALE.
local id = ARGV[2]
local q = queues_open(3, 1)[1]
local r = rec_get(id)
if not r then fail('SY_NOT_FOUND', id) end
if r.q ~= q.name then fail('SY_STALE', 'task ' .. id .. ' is in queue ' .. r.q) end
if not finished(r.st) then fail('SY_WRONG_STATE', r.st) end
drop_finished(q, r)
return 1
