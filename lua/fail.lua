-- fail: records a failed attempt of a running task (State::fail): cancelled if a cancel was
-- pending, retried after the queue's backoff if allowed and attempts remain, dead otherwise;
-- then the worker's freed slot is refilled. A stale lease is refused and changes nothing.
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, 0 (any instance: the lease token decides), N, N queue names, id, queue,
--       token, error, retry 0|1.
-- Reply: {code (A_RETRYING, A_DEAD, A_CANCELLED; refused: A_NOT_FOUND, A_NOT_RUNNING, A_STALE),
--         run-at or state (-1 without a record), assignments...}.
local wr, w, a = worker_of_call(true)
local id, qname, tok, err = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3] or ''
local retry = int_arg(a + 4, 'retry', 0, 1) == 1
local r = rec_get(id)
local refused, value = lease_refusal(r, w, wr, qname, tok)
if refused then return {refused, value} end
local res = end_attempt_failed(wr, r, err, retry)
flush()
local reply
if res[1] == 1 then
  reply = {A_RETRYING, res[2]}
elseif res[1] == 2 then
  reply = {A_DEAD, S_DEAD}
else
  reply = {A_CANCELLED, S_CANCELLED}
end
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
