-- lib/bounded.lua: bounded queues, the room check of a submit step (the rule:
-- switchyard_core::flow::bounded).
-- Rust twin: crates/switchyard-memory/src/state/bounded.rs.

-- `waiting_len` is check_room's alone: held in a block, so that it takes none of the main
-- chunk's 200 local slots (lib/prelude.lua).
local check_room
do
  -- Tasks waiting in q: ready, scheduled and retry-scheduled.
  local function waiting_len(q)
    return ready_len(q) + call('ZCARD', q.k_delayed)
  end

  -- Refuses the step if a bounded queue among `groups` lacks room, before anything is stored:
  -- for the batch's tasks to it from this step on (`rest[g]`, 0 when the batch is one step),
  -- then for the step's new tasks. `tasks` are the step's parsed tasks ({q, id, dedup}) and
  -- `known[i]` whether task i's id is stored.
  function check_room(groups, rest, tasks, known)
    local bounded = false
    for _, q in ipairs(groups) do
      if q.mw > 0 then bounded = true end
    end
    if not bounded then return end
    -- The tasks the step would store: as submit.lua decides, id first, then dedup key.
    local new, ids, keys = {}, {}, {}
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
    end
  end
end
