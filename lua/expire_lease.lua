-- expire_lease: fails a running task whose lease deadline has passed (deadline < now) with the
-- error 'timed out after <timeout> ms', exactly as fail with retry (State::maintain, step 2).
-- Idempotent: a task no longer running under that token, or not expired, is skipped.
-- KEYS: the fixed keys, then one group per queue of the task's worker, in its order.
-- ARGV: now, id, token, worker, N, N queue names.
-- Reply: {-1} skipped, or {code as fail, state or run-at, assignments...}.
-- Errors: SY_STALE (the worker's queues differ: read it again and retry).
local id = ARGV[2]
local tok = tonumber(ARGV[3])
local w = name_arg(4, 'worker id')
local nq = int_arg(5, 'queue count', 1, 64)
local r = rec_get(id)
if not r or r.st ~= S_RUNNING or r.tok ~= tok or r.w ~= w or r.tm >= NOW then return {-1} end
local wr = worker_get(w)
if not wr then return {-1} end
queues_open(6, nq)
check_worker_queues(wr, 6, nq)
local res = end_attempt_failed(wr, r, 'timed out after ' .. r.to .. ' ms', true)
local reply
if res[1] == 1 then reply = {0, res[2]} elseif res[1] == 2 then reply = {4, S_DEAD} else reply = {5, S_CANCELLED} end
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
