-- receive: starts up to `max` tasks on a worker — its inbox in dispatch order, then, with slots
-- to spare, its pull queues in its order (State::receive). With `park`, a worker that gets
-- nothing is marked waiting (the next dispatch to it publishes on its wake channel) and parked
-- on its pull queues (the next task there wakes it).
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, instance token, max, park 0|1, N, N queue names.
-- Reply: deliveries, 9 fields each: id, queue, token, attempt, max attempts, deadline, timeout,
--        ready since, body.
-- Errors: SY_UNKNOWN_WORKER, SY_REPLACED (another instance holds the id), SY_STALE.
local wr = own_worker()
local max = int_arg(4, 'max', 0, 100000)
local parking = int_arg(5, 'park', 0, 1)
local nq = int_arg(6, 'queue count', 1, 64)
queues_named(7, nq)
check_worker_queues(wr, 7, nq)
local out = {}
if receive_tasks(wr, max, out) == 0 and parking == 1 then park(wr) end
flush()
return out
