-- lib/bounded.lua: bounded queues and bounded groups, the room check of a submit step (the
-- rule: switchyard_core::flow::bounded). A shared queue's bound per group is its state field
-- 'gm' (absent: none), read only here.
-- Rust twin: crates/switchyard-memory/src/state/bounded.rs.

-- ROOM.check, the room check, and ROOM.counts, which reads what a multi-call submit still
-- carries per queue and group from its arguments (submit.lua, submit_flow.lua); `waiting_len`
-- is the check's alone: held in a block, so that it takes none of the main chunk's 200 local
-- slots (lib/prelude.lua).
local ROOM = {}
do
  -- Tasks waiting in q: ready, scheduled and retry-scheduled.
  local function waiting_len(q)
    return ready_len(q) + call('ZCARD', q.k_delayed)
  end

  -- The bound per group of shared queue `q` (0: none), read once per call.
  local function group_bound(q)
    if q.gmw == nil then
      q.gmw = 0
      if q.grp then q.gmw = tonumber(call('HGET', q.k_state, 'gm')) or 0 end
    end
    return q.gmw
  end

  -- Refuses with SY_GROUP_FULL if `adding` tasks do not fit in group `g` of `q`.
  local function check_group(q, g, waiting, adding)
    if adding > 0 and waiting + adding > q.gmw then
      local hex = gsub(g, '.', function(c) return format('%02x', byte(c)) end)
      fail('SY_GROUP_FULL', waiting .. ' ' .. q.gmw .. ' ' .. adding .. ' ' .. q.name .. ' ' .. hex)
    end
  end

  -- Refuses the step if a bounded queue among `groups` lacks room, before anything is stored:
  -- for the batch's tasks to it from this step on (`rest[g]`, 0 when the batch is one step),
  -- then for the step's new tasks; then, in a queue with a bound per group, each group the
  -- step names or the caller sent a count for (`grest[g]`: group key -> the batch's tasks to it
  -- from this call on), by key, the same way. `tasks` are the step's parsed tasks ({q, id, dedup, body}) and `known[i]`
  -- whether task i's id is stored.
  function ROOM.check(groups, rest, grest, tasks, known)
    local bounded = false
    for _, q in ipairs(groups) do
      if group_bound(q) > 0 or q.mw > 0 then bounded = true end
    end
    if not bounded then return end
    -- The tasks the step would store: as submit.lua decides, id first, then dedup key.
    local new, ids, keys, new_in = {}, {}, {}, {}
    for i, t in ipairs(tasks) do
      if not known[i] and not ids[t.id] then
        local held = false
        if t.dedup then
          local dk = t.q.name .. '|' .. t.dedup
          if keys[dk] then
            -- Claimed earlier in the step: held unless the window is 0 (it expires at once).
            -- Under debounce a later submit may still create a task, but only once the one
            -- before has left the waiting tasks: one more at most.
            held = t.q.dwin > 0
          else
            -- Held by a task that answers the submit (throttle) or takes it (debounce).
            local entry = call('HGET', K_TASKS, 'd:' .. dk)
            if entry then
              local holder, expires = match(entry, '^(.*)|(%d+)$')
              held = tonumber(expires) > NOW
              if held and call('HGET', t.q.k_state, 'dm') == '1' then
                local h = rec_get(holder)
                held = h ~= nil and (h.st == S_SCHEDULED or h.st == S_READY)
              end
            end
          end
          if not held then keys[dk] = true end
        end
        if not held then
          ids[t.id] = true
          new[t.q.name] = (new[t.q.name] or 0) + 1
          if t.q.gmw > 0 then
            local by = new_in[t.q.name]
            if not by then
              by = {}
              new_in[t.q.name] = by
            end
            local g = GROUP.of(t)
            by[g] = (by[g] or 0) + 1
          end
        end
      end
    end
    for g, q in ipairs(groups) do
      if q.mw > 0 then
        local waiting = waiting_len(q)
        for _, adding in ipairs({rest[g], new[q.name] or 0}) do
          if adding > 0 and waiting + adding > q.mw then
            fail('SY_FULL', waiting .. ' ' .. q.mw .. ' ' .. adding .. ' ' .. q.name)
          end
        end
      end
      if q.gmw > 0 then
        -- The groups the step names (each task's, new or not) and those the caller sent counts
        -- for (at a batch's first call: every group its later calls carry tasks to;
        -- flow::bounded::Remaining::groups_to_check).
        local named, order = {}, {}
        local function name(k)
          if not named[k] then
            named[k] = true
            order[#order + 1] = k
          end
        end
        for _, t in ipairs(tasks) do
          if t.q == q then name(GROUP.of(t)) end
        end
        for k in pairs(grest[g]) do name(k) end
        sort(order)
        local by = new_in[q.name] or {}
        for _, k in ipairs(order) do
          local waiting = GROUP.waiting(q, k)
          check_group(q, k, waiting, grest[g][k] or 0)
          check_group(q, k, waiting, by[k] or 0)
        end
      end
    end
  end

  -- The counts at ARGV[first ..]: per queue of the `ng`, the tasks still to come to it
  -- (`rest`), then `M` and M triples (a queue's place among the ng, a group key, its count:
  -- `grest`); after `extra` more arguments between the queue counts and `M`. Returns rest,
  -- grest and the place of the argument after the triples.
  function ROOM.counts(first, ng, extra)
    local rest, grest = {}, {}
    for g = 1, ng do
      rest[g] = int_arg(first + g - 1, 'batch count', 0, 2^53)
      grest[g] = {}
    end
    local base = first + ng + extra
    local m = int_arg(base, 'group batch count', 0, 2^20)
    for i = 1, m do
      local at = base + 3 * (i - 1)
      local g = int_arg(at + 1, 'group batch queue', 1, ng)
      local key = ARGV[at + 2]
      if not key then fail('SY_INVALID', 'group batch key: missing') end
      grest[g][key] = int_arg(at + 3, 'group batch count', 0, 2^53)
    end
    return rest, grest, base + 1 + 3 * m
  end
end
