-- heartbeat: extends a worker's heartbeat, fails its running tasks whose lease deadline has
-- passed (deadline < now, by deadline then id) as timed out — exactly as fail with retry — and
-- lists its running tasks whose cancel was requested (State::heartbeat).
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, instance token, N, N queue names.
-- Reply: {expiry, C, C ids to cancel, E, E expired ids, assignments...}.
-- Errors: SY_UNKNOWN_WORKER, SY_REPLACED (another instance holds the id), SY_STALE.
local wr, w = worker_of_call()
wr.exp = NOW + wr.ttl
wr.dirty = true
call('ZADD', K_HB, wr.exp, w)

local function running()
  flush()
  local out = {}
  for _, m in ipairs(call('ZRANGEBYLEX', K_WTASKS, '[' .. w .. '|', '(' .. w .. '}')) do
    local r = rec_get(sub(m, #w + 15))
    if r.st == S_RUNNING then out[#out + 1] = r end
  end
  return out
end
local overdue = {}
for _, r in ipairs(running()) do
  if r.tm < NOW then overdue[#overdue + 1] = r end
end
sort(overdue, function(a, b)
  if a.tm ~= b.tm then return a.tm < b.tm end
  return a.id < b.id
end)
local expired = {}
for _, r in ipairs(overdue) do
  -- Re-read: an earlier expiry in this loop may have moved things.
  local cur = rec_get(r.id)
  end_attempt_failed(wr, cur, 'timed out after ' .. cur.to .. ' ms', true)
  expired[#expired + 1] = r.id
end
local cancel = {}
for _, r in ipairs(running()) do
  if r.fl % 2 == F_CANCEL then cancel[#cancel + 1] = r.id end
end
sort(cancel)
flush()
local reply = {wr.exp, #cancel}
for _, id in ipairs(cancel) do reply[#reply + 1] = id end
reply[#reply + 1] = #expired
for _, id in ipairs(expired) do reply[#reply + 1] = id end
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
