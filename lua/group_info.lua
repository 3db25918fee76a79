-- group_info: the groups of a queue shared between groups (read-only; State::groups;
-- lib/groups.lua: GROUP.info).
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue.
-- Reply: {key, weight, ready, active, in ring 0|1} per group with ready or active tasks or a
-- set weight, by key. Errors: SY_UNKNOWN_QUEUE, SY_NOT_SHARED (a plain queue).
local q = queues_open(2, 1)[1]
if not q.grp then fail('SY_NOT_SHARED', q.name) end
return GROUP.info(q)
