-- lib.lua: the helpers the transitions share. The Rust loader (crates/switchyard-redis/src/
-- library.rs) joins this file and every transition file into one Redis Function library, loaded
-- once per server: each transition is a function whose body is its file, called with FCALL.
-- Every rule here mirrors crates/switchyard-memory/src/state.rs (the reference) and
-- docs/architecture.md; the layout is documented in docs/redis-layout.md.
--
-- The helpers below are created once, when the library loads, and live as long as it does; the
-- per-call state (keys, arguments, time, deferred writes, opened queues and workers) is set
-- afresh by `begin` at the start of every call, so nothing carries over between calls.
--
-- Cost model (Redis 7, measured): a write command ~1.2 us, a read ~0.4 us. Hence writes
-- collected into one multi-element command per key where the order allows (see `flush`), and
-- worker in-flight counts derived rather than stored.

-- This call's keys and arguments, and its time in ms (ARGV[1], or the server's clock).
local KEYS, ARGV, NOW

-- The builtins the helpers use, held as upvalues: in a function library a global is looked up
-- in the library's environment and then, through its metatable, in Redis' globals, on every
-- use (`string.sub`: twice). Bound by `begin` on the library's first call, since while a
-- library loads Redis exposes only `redis.register_function` and `redis.log`.
local function builtins()
  return redis.call, string.sub, string.format, string.find, string.byte, string.match,
    string.gsub, string.gmatch, struct.pack, struct.unpack, math.floor, math.min, math.ceil,
    table.concat, table.sort, tonumber, tostring, ipairs, pairs, unpack, next
end
local call, sub, format, find, byte, match, gsub, gmatch, spack, sunpack, floor, min, ceil,
  concat, sort, tonumber, tostring, ipairs, pairs, unpack, next

-- Keys (one hash-tag slot; all passed in KEYS; nothing here builds a key name).
local K_TASKS               -- HASH  id -> task record; 'd:<queue>|<key>' -> '<id>|<expires>'
local K_META                -- HASH  '~seq' counter, '~n:<queue>:<state>' counts, queue -> config
local K_WORKERS             -- HASH  worker -> worker record; '<worker>|<queue>' -> balancer state
local K_HB                  -- ZSET  heartbeat expiry -> worker
local K_FREE                -- ZSET  lex: '<queue>|<strategy key>|<worker>' eligible / parked
local K_WTASKS              -- ZSET  lex: '<worker>|<token>|<id>' tasks dispatched to / running on a worker
local K_DEAD                -- ZSET  lex: '<queue>|<died at>|<id>'
local K_DEDUPX              -- ZSET  dedup expiry -> '<queue>|<key>'
local K_EVENTS              -- STREAM the event log, capped at about EVENT_CAP entries
local NFIXED = 9
-- Then one group of 5 keys per queue a script may touch, named in ARGV by the script:
-- state HASH, ready LIST (fcfs) or ZSET, delayed ZSET, ring ZSET, done ZSET.

local S_SCHEDULED, S_READY, S_DISPATCHED, S_RUNNING = 0, 1, 2, 3
local S_RETRY, S_SUCCEEDED, S_DEAD, S_CANCELLED = 4, 5, 6, 7
local P_FCFS, P_PRIO, P_PRIO_AGING, P_SJF, P_SJF_AGING = 0, 1, 2, 3, 4
local T_RR, T_RANDOM, T_WEIGHTED, T_LL, T_AFFINITY, T_PULL = 0, 1, 2, 3, 4, 5
local F_CANCEL, F_AWAITED = 1, 2
local W_WAITING, W_DRAINING = 1, 2
-- What complete and fail answer for a lease, one table for both (src/protocol.rs: AckCode).
local A_SUCCEEDED, A_NOT_FOUND, A_NOT_RUNNING, A_STALE = 0, 1, 2, 3
local A_RETRYING, A_DEAD, A_CANCELLED = 4, 5, 6
local WEIGHT_SCALE, HALF_SCALE, RENORM_AT = 65536, 32768, 2^40
local MINSTD_M, MINSTD_A = 2147483647, 48271
local MAX_MS = 2^48 - 1
local HDR = '>BBHHHI4I4I6I6I6I6BHI4'
local HDR_LEN = 47
local CFG = '>BI4BHI4HI4I4I4BI6I6I6B'
local EVENT_CAP = 10000
local WREC = '>HHHI6I4I6BHI6I6I6'
local WREC_LEN = 43
local BAL = '>HI6I6'
local BAL_LEN = 14
-- A task argument of submit: group, cost given, priority, cost, run-at, delay, max attempts,
-- timeout; then the id (26 characters) and the body.
local TASK_ARG = '>HBHI4I6I6HI4'
local TASK_ARG_LEN = 53
local QDYN = '>I6I6I6I6I6'
-- A hand-off published on the worker's wake channel: HAND_TAG, then still parked 0|1, the
-- registration's instance token, token, attempt, max attempts, deadline, timeout, ready since,
-- queue name length; then id, queue, body. A plain wake-up is the message '1'.
local HAND = '>BI6I6I6I6I6I6I6H'
local HAND_TAG = 'h'
local QDYN_LEN = 30

local function fail(code, msg)
  error({err = code .. ' ' .. msg})
end

-- An integer argument in lo..hi.
local function int_arg(i, name, lo, hi)
  local v = tonumber(ARGV[i])
  if not v or v ~= floor(v) or v < lo or v > hi then
    fail('SY_INVALID', name .. ': expected an integer in ' .. lo .. '..' .. hi .. ', got ' .. tostring(ARGV[i]))
  end
  return v
end

-- An integer as a command argument. A number argument costs Redis a `%.17g` format on every
-- call; the small ones are formatted once per library load.
local INT_TEXT = {}
local function int_text(n)
  local s = INT_TEXT[n]
  if not s then
    s = format('%d', n)
    if n >= 0 and n < 1024 then INT_TEXT[n] = s end
  end
  return s
end

local function name_arg(i, what)
  local v = ARGV[i]
  if not v or v == '' or #v > 128 or find(v, '[^%w_%-%.:]') then
    fail('SY_INVALID', what .. ': `' .. tostring(v) .. '` is not a valid name')
  end
  return v
end

-- Deferred writes, applied by `flush` as one command per key, before any read of a deferred key
-- and at the end of a call: task records, members added to / removed from sorted sets, the
-- sequence counter (values handed out by `next_seq` beyond the first) and changed queue state.
local PENDING
local QUEUES   -- queue name -> its state, opened by `queue_of`

-- The next value of the namespace-wide sequence (ready/delayed order, lease tokens, inboxes):
-- one HINCRBY for the first value of a call, then counted locally and written by `flush`.
local function next_seq()
  if PENDING.seq then
    PENDING.seq = PENDING.seq + 1
    PENDING.seq_extra = PENDING.seq_extra + 1
  else
    PENDING.seq = call('HINCRBY', K_META, '~seq', '1')
  end
  return PENDING.seq
end

-- Changes a field of a queue's dynamic state (tomb rng jit vt ep cur), written by `flush`.
local function set_state(q, field, value)
  q[field] = value
  q.dirty = true
end

local function zadd(key, score, member)
  local list = PENDING.adds[key]
  if not list then list = {}; PENDING.adds[key] = list end
  list[#list + 1] = score
  list[#list + 1] = member
end

local function zrem(key, member)
  local list = PENDING.rems[key]
  if not list then list = {}; PENDING.rems[key] = list end
  list[#list + 1] = member
end

-- Task records -------------------------------------------------------------------------------
-- header: state flags attempts max_attempts priority cost timeout pos token time created
--         worker_len error_len result_len; then worker, error, result, body. The body (built by
-- the client) is '>BBHH' lengths of queue, kind, affinity key, dedup key, those, the payload.
-- `pos` is the sequence number in a ready or delayed set, the token while leased; `time` is the
-- run-at while scheduled, when it became ready while ready or dispatched, the lease deadline
-- while running, the finish time when finished.
local function rec_get(id, raw)
  local v = raw or PENDING.recs[id] or call('HGET', K_TASKS, id)
  if not v then return nil end
  local st, fl, at, ma, pr, co, to, pos, tok, tm, cr, wl, el, rl = sunpack(HDR, v)
  local o = HDR_LEN + 1
  local w, e, res = '', '', ''
  if wl > 0 then w = sub(v, o, o + wl - 1) end
  if el > 0 then e = sub(v, o + wl, o + wl + el - 1) end
  if rl > 0 then res = sub(v, o + wl + el, o + wl + el + rl - 1) end
  local body = sub(v, o + wl + el + rl)
  return {id = id, st = st, fl = fl, at = at, ma = ma, pr = pr, co = co, to = to, pos = pos,
          tok = tok, tm = tm, cr = cr, w = w, e = e, res = res, body = body,
          q = sub(body, 7, 6 + byte(body, 1))}
end

local function rec_put(r)
  if not PENDING.recs[r.id] then PENDING.order[#PENDING.order + 1] = r.id end
  PENDING.recs[r.id] = spack(HDR, r.st, r.fl, r.at, r.ma, r.pr, r.co, r.to, r.pos, r.tok,
    r.tm, r.cr, #r.w, #r.e, #r.res) .. r.w .. r.e .. r.res .. r.body
end

-- Queues --------------------------------------------------------------------------------------
-- config: policy aging strategy vnodes default_cost max_attempts timeout backoff_base
--         backoff_max jitter_pct result_ttl dead_ttl dedup_window
local GROUPS   -- queue name -> its key group's number in KEYS

-- Names groups offset+1 .. offset+n after the queues ARGV[first ..]; each is opened (its state
-- read) on first use.
local function queues_named(first, n, offset)
  for g = 1, n do GROUPS[name_arg(first + g - 1, 'queue name')] = g + (offset or 0) end
end

-- What rarely-changing bytes decode to — a queue's packed configuration, a worker's queue
-- list — kept by those bytes across calls: decoding is a function of the bytes alone, and the
-- decoded tables are never changed. Emptied when it holds MEMO_CAP entries.
local MEMO_CAP = 4096
local CFG_MEMO, WQ_MEMO, MEMO_N = {}, {}, 0
local function memo_count()
  MEMO_N = MEMO_N + 1
  if MEMO_N > MEMO_CAP then CFG_MEMO, WQ_MEMO, MEMO_N = {}, {}, 1 end
end

-- The handle of a queue named in this call; fails if it was never declared.
local function queue_of(name)
  local q = QUEUES[name]
  if q then return q end
  local g = GROUPS[name]
  if not g then fail('SY_STALE', 'queue ' .. name .. ' was not passed') end
  local b = NFIXED + (g - 1) * 5
  local k_state = KEYS[b + 1]
  local v = call('HMGET', k_state, 'c', 'd', 'p')
  if not v[1] then fail('SY_UNKNOWN_QUEUE', name) end
  -- policy aging strategy vnodes default_cost max_attempts timeout backoff_base backoff_max
  -- jitter_pct result_ttl dead_ttl dedup_window event_level
  local c = CFG_MEMO[v[1]]
  if not c then
    c = {sunpack(CFG, v[1])}
    memo_count()
    CFG_MEMO[v[1]] = c
  end
  local tomb, rng, jit, vt, ep = sunpack(QDYN, v[2])
  local cur = nil
  if #v[2] > QDYN_LEN then cur = sub(v[2], QDYN_LEN + 1) end
  -- One constructor with every field: growing a table field by field rehashes it repeatedly.
  q = {name = name, k_state = k_state, k_ready = KEYS[b + 2], k_delayed = KEYS[b + 3],
       k_ring = KEYS[b + 4], k_done = KEYS[b + 5], pol = c[1], age = c[2], str = c[3],
       vn = c[4], dcost = c[5], matt = c[6], tmo = c[7], bb = c[8], bm = c[9], bj = c[10],
       rttl = c[11], dttl = c[12], dwin = c[13], ev = c[14], tomb = tomb, rng = rng, jit = jit,
       vt = vt, ep = ep, cur = cur, rlen = false, dirty = false, paused = v[3] == '1',
       none_parked = false}
  QUEUES[name] = q
  return q
end

-- Names groups from ARGV[first ..] and opens them all (failing on an undeclared queue).
local function queues_open(first, n)
  queues_named(first, n)
  local list = {}
  for g = 1, n do list[g] = queue_of(ARGV[first + g - 1]) end
  return list
end

-- Ready entries pushed by this call, written by `flush` (or before the set is next read).
local function push_ready(q, key, m)
  if q.pol == P_FCFS then
    local p = q.push
    if not p then p = {}; q.push = p end
    p[#p + 1] = m
  else
    local p = q.push
    if not p then p = {}; q.push = p end
    p[#p + 1] = key
    p[#p + 1] = m
  end
end

-- Writes the ready entries this call pushed to queue `q`.
local function flush_ready(q)
  local p = q.push
  if p then
    q.push = nil
    local cmd = 'ZADD'
    if q.pol == P_FCFS then cmd = 'RPUSH' end
    for i = 1, #p, 4000 do
      call(cmd, q.k_ready, unpack(p, i, min(i + 3999, #p)))
    end
  end
end

-- Live entries in the queue's ready set (read once per call, then counted locally).
local function ready_len(q)
  if not q.rlen then
    flush_ready(q)
    if q.pol == P_FCFS then q.rlen = call('LLEN', q.k_ready) - q.tomb else q.rlen = call('ZCARD', q.k_ready) end
  end
  return q.rlen
end

-- Removes and returns the records of up to `k` (>= 1) minimum ready tasks of the queue, in
-- order (an empty list if there are none). FCFS lists keep entries of cancelled tasks (counted
-- in `tomb`), skipped here.
local function pop_ready(q, k)
  local out = {}
  if q.rlen == 0 then return out end
  flush_ready(q)
  if q.pol ~= P_FCFS or q.tomb == 0 then
    local ms
    if q.pol ~= P_FCFS then
      local top = call('ZPOPMIN', q.k_ready, int_text(k))
      ms = {}
      for i = 1, #top, 2 do ms[#ms + 1] = top[i] end
    elseif k == 1 then
      ms = {call('LPOP', q.k_ready)}
    else
      ms = call('LPOP', q.k_ready, int_text(k))
    end
    if ms and ms[1] then
      local ids = {}
      for i, m in ipairs(ms) do ids[i] = sub(m, 13) end
      local vs = call('HMGET', K_TASKS, unpack(ids))
      for i, id in ipairs(ids) do out[i] = rec_get(id, PENDING.recs[id] or vs[i]) end
    end
  else
    while #out < k do
      local m = call('LPOP', q.k_ready)
      if not m then break end
      local c = rec_get(sub(m, 13))
      if c and c.st == S_READY and c.q == q.name and c.pos == tonumber(sub(m, 1, 12), 16) then
        out[#out + 1] = c
      else
        set_state(q, 'tomb', q.tomb - 1)
      end
    end
  end
  if #out < k then q.rlen = 0 elseif q.rlen then q.rlen = q.rlen - #out end
  return out
end

-- Workers -------------------------------------------------------------------------------------
-- record: capacity weight in-flight expires ttl receive-cursor flags (W_WAITING, W_DRAINING)
-- inbox-count instance dispatched completed (the last two counted since it registered), then '<queue>,<queue>...|' and per queue two digits (strategy, 1 if FCFS) and
-- 13 hex digits (the least-loaded pick stamp: the lease token of the worker's latest pick in
-- that queue, 0 before the first). In flight = dispatched + running; inbox = dispatched, not
-- yet received (entries in K_WTASKS with a token above the receive cursor).
local WORKERS  -- worker id -> its record, read by `worker_get`

local function worker_get(w)
  local wr = WORKERS[w]
  if wr then return wr end
  local v = call('HGET', K_WORKERS, w)
  if not v then return nil end
  local cap, weight, inf, exp, ttl, rc, wait, ib, inst, dn, ok = sunpack(WREC, v)
  local bar = find(v, '|', WREC_LEN + 1, true)
  local nq = (#v - bar) / 15
  -- The queue list (names, then strategy codes) changes only with a new registration.
  local list = sub(v, WREC_LEN + 1, bar + 2 * nq)
  local m = WQ_MEMO[list]
  if not m then
    local names = sub(v, WREC_LEN + 1, bar - 1)
    local queues, strs = {}, {}
    if nq == 1 then
      queues[1] = names
    else
      for name in gmatch(names, '[^,]+') do queues[#queues + 1] = name end
    end
    for i = 1, nq do strs[queues[i]] = byte(v, bar + 2 * i - 1) - 48 end
    m = {names = names, codes = sub(v, bar + 1, bar + 2 * nq), queues = queues, strs = strs}
    memo_count()
    WQ_MEMO[list] = m
  end
  -- The least-loaded stamps stay as the record's bytes (`tail`) until one is read or changed
  -- (`stamps_of`).
  wr = {id = w, cap = cap, weight = weight, inf = inf, exp = exp, ttl = ttl, rc = rc, wait = wait,
        ib = ib, ib0 = ib, inst = inst, dn = dn, ok = ok, names = m.names, codes = m.codes,
        queues = m.queues, strs = m.strs, tail = sub(v, bar + 2 * nq + 1), stamps = false,
        dirty = false}
  WORKERS[w] = wr
  return wr
end

-- The worker's least-loaded pick stamps by queue (13 hex digits each), decoded on first use.
local function stamps_of(wr)
  local st = wr.stamps
  if st then return st end
  st = {}
  for i, name in ipairs(wr.queues) do st[name] = sub(wr.tail, 13 * i - 12, 13 * i) end
  wr.stamps = st
  return st
end

-- Writes the worker record (called by `flush` for workers marked dirty).
local function worker_put(wr)
  local st = wr.stamps
  local tail
  if not st then
    tail = wr.tail
  elseif #wr.queues == 1 then
    tail = st[wr.queues[1]]
  else
    local parts = {}
    for i, name in ipairs(wr.queues) do parts[i] = st[name] end
    tail = concat(parts)
  end
  call('HSET', K_WORKERS, wr.id, spack(WREC, wr.cap, wr.weight, wr.inf, wr.exp, wr.ttl,
    wr.rc, wr.wait, wr.ib, wr.inst, wr.dn, wr.ok) .. wr.names .. '|' .. wr.codes .. tail)
  wr.dirty = false
end

-- Whether the worker may take another task (has a free slot and is not draining).
local function has_free_slot(wr)
  return wr.wait < W_DRAINING and wr.inf < wr.cap
end

-- Workers whose balancer entries may be out of date in this call (see `unsettle`).
local UNSETTLED

-- Call before changing a worker's load or eligibility: its balancer entries are then rewritten
-- once, by `settle`, from the state it has by then — not once per change (a complete that
-- refills its slot changes nothing in the end). This is exact because nothing reads the entries
-- in between: `settle` runs before every strategy decision and in `flush`, and the queues'
-- virtual times only move in decisions. `was`: whether the worker was eligible (default:
-- computed now). Marks the record dirty.
local function unsettle(wr, was)
  wr.dirty = true
  if wr.free0 == nil then
    if was == nil then was = has_free_slot(wr) end
    wr.free0 = was
    wr.inf0 = wr.inf
    UNSETTLED[#UNSETTLED + 1] = wr
  end
end

-- The least-loaded entry of a worker in queue `qname` at load `inf` and stamp `stamp` (hex).
local function ll_entry(qname, wr, inf, stamp)
  return qname .. '|' .. format('%012x', floor(inf * 4294967296 / wr.cap)) .. '|' ..
    stamp .. '|' .. wr.id
end

-- Balancer.set_load for every push queue of each unsettled worker: an entry changes where
-- eligibility flipped, or for least-loaded where the load ratio or the pick stamp changed.
-- Round-robin, random and affinity entries are '<queue>|<worker>'; least-loaded entries are
-- computed from the record (`ll_entry`); weighted entries are kept in the worker's balancer
-- state (field '<worker>|<queue>'), since a pass cannot be recomputed from the record. A worker
-- becoming eligible in a weighted queue is lifted to the queue's virtual time (weighted.rs); a
-- flip out and back in between is no lift, since an eligible worker's pass is never below the
-- virtual time.
local function settle()
  for i = 1, #UNSETTLED do
    local wr = UNSETTLED[i]
    UNSETTLED[i] = nil
    local was, free = wr.free0, has_free_slot(wr)
    wr.free0 = nil
    local picked = wr.picked
    wr.picked = nil
    if not wr.gone then
      for _, qname in ipairs(wr.queues) do
        local str = wr.strs[qname]
        if str == T_LL then
          local stamp = stamps_of(wr)[qname]
          local new = picked and picked[qname]
          if new then new = format('%013x', new) end
          if free ~= was or ((free or was) and (wr.inf ~= wr.inf0 or new)) then
            if was then call('ZREM', K_FREE, ll_entry(qname, wr, wr.inf0, stamp)) end
            if new then
              stamp = new
              stamps_of(wr)[qname] = new
            end
            if free then call('ZADD', K_FREE, '0', ll_entry(qname, wr, wr.inf, stamp)) end
          end
        elseif free ~= was and str ~= T_PULL then
          if str == T_WEIGHTED then
            local field = wr.id .. '|' .. qname
            local v = call('HGET', K_WORKERS, field)
            local weight, n, ep = sunpack(BAL, v)
            local m = ''
            if free then
              local q = queue_of(qname)
              if ep ~= q.ep then n = 1; ep = q.ep end
              local at = ceil((q.vt * weight + HALF_SCALE) / WEIGHT_SCALE)
              if at > n then n = at end
              m = format('%s|%013x|%s', qname, floor((2 * n - 1) * HALF_SCALE / weight), wr.id)
              call('ZADD', K_FREE, '0', m)
            else
              call('ZREM', K_FREE, sub(v, BAL_LEN + 1))
            end
            call('HSET', K_WORKERS, field, spack(BAL, weight, n, ep) .. m)
          elseif free then
            call('ZADD', K_FREE, '0', qname .. '|' .. wr.id)
          else
            call('ZREM', K_FREE, qname .. '|' .. wr.id)
          end
        end
      end
    end
  end
end

-- One command `cmd key args...`, split into commands of at most 4,000 arguments.
local function send(cmd, key, args)
  local n = #args
  if n <= 4000 then
    call(cmd, key, unpack(args))
    return
  end
  for i = 1, n, 4000 do
    call(cmd, key, unpack(args, i, min(i + 3999, n)))
  end
end

-- Applies the deferred writes (see PENDING) and settles the workers' balancer entries.
local function flush()
  settle()
  local order = PENDING.order
  if #order > 0 then
    local recs, args = PENDING.recs, {}
    for i, id in ipairs(order) do
      args[2 * i - 1] = id
      args[2 * i] = recs[id]
    end
    send('HSET', K_TASKS, args)
    PENDING.recs, PENDING.order = {}, {}
  end
  if next(PENDING.rems) then
    for key, members in pairs(PENDING.rems) do send('ZREM', key, members) end
    PENDING.rems = {}
  end
  if next(PENDING.adds) then
    for key, list in pairs(PENDING.adds) do send('ZADD', key, list) end
    PENDING.adds = {}
  end
  if PENDING.seq_extra > 0 then
    call('HINCRBY', K_META, '~seq', int_text(PENDING.seq_extra))
    PENDING.seq_extra = 0
  end
  for _, wr in pairs(WORKERS) do
    if wr.dirty then worker_put(wr) end
  end
  -- Hand-offs go out once the state they describe is written.
  local pubs = PENDING.pubs
  if #pubs > 0 then
    PENDING.pubs = {}
    for i = 1, #pubs, 2 do call('PUBLISH', pubs[i], pubs[i + 1]) end
  end
  for _, q in pairs(QUEUES) do
    flush_ready(q)
    if q.dirty then
      call('HSET', q.k_state, 'd', spack(QDYN, q.tomb, q.rng, q.jit, q.vt, q.ep) .. (q.cur or ''))
      q.dirty = nil
    end
    if q.counts then
      for kind, n in pairs(q.counts) do call('HINCRBY', q.k_state, 'n:' .. kind, int_text(n)) end
      q.counts = nil
    end
  end
end

-- Marks an idle worker waiting: the next dispatch to it publishes on its wake channel, and it
-- is parked on its pull queues (the next task there wakes it).
local function park(wr)
  if wr.wait % 2 ~= W_WAITING then
    wr.wait = wr.wait + W_WAITING
    wr.dirty = true
  end
  for _, qname in ipairs(wr.queues) do
    if wr.strs[qname] == T_PULL then
      call('ZADD', K_FREE, '0', qname .. '|' .. wr.id)
      local q = QUEUES[qname]
      if q then q.none_parked = false end
    end
  end
end

-- Pull queues: take a worker off every parked list (it is awake, or gone).
local function unpark(wr)
  for _, qname in ipairs(wr.queues) do
    if wr.strs[qname] == T_PULL then call('ZREM', K_FREE, qname .. '|' .. wr.id) end
  end
end

-- Dispatch decisions made by this call, reported as {id, queue, worker, ...}.
local ASSIGN

-- Counts an event of queue `q` (EventCounts: every kind, recorded or not; written by `flush`
-- as the queue state's fields 'n:<kind>') and appends it to the log if the queue records its
-- kind (EventLevel: 0 off, 1 failures, 2 all; failures are failed, retried, dead and cancelled).
local function emit(q, kind, id, w, detail)
  local counts = q.counts
  if not counts then counts = {}; q.counts = counts end
  counts[kind] = (counts[kind] or 0) + 1
  if q.ev == 0 or (q.ev == 1 and (kind == 'submitted' or kind == 'dispatched' or kind == 'succeeded')) then
    return
  end
  call('XADD', K_EVENTS, 'MAXLEN', '~', EVENT_CAP, '*', 'k', kind, 't', id, 'q', q.name,
    'w', w or '', 'a', NOW, 'd', detail or '')
end

-- Starts task `r` on worker `wr` (its slot already held), appending its delivery {id, queue,
-- token, attempt, max attempts, deadline, timeout, ready since, body} to `out`
-- (State::start).
local function start(wr, r, out)
  local since = r.tm
  r.st = S_RUNNING
  r.at = r.at + 1
  r.tm = NOW + r.to
  r.w = wr.id
  rec_put(r)
  if r.tok > wr.rc then wr.rc = r.tok end
  wr.dirty = true
  out[#out + 1] = r.id; out[#out + 1] = r.q; out[#out + 1] = r.tok; out[#out + 1] = r.at
  out[#out + 1] = r.ma; out[#out + 1] = r.tm; out[#out + 1] = r.to; out[#out + 1] = since
  out[#out + 1] = r.body
end

-- Takes a ready task of a pull queue (already out of its ready set) into a free slot of `wr`
-- under token `tok`, and starts it (State::start_pulled).
local function start_pulled(wr, r, tok, out)
  r.tok = tok
  zadd(K_WTASKS, '0', format('%s|%012x|%s', wr.id, tok, r.id))
  unsettle(wr)
  wr.inf = wr.inf + 1
  wr.dn = wr.dn + 1
  start(wr, r, out)
end

-- The hand-off: starts task `r` on the parked or waiting worker `wr` under token `tok` and
-- publishes the delivery on its wake channel; the worker stays parked and waiting while it has
-- a free slot (State::hand_to).
local function hand_to(wr, r, tok)
  local d = {}
  r.pos = tok
  start_pulled(wr, r, tok, d)
  local parked = 1
  if not has_free_slot(wr) then
    unpark(wr)
    if wr.wait % 2 == W_WAITING then wr.wait = wr.wait - W_WAITING end
    parked = 0
  end
  local pubs = PENDING.pubs
  pubs[#pubs + 1] = sub(K_TASKS, 1, -6) .. 'wake:' .. wr.id
  pubs[#pubs + 1] = HAND_TAG .. spack(HAND, parked, wr.inst, r.tok, r.at, r.ma, r.tm, r.to,
    d[8], #r.q) .. r.id .. r.q .. r.body
end

-- Hands task `r` of queue `q` to a worker's inbox under lease token `tok`, or, if the worker
-- waits with an empty inbox, starts it there at once (State::dispatch_to).
local function dispatch_to(wr, r, q, tok)
  if not tok then tok = next_seq() end
  -- A least-loaded pick's stamp is the token: picks take increasing tokens, so ordering by it
  -- is ordering by recency, as with the reference's per-queue pick counter.
  if wr.picked and wr.picked[q.name] == true then wr.picked[q.name] = tok end
  if wr.wait % 2 == W_WAITING and wr.ib == 0 then
    hand_to(wr, r, tok)
  else
    r.st = S_DISPATCHED; r.w = wr.id; r.tok = tok; r.pos = tok
    rec_put(r)
    zadd(K_WTASKS, '0', format('%s|%012x|%s', wr.id, tok, r.id))
    unsettle(wr)
    wr.inf = wr.inf + 1
    wr.dn = wr.dn + 1
    wr.ib = wr.ib + 1
    -- Tasks dispatched in this call, in token order (see `receive_tasks`).
    local fresh = wr.fresh
    if not fresh then fresh = {}; wr.fresh = fresh end
    fresh[#fresh + 1] = r
    -- A waiting worker with tasks still to receive is woken to receive them.
    if wr.wait % 2 == W_WAITING then
      wr.wait = wr.wait - W_WAITING
      call('PUBLISH', sub(K_TASKS, 1, -6) .. 'wake:' .. wr.id, '1')
    end
  end
  emit(q, 'dispatched', r.id, wr.id)
  ASSIGN[#ASSIGN + 1] = r.id
  ASSIGN[#ASSIGN + 1] = r.q
  ASSIGN[#ASSIGN + 1] = wr.id
end

-- Chooses an eligible worker for task `r` of queue `q` and records the choice (Balancer::pick).
local function pick(q, r)
  settle()
  local lo, hi = '[' .. q.name .. '|', '(' .. q.name .. '}'
  local str = q.str
  if str == T_RR then
    local found = {}
    if q.cur then found = call('ZRANGEBYLEX', K_FREE, '(' .. q.name .. '|' .. q.cur, hi, 'LIMIT', '0', '1') end
    if #found == 0 then found = call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', '0', '1') end
    if #found == 0 then return nil end
    set_state(q, 'cur', sub(found[1], #q.name + 2))
    return q.cur
  elseif str == T_RANDOM then
    local n = call('ZLEXCOUNT', K_FREE, lo, hi)
    if n == 0 then return nil end
    set_state(q, 'rng', (q.rng * MINSTD_A) % MINSTD_M)
    local first = call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', '0', '1')[1]
    local i = q.rng % n
    if i > 0 then
      local rank = call('ZRANK', K_FREE, first) + i
      first = call('ZRANGE', K_FREE, rank, rank)[1]
    end
    return sub(first, #q.name + 2)
  elseif str == T_WEIGHTED or str == T_LL then
    -- Both take the first entry: weighted by (pass, id), least-loaded by (ratio, stamp, id).
    local found = call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', '0', '1')
    if #found == 0 then return nil end
    local m = found[1]
    if str == T_LL then
      -- The new stamp (the lease token, set by dispatch_to) goes into the entry with the new
      -- load, when the worker settles.
      local w = sub(m, #q.name + 29)
      local wr = worker_get(w)
      unsettle(wr, true)
      wr.picked = wr.picked or {}
      wr.picked[q.name] = true
      return w
    end
    local w = sub(m, #q.name + 16)
    local field = w .. '|' .. q.name
    local v = call('HGET', K_WORKERS, field)
    local weight, n, ep = sunpack(BAL, v)
    q.vt = tonumber(sub(m, #q.name + 2, #q.name + 14), 16)
    n = n + 1
    local nm = format('%s|%013x|%s', q.name, floor((2 * n - 1) * HALF_SCALE / weight), w)
    call('ZREM', K_FREE, m)
    call('ZADD', K_FREE, '0', nm)
    call('HSET', K_WORKERS, field, spack(BAL, weight, n, ep) .. nm)
    set_state(q, 'vt', q.vt)
    if q.vt >= RENORM_AT then
      -- Renormalise: every eligible worker's n drops by floor(vt * weight / 2^16).
      q.ep = q.ep + 1
      for _, em in ipairs(call('ZRANGEBYLEX', K_FREE, lo, hi)) do
        local ew = match(em, '[^|]+$')
        local ef = ew .. '|' .. q.name
        local ev = call('HGET', K_WORKERS, ef)
        local eweight, en = sunpack(BAL, ev)
        en = en - min(floor(q.vt * eweight / WEIGHT_SCALE), en - 1)
        local enm = format('%s|%013x|%s', q.name, floor((2 * en - 1) * HALF_SCALE / eweight), ew)
        call('ZREM', K_FREE, em)
        call('ZADD', K_FREE, '0', enm)
        call('HSET', K_WORKERS, ef, spack(BAL, eweight, en, q.ep) .. enm)
      end
      set_state(q, 'vt', 0)
      set_state(q, 'ep', q.ep)
    end
    return w
  elseif str == T_AFFINITY then
    if #call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', '0', '1') == 0 then return nil end
    local key = r.id
    local ql, kl, al = sunpack('>BBH', r.body)
    if al > 0 then key = sub(r.body, 7 + ql + kl, 6 + ql + kl + al) end
    local h = tonumber(sub(redis.sha1hex(key), 1, 13), 16)
    for _, range in ipairs({{h, '+inf'}, {'-inf', '(' .. format('%.0f', h)}}) do
      local offset = 0
      while true do
        local pts = call('ZRANGEBYSCORE', q.k_ring, range[1], range[2], 'LIMIT', offset, 16)
        for _, p in ipairs(pts) do
          local w = match(p, '^(.*)#%d+$')
          if call('ZSCORE', K_FREE, q.name .. '|' .. w) then return w end
        end
        if #pts < 16 then break end
        offset = offset + 16
      end
    end
  end
  return nil
end

-- Pull queues: the first worker parked on `q` if it takes a task at once — a free slot and an
-- empty inbox — or false after waking (and unparking) one that cannot; nil if none is parked
-- (State::sleeper).
local function sleeper(q)
  -- Only `park` adds parked workers: once none was found, none is until this call parks one.
  if q.none_parked then return nil end
  local m = call('ZRANGEBYLEX', K_FREE, '[' .. q.name .. '|', '(' .. q.name .. '}', 'LIMIT', '0', '1')[1]
  if not m then
    q.none_parked = true
    return nil
  end
  local wr = worker_get(sub(m, #q.name + 2))
  if has_free_slot(wr) and wr.ib == 0 then return wr end
  unpark(wr)
  call('PUBLISH', sub(K_TASKS, 1, -6) .. 'wake:' .. wr.id, '1')
  return false
end

-- The first parked worker of `q` that takes a task, waking those before it that cannot; nil
-- if there is none.
local function taker(q)
  while true do
    local wr = sleeper(q)
    if wr ~= false then return wr end
  end
end

-- Pull queues: hands the ready tasks of `q`, minimum first, to the parked workers that take
-- them, each under a fresh token, until none is ready or none takes (State::hand_off_ready).
-- Returns whether it handed off any.
local function hand_off_ready(q)
  local any = false
  while ready_len(q) > 0 do
    local wr = taker(q)
    if not wr then return any end
    local r = pop_ready(q, 1)[1]
    if not r then return any end
    hand_to(wr, r, next_seq())
    any = true
  end
  return any
end

-- Puts a task into its queue: scheduled for `at` if that is in the future, otherwise ready —
-- or dispatched at once when the ready set is empty and the strategy finds an eligible worker
-- (State::enter_queue, State::make_ready). `t` is the enqueue time for aging. Returns true
-- when it left `r` ready and then handed off ready tasks (which may include `r`: its record,
-- not `r`, then says so).
local function place(r, q, at, retry, t)
  local seq = next_seq()
  r.w = ''
  if at and at > NOW then
    local member = format('%012x%s', seq, r.id)
    call('ZADD', q.k_delayed, at, member)
    -- The first of its queue now: the earliest due time may have moved earlier, so wake the
    -- maintenance loops sleeping until then (Backend::sleep_until_due).
    if call('ZRANK', q.k_delayed, member) == 0 then
      call('PUBLISH', sub(K_TASKS, 1, -6) .. 'due', at)
    end
    if retry then
      r.st = S_RETRY
      call('HINCRBY', K_META, '~n:' .. q.name .. ':' .. S_RETRY, '1')
    else
      r.st = S_SCHEDULED
    end
    r.pos = seq; r.tm = at
    rec_put(r)
    return
  end
  -- Ready (and then dispatched) since `t`: a delivery tells the worker how long it waited.
  r.tm = t
  if q.str ~= T_PULL and not q.paused then
    if ready_len(q) == 0 then
      local w = pick(q, r)
      if w then
        -- The sequence number doubles as the lease token.
        dispatch_to(worker_get(w), r, q, seq)
        return
      end
    end
  end
  -- Pull queues: the task joins the ready set and its minimum goes to a parked worker that
  -- takes it (hand_off_ready). With the set empty, that minimum is this task: hand it over
  -- without writing it to the set first.
  local waiting = nil
  if q.str == T_PULL and not q.paused then
    waiting = ready_len(q)
    if waiting == 0 then
      local wr = taker(q)
      if wr then
        hand_to(wr, r, next_seq())
        return
      end
    end
  end
  r.st = S_READY; r.pos = seq
  rec_put(r)
  if q.rlen then q.rlen = q.rlen + 1 end
  local key = 0
  if q.pol ~= P_FCFS then
    if t > MAX_MS then t = MAX_MS end
    if q.pol == P_PRIO then key = -r.pr
    elseif q.pol == P_PRIO_AGING then key = t - r.pr * q.age
    elseif q.pol == P_SJF then key = r.co
    else key = t + r.co * q.age end
  end
  push_ready(q, key, format('%012x%s', seq, r.id))
  if waiting and waiting > 0 then return hand_off_ready(q) end
end

-- Fills the worker's free slots from its push queues in its order (State::fill_worker).
local function fill_worker(wr)
  for _, qname in ipairs(wr.queues) do
    if not has_free_slot(wr) then return end
    if wr.strs[qname] ~= T_PULL then
      local q = queue_of(qname)
      if not q.paused then
        for _, r in ipairs(pop_ready(q, wr.cap - wr.inf)) do dispatch_to(wr, r, q, nil) end
      end
    end
  end
end

-- Hands ready tasks of `q` to eligible workers, up to `limit` (State::dispatch): nothing for
-- a pull queue or a paused one. Reads the ready set directly: call it before this call pushed
-- anything to it.
local function dispatch_ready(q, limit)
  local n = 0
  while n < limit and q.str ~= T_PULL and not q.paused do
    -- The head of the ready set, dropping cancelled entries of an FCFS list.
    local r = nil
    if q.pol == P_FCFS then
      while true do
        local m = call('LINDEX', q.k_ready, 0)
        if not m then break end
        local c = rec_get(sub(m, 13))
        if c and c.st == S_READY and c.q == q.name and c.pos == tonumber(sub(m, 1, 12), 16) then
          r = c
          break
        end
        call('LPOP', q.k_ready)
        set_state(q, 'tomb', q.tomb - 1)
      end
    else
      local top = call('ZRANGE', q.k_ready, 0, 0)
      if #top > 0 then r = rec_get(sub(top[1], 13)) end
    end
    if not r then break end
    local w = pick(q, r)
    if not w then break end
    pop_ready(q, 1)
    dispatch_to(worker_get(w), r, q, nil)
    n = n + 1
  end
end

-- The kind of task `r` (from its body).
local function kind_of(r)
  local ql, kl = byte(r.body, 1, 2)
  return sub(r.body, 7 + ql, 6 + ql + kl)
end

-- Shortest-job-first queues learn the run time of each kind: the moving average
-- floor((7 * average + sample) / 8) of measured run times (backend::next_average).
local function learn_cost(q, r)
  if q.pol ~= P_SJF and q.pol ~= 4 then return end
  local field = 'k:' .. kind_of(r)
  local sample = NOW - (r.tm - r.to)
  local avg = tonumber(call('HGET', q.k_state, field))
  if avg then avg = floor((7 * avg + sample) / 8) else avg = sample end
  call('HSET', q.k_state, field, avg)
end

-- Ends a task in a terminal state (State::finish).
local function finish(r, st, q)
  local ttl = q.rttl
  if st == S_DEAD then
    ttl = q.dttl
    zadd(K_DEAD, '0', format('%s|%012x|%s', q.name, NOW, r.id))
  elseif st == S_CANCELLED then
    call('HINCRBY', K_META, '~n:' .. q.name .. ':' .. S_CANCELLED, '1')
  end
  r.st = st; r.w = ''; r.tm = NOW
  -- The retention score as text, formatted once per queue and call (not once per task).
  local scores = q.done_at
  if not scores then scores = {}; q.done_at = scores end
  local score = scores[ttl]
  if not score then
    score = format('%.0f', NOW + ttl)
    scores[ttl] = score
  end
  zadd(q.k_done, score, r.id)
  rec_put(r)
  if r.fl >= F_AWAITED then
    call('PUBLISH', sub(K_TASKS, 1, -6) .. 'done:' .. r.id, int_text(st))
  end
end

-- Frees the slot a leased task held on its worker (State::release_slot).
local function release(wr, r)
  zrem(K_WTASKS, format('%s|%012x|%s', wr.id, r.tok, r.id))
  unsettle(wr)
  wr.inf = wr.inf - 1
  if r.st == S_DISPATCHED then wr.ib = wr.ib - 1 end
end

-- Starts up to `max` tasks on the worker, appending deliveries {id, queue, token, attempt,
-- max attempts, deadline, timeout, ready since, body} to `out` (State::receive): its inbox in dispatch order, then
-- its pull queues in its order. Advances the receive cursor; returns how many.
local function receive_tasks(wr, max, out)
  local got = 0
  local fresh_only = max > 0 and wr.ib > 0 and wr.ib0 == 0 and wr.fresh ~= nil
  if fresh_only then
    for _, r in ipairs(wr.fresh) do
      if r.st ~= S_DISPATCHED or r.w ~= wr.id then fresh_only = false end
    end
  end
  if fresh_only then
    -- The inbox holds only what this call dispatched, in token order: start it from here.
    local fresh = wr.fresh
    local n = min(max, #fresh)
    wr.ib = wr.ib - n
    for i = 1, n do start(wr, fresh[i], out) end
    got = got + n
    local rest = {}
    for i = n + 1, #fresh do rest[#rest + 1] = fresh[i] end
    wr.fresh = rest
    wr.ib0 = wr.ib
  elseif max > 0 and wr.ib > 0 then
    -- The inbox is read from Redis: apply what this call deferred first.
    flush()
    local inbox = call('ZRANGEBYLEX', K_WTASKS, format('[%s|%012x', wr.id, wr.rc + 1),
      '(' .. wr.id .. '}', 'LIMIT', '0', int_text(max))
    if #inbox > 0 then
      local ids = {}
      for i, m in ipairs(inbox) do ids[i] = sub(m, #wr.id + 15) end
      local vs = call('HMGET', K_TASKS, unpack(ids))
      wr.ib = wr.ib - #ids
      for i, id in ipairs(ids) do start(wr, rec_get(id, vs[i]), out) end
      got = got + #ids
    end
  end
  -- Then the pull queues in the worker's order, each popped once for as many tasks as it can
  -- give (a queue that gives fewer is empty).
  for _, qname in ipairs(wr.queues) do
    if got >= max or not has_free_slot(wr) then break end
    if wr.strs[qname] == T_PULL then
      local q = queue_of(qname)
      if not q.paused then
        for _, r in ipairs(pop_ready(q, min(max - got, wr.cap - wr.inf))) do
          start_pulled(wr, r, next_seq(), out)
          got = got + 1
        end
      end
    end
  end
  return got
end

-- Why the lease (worker `w`, queue `qname`, token `tok`) on record `r` is refused, with the
-- second value of the answer (the state, or -1 without a record); nil when it is current.
local function lease_refusal(r, w, wr, qname, tok)
  if not r then return A_NOT_FOUND, -1 end
  if r.st ~= S_RUNNING then return A_NOT_RUNNING, r.st end
  if r.tok ~= tok or r.w ~= w or r.q ~= qname or not wr then return A_STALE, r.st end
  return nil
end

-- A running attempt ended in failure (State::end_attempt_failed): the slot is released, then
-- the task is cancelled (a cancel was pending), retried after the queue's backoff (allowed and
-- attempts left), or dead; then the worker refills. Returns {1, run_at} | {2} dead | {3}.
local function end_attempt_failed(wr, r, err, retry)
  local q = queue_of(r.q)
  r.e = err
  emit(q, 'failed', r.id, wr.id, err)
  release(wr, r)
  local res
  if r.fl % 2 == F_CANCEL then
    emit(q, 'cancelled', r.id)
    finish(r, S_CANCELLED, q)
    res = {3}
  elseif retry and r.at < r.ma then
    local d
    if r.at - 1 >= 32 then d = q.bm else d = min(q.bb * 2 ^ (r.at - 1), q.bm) end
    set_state(q, 'jit', (q.jit * MINSTD_A) % MINSTD_M)
    local at = NOW + d - q.jit % (floor(d * q.bj / 100) + 1)
    emit(q, 'retried', r.id, nil, format('%.0f', at))
    place(r, q, at, true, NOW)
    res = {1, at}
  else
    emit(q, 'dead', r.id, nil, err)
    finish(r, S_DEAD, q)
    res = {2}
  end
  fill_worker(wr)
  return res
end

-- Removes a worker and sends its tasks back (State::hand_back): its inbox in dispatch order
-- with attempts unchanged, then its running tasks in id order with the attempt counted —
-- cancelled if a cancel was pending, dead if it was the last attempt. Every queue of the
-- worker must be open. Returns the ids handed back.
local function hand_back(wr)
  flush()
  unpark(wr)
  WORKERS[wr.id] = nil
  wr.gone = true
  call('HDEL', K_WORKERS, wr.id)
  call('ZREM', K_HB, wr.id)
  local free = has_free_slot(wr)
  for _, qname in ipairs(wr.queues) do
    local str = wr.strs[qname]
    if str == T_WEIGHTED then
      local field = wr.id .. '|' .. qname
      local m = sub(call('HGET', K_WORKERS, field), BAL_LEN + 1)
      if m ~= '' then call('ZREM', K_FREE, m) end
      call('HDEL', K_WORKERS, field)
    elseif str == T_LL then
      if free then call('ZREM', K_FREE, ll_entry(qname, wr, wr.inf, stamps_of(wr)[qname])) end
    elseif str ~= T_PULL and free then
      call('ZREM', K_FREE, qname .. '|' .. wr.id)
    end
    if str == T_AFFINITY then
      local q = queue_of(qname)
      local pts = {}
      for i = 0, q.vn - 1 do pts[#pts + 1] = wr.id .. '#' .. i end
      call('ZREM', q.k_ring, unpack(pts))
    end
  end
  local entries = call('ZRANGEBYLEX', K_WTASKS, '[' .. wr.id .. '|', '(' .. wr.id .. '}')
  call('ZREMRANGEBYLEX', K_WTASKS, '[' .. wr.id .. '|', '(' .. wr.id .. '}')
  local inbox, running = {}, {}
  for _, m in ipairs(entries) do
    local r = rec_get(sub(m, #wr.id + 15))
    if r.st == S_RUNNING then running[#running + 1] = r else inbox[#inbox + 1] = r end
  end
  sort(running, function(a, b) return a.id < b.id end)
  local returned = {}
  for _, r in ipairs(inbox) do
    returned[#returned + 1] = r.id
    place(r, queue_of(r.q), nil, false, NOW)
  end
  for _, r in ipairs(running) do
    returned[#returned + 1] = r.id
    local q = queue_of(r.q)
    r.e = 'worker ' .. wr.id .. ' was lost during attempt ' .. r.at
    emit(q, 'failed', r.id, wr.id, r.e)
    if r.fl % 2 == F_CANCEL then
      emit(q, 'cancelled', r.id)
      finish(r, S_CANCELLED, q)
    elseif r.at >= r.ma then
      emit(q, 'dead', r.id, nil, r.e)
      finish(r, S_DEAD, q)
    else
      emit(q, 'retried', r.id, nil, format('%.0f', NOW))
      place(r, q, nil, false, NOW)
    end
  end
  return returned
end

-- Checks that the worker's queue list equals the queues opened from ARGV[first ..].
local function check_worker_queues(wr, first, n)
  local same = #wr.queues == n
  for i = 1, n do
    if wr.queues[i] ~= ARGV[first + i - 1] then same = false end
  end
  if not same then fail('SY_STALE', 'worker ' .. wr.id .. ' serves other queues now') end
end

-- The registration a worker's own call names (ARGV[2] the id, ARGV[3] its instance token):
-- SY_UNKNOWN_WORKER if there is none, SY_REPLACED if another instance holds the id
-- (State::check_instance).
local function own_worker()
  local w = name_arg(2, 'worker id')
  local inst = int_arg(3, 'instance token', 1, 2^48 - 1)
  local wr = worker_get(w)
  if not wr then fail('SY_UNKNOWN_WORKER', w) end
  if wr.inst ~= inst then fail('SY_REPLACED', w) end
  return wr, w
end

-- The worker a worker step names (ARGV: now, worker, instance, N, N queue names), its queue
-- groups bound and checked. Maintenance passes instance 0 (it acts on the worker, not as it)
-- and gets nil (and the id) if it is not registered.
local function worker_of_call()
  local nq = int_arg(4, 'queue count', 1, 64)
  local wr, w
  if ARGV[3] == '0' then
    w = name_arg(2, 'worker id')
    wr = worker_get(w)
    if not wr then return nil, w end
  else
    wr, w = own_worker()
  end
  queues_named(5, nq)
  check_worker_queues(wr, 5, nq)
  return wr, w
end

-- Writes what is deferred and replies {count, returned ids..., assignments...}.
local function reply_returned(returned)
  flush()
  local reply = {#returned}
  for _, id in ipairs(returned) do reply[#reply + 1] = id end
  for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
  return reply
end

-- Administration (switchyard_core::admin) ---------------------------------------------------

-- A queue configuration in ARGV[i..i+15] (as declare and reconfigure pass it), checked:
-- the packed CFG, the random generator state and the jitter generator state.
local function config_arg(i)
  local pol = int_arg(i, 'policy', 0, 4)
  local age = int_arg(i + 1, 'aging', 0, 2^24)
  local str = int_arg(i + 2, 'strategy', 0, 5)
  local vn = int_arg(i + 3, 'vnodes', 0, 256)
  if (pol == P_PRIO_AGING or pol == P_SJF_AGING) and age < 1 then fail('SY_INVALID', 'aging: must be at least 1') end
  if str == T_AFFINITY and vn < 1 then fail('SY_INVALID', 'vnodes: must be at least 1') end
  local cfg = spack(CFG, pol, age, str, vn,
    int_arg(i + 4, 'default cost', 0, 2^32 - 1), int_arg(i + 5, 'max attempts', 1, 1000),
    int_arg(i + 6, 'timeout', 1, 2^32 - 1), int_arg(i + 7, 'backoff base', 0, 2^32 - 1),
    int_arg(i + 8, 'backoff max', 0, 2^32 - 1), int_arg(i + 9, 'jitter pct', 0, 100),
    int_arg(i + 10, 'result ttl', 0, MAX_MS), int_arg(i + 11, 'dead ttl', 0, MAX_MS),
    int_arg(i + 12, 'dedup window', 0, MAX_MS), int_arg(i + 15, 'event level', 0, 2))
  return cfg, int_arg(i + 13, 'random state', 1, MINSTD_M - 1), int_arg(i + 14, 'jitter state', 1, MINSTD_M - 1)
end

-- The registered workers that serve queue `name`, sorted, joined by ','  ('' for none).
local function queue_members(name)
  local out = {}
  local all = call('HGETALL', K_WORKERS)
  for i = 1, #all, 2 do
    if not find(all[i], '|', 1, true) then
      local v = all[i + 1]
      local names = sub(v, WREC_LEN + 1, find(v, '|', WREC_LEN + 1, true) - 1)
      if find(',' .. names .. ',', ',' .. name .. ',', 1, true) then out[#out + 1] = all[i] end
    end
  end
  sort(out)
  return concat(out, ',')
end

-- Takes a finished task out of the dead-letter set and the cancelled count (the record and
-- its retention entry are the caller's: maintenance deletes those in batches).
local function unindex_finished(q, r)
  if r.st == S_DEAD then call('ZREM', K_DEAD, format('%s|%012x|%s', q.name, r.tm, r.id)) end
  if r.st == S_CANCELLED then call('HINCRBY', K_META, '~n:' .. q.name .. ':' .. S_CANCELLED, -1) end
end

-- Deletes a finished task's record and its index entries (State::drop_finished).
local function drop_finished(q, r)
  unindex_finished(q, r)
  call('ZREM', q.k_done, r.id)
  call('HDEL', K_TASKS, r.id)
end

-- Cancels a scheduled or retry-scheduled task (State::cancel_waiting).
local function cancel_delayed(q, r)
  call('ZREM', q.k_delayed, format('%012x%s', r.pos, r.id))
  if r.st == S_RETRY then call('HINCRBY', K_META, '~n:' .. q.name .. ':' .. S_RETRY, -1) end
  emit(q, 'cancelled', r.id)
  finish(r, S_CANCELLED, q)
end

-- Per call ------------------------------------------------------------------------------------
-- Starts a call: its keys, arguments and time, and empty per-call state. Every transition
-- function calls it first.
local function begin(keys, args)
  if not call then
    call, sub, format, find, byte, match, gsub, gmatch, spack, sunpack, floor, min, ceil,
      concat, sort, tonumber, tostring, ipairs, pairs, unpack, next = builtins()
  end
  KEYS, ARGV = keys, args
  K_TASKS, K_META, K_WORKERS, K_HB, K_FREE = keys[1], keys[2], keys[3], keys[4], keys[5]
  K_WTASKS, K_DEAD, K_DEDUPX, K_EVENTS = keys[6], keys[7], keys[8], keys[9]
  PENDING = {recs = {}, order = {}, adds = {}, rems = {}, seq = nil, seq_extra = 0, pubs = {}}
  QUEUES, GROUPS, WORKERS, UNSETTLED, ASSIGN = {}, {}, {}, {}, {}
  local a = args[1]
  if a == nil or a == '' then
    local t = call('TIME')
    NOW = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
  else
    NOW = tonumber(a)
    if not NOW or NOW < 0 or NOW > MAX_MS or NOW ~= floor(NOW) then
      fail('SY_INVALID', 'now: expected milliseconds in 0..2^48, got ' .. tostring(a))
    end
  end
end
