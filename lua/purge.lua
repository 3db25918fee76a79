-- purge: removes finished task records whose retention ended (retain-until <= now), at most
-- `limit`, and as many expired dedup keys (State::maintain, step 4).
-- KEYS: the fixed keys. ARGV: now, limit.
-- Reply: {records purged, more 0|1}.
local limit = int_arg(2, 'limit', 0, 1000000)
local n = 0
if limit > 0 then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_RETAIN, '-inf', NOW, 'LIMIT', 0, limit)) do
    redis.call('ZREM', K_RETAIN, id)
    local r = rec_get(id)
    if r then
      if r.st == S_DEAD then redis.call('ZREM', K_DEAD, r.q .. '|' .. hex12(r.tm) .. '|' .. id) end
      count(r.q, r.st, -1)
      redis.call('HDEL', K_TASKS, id)
    end
    n = n + 1
  end
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', K_DEDUPX, '-inf', NOW, 'LIMIT', 0, limit)) do
    redis.call('ZREM', K_DEDUPX, k)
    redis.call('HDEL', K_TASKS, 'd:' .. k)
  end
end
local more = 0
if #redis.call('ZRANGEBYSCORE', K_RETAIN, '-inf', NOW, 'LIMIT', 0, 1) > 0 then more = 1 end
return {n, more}
