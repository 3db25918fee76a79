-- lib/flows.lua: a flow's tree — its tasks' links, a child's end counted in its parent by the
-- child's id, and the settle entries that carry out what the ends decide (the rules:
-- switchyard_core::tree). Used by finish (lib/records.lua), drop_finished (lib/admin.lua),
-- submit_flow.lua, settle.lua, cancel.lua and children.lua.
-- Rust twin: crates/switchyard-memory/src/state/flows.rs.
--
-- Fields of the task hash (K_TASKS): 'fp:<child>' -> '<parent id><policy digit>' (0 fail the
-- parent, 1 ignore, 2 continue: tree::OnFailure); 'fc:<parent>' -> its children, 27 characters
-- each (id, policy digit), in the order submitted; 'fn:<parent>' -> how many of them have no end
-- counted; 'fe:<parent>|<child>' -> the child's end as counted: its state code ('>B'), then its
-- result (succeeded) or error (dead). A child's record has flag FLOWS.CHILD, a parent's
-- FLOWS.PARENT.

-- The helpers are held in a block, so that they take none of the main chunk's 200 local slots.
do
  -- The entry of a task waiting for its children in FLOWS.k_parents.
  local function parent_member(r)
    return format('%s|%012x|%s', r.q, r.cr, r.id)
  end

  -- Task `r` leaves the state waiting for its children (finish, or released by settle.lua).
  function FLOWS.unindex(r)
    call('ZREM', FLOWS.k_parents, parent_member(r))
  end

  -- Stores task `r` of a flow (its record is the caller's): `parent` (nil: the root) and its
  -- policy, and `children` ('fc:' text, '' for a leaf). A task with children waits for them; a
  -- `staged` one (a wide flow's, rule 6) waits in no index until settle makes it seen.
  function FLOWS.link(r, parent, policy, children, staged)
    if parent then
      r.fl = r.fl + FLOWS.CHILD
      call('HSET', K_TASKS, 'fp:' .. r.id, parent .. policy)
    end
    if children ~= '' then
      r.fl = r.fl + FLOWS.PARENT
      call('HSET', K_TASKS, 'fc:' .. r.id, children, 'fn:' .. r.id, #children / 27)
    end
    if staged then
      r.fl = r.fl + FLOWS.STAGED
      r.st = S_WAITING
    elseif children ~= '' then
      r.st = S_WAITING
      call('ZADD', FLOWS.k_parents, 0, parent_member(r))
    end
  end

  -- A settle entry due at `at` (settle_add: now; tree::settle_entry); an entry already waiting
  -- keeps its time. Wakes the maintenance loops (Backend::sleep_until_due).
  function FLOWS.settle_at(entry, at)
    if call('ZADD', FLOWS.k_settle, 'NX', at, entry) == 1 then
      call('PUBLISH', channel(CH_DUE), at)
    end
  end
  local function settle_add(entry)
    FLOWS.settle_at(entry, NOW)
  end

  -- Rules 2 and 3: child `r` reached terminal state `st` (called by finish).
  function FLOWS.child_ended(r, st)
    if r.fl % FLOWS.PARENT < FLOWS.CHILD then return end
    local up = call('HGET', K_TASKS, 'fp:' .. r.id)
    if not up then return end
    local parent, policy = sub(up, 1, 26), sub(up, 27)
    local p = rec_get(parent)
    if not p then return end
    local result = ''
    if st == S_SUCCEEDED then result = r.res elseif st == S_DEAD then result = r.e end
    -- Counted by the child's id: a later end of the same child finds its field set.
    if call('HSETNX', K_TASKS, 'fe:' .. parent .. '|' .. r.id, spack('>B', st) .. result) == 0 then
      return
    end
    local open = call('HINCRBY', K_TASKS, 'fn:' .. parent, -1)
    if p.st ~= S_WAITING then return end
    local failed = st ~= S_SUCCEEDED
    if failed and policy == '0' then
      settle_add('f|' .. p.q .. '|' .. parent .. '|' .. r.id)
    elseif (failed and policy == '2') or open == 0 then
      settle_add('r|' .. p.q .. '|' .. parent)
    end
  end

  -- The children of `id` ('fc:' split): ids and policy digits.
  function FLOWS.children(id)
    local list = call('HGET', K_TASKS, 'fc:' .. id) or ''
    local ids, policies = {}, {}
    for i = 1, #list, 27 do
      ids[#ids + 1] = sub(list, i, i + 25)
      policies[#policies + 1] = sub(list, i + 26, i + 26)
    end
    return ids, policies
  end

  -- Calls `f` with `list` in chunks of at most 1000 (unpack's stack is bounded).
  local function in_chunks(list, f)
    for from = 1, #list, 1000 do
      local chunk = {}
      for i = from, min(from + 999, #list) do chunk[#chunk + 1] = list[i] end
      f(chunk, from)
    end
  end

  -- HMGET of `fields` of the task hash.
  function FLOWS.hmget(fields)
    local out = {}
    in_chunks(fields, function(chunk, from)
      local got = call('HMGET', K_TASKS, unpack(chunk))
      for i = 1, #chunk do out[from + i - 1] = got[i] end
    end)
    return out
  end

  -- Rules 4 and 5: a cancel entry for each child of `r` without an end, in child order.
  function FLOWS.cancel_children(r)
    local ids = FLOWS.children(r.id)
    local ends = {}
    for i, c in ipairs(ids) do ends[i] = 'fe:' .. r.id .. '|' .. c end
    ends = FLOWS.hmget(ends)
    for i, c in ipairs(ids) do
      if not ends[i] then
        -- A staged child is cancelled when it is made seen (rule 6).
        local child = rec_get(c)
        if child and child.fl < FLOWS.STAGED then settle_add('c|' .. child.q .. '|' .. c) end
      end
    end
  end

  -- Rule 5: cancels task `r` of queue `q`, waiting for its children.
  function FLOWS.cancel_parent(q, r)
    emit(q, 'cancelled', r.id)
    finish(r, S_CANCELLED, q)
    FLOWS.cancel_children(r)
  end

  -- Deletes the flow fields of task `r`, whose record goes (drop_finished).
  function FLOWS.forget(r)
    if r.fl % FLOWS.PARENT >= FLOWS.CHILD then call('HDEL', K_TASKS, 'fp:' .. r.id) end
    if r.fl % FLOWS.STAGED >= FLOWS.PARENT then
      local ids = FLOWS.children(r.id)
      local fields = {'fc:' .. r.id, 'fn:' .. r.id}
      for _, c in ipairs(ids) do fields[#fields + 1] = 'fe:' .. r.id .. '|' .. c end
      in_chunks(fields, function(chunk) call('HDEL', K_TASKS, unpack(chunk)) end)
    end
  end

  -- Settle entry `s` (rule 6): makes the next step of `root`'s wide flow (of queue `qname`)
  -- seen, in pre-order: a task with children waits for them, a leaf enters its queue; either
  -- ends cancelled if its parent ended meanwhile. Writes the entry again while steps remain.
  function FLOWS.materialize(root, qname)
    local step = tonumber(call('HGET', K_TASKS, 'fz:' .. root) or '')
    local steps = tonumber(call('HGET', K_TASKS, 'fk:' .. root) or '')
    if not step or not steps then return end
    local ids = call('HGET', K_TASKS, 'fs:' .. root .. '|' .. step) or ''
    for i = 1, #ids, 26 do
      local r = rec_get(sub(ids, i, i + 25))
      if r and r.fl >= FLOWS.STAGED then
        r.fl = r.fl - FLOWS.STAGED
        local q = queue_of(r.q)
        emit(q, 'submitted', r.id)
        local waits = true
        if r.fl % FLOWS.PARENT >= FLOWS.CHILD then
          local up = call('HGET', K_TASKS, 'fp:' .. r.id)
          local p = up and rec_get(sub(up, 1, 26))
          waits = p ~= nil and p.st == S_WAITING and p.fl < FLOWS.STAGED
        end
        if not waits then
          emit(q, 'cancelled', r.id)
          finish(r, S_CANCELLED, q)
        elseif r.fl >= FLOWS.PARENT then
          call('ZADD', FLOWS.k_parents, 0, parent_member(r))
          rec_put(r)
        else
          local at = nil
          if r.tm > 0 then at = r.tm end
          r.tm = 0
          place(r, q, at, false, NOW)
        end
      end
    end
    call('HDEL', K_TASKS, 'fs:' .. root .. '|' .. step)
    if step < steps then
      call('HSET', K_TASKS, 'fz:' .. root, step + 1)
      settle_add('s|' .. qname .. '|' .. root)
    else
      call('HDEL', K_TASKS, 'fz:' .. root, 'fk:' .. root, 'fq:' .. root)
    end
  end

  -- Settle entry `x` (rule 6): deletes the staged tasks of `root`'s wide flow unless it was
  -- committed (its root exists).
  function FLOWS.expire(root)
    if rec_get(root) then return end
    local steps = tonumber(call('HGET', K_TASKS, 'fk:' .. root) or '') or 0
    for step = 1, steps do
      local ids = call('HGET', K_TASKS, 'fs:' .. root .. '|' .. step) or ''
      for i = 1, #ids, 26 do
        local r = rec_get(sub(ids, i, i + 25))
        if r and r.fl >= FLOWS.STAGED then
          call('HDEL', K_TASKS, r.id)
          FLOWS.forget(r)
        end
      end
      call('HDEL', K_TASKS, 'fs:' .. root .. '|' .. step)
    end
    call('HDEL', K_TASKS, 'fk:' .. root)
  end
end
