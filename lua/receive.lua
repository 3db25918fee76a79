-- receive: starts up to `max` tasks on a worker — its inbox in dispatch order, then, with slots
-- to spare, its pull queues in its order (State::receive). With `park`, a worker that gets
-- nothing is marked waiting (the next dispatch to it publishes on its wake channel) and parked
-- on its pull queues (the next task there wakes it).
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, instance token, N, N queue names, max, park 0|1.
-- Reply: deliveries, 9 fields each: id, queue, token, attempt, max attempts, deadline, timeout,
--        ready since, body.
-- Errors: SY_UNKNOWN_WORKER, SY_REPLACED (another instance holds the id), SY_STALE.
local wr, _, a = worker_of_call()
local max = int_arg(a, 'max', 0, 100000)
local parking = int_arg(a + 1, 'park', 0, 1)
local out = {}
if receive_tasks(wr, max, out) == 0 and parking == 1 then park(wr) end
flush()
return out
