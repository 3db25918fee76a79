-- deregister: removes a worker; its inbox tasks go back unchanged, its running tasks go back
-- with the attempt counted (State::hand_back).
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, N, N queue names.
-- Reply: {count, returned ids..., assignments...}.
-- Errors: SY_UNKNOWN_WORKER, SY_STALE (queues differ: read the worker again and retry).
local w = name_arg(2, 'worker id')
local nq = int_arg(3, 'queue count', 1, 64)
local wr = worker_get(w)
if not wr then fail('SY_UNKNOWN_WORKER', w) end
queues_named(4, nq)
check_worker_queues(wr, 4, nq)
local returned = hand_back(wr)
flush()
local reply = {#returned}
for _, id in ipairs(returned) do reply[#reply + 1] = id end
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
