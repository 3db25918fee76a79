-- lib/admin.lua: helpers of the administration calls (switchyard_core::admin).
-- Rust twin: crates/switchyard-memory/src/state/admin.rs.

-- The helpers that only declare, reconfigure and delete_queue use are fields of one table: the
-- library's main chunk is at Lua's limit of 200 locals.
local ADMIN = {}

-- A queue configuration in ARGV[i..i+25] (as declare and reconfigure pass it), checked:
-- the packed CFG, the random generator state, the jitter generator state, its limits
-- {mw: the bound on waiting tasks (0: unbounded; lib/bounded.lua), cl: the concurrency limit
-- (0: none; lib/concurrency.lua), rmax and rwin: the rate limit (0: none; lib/rate.lua),
-- kf and kd: how many finished and dead tasks it keeps (-1: all; purge.lua), dm: the dedup
-- mode (0 throttle, 1 debounce; submit.lua), g: shared between groups (-1: not; else the
-- per-group concurrency limit, 0 none), gr and grw: the per-group rate limit (0: none;
-- lib/groups.lua)}, and the index of the argument after them.
function ADMIN.config_arg(i)
  local pol = int_arg(i, 'policy', 0, 5)
  local age = int_arg(i + 1, 'aging', 0, 2^24)
  if pol == P_EDF and age > 1 then fail('SY_INVALID', 'expire late: expected 0 or 1, got ' .. age) end
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
  local limits = {mw = int_arg(i + 16, 'max waiting', 0, 2^32 - 1),
    cl = int_arg(i + 17, 'concurrency', 0, 2^32 - 1), rmax = int_arg(i + 18, 'rate limit', 0, 100000),
    rwin = int_arg(i + 19, 'rate limit window', 0, 86400000),
    kf = int_arg(i + 20, 'keep finished', -1, 2^32 - 1), kd = int_arg(i + 21, 'keep dead', -1, 2^32 - 1),
    dm = int_arg(i + 22, 'dedup mode', 0, 1), g = int_arg(i + 23, 'group concurrency', -1, 2^32 - 1),
    gr = int_arg(i + 24, 'group rate limit', 0, 100000), grw = int_arg(i + 25, 'group rate limit window', 0, 86400000),
    gm = int_arg(i + 26, 'group max waiting', 0, 2^32 - 1)}
  if (limits.rmax == 0) ~= (limits.rwin == 0) then
    fail('SY_INVALID', 'rate limit: give both the count and the window, or neither')
  end
  if (limits.gr == 0) ~= (limits.grw == 0) then
    fail('SY_INVALID', 'group rate limit: give both the count and the window, or neither')
  end
  if limits.gr > 0 and limits.g < 0 then
    fail('SY_INVALID', 'group rate limit: the queue does not share between groups')
  end
  if limits.gm > 0 and limits.g < 0 then
    fail('SY_INVALID', 'group max waiting: the queue does not share between groups')
  end
  return cfg, int_arg(i + 13, 'random state', 1, MINSTD_M - 1), int_arg(i + 14, 'jitter state', 1, MINSTD_M - 1),
    limits, i + 27
end

-- Stores a queue's limits (from `config_arg`) in its state hash: fields 'm' (bound), 'l'
-- (concurrency), 'r' and 'rw' (rate limit and window), 'kf' and 'kd' (retention counts), 'dm'
-- (1: debounce), 'g' (shared between groups: the per-group limit, 0 none; lib/groups.lua),
-- 'gr' and 'grw' (the per-group rate limit and window), 'gm' (the bound per group;
-- lib/bounded.lua); absent: none (throttle, not shared).
function ADMIN.store_limits(k_state, limits)
  if limits.mw > 0 then call('HSET', k_state, 'm', limits.mw) else call('HDEL', k_state, 'm') end
  if limits.cl > 0 then call('HSET', k_state, 'l', limits.cl) else call('HDEL', k_state, 'l') end
  if limits.rmax > 0 then
    call('HSET', k_state, 'r', limits.rmax, 'rw', limits.rwin)
  else
    call('HDEL', k_state, 'r', 'rw')
  end
  if limits.kf >= 0 then call('HSET', k_state, 'kf', limits.kf) else call('HDEL', k_state, 'kf') end
  if limits.kd >= 0 then call('HSET', k_state, 'kd', limits.kd) else call('HDEL', k_state, 'kd') end
  if limits.dm > 0 then call('HSET', k_state, 'dm', limits.dm) else call('HDEL', k_state, 'dm') end
  if limits.g >= 0 then call('HSET', k_state, 'g', limits.g) else call('HDEL', k_state, 'g') end
  if limits.gr > 0 then
    call('HSET', k_state, 'gr', limits.gr, 'grw', limits.grw)
  else
    call('HDEL', k_state, 'gr', 'grw')
  end
  if limits.gm > 0 then call('HSET', k_state, 'gm', limits.gm) else call('HDEL', k_state, 'gm') end
end

-- The registered workers that serve queue `name`, sorted, joined by ','  ('' for none).
function ADMIN.queue_members(name)
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

-- Takes a finished task out of the dead-letter set and the cancelled count, and deletes its
-- flow fields (lib/flows.lua) (the record and its retention entry are the caller's:
-- maintenance deletes those in batches).
local function unindex_finished(q, r)
  if r.st == S_DEAD then call('ZREM', K_DEAD, format('%s|%012x|%s', q.name, r.tm, r.id)) end
  if r.st == S_CANCELLED or r.st == S_EXPIRED then call('HINCRBY', K_META, '~n:' .. q.name .. ':' .. r.st, -1) end
  if r.fl >= FLOWS.CHILD then FLOWS.forget(r) end
end

-- Deletes a finished task's record and its index entries (State::drop_finished).
local function drop_finished(q, r)
  unindex_finished(q, r)
  call('ZREM', q.k_done, r.id)
  call('HDEL', K_TASKS, r.id, progress_field(r.id))
end

-- Cancels a scheduled or retry-scheduled task (State::cancel_waiting).
local function cancel_delayed(q, r)
  DELAYED.remove(q, r)
  emit(q, 'cancelled', r.id)
  finish(r, S_CANCELLED, q)
end

-- Cancels a task that has not started: scheduled, retry-scheduled or ready
-- (State::cancel_waiting).
function ADMIN.cancel_waiting(q, r)
  if r.st ~= S_READY then return cancel_delayed(q, r) end
  if q.grp then
    GROUP.remove(q, r, format('%012x%s', r.pos, r.id))
  elseif q.list then
    set_state(q, 'tomb', q.tomb + 1)
  else
    call('ZREM', q.k_ready, format('%012x%s', r.pos, r.id))
  end
  emit(q, 'cancelled', r.id)
  finish(r, S_CANCELLED, q)
end

-- Reconfigure sets the limit `cl` (0: none) on `q`: a new limit starts from the queue's active
-- tasks counted now (every leased task's record is read: at most the workers' total capacity);
-- without one the count is dropped.
function ADMIN.count_for_limit(q, cl)
  if cl > 0 and q.cl == 0 then
    local n = 0
    for _, m in ipairs(call('ZRANGEBYLEX', K_WTASKS, '-', '+')) do
      local r = rec_get(match(m, '|%x+|(.*)$'))
      if r and r.q == q.name then n = n + 1 end
    end
    call('HSET', q.k_state, 'a', n)
  elseif cl == 0 then
    call('HDEL', q.k_state, 'a')
  end
end

-- Reconfigure: a queue that expires late tasks now announces the deadline at the head of its
-- ready set; one that no longer does drops its mark.
function ADMIN.reconfigure_expiry(q)
  if not q.xp then
    if q.xm > 0 then
      q.xm = 0
      q.xm_dirty = true
    end
    return
  end
  flush_ready(q)
  local head = call('ZRANGE', q.k_ready, '0', '0', 'WITHSCORES')
  if head[2] then mark_expiry(q, tonumber(head[2])) end
end
