-- group_weight: sets the weight of a group in a queue shared between groups (its dispatches per
-- turn, from its next turn; State::set_group_weight; lib/groups.lua).
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue, group key, weight (1..1000).
-- Reply: 1. Errors: SY_UNKNOWN_QUEUE, SY_NOT_SHARED (a plain queue), SY_INVALID.
local q = queues_open(2, 1)[1]
local g = ARGV[3]
if not g or #g > 256 or find(g, '%c') then
  fail('SY_INVALID', 'group key: at most 256 bytes, no control characters')
end
local weight = int_arg(4, 'group weight', 1, 1000)
if not q.grp then fail('SY_NOT_SHARED', q.name) end
if weight == 1 then
  call('HDEL', q.k_groups, 'w:' .. g)
else
  call('HSET', q.k_groups, 'w:' .. g, weight)
end
return 1
