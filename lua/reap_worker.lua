-- reap_worker: removes a worker whose heartbeat expired (expiry < now) and hands its tasks back,
-- exactly as deregister does. Idempotent: a worker already gone or alive again is skipped.
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, 0 (any instance), N, N queue names.
-- Reply: {-1} skipped, or {count, returned ids..., assignments...}.
-- Errors: SY_STALE (queues differ: read the worker again and retry).
local wr = worker_of_call(true)
if not wr or wr.exp >= NOW then return {-1} end
return reply_returned(hand_back(wr))
