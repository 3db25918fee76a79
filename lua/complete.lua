-- complete: marks running tasks of one worker succeeded (State::complete, in order), each
-- refilling the freed slot, then optionally receives up to `max` tasks in the same call.
-- A lease that is not current (task gone, not running, other token, worker or queue) is
-- refused and changes nothing.
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, N, N queue names, L, then L times: id, queue, token, result; then max.
-- Reply: {per lease: code (0 completed, 1 not found, 2 not running, 3 stale), state,
--         assignment count, assignments...}, then deliveries as receive returns them.
local w = name_arg(2, 'worker id')
local nq = int_arg(3, 'queue count', 0, 64)
local wr = worker_get(w)
queues_open(4, nq)
if wr then check_worker_queues(wr, 4, nq) end
local base = 4 + nq
local nl = int_arg(base, 'lease count', 0, 100000)
local max = int_arg(base + 1 + nl * 4, 'max', 0, 100000)
local acks = {}
for i = 0, nl - 1 do
  local a = base + 1 + i * 4
  local id, qname, tok, value = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3]
  local r = rec_get(id)
  local mark = #ASSIGN
  if not r then
    acks[#acks + 1] = {1, -1}
  elseif r.st ~= S_RUNNING then
    acks[#acks + 1] = {2, r.st}
  elseif r.tok ~= tok or r.w ~= w or r.q ~= qname or not wr then
    acks[#acks + 1] = {3, r.st}
  else
    release_running(wr, r)
    r.res = value
    finish(r, S_SUCCEEDED, queue_of(r.q))
    fill_worker(wr)
    acks[#acks + 1] = {0, S_SUCCEEDED}
  end
  acks[#acks][3] = mark
  acks[#acks][4] = #ASSIGN
end
local reply = {}
for _, a in ipairs(acks) do
  reply[#reply + 1] = a[1]
  reply[#reply + 1] = a[2]
  reply[#reply + 1] = (a[4] - a[3]) / 3
  for j = a[3] + 1, a[4] do reply[#reply + 1] = ASSIGN[j] end
end
if wr then receive_tasks(wr, max, reply) end
if wr then worker_put(wr) end
return reply
