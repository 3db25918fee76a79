-- group_limits: gives a group of a queue shared between groups its own concurrency and rate
-- limits in place of the queue's per-group ones, or (all 0) takes them off
-- (State::set_group_limits; lib/group_limits.lua: GROUP.set_limits); the queue then takes up what a
-- raised limit lets it.
-- KEYS: the fixed keys, then the queue's group.
-- ARGV: now, queue, group key, concurrency (0: the queue's), rate limit and its window in ms
--       (both 0: the queue's).
-- Reply: 1. Errors: SY_UNKNOWN_QUEUE, SY_NOT_SHARED (a plain queue), SY_INVALID.
local q = queues_open(2, 1)[1]
local g = ARGV[3]
if not g or #g > 256 or find(g, '%c') then
  fail('SY_INVALID', 'group key: at most 256 bytes, no control characters')
end
local k = int_arg(4, 'group concurrency', 0, 2^32 - 1)
local r = int_arg(5, 'group rate limit', 0, 100000)
local w = int_arg(6, 'group rate limit window', 0, 86400000)
if (r == 0) ~= (w == 0) then
  fail('SY_INVALID', 'group rate limit: give both the count and the window, or neither')
end
if not q.grp then fail('SY_NOT_SHARED', q.name) end
GROUP.set_limits(q, g, k, r, w)
take_up(q)
flush()
return 1
