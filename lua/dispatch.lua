-- dispatch: hands ready tasks of one queue to eligible workers, up to a limit (State::dispatch).
-- Every other step already dispatches, so this finds work only after an interrupted step.
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue, limit.
-- Reply: assignments.
local q = queues_open(2, 1)[1]
local limit = int_arg(3, 'limit', 0, 1000000)
dispatch_ready(q, limit)
flush()
return ASSIGN
