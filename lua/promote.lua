-- promote: takes one queue up if the time its rate limit or hold marked, or a mark of one of its
-- groups, has come (State::wake_due, lib/rate.lua, lib/group_limits.lua), expires its ready heads whose deadline has come (lib/deadline.lua, rule 3),
-- then makes its due delayed tasks ready (run-at <= now), in (run-at, seq) order; at most
-- `limit` expired and promoted together (State::maintain, step 2). Their run-at is their
-- enqueue time for aging.
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue, limit.
-- Reply: {promoted, more 0|1, expired, assignments...}.
local q = queues_open(2, 1)[1]
local limit = int_arg(3, 'limit', 0, 1000000)
local groups_woke = q.grp and GROUP.wake_due(q)
if wake_has_come(q) or groups_woke then take_up(q) end
local expired = expire_heads(q, limit)
limit = limit - expired
local due = {}
if limit > 0 then
  due = call('ZRANGEBYSCORE', q.k_delayed, '-inf', NOW, 'WITHSCORES', 'LIMIT', 0, limit)
end
local n = 0
for i = 1, #due, 2 do
  local r = rec_get(sub(due[i], 13))
  DELAYED.remove(q, r)
  place(r, q, nil, false, tonumber(due[i + 1]))
  n = n + 1
end
local late = late_head(q)
flush()
local more = 0
if late or #call('ZRANGEBYSCORE', q.k_delayed, '-inf', NOW, 'LIMIT', 0, 1) > 0 then more = 1 end
local reply = {n, more, expired}
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
