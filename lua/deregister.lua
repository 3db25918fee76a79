-- deregister: removes a worker; its inbox tasks go back unchanged, its running tasks go back
-- with the attempt counted (State::hand_back).
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, instance token, N, N queue names.
-- Reply: {count, returned ids..., assignments...}.
-- Errors: SY_UNKNOWN_WORKER, SY_REPLACED (another instance holds the id), SY_STALE (queues
--         differ: read the worker again and retry).
local wr = worker_of_call()
return reply_returned(hand_back(wr))
