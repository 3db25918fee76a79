-- schedule_pause: pauses a schedule (no tick is claimed) or resumes it from the first tick
-- after now (State::set_schedule_paused; the rule: switchyard_core::schedule, 3).
-- KEYS: the fixed keys, then the schedules hash and the due set (lib/schedules.lua).
-- ARGV: now, name, paused 0|1, the definition version the next tick was computed from, the
--       first tick after now under it (-1: none).
-- Reply: 0 no such schedule, 1 done, -1 the definition changed meanwhile (read it again).
local name = name_arg(2, 'schedule name')
local paused = int_arg(3, 'paused', 0, 1) == 1
local version = int_arg(4, 'version', 0, 2^53)
local nxt = int_arg(5, 'next tick', -1, MAX_MS)
local k_sched, k_due = KEYS[NFIXED + 1], KEYS[NFIXED + 2]
local s = SCHEDULE.get(k_sched, name)
if not s then return 0 end
if s.paused == paused then return 1 end
if s.version ~= version then return -1 end
s.paused = paused
-- The ticks of the pause are not misfires: resumed, it ticks from the first tick after now.
if not paused and s.next then
  s.next = nil
  if nxt >= 0 then s.next = nxt end
end
SCHEDULE.put(k_sched, k_due, name, s, not paused)
return 1
