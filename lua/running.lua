-- running: the tasks running on a worker, in lease-token order (read-only; State::running_on).
-- A worker that may have missed a hand-off (its wake-up connection dropped) reconciles with it.
-- KEYS: the fixed keys. ARGV: now, worker, instance token.
-- Reply: deliveries as receive returns them, with ready since 0 (not kept once a task runs).
-- Errors: SY_UNKNOWN_WORKER, SY_REPLACED (another instance holds the id).
local _, w = own_worker()
local entries = call('ZRANGEBYLEX', K_WTASKS, '[' .. w .. '|', '(' .. w .. '}')
local out = {}
for first = 1, #entries, 4000 do
  local ids = {}
  for i = first, min(first + 3999, #entries) do ids[#ids + 1] = sub(entries[i], #w + 15) end
  local vs = call('HMGET', K_TASKS, unpack(ids))
  for i, id in ipairs(ids) do
    local r = vs[i] and rec_get(id, vs[i])
    if r and r.st == S_RUNNING then
      out[#out + 1] = r.id; out[#out + 1] = r.q; out[#out + 1] = r.tok; out[#out + 1] = r.at
      out[#out + 1] = r.ma; out[#out + 1] = r.tm; out[#out + 1] = r.to; out[#out + 1] = 0
      out[#out + 1] = r.body
    end
  end
end
return out
