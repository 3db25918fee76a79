-- lib/groups.lua: fair share between group keys (the rule: switchyard_core::flow::groups).
-- Rust twin: crates/switchyard-memory/src/state/groups.rs.
--
-- A queue shared between groups has the state field 'g' (its per-group concurrency limit, 0:
-- none; `q.grp`, nil for a plain queue). Its ready set is a ZSET under every policy (FCFS
-- scores are all 0: members sort by sequence number), and beside it:
--   gready ZSET, every score 0: '<group>\0<policy key + 2^52 in 14 hex digits><ready member>',
--          so that one group's ready tasks are a lex range, in the queue's policy order;
--   gring  LIST: the open groups with ready tasks, in the order they joined; the head has the
--          turn (rules 2 and 3);
--   groups HASH: 'w:<group>' its weight (absent: 1), 'a:<group>' its active tasks (absent: 0),
--          't' the dispatches left in the head's turn (absent: its turn has not begun),
--          'u:<group>' the time it is held until (absent: 0), 'n' the last log entry's number,
--          'z' the latest time logged in glog,
--          'k:<group>', 'r:<group>' and 'p:<group>' its own concurrency limit, rate limit and
--          window (absent: the queue's; set by group_limits.lua), 'o' how many groups have own
--          limits (absent: none, and no group's are looked up), 'd:<group>' its scheduled and
--          retry-scheduled tasks (absent: 0; lib/delayed.lua);
--   glog   ZSET, every score 0: '<group>\0<time: 12 hex digits><number: hex>', each group's
--          dispatches still in its rate window (older ones are trimmed when it is next read), a
--          lex range in time order; only with a per-group rate limit (state fields 'gr', 'grw':
--          `q.grmax`, `q.grwin`);
--   gwake  ZSET: a marked group -> the time it opens again (rule 1); maintenance (promote.lua)
--          takes the marks that have come (GROUP.wake_due).
-- A task's group key travels in its body: bit 128 of the kind's length says that a u16 length
-- and the key follow the dedup key ('' without one). Group keys hold no control character
-- (TaskSpecBuilder::build), so '\0' and '\1' bound a group's range.
--
-- A call reads each group's active count and weight, and the turn, at most once, keeps them in
-- the queue's handle (`q.gc`) and writes what changed with `flush` (GROUP.flush): a batch of
-- dispatches and completions costs one write of the hash, not two commands per task.
--
-- Every helper is a field of GROUP (declared in lib/queues.lua): the library's main chunk is at
-- Lua's limit of 200 locals, and the block's own locals are freed at its end.
do
  local OFFSET = 2^52

  -- The group key of task `r` ('' without one).
  function GROUP.of(r)
    local ql, kl, al, dl = sunpack('>BBHH', r.body)
    if kl < 128 then return '' end
    local o = 7 + ql + kl - 128 + al + dl
    return sub(r.body, o + 2, o + 1 + sunpack('>H', r.body, o))
  end

  -- The gready member of ready member `m` (policy key `key`) in group `g`.
  local function member(g, key, m)
    return g .. '\0' .. format('%014x', key + OFFSET) .. m
  end

  -- The first gready member of group `g`, or nil.
  local function first(q, g)
    return call('ZRANGEBYLEX', q.k_gready, '[' .. g .. '\0', '(' .. g .. '\1', 'LIMIT', '0', '1')[1]
  end

  -- This call's view of the groups hash (fields read once, by `field`; those changed since it
  -- was last written in `dirty`), of its group marks (`mk`, `nmarks`), rate windows (`rs`) and
  -- limits (`lim`).
  local function cached(q)
    local c = q.gc
    if not c then
      c = {f = {}, dirty = {}, mk = {}, rs = {}, lim = {}}
      q.gc = c
    end
    return c
  end

  -- A numeric field of the groups hash (`default` when absent).
  local function field(q, f, default)
    local c = cached(q)
    local v = c.f[f]
    if v == nil then
      v = tonumber(call('HGET', q.k_groups, f)) or default
      c.f[f] = v
    end
    return v
  end

  local function set_field(q, f, v)
    local c = cached(q)
    c.f[f] = v
    c.dirty[f] = true
    q.gdirty = true
  end

  local function active(q, g) return field(q, 'a:' .. g, 0) end

  -- Dispatches left in the head's turn (0: its turn has not begun).
  local function turn(q) return field(q, 't', 0) end

  local function set_turn(q, n) set_field(q, 't', n) end

  local function weight(q, g) return field(q, 'w:' .. g, 1) end

  -- Writes the glog entries this call's dispatches logged (one ZADD for a batch of them; from
  -- `GROUP.flush`, and before a read of glog that may need them).
  local function flush_log(q)
    local c = q.gc
    local p = c and c.logp
    if not p then return end
    c.logp = nil
    for i = 1, #p, 4000 do call('ZADD', q.k_glog, unpack(p, i, min(i + 3999, #p))) end
  end

  -- Writes the fields of the groups hash this call changed (from `flush`); 0 removes one.
  function GROUP.flush(q)
    flush_log(q)
    local c = q.gc
    if not (c and q.gdirty) then return end
    local set, del = {}, {}
    for f in pairs(c.dirty) do
      local v = c.f[f]
      if v > 0 then
        set[#set + 1] = f
        set[#set + 1] = v
      else
        del[#del + 1] = f
      end
    end
    if #set > 0 then call('HSET', q.k_groups, unpack(set)) end
    if #del > 0 then call('HDEL', q.k_groups, unpack(del)) end
    c.dirty = {}
    q.gdirty = nil
  end

  -- Whether `g` is marked closed by its rate limit or a hold (rule 1).
  local function marked(q, g)
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
  local function limits(q, g)
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

  -- Below its concurrency limit.
  local function below_limit(q, g)
    local k = limits(q, g).k
    return k == 0 or active(q, g) < k
  end

  -- Rule 1: below its limit, and not marked.
  local function open(q, g)
    return below_limit(q, g) and not marked(q, g)
  end

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

  -- Takes `g` out of the ring; the head loses the rest of its turn. A dispatch only ever takes
  -- out the head, or the tail it just sent there: O(1); a cancel, a mark or a new limit may take
  -- one from the middle (LREM).
  local function leave(q, g)
    q.gnext = nil
    if call('LINDEX', q.k_gring, '0') == g then
      set_turn(q, 0)
      call('LPOP', q.k_gring)
    elseif call('LINDEX', q.k_gring, '-1') == g then
      call('RPOP', q.k_gring)
    else
      call('LREM', q.k_gring, '1', g)
    end
  end

  -- `g` joins the ring at the tail.
  local function join(q, g)
    q.gnext = nil
    call('RPUSH', q.k_gring, g)
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
  local function spend(q, g)
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

  -- Puts ready member `m` of task `r` into the ready set with policy key `key`, and into its
  -- group, which joins the ring if this is its first ready task and it is open (rule 2).
  function GROUP.insert(q, r, key, m)
    q.gnext = nil
    local g = GROUP.of(r)
    local joins = not first(q, g) and open(q, g)
    call('ZADD', q.k_ready, key, m)
    call('ZADD', q.k_gready, '0', member(g, key, m))
    if joins then join(q, g) end
  end

  -- Takes ready member `m` of task `r` out of the ready set and its group (which leaves the
  -- ring with its last ready task).
  function GROUP.remove(q, r, m)
    q.gnext = nil
    local key = call('ZSCORE', q.k_ready, m)
    if not key then return end
    call('ZREM', q.k_ready, m)
    local g = GROUP.of(r)
    call('ZREM', q.k_gready, member(g, tonumber(key), m))
    if not first(q, g) then leave(q, g) end
  end

  -- Gives ready member `m` of task `r` the policy key `to` (a changed priority); its group
  -- keeps its place in the ring.
  function GROUP.rekey(q, r, m, to)
    q.gnext = nil
    local from = tonumber(call('ZSCORE', q.k_ready, m))
    local g = GROUP.of(r)
    call('ZADD', q.k_ready, to, m)
    call('ZREM', q.k_gready, member(g, from, m))
    call('ZADD', q.k_gready, '0', member(g, to, m))
  end

  -- Whether task `r` would be next in line the moment it joined its group: no group is in the
  -- ring and its own is open (State::first_in_line). Then `place` dispatches it on arrival,
  -- without the ready set; the dispatch counts it into its group.
  function GROUP.first_in_line(q, r)
    return call('LLEN', q.k_gring) == 0 and open(q, GROUP.of(r))
  end

  -- The head group and its first two gready members (`q.gnext`, kept for the `take` that
  -- follows a `head`; any other change of the groups drops it), or nil.
  local function next_up(q)
    local n = q.gnext
    if n then return n end
    local g = call('LINDEX', q.k_gring, '0')
    if not g then return nil end
    n = {g = g, two = call('ZRANGEBYLEX', q.k_gready, '[' .. g .. '\0', '(' .. g .. '\1', 'LIMIT', '0', '2')}
    q.gnext = n
    return n
  end

  -- The record of the task the queue dispatches next (rule 3), or nil if no group is in the
  -- ring.
  function GROUP.head(q)
    local n = next_up(q)
    if not n then return nil end
    return rec_get(sub(n.two[1], #n.g + 28))
  end

  -- Counts a task of group `g` in (d = 1: it is dispatched) or out (d = -1) of its active
  -- tasks: a group closed by its limit leaves the ring, one opened (and not marked) with ready
  -- tasks joins it (rules 1 and 2); a dispatch takes a token of its rate limit (`spend`).
  function GROUP.count(q, g, d)
    q.gnext = nil
    local before = active(q, g)
    local after = before + d
    if after < 0 then after = 0 end
    set_field(q, 'a:' .. g, after)
    local k = limits(q, g).k
    if k > 0 then
      local was, is = before >= k, after >= k
      if is and not was then
        leave(q, g)
      elseif was and not is and first(q, g) and not marked(q, g) then
        join(q, g)
      end
    end
    if d > 0 then spend(q, g) end
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

  -- Takes the task `GROUP.head` names out of the ready set and returns its record, counting
  -- it against the head's turn (a used-up turn sends the head to the tail) and into its
  -- group's active tasks: every caller dispatches or starts it in the same call.
  function GROUP.take(q)
    local n = next_up(q)
    if not n then return nil end
    q.gnext = nil
    local g, gm = n.g, n.two[1]
    local m = sub(gm, #g + 16)
    call('ZREM', q.k_gready, gm)
    call('ZREM', q.k_ready, m)
    local left = turn(q)
    if left == 0 then left = weight(q, g) end
    left = left - 1
    if not n.two[2] then
      call('LPOP', q.k_gring)
      left = 0
    elseif left == 0 then
      call('LPOP', q.k_gring)
      call('RPUSH', q.k_gring, g)
    end
    set_turn(q, left)
    GROUP.count(q, g, 1)
    if q.rlen then q.rlen = q.rlen - 1 end
    return rec_get(sub(m, 13))
  end

  -- Counts a scheduled or retry-scheduled task of group `g` in (d = 1) or out (d = -1)
  -- (lib/delayed.lua).
  function GROUP.count_delayed(q, g, d)
    local f = 'd:' .. g
    set_field(q, f, field(q, f, 0) + d)
  end

  -- The waiting tasks of group `g`: ready, scheduled and retry-scheduled (what a bound per
  -- group counts: lib/bounded.lua).
  function GROUP.waiting(q, g)
    return call('ZLEXCOUNT', q.k_gready, '[' .. g .. '\0', '(' .. g .. '\1') + field(q, 'd:' .. g, 0)
  end

  -- Whether the ring holds a group: the queue has a task to dispatch (rule 3).
  function GROUP.any(q)
    return call('LLEN', q.k_gring) > 0
  end

  -- Each group with members in the lex set `key` (gready, glog: '<group>\0...'), by key, with
  -- its count: calls `f(g, n)`.
  local function each_in(key, f)
    local from = '-'
    while true do
      local m = call('ZRANGEBYLEX', key, from, '+', 'LIMIT', '0', '1')[1]
      if not m then return end
      local g = sub(m, 1, find(m, '\0', 1, true) - 1)
      f(g, call('ZLEXCOUNT', key, '[' .. g .. '\0', '(' .. g .. '\1'))
      from = '(' .. g .. '\1'
    end
  end

  -- Each group with ready tasks, by key, with its count: calls `f(g, n)`.
  function GROUP.each_ready(q, f)
    each_in(q.k_gready, f)
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
    each_in(q.k_glog, function(g) rated[g] = true end)
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

  -- Queues::groups: {key, weight, ready, scheduled, active, in ring 0|1, tokens (-1 without a
  -- rate limit), marked until (0: not marked), its own concurrency limit, rate limit and window
  -- (0: the queue's)} for each group with waiting or active tasks, a set weight or own limits,
  -- or a mark, by key. Read-only: a window is counted, not trimmed.
  function GROUP.info(q)
    local seen, keys, ready = {}, {}, {}
    local function add(g)
      if not seen[g] then
        seen[g] = true
        keys[#keys + 1] = g
      end
    end
    GROUP.each_ready(q, function(g, n)
      add(g)
      ready[g] = n
    end)
    local fields = call('HGETALL', q.k_groups)
    local weight, act, delayed = {}, {}, {}
    for i = 1, #fields, 2 do
      local f, v = fields[i], fields[i + 1]
      local kind, g = sub(f, 1, 2), sub(f, 3)
      if kind == 'w:' then
        weight[g] = v
        add(g)
      elseif kind == 'a:' then
        act[g] = v
        add(g)
      elseif kind == 'd:' then
        delayed[g] = v
        add(g)
      elseif kind == 'k:' or kind == 'r:' then
        add(g)
      end
    end
    local marks = call('ZRANGE', q.k_gwake, '0', '-1', 'WITHSCORES')
    local until_ = {}
    for i = 1, #marks, 2 do
      until_[marks[i]] = tonumber(marks[i + 1])
      add(marks[i])
    end
    sort(keys)
    local ring = {}
    for _, g in ipairs(call('LRANGE', q.k_gring, '0', '-1')) do ring[g] = true end
    local out = {}
    for _, g in ipairs(keys) do
      local r, tok = 0, -1
      if ring[g] then r = 1 end
      local l = limits(q, g)
      if l.r > 0 then
        local lo, hi = '[' .. g .. '\0', '(' .. g .. '\1'
        local now = NOW
        local newest = call('ZREVRANGEBYLEX', q.k_glog, hi, lo, 'LIMIT', '0', '1')[1]
        if newest then now = math.max(now, logged_at(g, newest)) end
        local from = '[' .. g .. '\0' .. hex_ms(math.max(0, now - l.w + 1))
        tok = math.max(0, l.r - call('ZLEXCOUNT', q.k_glog, from, hi))
      end
      out[#out + 1] = {g, tonumber(weight[g]) or 1, ready[g] or 0, tonumber(delayed[g]) or 0, tonumber(act[g]) or 0, r, tok,
        until_[g] or 0, field(q, 'k:' .. g, 0), field(q, 'r:' .. g, 0), field(q, 'p:' .. g, 0)}
    end
    return out
  end
end
