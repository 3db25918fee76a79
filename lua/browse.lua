-- browse: one page of the task browser: the tasks of a queue in one state, in the order of the
-- index that holds them, after a cursor (read-only; State::browse).
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue, state code, order (0 oldest
-- first, 1 newest first), limit, kind ('' any), id prefix ('' any), cursor ('' from the start),
-- scan (most index entries examined).
-- Reply: the next cursor ('' when the order ended), the entries examined, then the id and the
-- record of each task on the page.
-- The indexes (docs/redis-layout.md): ready FCFS, a list in sequence order (a cursor is found
-- at the index it was read at, or by binary search by LINDEX); ready by policy, delayed and
-- done, sorted sets by score (cursor `<score>|<member>`, found by rank, or by binary search
-- among the entries of its score when its entry left); dead, parents and wtasks, sets ordered by member
-- (cursor: the member). Each is read in chunks, at most `scan` entries.
local q = queues_open(2, 1)[1]
local st = int_arg(3, 'state', 0, S_WAITING)
local newest = int_arg(4, 'order', 0, 1) == 1
local limit = int_arg(5, 'limit', 1, 100000)
local kind, prefix, cursor = ARGV[6] or '', ARGV[7] or '', ARGV[8] or ''
local scan = int_arg(9, 'scan', 1, 100000)
if #prefix > 26 or find(prefix, '[^0-9A-HJKMNP-TV-Z]') then
  fail('SY_INVALID', 'id prefix: `' .. prefix .. '` cannot start a task id')
end

-- Whether the record `v` of task `id` (from index entry `e`, if read from one) is on the
-- page: in the state, in the queue (wtasks holds every queue's tasks; an FCFS list keeps
-- tombstones, whose record has moved on: its position differs), and passing the filters. Reads the header and the body's
-- names only, not the whole record (this runs for up to `scan` entries a call).
local fcfs = st == S_READY and q.list
local function shown(id, v, e)
  local rst, fl, _, _, _, _, _, pos, _, _, _, wl, el, rl = sunpack(HDR, v)
  if rst ~= st or (fcfs and e and pos ~= tonumber(sub(e[2], 1, 12), 16)) then return false end
  if prefix ~= '' and sub(id, 1, #prefix) ~= prefix then return false end
  local b = HDR_LEN + 1 + wl + el + rl -- the body
  if fl % FLOWS.CHILD >= F_DEADLINE then b = b + 6 end
  -- Bit 128 of the kind's length says a group key follows (lib/groups.lua).
  local qlen, klen = byte(v, b), byte(v, b + 1) % 128
  if sub(v, b + 6, b + 5 + qlen) ~= q.name then return false end
  return kind == '' or sub(v, b + 6 + qlen, b + 5 + qlen + klen) == kind
end

-- A whole id: the task itself, read by its id, not found by walking the index.
if #prefix == 26 then
  local v = call('HGET', K_TASKS, prefix)
  if v and shown(prefix, v, nil) then return {'', 1, prefix, v} end
  return {'', 1}
end

-- A source answers `chunk(n)`: the next up to n entries as {id, member, score (sorted sets by
-- score), index (the FCFS list)}, and `more()`: whether an
-- entry follows the last one answered. The cursor of an entry is its member, `<score>|<member>`
-- where a score orders the set, or `<member>@<index>` in the list; it is written only for the
-- entry a page stops at.
local source

if st == S_DEAD or st == S_WAITING or st == S_DISPATCHED or st == S_RUNNING then
  -- Ordered by member: dead `<queue>|<died at>|<id>`, waiting for children `<queue>|<created
  -- at>|<id>` (lib/flows.lua), wtasks `<worker>|<token>|<id>`.
  local key, lo, hi = K_WTASKS, '-', '+'
  local per_queue = st == S_DEAD or st == S_WAITING
  if per_queue then
    key, lo, hi = K_DEAD, '[' .. q.name .. '|', '(' .. q.name .. '}'
    if st == S_WAITING then key = FLOWS.k_parents end
  end
  local own = q.name .. '|'
  if cursor ~= '' and ((per_queue and sub(cursor, 1, #own) ~= own) or not find(cursor, '|', 1, true)) then
    fail('SY_INVALID', 'cursor: `' .. cursor .. '` is not a cursor of this state')
  end
  local after = cursor
  local function range(n)
    if newest then
      local top = hi
      if after ~= '' then top = '(' .. after end
      return call('ZREVRANGEBYLEX', key, top, lo, 'LIMIT', 0, n)
    end
    local bottom = lo
    if after ~= '' then bottom = '(' .. after end
    return call('ZRANGEBYLEX', key, bottom, hi, 'LIMIT', 0, n)
  end
  source = {
    chunk = function(n)
      local out = {}
      for i, m in ipairs(range(n)) do out[i] = {sub(m, -26), m}; after = m end
      return out
    end,
    more = function() return #range(1) > 0 end,
  }
elseif st == S_READY and q.list then
  -- A list kept in sequence order (tombstones of cancelled tasks included, filtered below).
  local key = q.k_ready
  local len = call('LLEN', key)
  local function seq_at(i) return tonumber(sub(call('LINDEX', key, i), 1, 12), 16) end
  -- Oldest first: the first index past the cursor's sequence; newest first: the last before it.
  local at
  if cursor == '' then
    if newest then at = len - 1 else at = 0 end
  else
    -- The cursor is `<member>@<its index then>`: still there, the page goes on from it (one
    -- LINDEX); moved (tasks left the head meanwhile), a binary search by sequence finds it.
    local m, hint = match(cursor, '^(.+)@(%d+)$')
    local c = m and tonumber(sub(m, 1, 12), 16)
    if not c then fail('SY_INVALID', 'cursor: `' .. cursor .. '` is not a cursor of this state') end
    hint = tonumber(hint)
    if hint < len and call('LINDEX', key, hint) == m then
      if newest then at = hint - 1 else at = hint + 1 end
    else
      local a, b = 0, len -- the first index whose sequence is past c (oldest) or not below it
      while a < b do
        local mid = floor((a + b) / 2)
        local s = seq_at(mid)
        if s > c or (newest and s == c) then b = mid else a = mid + 1 end
      end
      if newest then at = a - 1 else at = a end
    end
  end
  local function range(n)
    if newest then
      if at < 0 then return {} end
      local from = at - n + 1
      if from < 0 then from = 0 end
      local part = call('LRANGE', key, from, at)
      local out = {}
      for i = #part, 1, -1 do out[#out + 1] = part[i] end
      return out
    end
    if at >= len then return {} end
    return call('LRANGE', key, at, at + n - 1)
  end
  source = {
    chunk = function(n)
      local out = {}
      local step = 1
      if newest then step = -1 end
      for i, m in ipairs(range(n)) do out[i] = {sub(m, 13), m, false, at + (i - 1) * step} end
      at = at + #out * step
      return out
    end,
    more = function() if newest then return at >= 0 end return at < len end,
  }
else
  -- Sorted by score, ties by member: ready (policy), delayed (run-at), done (retention end).
  local key, id_from = q.k_done, 1
  if st == S_READY then key, id_from = q.k_ready, 13
  elseif st == S_SCHEDULED or st == S_RETRY then key, id_from = q.k_delayed, 13 end
  local rank = 0
  if cursor ~= '' then
    local s, m = match(cursor, '^([^|]+)|(.+)$')
    local n = s and tonumber(s)
    if not n or n - n ~= 0 then -- not a number, or not a finite one
      fail('SY_INVALID', 'cursor: `' .. cursor .. '` is not a cursor of this state')
    end
    local r
    if newest then r = call('ZREVRANK', key, m) else r = call('ZRANK', key, m) end
    if r then
      rank = r + 1
    else
      -- Its entry left: the entries of its score lie between two counts, ordered by member;
      -- a binary search among them finds the first past the member (O(log n) calls however
      -- many share the score).
      local a, b
      if newest then
        a, b = call('ZCOUNT', key, '(' .. s, '+inf'), call('ZCOUNT', key, s, '+inf')
      else
        a, b = call('ZCOUNT', key, '-inf', '(' .. s), call('ZCOUNT', key, '-inf', s)
      end
      while a < b do
        local mid = floor((a + b) / 2)
        local at
        if newest then at = call('ZREVRANGE', key, mid, mid)[1] else at = call('ZRANGE', key, mid, mid)[1] end
        if (newest and at < m) or (not newest and at > m) then b = mid else a = mid + 1 end
      end
      rank = a
    end
  end
  local function range(n)
    if newest then return call('ZREVRANGE', key, rank, rank + n - 1, 'WITHSCORES') end
    return call('ZRANGE', key, rank, rank + n - 1, 'WITHSCORES')
  end
  source = {
    chunk = function(n)
      local out = {}
      local part = range(n)
      rank = rank + #part / 2
      for i = 1, #part, 2 do out[#out + 1] = {sub(part[i], id_from), part[i], part[i + 1]} end
      return out
    end,
    more = function() return #range(1) > 0 end,
  }
end

local out = {'', 0}
local examined, found = 0, 0
-- Without a filter, an index that holds only this queue's tasks in this state shows each of
-- its entries (but FCFS tombstones): read no more than the page needs. (`done`, `delayed` and
-- `wtasks` hold other states or queues too: read them in full chunks.)
local filtered = kind ~= '' or prefix ~= '' or not (st == S_READY or st == S_DEAD or st == S_WAITING)
while examined < scan do
  local want = scan - examined
  if want > 128 then want = 128 end
  if not filtered and want > limit - found then want = limit - found end
  local part = source.chunk(want)
  if #part == 0 then return out end
  local ids = {}
  for i, e in ipairs(part) do ids[i] = e[1] end
  local raws = call('HMGET', K_TASKS, unpack(ids))
  for i, e in ipairs(part) do
    examined = examined + 1
    out[2] = examined
    local v = raws[i]
    if v and shown(e[1], v, e) then
      out[#out + 1] = e[1]
      out[#out + 1] = v
      found = found + 1
    end
    if found == limit or examined == scan then
      if i < #part or source.more() then
        if e[3] then out[1] = e[3] .. '|' .. e[2]
        elseif e[4] then out[1] = e[2] .. '@' .. e[4]
        else out[1] = e[2] end
      end
      return out
    end
  end
  if #part < want then return out end -- the index ended
end
return out
