-- reap_worker: removes a worker whose heartbeat expired (expiry < now) and hands its tasks back,
-- exactly as deregister does. Idempotent: a worker already gone or alive again is skipped.
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, N, N queue names.
-- Reply: {-1} skipped, or {count, returned ids..., assignments...}.
-- Errors: SY_STALE (queues differ: read the worker again and retry).
local w = name_arg(2, 'worker id')
local nq = int_arg(3, 'queue count', 1, 64)
local wr = worker_get(w)
if not wr or wr.exp >= NOW then return {-1} end
queues_named(4, nq)
check_worker_queues(wr, 4, nq)
local returned = hand_back(wr)
flush()
local reply = {#returned}
for _, id in ipairs(returned) do reply[#reply + 1] = id end
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
