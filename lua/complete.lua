-- complete: marks running tasks of one worker succeeded (State::complete, in order), each
-- refilling the freed slot and, if accepted, receiving up to its own `take` tasks right after it
-- (so that completions of several callers combined into one call answer exactly as the same
-- calls made one after the other: Leases::complete_and_receive); then, if at least one
-- completion was accepted, receives up to `max` tasks for the call as a whole (a call whose
-- leases are all stale may come from a replaced instance: it must not take tasks from the inbox
-- of the registration that holds the id now).
-- A lease that is not current (task gone, not running, other token, worker or queue) is
-- refused and changes nothing.
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, 0 (any instance: the lease tokens decide), N, N queue names, L, then L
--       times: id, queue, token, result, take; then max, park 0|1 (as receive's park: when
--       nothing is received, mark the worker waiting).
-- Reply: {per lease: code (A_SUCCEEDED; refused: A_NOT_FOUND, A_NOT_RUNNING, A_STALE), state,
--         assignment count, assignments..., received count, deliveries...}, then the call's
--         deliveries; deliveries as receive returns them.
local wr, w, base = worker_of_call(true)
local nl = int_arg(base, 'lease count', 0, 100000)
local max = int_arg(base + 1 + nl * 5, 'max', 0, 100000)
local parking = int_arg(base + 2 + nl * 5, 'park', 0, 1)
local reply = {}
local raws = {}
-- The records as read before the loop; a receive may flush the deferred writes (see
-- receive_tasks), after which a later lease's record is read again.
local read_at = flushes
local accepted = false
-- later[i]: what the receives after lease i may take at most (the later leases' own counts and
-- the call's `max`): popped with lease i's receive, in one command (see POP_AHEAD).
local later = {}
local rest = max
for i = nl - 1, 0, -1 do
  later[i] = rest
  rest = rest + int_arg(base + 5 + i * 5, 'take', 0, 100000)
end
if nl > 0 then
  local ids = {}
  for i = 0, nl - 1 do ids[i + 1] = ARGV[base + 1 + i * 5] end
  raws = call('HMGET', K_TASKS, unpack(ids))
end
for i = 0, nl - 1 do
  local a = base + 1 + i * 5
  local id, qname, tok = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local take = int_arg(a + 4, 'take', 0, 100000)
  local r = nil
  local v = PENDING.recs[id]
  if not v then
    if flushes == read_at then v = raws[i + 1] else v = call('HGET', K_TASKS, id) end
  end
  if v then r = rec_get(id, v) end
  local mark = #ASSIGN
  local refused, value = lease_refusal(r, w, wr, qname, tok)
  if refused then
    reply[#reply + 1] = refused
    reply[#reply + 1] = value
  else
    local q = queue_of(r.q)
    emit(q, 'succeeded', r.id, w)
    wr.ok = wr.ok + 1
    learn_cost(q, r)
    release(wr, r)
    r.res = ARGV[a + 3]
    finish(r, S_SUCCEEDED, q)
    fill_worker(wr)
    resume(q)
    accepted = true
    reply[#reply + 1] = A_SUCCEEDED
    reply[#reply + 1] = S_SUCCEEDED
  end
  reply[#reply + 1] = (#ASSIGN - mark) / 3
  for j = mark + 1, #ASSIGN do reply[#reply + 1] = ASSIGN[j] end
  local count = #reply + 1
  reply[count] = 0
  if not refused and take > 0 then
    POP_AHEAD = later[i]
    reply[count] = receive_tasks(wr, take, reply)
    POP_AHEAD = 0
  end
end
if accepted and max > 0 then
  if receive_tasks(wr, max, reply) == 0 and parking == 1 then park(wr) end
end
flush()
return reply
