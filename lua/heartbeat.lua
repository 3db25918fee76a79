-- heartbeat: extends a worker's heartbeat and lists its running tasks whose cancel was requested.
-- KEYS: the fixed keys. ARGV: now, worker.
-- Reply: {new expiry, ids to cancel...}. Errors: SY_UNKNOWN_WORKER.
local w = name_arg(2, 'worker id')
local wr = worker_get(w)
if not wr then fail('SY_UNKNOWN_WORKER', w) end
wr.exp = NOW + wr.ttl
worker_put(wr)
redis.call('ZADD', K_HB, wr.exp, w)
local reply = {wr.exp}
for _, m in ipairs(redis.call('ZRANGEBYLEX', K_WTASKS, '[' .. w .. '|1', '(' .. w .. '|2')) do
  local r = rec_get(string.sub(m, #w + 3))
  if r and r.fl % 2 == F_CANCEL then reply[#reply + 1] = r.id end
end
return reply
