-- lib/queues.lua: a queue's configuration and state, its ready set.
-- Rust twin: crates/switchyard-memory/src/state/queues.rs.

-- Queues --------------------------------------------------------------------------------------
-- config: policy aging strategy vnodes default_cost max_attempts timeout backoff_base
--         backoff_max jitter_pct result_ttl dead_ttl dedup_window
local GROUPS   -- queue name -> its key group's number in KEYS
-- Fair share between group keys: its helpers, one table (lib/groups.lua), declared here for
-- the ready set's helpers below.
local GROUP = {}

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
  local b = NFIXED + (g - 1) * GROUP_KEYS
  local k_state = KEYS[b + 1]
  local v = call('HMGET', k_state, 'c', 'd', 'p', 'm', 'l', 'a', 'r', 'rw', 'u', 't', 'xm', 'g', 'gr', 'grw')
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
       k_ring = KEYS[b + 4], k_done = KEYS[b + 5], k_rate = KEYS[b + 6], k_groups = KEYS[b + 7],
       k_gready = KEYS[b + 8], k_gring = KEYS[b + 9], k_glog = KEYS[b + 10], k_gwake = KEYS[b + 11],
       grmax = tonumber(v[13]) or 0, grwin = tonumber(v[14]) or 0, pol = c[1], age = c[2], str = c[3],
       vn = c[4], dcost = c[5], matt = c[6], tmo = c[7], bb = c[8], bm = c[9], bj = c[10],
       rttl = c[11], dttl = c[12], dwin = c[13], ev = c[14], tomb = tomb, rng = rng, jit = jit,
       vt = vt, ep = ep, cur = cur, rlen = false, dirty = false, paused = v[3] == '1',
       none_parked = false, mw = tonumber(v[4]) or 0, cl = tonumber(v[5]) or 0,
       act = tonumber(v[6]) or 0, rmax = tonumber(v[7]) or 0, rwin = tonumber(v[8]) or 0,
       hold = tonumber(v[9]) or 0, wake = tonumber(v[10]) or 0,
       xp = c[1] == P_EDF and c[2] == 1, xm = tonumber(v[11]) or 0, grp = tonumber(v[12]),
       list = c[1] == P_FCFS and not v[12]}
  QUEUES[name] = q
  return q
end

-- Whether queue `q` may dispatch now: not paused, not held at its concurrency limit (`cl`,
-- 0: none) by its active tasks (`act`), and with a token of its rate limit and no hold
-- (lib/rate.lua; Queue::dispatches).
local function dispatches(q)
  return not q.paused and (q.cl == 0 or q.act < q.cl) and rate_open(q)
end

-- At most `n`, and no more than `q`'s concurrency limit and rate tokens leave room for.
local function room(q, n)
  if q.cl > 0 and q.cl - q.act < n then n = q.cl - q.act end
  if q.rmax > 0 and rate_tokens(q) < n then n = rate_tokens(q) end
  return n
end

-- Counts task `r` of `q` in (d = 1) or out (d = -1) of its active tasks: kept (field 'a',
-- written by `flush`) for queues with a concurrency limit only (lib/concurrency.lua counts
-- them when a limit is set). A shared queue's group counts its task out here, in when
-- `GROUP.take` takes it.
local function count_active(q, d, r)
  if q.cl > 0 then
    q.act = q.act + d
    q.act_dirty = true
  end
  if d < 0 and q.grp then GROUP.count(q, GROUP.of(r), -1) end
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
  if q.list then
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

-- How many more tasks the current receive may take after the pop it makes now (complete.lua
-- sets it while each lease's receive runs; 0 otherwise): `pop_ready` takes them from Redis in
-- the same command and keeps them ahead (`q.ahead`), served by the next pops of the call. What
-- is left goes back to the head of the set, in order (`unpop`), before anything else reads or
-- changes the set, so the pops answer exactly as separate pops would.
local POP_AHEAD = 0

-- Puts the entries popped ahead and not served back at the head of the ready set, in order.
local function unpop(q)
  local a = q.ahead
  if not a then return end
  q.ahead = nil
  local back = {}
  if q.list then
    -- LPUSH puts each argument at the head in turn: the last entry first.
    for j = #a.ms, a.i, -1 do back[#back + 1] = a.ms[j] end
    for i = 1, #back, 4000 do
      call('LPUSH', q.k_ready, unpack(back, i, min(i + 3999, #back)))
    end
  else
    for j = a.i, #a.ms do
      back[#back + 1] = a.scores[j]
      back[#back + 1] = a.ms[j]
    end
    for i = 1, #back, 4000 do
      call('ZADD', q.k_ready, unpack(back, i, min(i + 3999, #back)))
    end
  end
end

-- Brings queue `q`'s ready set in Redis up to date: the entries popped ahead back in place,
-- then the ready entries this call pushed.
local function flush_ready(q)
  unpop(q)
  local p = q.push
  if p then
    q.push = nil
    local cmd = 'ZADD'
    if q.list then cmd = 'RPUSH' end
    for i = 1, #p, 4000 do
      call(cmd, q.k_ready, unpack(p, i, min(i + 3999, #p)))
    end
  end
end

-- The expiry mark of a queue that expires late tasks (lib/deadline.lua) -------------------
-- A task with deadline `dl` joined the ready set of `q`: if it is earlier than the last
-- deadline announced, or that one has come, it is announced (written by `flush`, which wakes
-- the maintenance loops: they read the head of the ready set again). When the last one has
-- come, the earliest deadline waiting is announced if it is earlier than `dl` (the mark never
-- passes a waiting deadline: the audit checks it).
local function mark_expiry(q, dl)
  if not q.xp or dl <= 0 or dl >= MAX_MS then return end
  if q.xm <= NOW then
    flush_ready(q)
    local head = call('ZRANGE', q.k_ready, '0', '0', 'WITHSCORES')
    if head[2] and tonumber(head[2]) < dl then dl = tonumber(head[2]) end
  elseif dl >= q.xm then
    return
  end
  q.xm = dl
  q.xm_dirty = true
end

-- Writes the expiry mark (from `flush`).
local function flush_expiry(q)
  if not q.xm_dirty then return end
  q.xm_dirty = nil
  write_due(q, 'xm', q.xm)
end

-- FCFS: puts entry `m` (sequence number `order`) into the ready list at its place in sequence
-- order, which the list keeps: for a task returned from a worker (`place` with `keep`). The
-- entries before its place are older returns, so the search from the head is short.
local function insert_ready(q, order, m)
  flush_ready(q)
  local from = 0
  while true do
    local window = call('LRANGE', q.k_ready, int_text(from), int_text(from + 31))
    if #window == 0 then break end
    for _, e in ipairs(window) do
      if tonumber(sub(e, 1, 12), 16) > order then
        call('LINSERT', q.k_ready, 'BEFORE', e, m)
        return
      end
    end
    from = from + #window
  end
  call('RPUSH', q.k_ready, m)
end

-- Live entries in the queue's ready set (read once per call, then counted locally).
local function ready_len(q)
  if not q.rlen then
    flush_ready(q)
    if q.list then q.rlen = call('LLEN', q.k_ready) - q.tomb else q.rlen = call('ZCARD', q.k_ready) end
  end
  return q.rlen
end

-- Removes and returns the records of up to `k` (>= 1) minimum ready tasks of the queue, in
-- order (an empty list if there are none). FCFS lists keep entries of cancelled tasks (counted
-- in `tomb`), skipped here. Serves the entries popped ahead first (see POP_AHEAD), unless this
-- call pushed to the set since, or they are too few.
local function pop_ready(q, k)
  local out = {}
  if q.rlen == 0 then return out end
  if q.grp then
    -- A shared queue: by the ring, one at a time (each taken task counts against its group).
    while #out < k do
      local r = GROUP.take(q)
      if not r then break end
      out[#out + 1] = r
    end
    return out
  end
  local a = q.ahead
  if a and (q.push or #a.ms - a.i + 1 < k) then
    unpop(q)
    a = nil
  end
  if not a then
    flush_ready(q)
    if q.list and q.tomb > 0 then
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
      if #out < k then q.rlen = 0 elseif q.rlen then q.rlen = q.rlen - #out end
      return out
    end
    local want = k + POP_AHEAD
    local ms, scores = {}, {}
    if not q.list then
      local top = call('ZPOPMIN', q.k_ready, int_text(want))
      for i = 1, #top, 2 do
        ms[#ms + 1] = top[i]
        scores[#scores + 1] = top[i + 1]
      end
    elseif want == 1 then
      ms = {call('LPOP', q.k_ready)}
    else
      ms = call('LPOP', q.k_ready, int_text(want)) or {}
    end
    if not ms[1] then ms = {} end
    local ids, raws = {}, {}
    for i, m in ipairs(ms) do ids[i] = sub(m, 13) end
    if #ids > 0 then raws = call('HMGET', K_TASKS, unpack(ids)) end
    -- Fewer than asked: the set is empty but for these.
    if #ms < want then q.rlen = #ms end
    a = {ms = ms, scores = scores, ids = ids, raws = raws, read_at = flushes, i = 1}
    q.ahead = a
  end
  local n = min(k, #a.ms - a.i + 1)
  for j = a.i, a.i + n - 1 do
    local id = a.ids[j]
    local raw = PENDING.recs[id]
    if not raw and a.read_at == flushes then raw = a.raws[j] end
    out[#out + 1] = rec_get(id, raw)
  end
  a.i = a.i + n
  if a.i > #a.ms then q.ahead = nil end
  if q.rlen then q.rlen = q.rlen - n end
  return out
end
