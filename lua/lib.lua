-- lib.lua: the helpers every transition script shares. The Rust loader prepends this file to
-- each script once, at start-up; scripts are then run by EVALSHA. Every rule here mirrors
-- crates/switchyard-memory/src/state.rs (the reference) and docs/architecture.md.
--
-- Keys (all in one hash-tag slot, all passed in KEYS; nothing is built here):
local K_TASKS   = KEYS[1]  -- HASH  task id -> record; 'd:<queue>|<key>' -> '<id>|<expires>'
local K_META    = KEYS[2]  -- HASH  '~token', '~n:<queue>:<state>' counts, queue name -> config JSON
local K_WORKERS = KEYS[3]  -- HASH  worker id -> worker record; '<worker>|<queue>' -> balancer state
local K_HB      = KEYS[4]  -- ZSET  heartbeat expiry -> worker id
local K_FREE    = KEYS[5]  -- ZSET  lex: '<queue>|<strategy key>|<worker>' eligible / parked
local K_WTASKS  = KEYS[6]  -- ZSET  lex: '<worker>|0<dseq>|<id>' inbox, '<worker>|1<id>' running
local K_LEASES  = KEYS[7]  -- ZSET  lease deadline -> id
local K_RETAIN  = KEYS[8]  -- ZSET  retain-until -> id
local K_DEAD    = KEYS[9]  -- ZSET  lex: '<queue>|<died at>|<id>'
local K_DEDUPX  = KEYS[10] -- ZSET  dedup expiry -> '<queue>|<key>'
local NFIXED = 10
-- Then one group of 4 keys per queue the script may touch, named in ARGV by the script:
-- state HASH, ready LIST (fcfs) or ZSET, delayed ZSET, ring ZSET.

local S_SCHEDULED, S_READY, S_DISPATCHED, S_RUNNING = 0, 1, 2, 3
local S_RETRY, S_SUCCEEDED, S_DEAD, S_CANCELLED = 4, 5, 6, 7
local P_FCFS, P_PRIO, P_PRIO_AGING, P_SJF, P_SJF_AGING = 0, 1, 2, 3, 4
local T_RR, T_RANDOM, T_WEIGHTED, T_LL, T_AFFINITY, T_PULL = 0, 1, 2, 3, 4, 5
local F_CANCEL, F_AWAITED = 1, 2
local WEIGHT_SCALE, HALF_SCALE, RENORM_AT = 65536, 32768, 2^40
local MINSTD_M, MINSTD_A = 2147483647, 48271
local MAX_MS = 2^48 - 1

local function fail(code, msg)
  error({err = code .. ' ' .. msg})
end

local NOW
do
  local a = ARGV[1]
  if a == nil or a == '' then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  else
    NOW = tonumber(a)
    if not NOW or NOW < 0 or NOW > MAX_MS or NOW ~= math.floor(NOW) then
      fail('SY_INVALID', 'now: expected milliseconds in 0..2^48, got ' .. tostring(a))
    end
  end
end

-- An integer argument in lo..hi.
local function int_arg(i, name, lo, hi)
  local v = tonumber(ARGV[i])
  if not v or v ~= math.floor(v) or v < lo or v > hi then
    fail('SY_INVALID', name .. ': expected an integer in ' .. lo .. '..' .. hi .. ', got ' .. tostring(ARGV[i]))
  end
  return v
end

local function name_arg(i, what)
  local v = ARGV[i]
  if not v or v == '' or #v > 128 or string.find(v, '[^%w_%-%.:]') then
    fail('SY_INVALID', what .. ': `' .. tostring(v) .. '` is not a valid name')
  end
  return v
end

local function hex12(n) return string.format('%012x', n) end
local function hex13(n) return string.format('%013x', n) end
local function num(n) return string.format('%.0f', n) end

-- Task records -------------------------------------------------------------------------------
-- header: state flags attempts max_attempts priority cost timeout pos token time created
--         worker_len error_len result_len; then worker, error, result, body.
local HDR = '>BBHHHI4I4I6I6I6I6BHI4'
local HDR_LEN = 47

local function rec_decode(id, v)
  local st, fl, at, ma, pr, co, to, pos, tok, tm, cr, wl, el, rl = struct.unpack(HDR, v)
  local o = HDR_LEN + 1
  local r = {id = id, st = st, fl = fl, at = at, ma = ma, pr = pr, co = co, to = to,
             pos = pos, tok = tok, tm = tm, cr = cr}
  r.w = string.sub(v, o, o + wl - 1); o = o + wl
  r.e = string.sub(v, o, o + el - 1); o = o + el
  r.res = string.sub(v, o, o + rl - 1); o = o + rl
  r.body = string.sub(v, o)
  local ql = struct.unpack('>B', r.body)
  r.q = string.sub(r.body, 7, 6 + ql)
  return r
end

local function rec_get(id)
  local v = redis.call('HGET', K_TASKS, id)
  if not v then return nil end
  return rec_decode(id, v)
end

local function rec_put(r)
  redis.call('HSET', K_TASKS, r.id, struct.pack(HDR, r.st, r.fl, r.at, r.ma, r.pr, r.co, r.to,
    r.pos, r.tok, r.tm, r.cr, #r.w, #r.e, #r.res) .. r.w .. r.e .. r.res .. r.body)
end

-- The bytes the affinity strategy hashes: the affinity key, or the id.
local function affinity_key(r)
  local ql, kl, al = struct.unpack('>BBH', r.body)
  if al == 0 then return r.id end
  local o = 7 + ql + kl
  return string.sub(r.body, o, o + al - 1)
end

local function count(qname, st, by)
  redis.call('HINCRBY', K_META, '~n:' .. qname .. ':' .. st, by)
end

-- Queues ------------------------------------------------------------------------------------
-- config: policy aging strategy vnodes default_cost max_attempts timeout backoff_base
--         backoff_max jitter_pct result_ttl dead_ttl dedup_window
local CFG = '>BI4BHI4HI4I4I4BI6I6I6'
local QUEUES = {}   -- name -> queue handle, for the groups named in this call

-- Opens group `g` (1-based) as queue `name`; fails if the queue was never declared.
local function queue_open(g, name)
  local b = NFIXED + (g - 1) * 4
  local k_state = KEYS[b + 1]
  local c, tomb = unpack(redis.call('HMGET', k_state, 'c', 'tomb'))
  if not c then fail('SY_UNKNOWN_QUEUE', name) end
  local q = {name = name, k_state = k_state, k_ready = KEYS[b + 2], k_delayed = KEYS[b + 3],
             k_ring = KEYS[b + 4], tomb = tonumber(tomb) or 0}
  q.pol, q.age, q.str, q.vn, q.dcost, q.matt, q.tmo, q.bb, q.bm, q.bj, q.rttl, q.dttl, q.dwin =
    struct.unpack(CFG, c)
  QUEUES[name] = q
  return q
end

-- Opens `n` groups whose names are ARGV[first .. first+n-1].
local function queues_open(first, n)
  local list = {}
  for g = 1, n do
    list[g] = queue_open(g, name_arg(first + g - 1, 'queue name'))
  end
  return list
end

local function queue_of(name)
  local q = QUEUES[name]
  if not q then fail('SY_STALE', 'queue ' .. name .. ' was not passed') end
  return q
end

-- The policy key (Policy::sort_key).
local function sort_key(q, prio, cost, t)
  if t > MAX_MS then t = MAX_MS end
  if q.pol == P_FCFS then return 0
  elseif q.pol == P_PRIO then return -prio
  elseif q.pol == P_PRIO_AGING then return t - prio * q.age
  elseif q.pol == P_SJF then return cost
  else return t + cost * q.age end
end

-- Live ready entries (FCFS lists keep tombstones of cancelled tasks, counted in `tomb`).
local function ready_len(q)
  if q.pol == P_FCFS then return redis.call('LLEN', q.k_ready) - q.tomb end
  return redis.call('ZCARD', q.k_ready)
end

local function tomb_add(q, by)
  q.tomb = q.tomb + by
  redis.call('HINCRBY', q.k_state, 'tomb', by)
end

-- Is ready entry `m` still the task it names (FCFS tombstone check)?
local function live_entry(q, m)
  local r = rec_get(string.sub(m, 13))
  if r and r.st == S_READY and r.q == q.name and r.pos == tonumber(string.sub(m, 1, 12), 16) then
    return r
  end
  return nil
end

-- Removes and returns the record of the queue's minimum ready task, or nil.
local function pop_ready(q)
  if q.pol == P_FCFS then
    while true do
      local m = redis.call('LPOP', q.k_ready)
      if not m then return nil end
      local r = live_entry(q, m)
      if r then return r end
      tomb_add(q, -1)
    end
  end
  local top = redis.call('ZPOPMIN', q.k_ready)
  if #top == 0 then return nil end
  return rec_get(string.sub(top[1], 13))
end

-- The record of the minimum ready task without removing it, or nil.
local function head_ready(q)
  if q.pol == P_FCFS then
    while true do
      local m = redis.call('LINDEX', q.k_ready, 0)
      if not m then return nil end
      local r = live_entry(q, m)
      if r then return r end
      redis.call('LPOP', q.k_ready)
      tomb_add(q, -1)
    end
  end
  local top = redis.call('ZRANGE', q.k_ready, 0, 0)
  if #top == 0 then return nil end
  return rec_get(string.sub(top[1], 13))
end

-- Workers -------------------------------------------------------------------------------------
-- record: capacity weight inflight assigned expires ttl waiting; then queue names joined by ','.
local WREC = '>HHHI6I6I4B'

local function split_queues(s)
  local out = {}
  for n in string.gmatch(s, '[^,]+') do out[#out + 1] = n end
  return out
end

-- Loaded worker records, so that every path of one call sees the same (possibly unsaved) table.
local WORKER_CACHE = {}

local function worker_get(w)
  local cached = WORKER_CACHE[w]
  if cached then return cached end
  local v = redis.call('HGET', K_WORKERS, w)
  if not v then return nil end
  local cap, weight, inf, asg, exp, ttl, wait = struct.unpack(WREC, v)
  local qs = string.sub(v, 24)
  local wr = {id = w, cap = cap, weight = weight, inf = inf, asg = asg, exp = exp, ttl = ttl,
              wait = wait, qs = qs, queues = split_queues(qs)}
  WORKER_CACHE[w] = wr
  return wr
end

local function worker_put(wr)
  WORKER_CACHE[wr.id] = wr
  redis.call('HSET', K_WORKERS, wr.id,
    struct.pack(WREC, wr.cap, wr.weight, wr.inf, wr.asg, wr.exp, wr.ttl, wr.wait) .. wr.qs)
end

-- Balancer state of (worker, queue): strategy weight n epoch stamp, then the worker's current
-- entry in K_FREE ('' when not eligible).
local BAL = '>BHI6I6I6'

local function bal_get(w, qname)
  local v = redis.call('HGET', K_WORKERS, w .. '|' .. qname)
  if not v then return nil end
  local str, weight, n, ep, stamp = struct.unpack(BAL, v)
  return {str = str, weight = weight, n = n, ep = ep, stamp = stamp, m = string.sub(v, 22)}
end

local function bal_put(w, qname, b)
  redis.call('HSET', K_WORKERS, w .. '|' .. qname,
    struct.pack(BAL, b.str, b.weight, b.n, b.ep, b.stamp) .. b.m)
end

-- Weighted: pass of the n-th pick, and the first n whose pass reaches v (weighted.rs).
local function wpass(n, weight)
  if n < 1 then n = 1 end
  return math.floor((2 * n - 1) * HALF_SCALE / weight)
end

local function first_n_at(v, weight)
  return math.ceil((v * weight + HALF_SCALE) / WEIGHT_SCALE)
end

-- Least-loaded ratio (least_loaded.rs): floor(inflight * 2^32 / capacity).
local function load_ratio(inf, cap)
  return math.floor(inf * 4294967296 / cap)
end

local function queue_dyn(q, field)
  return tonumber(redis.call('HGET', q.k_state, field)) or 0
end

-- Balancer.set_load for every queue of the worker. `q` handles are needed only where the
-- worker may become eligible in a weighted queue (its own transitions pass them).
local function refresh_load(wr)
  local free = wr.inf < wr.cap
  for _, qname in ipairs(wr.queues) do
    local b = bal_get(wr.id, qname)
    if b and b.str ~= T_PULL then
      local m = ''
      if b.str == T_WEIGHTED then
        if free then
          if b.m ~= '' then
            m = b.m
          else
            local q = queue_of(qname)
            local ep = queue_dyn(q, 'ep')
            if b.ep ~= ep then b.n = 1; b.ep = ep end
            local at = first_n_at(queue_dyn(q, 'vt'), b.weight)
            if at > b.n then b.n = at end
            m = qname .. '|' .. hex13(wpass(b.n, b.weight)) .. '|' .. wr.id
          end
        end
      elseif b.str == T_LL then
        if free then
          m = qname .. '|' .. hex12(load_ratio(wr.inf, wr.cap)) .. '|' .. hex13(b.stamp) .. '|' .. wr.id
        end
      elseif free then
        m = qname .. '|' .. wr.id
      end
      if m ~= b.m then
        if b.m ~= '' then redis.call('ZREM', K_FREE, b.m) end
        if m ~= '' then redis.call('ZADD', K_FREE, 0, m) end
        b.m = m
        bal_put(wr.id, qname, b)
      end
    end
  end
end

-- Pull queues: take a worker off every parked list (it is awake, or gone).
local function unpark(wr)
  for _, qname in ipairs(wr.queues) do
    local b = bal_get(wr.id, qname)
    if b and b.str == T_PULL then redis.call('ZREM', K_FREE, qname .. '|' .. wr.id) end
  end
end

local function wake(w)
  redis.call('PUBLISH', string.gsub(K_TASKS, 'tasks$', 'wake:') .. w, '1')
end

-- Dispatch decisions made by this call, reported as {id, queue, worker, ...}.
local ASSIGN = {}

-- Hands a task to a worker's inbox under a fresh lease token (State::dispatch_to).
local function dispatch_to(wr, r)
  local tok = redis.call('HINCRBY', K_META, '~token', 1)
  r.st = S_DISPATCHED; r.w = wr.id; r.tok = tok; r.pos = tok; r.tm = 0
  rec_put(r)
  wr.inf = wr.inf + 1
  wr.asg = wr.asg + 1
  local waiting = wr.wait == 1
  wr.wait = 0
  redis.call('ZADD', K_WTASKS, 0, wr.id .. '|0' .. hex12(tok) .. '|' .. r.id)
  refresh_load(wr)
  worker_put(wr)
  if waiting then wake(wr.id) end
  ASSIGN[#ASSIGN + 1] = r.id
  ASSIGN[#ASSIGN + 1] = r.q
  ASSIGN[#ASSIGN + 1] = wr.id
end

-- Strategies (Balancer::pick): choose an eligible worker for queue q and record the choice.
local function block(q)
  return '[' .. q.name .. '|', '(' .. q.name .. '}'
end

local function renormalise(q, vt)
  local ep = queue_dyn(q, 'ep') + 1
  local lo, hi = block(q)
  for _, m in ipairs(redis.call('ZRANGEBYLEX', K_FREE, lo, hi)) do
    local w = string.match(m, '[^|]+$')
    local b = bal_get(w, q.name)
    local shift = math.floor(vt * b.weight / WEIGHT_SCALE)
    if shift > b.n - 1 then shift = b.n - 1 end
    b.n = b.n - shift
    b.ep = ep
    redis.call('ZREM', K_FREE, m)
    b.m = q.name .. '|' .. hex13(wpass(b.n, b.weight)) .. '|' .. w
    redis.call('ZADD', K_FREE, 0, b.m)
    bal_put(w, q.name, b)
  end
  redis.call('HSET', q.k_state, 'vt', 0, 'ep', ep)
end

local function pick(q, r)
  local lo, hi = block(q)
  if q.str == T_RR then
    local cur = redis.call('HGET', q.k_state, 'cur')
    local r = {}
    if cur then r = redis.call('ZRANGEBYLEX', K_FREE, '(' .. q.name .. '|' .. cur, hi, 'LIMIT', 0, 1) end
    if #r == 0 then r = redis.call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', 0, 1) end
    if #r == 0 then return nil end
    local w = string.sub(r[1], #q.name + 2)
    redis.call('HSET', q.k_state, 'cur', w)
    return w
  elseif q.str == T_RANDOM then
    local n = redis.call('ZLEXCOUNT', K_FREE, lo, hi)
    if n == 0 then return nil end
    local x = (queue_dyn(q, 'rng') * MINSTD_A) % MINSTD_M
    redis.call('HSET', q.k_state, 'rng', x)
    local first = redis.call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', 0, 1)[1]
    local i = x % n
    if i == 0 then return string.sub(first, #q.name + 2) end
    local rank = redis.call('ZRANK', K_FREE, first) + i
    return string.sub(redis.call('ZRANGE', K_FREE, rank, rank)[1], #q.name + 2)
  elseif q.str == T_WEIGHTED then
    local r = redis.call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', 0, 1)
    if #r == 0 then return nil end
    local m = r[1]
    local vt = tonumber(string.sub(m, #q.name + 2, #q.name + 14), 16)
    local w = string.sub(m, #q.name + 16)
    local b = bal_get(w, q.name)
    b.n = b.n + 1
    redis.call('ZREM', K_FREE, m)
    b.m = q.name .. '|' .. hex13(wpass(b.n, b.weight)) .. '|' .. w
    redis.call('ZADD', K_FREE, 0, b.m)
    bal_put(w, q.name, b)
    if vt >= RENORM_AT then
      renormalise(q, vt)
    else
      redis.call('HSET', q.k_state, 'vt', vt)
    end
    return w
  elseif q.str == T_LL then
    local r = redis.call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', 0, 1)
    if #r == 0 then return nil end
    local m = r[1]
    local w = string.sub(m, #q.name + 29)
    local b = bal_get(w, q.name)
    b.stamp = redis.call('HINCRBY', q.k_state, 'ctr', 1)
    redis.call('ZREM', K_FREE, m)
    b.m = string.sub(m, 1, #q.name + 14) .. hex13(b.stamp) .. '|' .. w
    redis.call('ZADD', K_FREE, 0, b.m)
    bal_put(w, q.name, b)
    return w
  elseif q.str == T_AFFINITY then
    if #redis.call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', 0, 1) == 0 then return nil end
    local h = tonumber(string.sub(redis.sha1hex(affinity_key(r)), 1, 13), 16)
    local ranges = {{h, '+inf'}, {'-inf', '(' .. num(h)}}
    for _, range in ipairs(ranges) do
      local offset = 0
      while true do
        local pts = redis.call('ZRANGEBYSCORE', q.k_ring, range[1], range[2], 'LIMIT', offset, 16)
        for _, p in ipairs(pts) do
          local w = string.match(p, '^(.*)#%d+$')
          if redis.call('ZSCORE', K_FREE, q.name .. '|' .. w) then return w end
        end
        if #pts < 16 then break end
        offset = offset + 16
      end
    end
    return nil
  end
  return nil
end

-- Puts a task in its queue's ready set, or dispatches it at once when the set is empty and
-- the strategy finds an eligible worker (State::make_ready).
local function make_ready(r, q, t)
  local seq = redis.call('HINCRBY', q.k_state, 'seq', 1)
  local key = sort_key(q, r.pr, r.co, t)
  if q.str ~= T_PULL and ready_len(q) == 0 then
    local w = pick(q, r)
    if w then
      dispatch_to(worker_get(w), r)
      return
    end
  end
  r.st = S_READY; r.pos = seq; r.tm = 0; r.w = ''
  rec_put(r)
  local m = hex12(seq) .. r.id
  if q.pol == P_FCFS then
    redis.call('RPUSH', q.k_ready, m)
  else
    redis.call('ZADD', q.k_ready, key, m)
  end
  if q.str == T_PULL then
    local lo, hi = block(q)
    local sleeper = redis.call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', 0, 1)[1]
    if sleeper then
      local wr = worker_get(string.sub(sleeper, #q.name + 2))
      unpark(wr)
      wake(wr.id)
    end
  end
end

-- Schedules a task for `at`, or makes it ready now (State::enter_queue).
local function enter_queue(r, q, at, retry)
  if at and at > NOW then
    local seq = redis.call('HINCRBY', q.k_state, 'seq', 1)
    redis.call('ZADD', q.k_delayed, at, hex12(seq) .. r.id)
    if retry then
      r.st = S_RETRY
      count(q.name, S_RETRY, 1)
    else
      r.st = S_SCHEDULED
    end
    r.pos = seq; r.tm = at; r.w = ''
    rec_put(r)
  else
    make_ready(r, q, NOW)
  end
end

-- Fills the worker's free slots from its push queues in its order (State::fill_worker).
local function fill_worker(wr)
  while wr.inf < wr.cap do
    local got = false
    for _, qname in ipairs(wr.queues) do
      local q = queue_of(qname)
      if q.str ~= T_PULL then
        local r = pop_ready(q)
        if r then
          dispatch_to(wr, r)
          got = true
          break
        end
      end
    end
    if not got then break end
  end
end

-- Ends a task in a terminal state (State::finish); `outcome` is the result or the error.
local function finish(r, st, q)
  local ttl = q.rttl
  if st == S_DEAD then
    ttl = q.dttl
    redis.call('ZADD', K_DEAD, 0, q.name .. '|' .. hex12(NOW) .. '|' .. r.id)
  end
  r.st = st; r.w = ''; r.tm = NOW
  redis.call('ZADD', K_RETAIN, NOW + ttl, r.id)
  count(q.name, st, 1)
  local awaited = r.fl >= F_AWAITED
  rec_put(r)
  if awaited then
    redis.call('PUBLISH', string.gsub(K_TASKS, 'tasks$', 'done:') .. r.id, st)
  end
end

-- Starts a task on a worker: attempt counted, lease deadline set (State::start). Returns the
-- delivery {id, queue, token, attempt, max_attempts, deadline, body}.
local function start(wr, r)
  r.st = S_RUNNING
  r.at = r.at + 1
  r.tm = NOW + r.to
  r.w = wr.id
  rec_put(r)
  redis.call('ZADD', K_LEASES, r.tm, r.id)
  redis.call('ZADD', K_WTASKS, 0, wr.id .. '|1' .. r.id)
  return {r.id, r.q, r.tok, r.at, r.ma, r.tm, r.body}
end

-- Frees the slot a running task held (State::release_slot for a running task).
local function release_running(wr, r)
  redis.call('ZREM', K_LEASES, r.id)
  if redis.call('ZREM', K_WTASKS, wr.id .. '|1' .. r.id) == 1 then
    wr.inf = wr.inf - 1
  end
  refresh_load(wr)
end

-- Backoff::delay_ms with the queue's jitter generator.
local function backoff(q, attempt)
  local d
  if attempt - 1 >= 32 then d = q.bm else d = math.min(q.bb * 2 ^ (attempt - 1), q.bm) end
  local span = math.floor(d * q.bj / 100)
  local x = (queue_dyn(q, 'jit') * MINSTD_A) % MINSTD_M
  redis.call('HSET', q.k_state, 'jit', x)
  return d - x % (span + 1)
end

-- A running attempt ended in failure (State::end_attempt_failed). Returns {code, run_at}:
-- 1 retrying, 2 dead, 3 cancelled.
local function end_attempt_failed(wr, r, err, retry)
  local q = queue_of(r.q)
  r.e = err
  if wr then release_running(wr, r) else redis.call('ZREM', K_LEASES, r.id) end
  local ack, at = 0, 0
  if r.fl % 2 == F_CANCEL then
    finish(r, S_CANCELLED, q)
    ack = 3
  elseif retry and r.at < r.ma then
    at = NOW + backoff(q, r.at)
    enter_queue(r, q, at, true)
    ack = 1
  else
    finish(r, S_DEAD, q)
    ack = 2
  end
  if wr then
    fill_worker(wr)
    worker_put(wr)
  end
  return {ack, at}
end

-- Removes a worker and sends its tasks back (State::hand_back). Every queue of the worker must
-- be open. Returns the ids handed back.
local function hand_back(wr)
  unpark(wr)
  WORKER_CACHE[wr.id] = nil
  redis.call('HDEL', K_WORKERS, wr.id)
  redis.call('ZREM', K_HB, wr.id)
  for _, qname in ipairs(wr.queues) do
    local q = queue_of(qname)
    local b = bal_get(wr.id, qname)
    if b then
      if b.m ~= '' and b.str ~= T_PULL then redis.call('ZREM', K_FREE, b.m) end
      redis.call('HDEL', K_WORKERS, wr.id .. '|' .. qname)
      if b.str == T_AFFINITY then
        local pts = {}
        for i = 0, q.vn - 1 do pts[#pts + 1] = wr.id .. '#' .. i end
        redis.call('ZREM', q.k_ring, unpack(pts))
      end
    end
  end
  local returned = {}
  local inbox = redis.call('ZRANGEBYLEX', K_WTASKS, '[' .. wr.id .. '|0', '(' .. wr.id .. '|1')
  local running = redis.call('ZRANGEBYLEX', K_WTASKS, '[' .. wr.id .. '|1', '(' .. wr.id .. '|2')
  redis.call('ZREMRANGEBYLEX', K_WTASKS, '[' .. wr.id .. '|', '(' .. wr.id .. '}')
  for _, m in ipairs(inbox) do
    local r = rec_get(string.sub(m, #wr.id + 16))
    returned[#returned + 1] = r.id
    r.w = ''
    make_ready(r, queue_of(r.q), NOW)
  end
  for _, m in ipairs(running) do
    local r = rec_get(string.sub(m, #wr.id + 3))
    returned[#returned + 1] = r.id
    local q = queue_of(r.q)
    redis.call('ZREM', K_LEASES, r.id)
    r.e = 'worker ' .. wr.id .. ' was lost during attempt ' .. r.at
    if r.fl % 2 == F_CANCEL then
      finish(r, S_CANCELLED, q)
    elseif r.at >= r.ma then
      finish(r, S_DEAD, q)
    else
      make_ready(r, q, NOW)
    end
  end
  return returned
end

-- Checks that the worker's queue list equals the queues opened from ARGV[first ..].
local function check_worker_queues(wr, first, n)
  if #wr.queues ~= n then fail('SY_STALE', 'worker ' .. wr.id .. ' serves other queues now') end
  for i = 1, n do
    if wr.queues[i] ~= ARGV[first + i - 1] then
      fail('SY_STALE', 'worker ' .. wr.id .. ' serves other queues now')
    end
  end
end

-- Starts up to `max` tasks on the worker, appending the deliveries to `out` (State::receive):
-- the inbox in dispatch order, then the pull queues in the worker's order. Returns how many.
local function receive_tasks(wr, max, out)
  local got = 0
  if max > 0 then
    local inbox = redis.call('ZRANGEBYLEX', K_WTASKS, '[' .. wr.id .. '|0', '(' .. wr.id .. '|1',
      'LIMIT', 0, max)
    for _, m in ipairs(inbox) do
      redis.call('ZREM', K_WTASKS, m)
      for _, v in ipairs(start(wr, rec_get(string.sub(m, #wr.id + 16)))) do out[#out + 1] = v end
      got = got + 1
    end
  end
  while got < max and wr.inf < wr.cap do
    local r = nil
    for _, qname in ipairs(wr.queues) do
      local q = queue_of(qname)
      if q.str == T_PULL then
        r = pop_ready(q)
        if r then break end
      end
    end
    if not r then break end
    r.tok = redis.call('HINCRBY', K_META, '~token', 1)
    wr.inf = wr.inf + 1
    wr.asg = wr.asg + 1
    refresh_load(wr)
    for _, v in ipairs(start(wr, r)) do out[#out + 1] = v end
    got = got + 1
  end
  return got
end
