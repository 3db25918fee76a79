-- lib/submit.lua: accepting tasks: parsing their arguments, and storing them in their queues,
-- each dispatched at once when its queue's ready set is empty and a worker is eligible (a
-- dedup key that is held throttles or debounces: switchyard_core::flow::dedup; the queue's
-- state field 'dm' = 1: debounce). Used by submit.lua and schedule_claim.lua.
-- Rust twin: crates/switchyard-memory/src/state/tasks.rs (State::submit).

-- Two functions; their helpers are held in the block, so that they take none of the main
-- chunk's 200 local slots (lib/prelude.lua).
local task_args, accept_tasks
do
  -- Where a body's payload starts (codec::encode_body): after the lengths, the queue, kind,
  -- affinity and dedup key, the group key (bit 128 of the kind's length: its '>H' length and
  -- it; lib/groups.lua), and the trace context (a marker byte: 0 none, 55 a traceparent, 56 a
  -- traceparent and a tracestate with its '>H' length).
  local function payload_at(body)
    local ql, kl, al, dl = sunpack('>BBHH', body)
    local o = 7 + ql + kl + al + dl
    if kl >= 128 then o = o - 128 + 2 + sunpack('>H', body, o - 128) end
    local m = byte(body, o)
    if m == 0 then return o + 1 end
    if m == 55 then return o + 56 end
    return o + 58 + sunpack('>H', body, o + 56)
  end

  -- The answer to a submit with `body` that found task `id` there, its record `r` (nil: gone).
  local function duplicate(id, r, body, replaced)
    -- The answer codes (src/protocol.rs: SUBMIT_*), here for the main chunk's 200 local slots.
    local SUBMIT_DUPLICATE, SUBMIT_DIFFERS, SUBMIT_REPLACED = 1, 2, 4
    if not r then return {SUBMIT_DUPLICATE, id, -1, ''} end
    local code = SUBMIT_DUPLICATE
    if sub(r.body, payload_at(r.body)) ~= sub(body, payload_at(body)) then code = code + SUBMIT_DIFFERS end
    if replaced then code = code + SUBMIT_REPLACED end
    return {code, id, r.st, ''}
  end

  -- The `n` task arguments ARGV[base + 1 .. base + n], each `TASK_ARG` (lib/protocol.lua:
  -- group, cost given 0|1, priority, cost, run-at (0: none), delay ms (0: none), max attempts
  -- (0: queue default), timeout ms (0: queue default), deadline (0: none)), the 26-character
  -- id, then the body; `groups` are the queues the groups name (queues_open).
  function task_args(base, n, groups)
    local ng = #groups
    local tasks = {}
    for i = 1, n do
      local a = ARGV[base + i]
      if not a or #a < TASK_ARG_LEN + 6 then fail('SY_INVALID', 'task ' .. i .. ': argument too short') end
      local g, has_cost, pr, co, at, delay, ma, to, deadline = sunpack(TASK_ARG, a)
      if g < 1 or g > ng then fail('SY_INVALID', 'group: expected 1..' .. ng .. ', got ' .. g) end
      if ma > 1000 then fail('SY_INVALID', 'max attempts: expected at most 1000, got ' .. ma) end
      local id = sub(a, TASK_ARG_LEN - 25, TASK_ARG_LEN)
      if not find(id, '^[0-9A-Z]+$') then
        fail('SY_INVALID', 'task id: `' .. id .. '` is not 26 base32 characters')
      end
      local body = sub(a, TASK_ARG_LEN + 1)
      local ql, kl, al, dl = sunpack('>BBHH', body)
      local q = groups[g]
      if kl >= 128 then
        -- A group key (lib/groups.lua): only a queue shared between groups takes it.
        kl = kl - 128
        if not q.grp then fail('SY_NOT_SHARED', q.name) end
      end
      if 6 + ql + kl + al + dl > #body then fail('SY_INVALID', 'body: lengths exceed the body') end
      if sub(body, 7, 6 + ql) ~= q.name then
        fail('SY_INVALID', 'body: queue does not match group ' .. g)
      end
      local dedup = nil
      if dl > 0 then dedup = sub(body, 7 + ql + kl + al, 6 + ql + kl + al + dl) end
      if has_cost == 0 then co = -1 end
      tasks[i] = {q = q, id = id, pr = pr, co = co, at = at, delay = delay, ma = ma, to = to,
                  dl = deadline, body = body, dedup = dedup}
    end
    return tasks
  end

  -- The record of a new task from its argument `t` (task_args), ready, not yet in its queue:
  -- for accept_tasks and the flow submit (lib/flows.lua; a FLOWS field for the main chunk's
  -- 200 local slots).
  function FLOWS.new_record(t)
    local q = t.q
    -- Every field of a record (as rec_get makes it) in the constructor: a table grown field by
    -- field is rehashed as it grows.
    local ma, co, to = t.ma, t.co, t.to
    if ma == 0 then ma = q.matt end
    if co < 0 then co = q.dcost end
    if to == 0 then to = q.tmo end
    local fl = 0
    if t.dl > 0 then fl = F_DEADLINE end
    local r = {id = t.id, st = S_READY, fl = fl, at = 0, ma = ma, pr = t.pr, co = co, to = to,
               pos = 0, tok = 0, tm = 0, cr = NOW, dl = t.dl, w = '', e = '', res = '',
               body = t.body, q = q.name}
    if t.co < 0 and (q.pol == P_SJF or q.pol == P_SJF_AGING) then
      local learned = tonumber(call('HGET', q.k_state, 'k:' .. kind_of(r)))
      if learned then r.co = min(learned, 2^32 - 1) end
    end
    return r
  end

  -- Stores `tasks` (from task_args) in order, after refusing the whole step if a bounded queue
  -- or group among `groups` lacks room (`rest`, `grest`: lib/bounded.lua). Returns the reply, 4 fields per task:
  -- 0 (created) or the sum of SUBMIT_DUPLICATE, SUBMIT_DIFFERS (its payload is another than
  -- the task's) and SUBMIT_REPLACED (debounce: the waiting task took it), id, state (-1:
  -- unknown), worker or ''.
  function accept_tasks(groups, rest, grest, tasks)
    local known = {}
    if #tasks > 0 then
      local ids = {}
      for i, t in ipairs(tasks) do ids[i] = t.id end
      known = call('HMGET', K_TASKS, unpack(ids))
    end
    ROOM.check(groups, rest, grest, tasks, known)
    local reply = {}
    for i, t in ipairs(tasks) do
      local q = t.q
      local existing = PENDING.recs[t.id] or known[i]
      local run_at = nil
      if t.at > 0 then run_at = t.at end
      if t.delay > 0 then run_at = min(NOW + t.delay, MAX_MS) end
      local dup = nil
      if existing then
        dup = duplicate(t.id, rec_get(t.id, existing), t.body)
      elseif t.dedup then
        local dk = q.name .. '|' .. t.dedup
        -- Who holds the key for a window from now: this task, the debounced holder, or (throttle)
        -- nobody new.
        local claimer = t.id
        local entry = call('HGET', K_TASKS, 'd:' .. dk)
        if entry then
          local holder, expires = match(entry, '^(.*)|(%d+)$')
          if tonumber(expires) > NOW then
            local h = rec_get(holder)
            if call('HGET', q.k_state, 'dm') ~= '1' then
              dup = duplicate(holder, h, t.body)
              claimer = nil
            elseif h and (h.st == S_SCHEDULED or h.st == S_READY) then
              dup = duplicate(holder, h, t.body, true)
              local body = sub(h.body, 1, payload_at(h.body) - 1) .. sub(t.body, payload_at(t.body))
              h = change_waiting(h, q, body, -1, run_at or NOW)
              dup[3], dup[4] = h.st, h.w
              claimer = holder
            end
          end
        end
        if claimer then
          local expires = NOW + q.dwin
          call('HSET', K_TASKS, 'd:' .. dk, claimer .. '|' .. format('%.0f', expires))
          call('ZADD', K_DEDUPX, expires, dk)
        end
      end
      if dup then
        for _, v in ipairs(dup) do reply[#reply + 1] = v end
      else
        local r = FLOWS.new_record(t)
        emit(q, 'submitted', r.id)
        -- Left ready, it may still have been handed off from its record (place's hand_off_ready).
        if place(r, q, run_at, false, NOW) then r = rec_get(r.id) end
        reply[#reply + 1] = 0
        reply[#reply + 1] = t.id
        reply[#reply + 1] = r.st
        reply[#reply + 1] = r.w
      end
    end
    return reply
  end
end
