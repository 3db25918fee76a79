-- lib/concurrency.lua: concurrency limits, resuming a queue when one of its active tasks ends
-- (the rule: switchyard_core::flow::concurrency; the gate is `dispatches` and the count
-- `count_active`, lib/queues.lua).
-- Rust twin: crates/switchyard-memory/src/state/concurrency.rs.

-- Dispatches (push, by the strategy) or hands off (pull) the queue's next ready tasks while it
-- may dispatch and a worker takes them (State::take_up): what a queue no longer held does, and
-- what reconfigure does whatever the limit was or is now.
local function take_up(q)
  if not dispatches(q) then return end
  if q.str == T_PULL then
    hand_off_ready(q)
  else
    flush_ready(q)
    dispatch_ready(q, room(q, 2^31))
  end
end

-- After one of a limited queue's tasks stopped being active: `take_up` (State::resume).
-- Nothing for a queue without a limit (it was never held).
local function resume(q)
  if q.cl > 0 then take_up(q) end
end

-- `resume` for the queues of the records in `first`, then `second`, each once, in the order
-- they first appear (State::resume_each: the tasks a worker handed back).
local function resume_each(first, second)
  local seen, order = {}, {}
  for _, list in ipairs({first, second}) do
    for _, r in ipairs(list) do
      if not seen[r.q] then
        seen[r.q] = true
        order[#order + 1] = r.q
      end
    end
  end
  for _, name in ipairs(order) do resume(queue_of(name)) end
end

-- Reconfigure sets the limit `cl` (0: none) on `q`: a new limit starts from the queue's active
-- tasks counted now (every leased task's record is read: at most the workers' total capacity);
-- without one the count is dropped.
local function count_for_limit(q, cl)
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
