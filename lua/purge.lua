-- purge: removes finished task records of one queue whose retention ended (retain-until <=
-- now), at most `limit`, by (retain-until, id) (State::maintain, step 3); with `dedup`, also
-- up to `limit` expired dedup keys of the namespace.
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
return {n, more}
