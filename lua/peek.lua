-- peek: the next ready tasks of a queue in the order they will leave it (read-only apart from
-- dropping cancelled entries at the head of an FCFS list).
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue, limit.
-- Reply: ids.
local q = queue_open(1, name_arg(2, 'queue name'))
local limit = int_arg(3, 'limit', 0, 1000000)
local out = {}
if q.pol ~= P_FCFS then
  if limit > 0 then
    for _, m in ipairs(redis.call('ZRANGE', q.k_ready, 0, limit - 1)) do out[#out + 1] = string.sub(m, 13) end
  end
  return out
end
local start = 0
while #out < limit do
  local chunk = redis.call('LRANGE', q.k_ready, start, start + 255)
  for _, m in ipairs(chunk) do
    if live_entry(q, m) then
      out[#out + 1] = string.sub(m, 13)
      if #out >= limit then break end
    end
  end
  if #chunk < 256 then break end
  start = start + 256
end
return out
