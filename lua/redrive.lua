-- redrive: moves a dead task back to its queue with its attempts reset (State::redrive).
-- KEYS: the fixed keys, then the task's queue group. ARGV: now, id, queue.
-- Reply: {state, worker or ''}. Errors: SY_NOT_FOUND, SY_WRONG_STATE <state>, SY_STALE.
local id = ARGV[2]
local q = queues_open(3, 1)[1]
local r = rec_get(id)
if not r then fail('SY_NOT_FOUND', id) end
if r.q ~= q.name then fail('SY_STALE', 'task ' .. id .. ' is in queue ' .. r.q) end
if r.st ~= S_DEAD then fail('SY_WRONG_STATE', r.st) end
call('ZREM', K_DEAD, format('%s|%012x|%s', q.name, r.tm, id))
call('ZREM', q.k_done, id)
r.at = 0
call('HDEL', K_TASKS, progress_field(id)) -- attempts count from 1 again
r.res = ''
emit(q, 'retried', r.id, nil, format('%.0f', NOW))
place(r, q, nil, false, NOW)
-- Left ready, it may still have been handed off (place's hand_off_ready) from its record.
if r.st == S_READY then r = rec_get(r.id) end
flush()
return {r.st, r.w}
