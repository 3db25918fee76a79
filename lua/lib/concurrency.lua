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
-- Nothing for a queue without a limit, on itself or on its groups (it was never held).
local function resume(q)
  if q.cl > 0 or (q.grp or 0) > 0 then take_up(q) end
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
