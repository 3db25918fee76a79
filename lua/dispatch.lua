-- dispatch: hands ready tasks of one queue to eligible workers, up to a limit (State::dispatch).
-- Every other step already dispatches, so this finds work only after an interrupted step.
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue, limit.
-- Reply: assignments.
local q = queues_open(2, 1)[1]
local limit = int_arg(3, 'limit', 0, 1000000)
local n = 0
while n < limit and q.str ~= T_PULL do
  -- The head of the ready set, dropping cancelled entries of an FCFS list.
  local r = nil
  if q.pol == P_FCFS then
    while true do
      local m = redis.call('LINDEX', q.k_ready, 0)
      if not m then break end
      local c = rec_get(string.sub(m, 13))
      if c and c.st == S_READY and c.q == q.name and c.pos == tonumber(string.sub(m, 1, 12), 16) then
        r = c
        break
      end
      redis.call('LPOP', q.k_ready)
      set_state(q, 'tomb', q.tomb - 1)
    end
  else
    local top = redis.call('ZRANGE', q.k_ready, 0, 0)
    if #top > 0 then r = rec_get(string.sub(top[1], 13)) end
  end
  if not r then break end
  local w = pick(q, r)
  if not w then break end
  pop_ready(q, 1)
  dispatch_to(worker_get(w), r, q, nil)
  n = n + 1
end
flush()
return ASSIGN
