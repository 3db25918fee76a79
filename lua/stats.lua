-- stats: counts per queue and state, and every live worker, in one consistent snapshot.
-- Work is O(queues + workers + tasks in flight), bounded by the total capacity.
-- KEYS: the fixed keys, then one group per queue. ARGV: now, N, N queue names.
-- Reply: {per queue: name, scheduled, ready, dispatched, running, retry, succeeded, dead,
--         cancelled}, then {per worker: id, capacity, weight, inflight, assigned, expires, queues}.
local nq = int_arg(2, 'queue count', 0, 100000)
local groups = queues_open(3, nq)
local inflight = {}
for _, m in ipairs(redis.call('ZRANGEBYLEX', K_WTASKS, '-', '+')) do
  local id = string.match(m, '[^|]+$')
  if string.match(m, '^[^|]+|1') then id = string.sub(m, #string.match(m, '^[^|]+|1') + 1) end
  local r = rec_get(id)
  if r then
    inflight[r.q] = inflight[r.q] or {0, 0}
    if r.st == S_DISPATCHED then inflight[r.q][1] = inflight[r.q][1] + 1 else inflight[r.q][2] = inflight[r.q][2] + 1 end
  end
end
local qs = {}
for _, q in ipairs(groups) do
  local c = redis.call('HMGET', K_META, '~n:' .. q.name .. ':' .. S_RETRY, '~n:' .. q.name .. ':' .. S_SUCCEEDED,
    '~n:' .. q.name .. ':' .. S_DEAD, '~n:' .. q.name .. ':' .. S_CANCELLED)
  local retry = tonumber(c[1]) or 0
  local f = inflight[q.name] or {0, 0}
  qs[#qs + 1] = {q.name, redis.call('ZCARD', q.k_delayed) - retry, ready_len(q), f[1], f[2], retry,
    tonumber(c[2]) or 0, tonumber(c[3]) or 0, tonumber(c[4]) or 0}
end
local ws = {}
local all = redis.call('HGETALL', K_WORKERS)
for i = 1, #all, 2 do
  if not string.find(all[i], '|', 1, true) then
    local wr = worker_get(all[i])
    ws[#ws + 1] = {wr.id, wr.cap, wr.weight, wr.inf, wr.asg, wr.exp, wr.qs}
  end
end
return {qs, ws}
