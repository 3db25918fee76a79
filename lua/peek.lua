-- peek: the next ready tasks of a queue in the order they will leave it (read-only).
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue, limit.
-- Reply: ids.
local q = queues_open(2, 1)[1]
local limit = int_arg(3, 'limit', 0, 1000000)
local out = {}
if not q.list then
  if limit > 0 then
    for _, m in ipairs(call('ZRANGE', q.k_ready, 0, limit - 1)) do out[#out + 1] = sub(m, 13) end
  end
  return out
end
local start = 0
while #out < limit do
  local chunk = call('LRANGE', q.k_ready, start, start + 255)
  for _, m in ipairs(chunk) do
    local r = rec_get(sub(m, 13))
    if r and r.st == S_READY and r.q == q.name and r.pos == tonumber(sub(m, 1, 12), 16) then
      out[#out + 1] = r.id
      if #out >= limit then break end
    end
  end
  if #chunk < 256 then break end
  start = start + 256
end
return out
