-- schedule_upsert: creates a schedule, or replaces its definition (State::upsert_schedule; the
-- rule: switchyard_core::schedule, 1). The same definition changes nothing; another bumps the
-- version (claims computed from the old one are refused), takes effect from its first tick
-- after now and keeps the counts.
-- KEYS: the fixed keys, then the schedules hash and the due set (lib/schedules.lua).
-- ARGV: now, name, the definition's JSON, when it is set (ms), its first tick after then (-1:
--       none: it has ended already).
-- Reply: 0 unchanged, 1 created, 2 changed.
local name = name_arg(2, 'schedule name')
local def = ARGV[3]
if not def or def == '' then fail('SY_INVALID', 'schedule definition: empty') end
local defined = int_arg(4, 'defined at', 0, MAX_MS)
local nxt = int_arg(5, 'next tick', -1, MAX_MS)
local k_sched, k_due = KEYS[NFIXED + 1], KEYS[NFIXED + 2]
if call('HGET', k_sched, 'd:' .. name) == def then return 0 end
local s = SCHEDULE.get(k_sched, name)
local reply = 2
if not s then
  s = {runs = 0, skipped = 0, version = 0, paused = false, task = ''}
  reply = 1
end
s.version, s.defined = s.version + 1, defined
s.next = nil
if nxt >= 0 then s.next = nxt end
call('HSET', k_sched, 'd:' .. name, def)
SCHEDULE.put(k_sched, k_due, name, s, true)
return reply
