-- purge_queue: cancels (waiting) or deletes (dead, finished) up to `limit` tasks of one class of
-- a queue (State::purge_queue; rules in switchyard_core::admin). Waiting tasks go ready ones
-- first in the order they would leave, then delayed ones by (run-at, seq); dead ones by
-- (died at, id); finished ones by (retain-until, id).
-- KEYS: the fixed keys, then the queue's group.
-- ARGV: now, queue, class (0 waiting, 1 dead, 2 finished), limit.
-- Reply: {removed, more 0|1}.
local q = queues_open(2, 1)[1]
local class = int_arg(3, 'class', 0, 2)
local limit = int_arg(4, 'limit', 0, 1000000)
local n = 0
local more
if class == 0 then
  local ready = {}
  if limit > 0 and q.grp then
    -- A shared queue: in the ready set's order (not the ring's: nothing is dispatched).
    for _, m in ipairs(call('ZRANGE', q.k_ready, 0, limit - 1)) do
      local r = rec_get(sub(m, 13))
      GROUP.remove(q, r, m)
      ready[#ready + 1] = r
    end
  elseif limit > 0 then
    ready = pop_ready(q, limit)
  end
  do
    for _, r in ipairs(ready) do
      emit(q, 'cancelled', r.id)
      finish(r, S_CANCELLED, q)
      n = n + 1
    end
  end
  if n < limit then
    for _, m in ipairs(call('ZRANGE', q.k_delayed, 0, limit - n - 1)) do
      cancel_delayed(q, rec_get(sub(m, 13)))
      n = n + 1
    end
  end
  flush()
  q.rlen = false
  more = ready_len(q) > 0 or call('ZCARD', q.k_delayed) > 0
else
  local ids
  if class == 1 then
    ids = {}
    if limit > 0 then
      for _, m in ipairs(call('ZRANGEBYLEX', K_DEAD, '[' .. q.name .. '|', '(' .. q.name .. '}', 'LIMIT', 0, limit)) do
        ids[#ids + 1] = match(m, '|%x+|(.*)$')
      end
    end
  elseif limit > 0 then
    ids = call('ZRANGE', q.k_done, 0, limit - 1)
  else
    ids = {}
  end
  for _, id in ipairs(ids) do
    local r = rec_get(id)
    if r then drop_finished(q, r) else call('ZREM', q.k_done, id) end
    n = n + 1
  end
  if class == 1 then
    more = call('ZLEXCOUNT', K_DEAD, '[' .. q.name .. '|', '(' .. q.name .. '}') > 0
  else
    more = call('ZCARD', q.k_done) > 0
  end
end
if more then return {n, 1} end
return {n, 0}
