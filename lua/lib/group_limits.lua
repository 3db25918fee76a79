-- lib/group_limits.lua: when a group of a shared queue is open (rule 1 of
-- switchyard_core::flow::groups): its concurrency limit, its rate window (glog), its mark
-- (gwake: closed by its last token or a handler's hold until a time, taken off by maintenance),
-- and its own limits in place of the queue's (set_group_limits). The keys and fields are listed
-- in lib/groups.lua.
-- Rust twin: crates/switchyard-memory/src/state/groups/limits.rs.
--
-- Every helper is a GROUP field or a local of the block (lib/groups.lua says why); the ring's
-- and the groups hash's helpers come from lib/groups.lua.
do
  local cached, field, set_field, first, leave, join, active =
    GROUP.cached, GROUP.field, GROUP.set_field, GROUP.first, GROUP.leave, GROUP.join, GROUP.active

  -- Writes the glog entries this call's dispatches logged (one ZADD for a batch of them; from
  -- `GROUP.flush`, and before a read of glog that may need them).
  function GROUP.flush_log(q)
    local c = q.gc
    local p = c and c.logp
    if not p then return end
    c.logp = nil
    for i = 1, #p, 4000 do call('ZADD', q.k_glog, unpack(p, i, min(i + 3999, #p))) end
  end

  -- Whether `g` is marked closed by its rate limit or a hold (rule 1).
  function GROUP.marked(q, g)
    local c = cached(q)
    if c.nmarks == nil then c.nmarks = call('ZCARD', q.k_gwake) end
    if c.nmarks == 0 then return false end
    local m = c.mk[g]
    if m == nil then
      m = call('ZSCORE', q.k_gwake, g) ~= false
      c.mk[g] = m
    end
    return m
  end

  -- Marks `g` until `at`, or (at 0) takes its mark off; a new mark wakes the maintenance loops
  -- sleeping until a later time.
  local function set_mark(q, g, at)
    local c = cached(q)
    c.nmarks = nil
    c.mk[g] = at > 0
    if at > 0 then
      call('ZADD', q.k_gwake, at, g)
      call('PUBLISH', channel(CH_DUE), at)
    else
      call('ZREM', q.k_gwake, g)
    end
  end

  -- Group `g`'s limits (Groups::limits): {k: concurrency (0: none), r: rate (0: none), w: its
  -- window}, its own where set, the queue's otherwise; read once per call.
  function GROUP.limits(q, g)
    local c = cached(q)
    local l = c.lim[g]
    if l then return l end
    l = {k = q.grp, r = q.grmax, w = q.grwin}
    if field(q, 'o', 0) > 0 then
      local k, r = field(q, 'k:' .. g, 0), field(q, 'r:' .. g, 0)
      if k > 0 then l.k = k end
      if r > 0 then l.r, l.w = r, field(q, 'p:' .. g, 0) end
    end
    c.lim[g] = l
    return l
  end

  local flush_log, limits, marked = GROUP.flush_log, GROUP.limits, GROUP.marked

  -- Below its concurrency limit.
  local function below_limit(q, g)
    local k = limits(q, g).k
    return k == 0 or active(q, g) < k
  end

  -- Rule 1: below its limit, and not marked.
  function GROUP.open(q, g)
    return below_limit(q, g) and not marked(q, g)
  end

  local open = GROUP.open

  local function hex_ms(t) return format('%012x', t) end

  -- The time in a glog entry of group `g`.
  local function logged_at(g, entry)
    return tonumber(sub(entry, #g + 2, #g + 13), 16)
  end

  -- Group `g`'s rate window in this call (Rate::window): read once, trimming the entries that
  -- left it; {now: the time it counts at (NOW, never before its newest entry), tok: tokens
  -- left}, then counted locally. Its newest entry is read only when some entry of the queue is
  -- later than NOW (the groups hash's 'z': the latest logged time; another process's clock, a
  -- primary whose clock is behind after a failover).
  local function window(q, g)
    local c = cached(q)
    local s = c.rs[g]
    if s then return s end
    local lo, hi = '[' .. g .. '\0', '(' .. g .. '\1'
    local now = NOW
    if field(q, 'z', 0) > NOW then
      local newest = call('ZREVRANGEBYLEX', q.k_glog, hi, lo, 'LIMIT', '0', '1')[1]
      if newest and logged_at(g, newest) > now then now = logged_at(g, newest) end
    end
    local l = limits(q, g)
    local horizon = now - l.w + 1
    if horizon > 0 then call('ZREMRANGEBYLEX', q.k_glog, lo, '(' .. g .. '\0' .. hex_ms(horizon)) end
    s = {now = now, tok = l.r - call('ZLEXCOUNT', q.k_glog, lo, hi)}
    c.rs[g] = s
    return s
  end

  -- The oldest entry of `g`'s window still counting (read after `window` trimmed it), or nil.
  local function oldest(q, g)
    flush_log(q)
    local first = call('ZRANGEBYLEX', q.k_glog, '[' .. g .. '\0', '(' .. g .. '\1', 'LIMIT', '0', '1')[1]
    return first and logged_at(g, first)
  end

  -- When `g` opens again, seen at NOW (flow::rate::opens_at with its window and hold).
  local function opens_at(q, g)
    local at = NOW
    local l = limits(q, g)
    if l.r > 0 then
      if window(q, g).tok <= 0 then
        local first = oldest(q, g)
        if first then at = first + l.w end
      end
    end
    local hold = field(q, 'u:' .. g, 0)
    if hold > at then at = hold end
    return at
  end

  -- Marks `g` with the time it opens again, if that is after NOW: it leaves the ring
  -- (Groups::mark). Whether it was marked.
  local function mark(q, g)
    local at = opens_at(q, g)
    if at <= NOW then return false end
    set_mark(q, g, at)
    leave(q, g)
    return true
  end

  -- A dispatch of `g`'s task takes a token of its rate limit (Groups::spend): its time joins
  -- the log, and the last token marks it.
  function GROUP.spend(q, g)
    if limits(q, g).r == 0 then return end
    local s = window(q, g)
    s.tok = s.tok - 1
    local n = field(q, 'n', 0) + 1
    set_field(q, 'n', n)
    if s.now > field(q, 'z', 0) then set_field(q, 'z', s.now) end
    local c = cached(q)
    local p = c.logp
    if not p then
      p = {}
      c.logp = p
    end
    p[#p + 1] = '0'
    p[#p + 1] = g .. '\0' .. hex_ms(s.now) .. format('%x', n)
    if s.tok <= 0 then mark(q, g) end
  end

  -- A handler of a task of group `g` asked to hold it for `ms` (throttle.lua in a shared
  -- queue): held until NOW + ms (or later, if it was held longer) and marked. The time it is
  -- held until.
  function GROUP.hold(q, g, ms)
    local f = 'u:' .. g
    local h = field(q, f, 0)
    if NOW + ms > h then
      h = NOW + ms
      set_field(q, f, h)
    end
    mark(q, g)
    return h
  end

  -- Maintenance: the marks that have come, by (time, group), go; a group still closed is marked
  -- again, an open one with ready tasks joins the ring (Groups::wake_due). Whether any went.
  function GROUP.wake_due(q)
    local due = call('ZRANGEBYSCORE', q.k_gwake, '-inf', NOW)
    for _, g in ipairs(due) do
      set_mark(q, g, 0)
      if not mark(q, g) then
        if field(q, 'u:' .. g, 0) > 0 then set_field(q, 'u:' .. g, 0) end
        if first(q, g) and below_limit(q, g) then join(q, g) end
      end
    end
    return #due > 0
  end

  -- Clears group `g`'s rate log (a new window).
  local function clear_log(q, g)
    flush_log(q)
    call('ZREMRANGEBYLEX', q.k_glog, '[' .. g .. '\0', '(' .. g .. '\1')
    cached(q).rs[g] = nil
  end

  -- Reconfigure gave the queue new per-group limits (`q.grp`, `q.grmax`, `q.grwin`; the window
  -- was `old_win`): a new window starts afresh the log of each group without its own rate
  -- limit; each group with a log or a mark is marked again, by key, as now configured; then
  -- the groups no longer open leave the ring, and those open with ready tasks and out of it
  -- join, by key (State::groups_reconfigured).
  function GROUP.relimit(q, old_win)
    flush_log(q)
    local rated, list = {}, {}
    for _, g in ipairs(call('ZRANGE', q.k_gwake, '0', '-1')) do rated[g] = true end
    GROUP.each_in(q.k_glog, function(g) rated[g] = true end)
    if old_win ~= q.grwin then
      for g in pairs(rated) do
        if field(q, 'r:' .. g, 0) == 0 then clear_log(q, g) end
      end
    end
    for g in pairs(rated) do list[#list + 1] = g end
    sort(list)
    for _, g in ipairs(list) do
      set_mark(q, g, 0)
      mark(q, g)
    end
    local ring = {}
    for _, g in ipairs(call('LRANGE', q.k_gring, '0', '-1')) do
      if open(q, g) then ring[g] = true else leave(q, g) end
    end
    GROUP.each_ready(q, function(g)
      if not ring[g] and open(q, g) then join(q, g) end
    end)
  end

  -- Queues::set_group_limits: group `g`'s own limits `k` (concurrency), `r` and `w` (rate and
  -- window), each 0 for the queue's, replace its old ones; a new rate window starts its log
  -- afresh; it is marked again as now limited, then leaves the ring if it is no longer open,
  -- or joins it if it is open with ready tasks (the caller takes the queue up).
  function GROUP.set_limits(q, g, k, r, w)
    local old = limits(q, g)
    local had = field(q, 'k:' .. g, 0) > 0 or field(q, 'r:' .. g, 0) > 0
    local has = k > 0 or r > 0
    set_field(q, 'k:' .. g, k)
    set_field(q, 'r:' .. g, r)
    set_field(q, 'p:' .. g, w)
    if had ~= has then
      local n = field(q, 'o', 0)
      if has then n = n + 1 else n = n - 1 end
      set_field(q, 'o', n)
    end
    local c = cached(q)
    c.lim[g] = nil
    local new = limits(q, g)
    if (old.r > 0 and old.w or 0) ~= (new.r > 0 and new.w or 0) then clear_log(q, g) end
    set_mark(q, g, 0)
    mark(q, g)
    local in_ring = call('LPOS', q.k_gring, g) ~= false
    if in_ring and not open(q, g) then
      leave(q, g)
    elseif not in_ring and open(q, g) and first(q, g) then
      join(q, g)
    end
  end

  -- The tokens left in group `g`'s rate window (-1 without a rate limit), counted without
  -- trimming it (GROUP.info: read-only).
  function GROUP.tokens(q, g)
    local l = limits(q, g)
    if l.r == 0 then return -1 end
    local lo, hi = '[' .. g .. '\0', '(' .. g .. '\1'
    local now = NOW
    local newest = call('ZREVRANGEBYLEX', q.k_glog, hi, lo, 'LIMIT', '0', '1')[1]
    if newest then now = math.max(now, logged_at(g, newest)) end
    local from = '[' .. g .. '\0' .. hex_ms(math.max(0, now - l.w + 1))
    return math.max(0, l.r - call('ZLEXCOUNT', q.k_glog, from, hi))
  end

  GROUP.link(GROUP)
end
