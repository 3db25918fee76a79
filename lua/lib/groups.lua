-- lib/groups.lua: fair share between group keys (the rule: switchyard_core::flow::groups): the
-- groups' ready tasks, the ring and its turns, the active counts. When a group is open — its
-- limits, rate windows, marks and holds (rule 1) — is lib/group_limits.lua.
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
-- Every helper is a field of GROUP (declared in lib/queues.lua) or a local of the block: the
-- library's main chunk is at Lua's limit of 200 locals, and the block's own locals are freed at
-- its end. The helpers lib/group_limits.lua shares with this file are GROUP fields too.
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
  function GROUP.first(q, g)
    return call('ZRANGEBYLEX', q.k_gready, '[' .. g .. '\0', '(' .. g .. '\1', 'LIMIT', '0', '1')[1]
  end

  -- This call's view of the groups hash (fields read once, by `field`; those changed since it
  -- was last written in `dirty`), of its group marks (`mk`, `nmarks`), rate windows (`rs`) and
  -- limits (`lim`).
  function GROUP.cached(q)
    local c = q.gc
    if not c then
      c = {f = {}, dirty = {}, mk = {}, rs = {}, lim = {}}
      q.gc = c
    end
    return c
  end

  -- A numeric field of the groups hash (`default` when absent).
  function GROUP.field(q, f, default)
    local c = GROUP.cached(q)
    local v = c.f[f]
    if v == nil then
      v = tonumber(call('HGET', q.k_groups, f)) or default
      c.f[f] = v
    end
    return v
  end

  function GROUP.set_field(q, f, v)
    local c = GROUP.cached(q)
    c.f[f] = v
    c.dirty[f] = true
    q.gdirty = true
  end

  local first, field, set_field = GROUP.first, GROUP.field, GROUP.set_field

  -- Rule 1's helpers, from lib/group_limits.lua, which links them in as it loads: the calls on
  -- the dispatch path stay calls of upvalues, not lookups in GROUP.
  local open, marked, limits, spend, flush_log, tokens
  function GROUP.link(l)
    open, marked, limits, spend, flush_log, tokens = l.open, l.marked, l.limits, l.spend, l.flush_log, l.tokens
  end

  function GROUP.active(q, g) return field(q, 'a:' .. g, 0) end

  -- Dispatches left in the head's turn (0: its turn has not begun).
  local function turn(q) return field(q, 't', 0) end

  local function set_turn(q, n) set_field(q, 't', n) end

  local function weight(q, g) return field(q, 'w:' .. g, 1) end

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

  -- Takes `g` out of the ring; the head loses the rest of its turn. A dispatch only ever takes
  -- out the head, or the tail it just sent there: O(1); a cancel, a mark or a new limit may take
  -- one from the middle (LREM).
  function GROUP.leave(q, g)
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
  function GROUP.join(q, g)
    q.gnext = nil
    call('RPUSH', q.k_gring, g)
  end

  local leave, join = GROUP.leave, GROUP.join

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
    local before = GROUP.active(q, g)
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
  function GROUP.each_in(key, f)
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
    GROUP.each_in(q.k_gready, f)
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
      local r = 0
      if ring[g] then r = 1 end
      out[#out + 1] = {g, tonumber(weight[g]) or 1, ready[g] or 0, tonumber(delayed[g]) or 0, tonumber(act[g]) or 0, r, tokens(q, g),
        until_[g] or 0, field(q, 'k:' .. g, 0), field(q, 'r:' .. g, 0), field(q, 'p:' .. g, 0)}
    end
    return out
  end
end
