-- lib/workers.lua: worker records and their balancer entries (`settle`).
-- Rust twin: crates/switchyard-memory/src/state/workers.rs.

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

-- The channel a worker waits on for wake-ups and hand-offs.
local function wake_channel(wr)
  return channel(CH_WAKE, wr.id)
end

-- Whether anybody listens on the worker's wake channel (State::listening). A parked worker
-- waits there; a killed one's subscription went with its connections, and a hand-off to it
-- would start a task (counting an attempt) that never runs. Asked once per call and worker.
local function listening(wr)
  local l = wr.listens
  if l == nil then
    l = call('PUBSUB', 'NUMSUB', wake_channel(wr))[2] > 0
    wr.listens = l
  end
  return l
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
