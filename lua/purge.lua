-- purge: removes finished task records of one queue whose retention ended (retain-until <=
-- now), at most `limit`, by (retain-until, id) (State::maintain, step 3); with `dedup`, also
-- up to `limit` expired dedup keys of the namespace.
-- Then, within the limit, the queue's finished tasks beyond its counts (state fields 'kf',
-- 'kd'; see below).
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue, limit, dedup 0|1.
-- Reply: {records purged, more 0|1}.
local q = queues_open(2, 1)[1]
local limit = int_arg(3, 'limit', 0, 1000000)
local dedup = int_arg(4, 'dedup', 0, 1)
local n = 0
if limit > 0 then
  local ids = call('ZRANGEBYSCORE', q.k_done, '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    local r = rec_get(id)
    if r then unindex_finished(q, r) end
    n = n + 1
  end
  if n > 0 then
    local fields = {}
    for i, id in ipairs(ids) do fields[2 * i - 1] = id; fields[2 * i] = progress_field(id) end
    call('HDEL', K_TASKS, unpack(fields))
    call('ZREM', q.k_done, unpack(ids))
  end
  if dedup == 1 then
    local keys = call('ZRANGEBYSCORE', K_DEDUPX, '-inf', NOW, 'LIMIT', 0, limit)
    for _, k in ipairs(keys) do
      call('ZREM', K_DEDUPX, k)
      call('HDEL', K_TASKS, 'd:' .. k)
    end
  end
end
local more = 0
if #call('ZRANGEBYSCORE', q.k_done, '-inf', NOW, 'LIMIT', 0, 1) > 0 then more = 1 end

-- Retention by count (switchyard_core::admin::retention, rules 2 and 3; State::trim_by_count):
-- the dead beyond 'kd' (earliest death first), then the other finished tasks beyond 'kf' (by
-- retention end), within what is left of `limit`.
local keep = call('HMGET', q.k_state, 'kf', 'kd')
local kf, kd = tonumber(keep[1]), tonumber(keep[2])
if kf or kd then
  local lo, hi = '[' .. q.name .. '|', '(' .. q.name .. '}'
  local dead = call('ZLEXCOUNT', K_DEAD, lo, hi)
  if kd and dead > kd then
    local take = min(dead - kd, limit - n)
    if take > 0 then
      for _, m in ipairs(call('ZRANGEBYLEX', K_DEAD, lo, hi, 'LIMIT', 0, take)) do
        drop_finished(q, rec_get(sub(m, -26)))
      end
      n = n + take
      dead = dead - take
    end
    if dead > kd then more = 1 end
  end
  local excess = 0
  if kf then excess = call('ZCARD', q.k_done) - dead - kf end
  local from = 0
  while excess > 0 and n < limit do
    local ids = call('ZRANGE', q.k_done, from, from + 63)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      if excess == 0 or n == limit then break end
      local r = rec_get(id)
      if r.st == S_DEAD then
        from = from + 1
      else
        drop_finished(q, r)
        n = n + 1
        excess = excess - 1
      end
    end
  end
  if excess > 0 then more = 1 end
end
return {n, more}
