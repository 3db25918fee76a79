-- submit: accepts tasks (one or a batch) into their queues, each dispatched at once when its
-- queue's ready set is empty and a worker is eligible (State::submit, in order).
-- KEYS: the fixed keys, then one group per queue named below.
-- ARGV: now, G, G queue names, N, then N times 9 fields:
--       group, id, priority, cost (-1: queue default), run-at (0: none), delay ms (0: none),
--       max attempts (0: queue default), timeout ms (0: queue default), body.
-- Reply: per task 4 fields: duplicate 0|1, id, state (-1: unknown), worker or ''.
-- Errors: SY_UNKNOWN_QUEUE <name>, SY_INVALID.
local ng = int_arg(2, 'group count', 1, 1024)
local groups = queues_open(3, ng)
local base = 3 + ng
local n = int_arg(base, 'task count', 0, 100000)
local tasks = {}
for i = 0, n - 1 do
  local a = base + 1 + i * 9
  local t = {
    g = int_arg(a, 'group', 1, ng),
    id = ARGV[a + 1],
    pr = int_arg(a + 2, 'priority', 0, 65535),
    co = int_arg(a + 3, 'cost', -1, 2^32 - 1),
    at = int_arg(a + 4, 'run-at', 0, MAX_MS),
    delay = int_arg(a + 5, 'delay', 0, MAX_MS),
    ma = int_arg(a + 6, 'max attempts', 0, 1000),
    to = int_arg(a + 7, 'timeout', 0, 2^32 - 1),
    body = ARGV[a + 8],
  }
  if not t.id or #t.id ~= 26 or string.find(t.id, '[^0-9A-Z]') then
    fail('SY_INVALID', 'task id: `' .. tostring(t.id) .. '` is not 26 base32 characters')
  end
  if not t.body or #t.body < 6 then fail('SY_INVALID', 'body: too short') end
  local ql, kl, al, dl = struct.unpack('>BBHH', t.body)
  if 6 + ql + kl + al + dl > #t.body then fail('SY_INVALID', 'body: lengths exceed the body') end
  if string.sub(t.body, 7, 6 + ql) ~= groups[t.g].name then
    fail('SY_INVALID', 'body: queue does not match group ' .. t.g)
  end
  if dl > 0 then t.dedup = string.sub(t.body, 7 + ql + kl + al, 6 + ql + kl + al + dl) end
  tasks[#tasks + 1] = t
end

local known = {}
if n > 0 then
  local ids = {}
  for i, t in ipairs(tasks) do ids[i] = t.id end
  known = redis.call('HMGET', K_TASKS, unpack(ids))
end
local reply = {}
for i, t in ipairs(tasks) do
  local q = groups[t.g]
  local existing = PENDING.recs[t.id] or known[i]
  local dup = nil
  if existing then
    dup = {1, t.id, (struct.unpack('>B', existing)), ''}
  elseif t.dedup then
    local dk = q.name .. '|' .. t.dedup
    local entry = redis.call('HGET', K_TASKS, 'd:' .. dk)
    if entry then
      local holder, expires = string.match(entry, '^(.*)|(%d+)$')
      if tonumber(expires) > NOW then
        local v = PENDING.recs[holder] or redis.call('HGET', K_TASKS, holder)
        local st = -1
        if v then st = struct.unpack('>B', v) end
        dup = {1, holder, st, ''}
      end
    end
    if not dup then
      local expires = NOW + q.dwin
      redis.call('HSET', K_TASKS, 'd:' .. dk, t.id .. '|' .. string.format('%.0f', expires))
      redis.call('ZADD', K_DEDUPX, expires, dk)
    end
  end
  if dup then
    for _, v in ipairs(dup) do reply[#reply + 1] = v end
  else
    local r = {id = t.id, fl = 0, at = 0, pr = t.pr, tok = 0, cr = NOW, e = '', res = '',
               body = t.body, q = q.name}
    if t.ma > 0 then r.ma = t.ma else r.ma = q.matt end
    if t.co >= 0 then
      r.co = t.co
    else
      r.co = q.dcost
      if q.pol == P_SJF or q.pol == 4 then
        local learned = tonumber(redis.call('HGET', q.k_state, 'k:' .. kind_of(r)))
        if learned then r.co = math.min(learned, 2^32 - 1) end
      end
    end
    if t.to > 0 then r.to = t.to else r.to = q.tmo end
    local run_at = nil
    if t.at > 0 then run_at = t.at end
    if t.delay > 0 then run_at = math.min(NOW + t.delay, MAX_MS) end
    emit(q, 'submitted', r.id)
    place(r, q, run_at, false, NOW)
    reply[#reply + 1] = 0
    reply[#reply + 1] = t.id
    reply[#reply + 1] = r.st
    reply[#reply + 1] = r.w
  end
end
flush()
return reply
