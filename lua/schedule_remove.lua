-- schedule_remove: deletes a schedule; the tasks it created stay (State::remove_schedule).
-- KEYS: the fixed keys, then the schedules hash and the due set (lib/schedules.lua).
-- ARGV: now, name.
-- Reply: 1 removed, 0 there was none.
local name = name_arg(2, 'schedule name')
local k_sched, k_due = KEYS[NFIXED + 1], KEYS[NFIXED + 2]
call('ZREM', k_due, name)
return call('HDEL', k_sched, 'd:' .. name, 's:' .. name) > 0 and 1 or 0
