-- stats: counts per queue and state, and every live worker, in one consistent snapshot.
-- Work is O(queues + workers + tasks in flight); the last is bounded by the total capacity.
-- KEYS: the fixed keys, then one group per queue. ARGV: now, N, N queue names.
-- Reply: {{per queue: name, scheduled, ready, dispatched, running, retry, succeeded, dead,
--         cancelled, expired, then the lifetime event counts (EventCounts) submitted,
--         dispatched, succeeded, failed, retried, dead, cancelled, expired, then paused 0|1, rate tokens left (-1:
--         no limit), the time it opens again (0: open; lib/rate.lua), waiting for children
--         (lib/flows.lua)},
--         {per worker: id, capacity, weight, inflight, expires, queues, draining, dispatched,
--         completed, heartbeat ttl}}.
local nq = int_arg(2, 'queue count', 0, 100000)
local groups = queues_open(3, nq)
local inflight = {}
for _, m in ipairs(call('ZRANGEBYLEX', K_WTASKS, '-', '+')) do
  local id = match(m, '|%x+|(.*)$')
  local r = rec_get(id)
  if r then
    inflight[r.q] = inflight[r.q] or {0, 0}
    if r.st == S_DISPATCHED then inflight[r.q][1] = inflight[r.q][1] + 1 else inflight[r.q][2] = inflight[r.q][2] + 1 end
  end
end
local qs = {}
for _, q in ipairs(groups) do
  local c = call('HMGET', K_META, '~n:' .. q.name .. ':' .. S_RETRY, '~n:' .. q.name .. ':' .. S_CANCELLED,
    '~n:' .. q.name .. ':' .. S_EXPIRED)
  local retry, cancelled, expired = tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0
  local dead = call('ZLEXCOUNT', K_DEAD, '[' .. q.name .. '|', '(' .. q.name .. '}')
  local ready
  if q.list then ready = call('LLEN', q.k_ready) - q.tomb else ready = call('ZCARD', q.k_ready) end
  local f = inflight[q.name] or {0, 0}
  local row = {q.name, call('ZCARD', q.k_delayed) - retry, ready, f[1], f[2], retry,
    call('ZCARD', q.k_done) - dead - cancelled - expired, dead, cancelled, expired}
  local n = call('HMGET', q.k_state, 'n:submitted', 'n:dispatched', 'n:succeeded', 'n:failed',
    'n:retried', 'n:dead', 'n:cancelled', 'n:expired')
  for i = 1, 8 do row[#row + 1] = tonumber(n[i]) or 0 end
  if q.paused then row[#row + 1] = 1 else row[#row + 1] = 0 end
  -- The rate window read without trimming it (a read-only call).
  if q.rmax > 0 then
    local _, counting = rate_window(q)
    q.tok = q.rmax - counting
    row[#row + 1] = q.tok > 0 and q.tok or 0
  else
    row[#row + 1] = -1
  end
  local at = opens_at(q)
  if at > NOW then row[#row + 1] = at else row[#row + 1] = 0 end
  row[#row + 1] = call('ZLEXCOUNT', FLOWS.k_parents, '[' .. q.name .. '|', '(' .. q.name .. '}')
  qs[#qs + 1] = row
end
local ws = {}
local all = call('HGETALL', K_WORKERS)
for i = 1, #all, 2 do
  if not find(all[i], '|', 1, true) then
    local v = all[i + 1]
    local cap, weight, inf, exp, ttl, _, flags, _, _, dn, ok = sunpack(WREC, v)
    local draining = 0
    if flags >= W_DRAINING then draining = 1 end
    ws[#ws + 1] = {all[i], cap, weight, inf, exp,
      sub(v, WREC_LEN + 1, find(v, '|', WREC_LEN + 1, true) - 1), draining, dn, ok, ttl}
  end
end
return {qs, ws}
