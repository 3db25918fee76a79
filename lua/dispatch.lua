-- dispatch: hands ready tasks of one queue to eligible workers, up to a limit (State::dispatch).
-- Every other step already dispatches, so this finds work only after an interrupted step.
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue, limit.
-- Reply: assignments.
local q = queue_open(1, name_arg(2, 'queue name'))
local limit = int_arg(3, 'limit', 0, 1000000)
local n = 0
while n < limit do
  local r = head_ready(q)
  if not r or q.str == T_PULL then break end
  local w = pick(q, r)
  if not w then break end
  pop_ready(q)
  dispatch_to(worker_get(w), r)
  n = n + 1
end
return ASSIGN
